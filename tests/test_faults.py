"""The twin's fault injection itself: each fault does what it says, deterministically."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine, Twin
from cartesia_stt_async.twin.faults import Fault, Faults

from .conftest import API_KEY, SLACK, TwinFactory, client_for, pcm

QUERY = "?model=ink-2&encoding=pcm_s16le&sample_rate=16000"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def url(twin: Twin) -> str:
    return twin.ws_url + QUERY


async def events_after(twin: Twin, frames: int, command: str = "finalize") -> list[str]:
    """Send frames and a command with a plain websockets client; return what came back."""
    out: list[str] = []
    async with ws_connect(url(twin), additional_headers=AUTH) as peer:
        for _ in range(frames):
            await peer.send(pcm(0.1))
        await peer.send(command)
        try:
            async with asyncio.timeout(1.0 * SLACK):
                async for message in peer:
                    out.append(message if isinstance(message, str) else f"<{len(message)} bytes>")
        except TimeoutError:
            out.append("<silence>")
        except ConnectionClosed:
            out.append("<closed>")
        out.append(f"<close {peer.close_code}>")
    return out


@pytest.mark.asyncio
async def test_faults_fire_on_their_connection_and_trigger_only(twin_factory: TwinFactory) -> None:
    faults = Faults(
        [
            Fault("close", connection=1, after_frames=2, code=1013, reason="try later"),
            Fault("unknown_event", connection=0, after_events=1),
        ]
    )
    async with twin_factory(engine=ScriptedEngine([[" a"], [" b"]]), faults=faults) as twin:
        first = await events_after(twin, 3)
        second = await events_after(twin, 3)
    assert '"twin_mystery"' in first[1]  # right after the first event
    assert first[-1] == "<silence>" or first[-1].startswith("<close")
    assert second[-1] == "<close 1013>"
    assert twin.sessions[1].audio_bytes == 2 * 3200


@pytest.mark.asyncio
async def test_abort_drops_without_a_close_frame(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("abort", after_events=1)])
    async with twin_factory(engine=ScriptedEngine([[" a"]]), faults=faults) as twin:
        out = await events_after(twin, 1)
    assert out[-1] == "<close 1006>"
    assert len([m for m in out if m.startswith("{")]) == 1


@pytest.mark.asyncio
async def test_refusals_are_counted_per_handshake(twin_factory: TwinFactory) -> None:
    faults = Faults(refuse={0: 403, 2: 500})
    async with twin_factory(engine=ScriptedEngine([]), faults=faults) as twin:
        statuses = []
        for _ in range(4):
            try:
                async with ws_connect(url(twin), additional_headers=AUTH):
                    statuses.append(101)
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
        assert statuses == [403, 101, 500, 101]
        assert twin.handshakes == 4 and len(twin.sessions) == 2


@pytest.mark.asyncio
async def test_flush_done_delay_and_withholding(twin_factory: TwinFactory) -> None:
    async with twin_factory(
        engine=ScriptedEngine([[" a"]]), faults=Faults(flush_done_delay=0.3)
    ) as twin:
        async with client_for(twin).stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(pcm(0.1))
            utt = await conn.finalize(timeout=5 * SLACK)
        assert utt.latency is not None and utt.latency >= 0.3
    async with twin_factory(
        engine=ScriptedEngine([[" a"]]), faults=Faults(withhold_flush_done=True)
    ) as twin:
        out = await events_after(twin, 1)
        assert [m for m in out if "flush_done" in m] == []
        assert any('" a"' in m for m in out)


@pytest.mark.asyncio
async def test_unknown_events_are_tolerated_by_the_client(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("unknown_event", after_frames=1)])
    async with twin_factory(engine=ScriptedEngine([[" a"]]), faults=faults) as twin:
        async with client_for(twin).stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(pcm(0.1))
            assert (await conn.finalize(timeout=5 * SLACK)).text == " a"
            first = await conn.recv()
        assert isinstance(first, stt.UnknownEvent) and first.type == "twin_mystery"


def test_a_fault_has_one_trigger() -> None:
    with pytest.raises(ValueError, match="one trigger"):
        Fault("abort", after_frames=1, after_events=1)


@pytest.mark.asyncio
async def test_stop_reading_backs_up_the_client(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("stop_reading", after_frames=2)])
    async with twin_factory(engine=ScriptedEngine([[" a"]]), faults=faults) as twin:
        conn = (
            await client_for(twin)
            .stt.manual_finalize.websocket(
                model="ink-2",
                encoding="pcm_s16le",
                sample_rate=16000,
                speed=None,
                close_timeout=0.3,
            )
            .enter()
        )
        try:
            await conn.send_audio(pcm(0.3))
            with pytest.raises(stt.APITimeoutError):
                await conn.finalize(timeout=0.3 * SLACK)
            assert twin.sessions[0].audio_bytes == 2 * 3200
        finally:
            await conn.close()


@pytest.mark.asyncio
async def test_an_error_event_is_final_not_retried(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("error_event", after_frames=1, code=503)])
    async with twin_factory(engine=ScriptedEngine([[" a"]]), faults=faults) as twin:
        with pytest.raises(stt.ServerError, match="injected"):
            async with client_for(twin).stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
            ) as conn:
                await conn.send_audio(pcm(0.1))
                await conn.finalize(timeout=5 * SLACK)
        assert twin.handshakes == 1
        assert conn.stats.reconnects == 0
