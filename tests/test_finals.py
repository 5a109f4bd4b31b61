"""``finals()`` and ``finalize_nowait()``: the exact stream a relay forwards, across reconnects."""

from __future__ import annotations

import asyncio

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Fault, Faults, ScriptedEngine

from .conftest import SLACK, TwinFactory, client_for, other_tasks
from .test_reconnect import FULL, REPLIES, audio, engine_for, ws

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops


async def relay(conn: stt.AsyncConnection, out: list[str]) -> None:
    async for delta in conn.finals():
        out.append(delta)


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ["finals_first", "flush_first"])
@pytest.mark.parametrize("after_events", range(10))
async def test_finals_forwards_each_delta_once_through_a_close_at_every_event(
    twin_factory: TwinFactory, order: str, after_events: int
) -> None:
    engine = engine_for(REPLIES, order=order)
    faults = Faults([Fault("close", connection=0, after_events=after_events, code=1011)])
    async with twin_factory(engine=engine, faults=faults) as twin:
        forwarded: list[str] = []
        async with ws(client_for(twin), final_order=order) as conn:
            forwarder = asyncio.create_task(relay(conn, forwarded))
            futures = []
            for k in range(2):
                await conn.send_audio(audio(k))
                futures.append(conn.finalize_nowait())
            await conn.send_audio(audio(2))  # answered on close
        async with asyncio.timeout(5 * SLACK):
            await forwarder
        assert "".join(forwarded) == FULL == conn.transcript.text
        assert forwarded == ["Hello", " world.", " Second", " one,", " here.", " Third."]
        if order == "finals_first":
            # Flush-first, the text answered on close lands in the last utterance's late window
            # when close is sent while it is open (documented); the stream is exact either way.
            assert [f.result().text for f in futures] == ["Hello world.", " Second one, here."]
    assert not other_tasks()


@pytest.mark.asyncio
async def test_finalize_nowait_keeps_its_place_in_the_audio_order(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=engine_for(REPLIES)) as twin:
        async with ws(client_for(twin), speed=4.0) as conn:
            await conn.send_audio(audio(0))
            first = conn.finalize_nowait()
            assert not first.done()  # returned before the answer
            await conn.send_audio(audio(1))
            second = conn.finalize_nowait()
            assert (await second).text == " Second one, here."
            assert first.done() and first.result().text == "Hello world."
        assert [t for _, t in twin.sessions[0].commands] == ["finalize", "finalize", "close"]
        with pytest.raises(stt.ConnectionStateError):
            conn.finalize_nowait()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_finalize_nowait_fails_with_the_session_error_and_after_close(
    twin_factory: TwinFactory,
) -> None:
    faults = Faults([Fault("error_event", after_frames=1, code=500)])
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        conn = await ws(client_for(twin)).enter()
        try:
            await conn.send_audio(audio(0))
            fut = conn.finalize_nowait()
            with pytest.raises(stt.ServerError):
                await asyncio.wait_for(fut, 5 * SLACK)
        finally:
            await conn.close()
        with pytest.raises(stt.ServerError):  # the session's error, as finalize() raises it
            conn.finalize_nowait()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_finals_raises_why_the_session_ended(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("close", after_frames=1, code=1008, reason="policy")])
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        conn = await ws(client_for(twin)).enter()
        try:
            await conn.send_audio(audio(0))
            conn.finalize_nowait()
            with pytest.raises(stt.ConnectionClosedError, match="1008"):
                async with asyncio.timeout(5 * SLACK):
                    async for _ in conn.finals():
                        pass
        finally:
            await conn.close()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_finals_equals_the_transcript_when_a_replay_is_answered_differently(
    twin_factory: TwinFactory,
) -> None:
    """A real recognizer may answer replayed audio with other words: what was forwarded must
    still be exactly the final transcript (nothing uncommitted is ever yielded)."""
    heard: dict[bytes, int] = {}

    def answer(utterance: bytes) -> list[str]:
        heard[utterance] = heard.get(utterance, 0) + 1
        return ["Hello", " world."] if heard[utterance] == 1 else ["Hi", " there."]

    # Connection 0 sends both finals of utterance 0, then closes 1011 before its flush_done.
    faults = Faults([Fault("close", connection=0, after_events=2, code=1011)])
    engine = ScriptedEngine([], by_audio=answer)
    async with twin_factory(engine=engine, faults=faults) as twin:
        forwarded: list[str] = []
        async with ws(client_for(twin)) as conn:
            forwarder = asyncio.create_task(relay(conn, forwarded))
            await conn.send_audio(audio(0))
            assert (await conn.finalize(timeout=5 * SLACK)).text == "Hi there."
        async with asyncio.timeout(5 * SLACK):
            await forwarder
        assert conn.stats.reconnects == 1
        assert "".join(forwarded) == conn.transcript.text == "Hi there."
    assert not other_tasks()


@pytest.mark.asyncio
async def test_finals_yields_what_was_committed_while_its_consumer_was_busy(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([["a", "b"], ["c"]])) as twin:
        out: list[str] = []
        async with ws(client_for(twin)) as conn:

            async def slow() -> None:
                async for delta in conn.finals():
                    out.append(delta)
                    await asyncio.sleep(0.2)

            task = asyncio.create_task(slow())
            for _ in range(2):
                await conn.send_audio(bytes(320))
                await conn.finalize(timeout=5 * SLACK)
        await asyncio.wait_for(task, 5 * SLACK)
    assert out == ["a", "b", "c"]
    assert not other_tasks()


@pytest.mark.asyncio
async def test_finals_raises_a_server_error_event_it_never_showed(
    twin_factory: TwinFactory,
) -> None:
    """finals() shows no events, so a fatal ``error`` event must end it with the error, not
    quietly (a relay reading only finals() would otherwise never learn why it stopped)."""
    # Utterance 0's two finals go out, then an error event (status 500) before flush_done.
    faults = Faults([Fault("error_event", connection=0, after_events=2, code=500)])
    async with twin_factory(engine=ScriptedEngine([["a", "b"]]), faults=faults) as twin:
        forwarded: list[str] = []
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(bytes(320))
            ticket = conn.finalize_nowait()
            with pytest.raises(stt.ServerError):
                async for delta in conn.finals():
                    forwarded.append(delta)
            with pytest.raises(stt.ServerError):
                await ticket
        # Told once: leaving `async with` normally raises nothing more.
    assert forwarded == []  # the utterance was never answered: nothing committed
    assert not other_tasks()
