"""The turn endpoint's client against scripted servers: exact event orders, plain and odd, the
official surface and the idiomatic one, closing, errors and the silence fill."""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

import cartesia_stt_async as stt

from .conftest import CANARY, SLACK, bounded, client_for, open_ws, pcm
from .peer import Peer, PeerConn
from .turns_peer import TurnsConn, open_turns, turns_server

pytestmark = [pytest.mark.both_loops, pytest.mark.asyncio]

_T = TypeVar("_T")

SPEECH = pcm(6400)  # 200 ms


async def collect(items: AsyncIterator[_T]) -> list[_T]:
    return [item async for item in items]


async def closes_cleanly(conn: TurnsConn) -> None:
    """The end every script shares: wait for ``close``, then close 1000."""
    await conn.command("close")
    await conn.close(1000)


async def test_plain_order_through_every_surface() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(len(SPEECH))
        await conn.events(
            "turn.start",
            ("turn.update", "Hi"),
            ("turn.eager_end", "Hi there."),
            ("turn.end", "Hi there."),
        )
        await closes_cleanly(conn)

    async with bounded(10), turns_server(script) as server:
        async with open_turns(server.base_url, keyterm=["Cartesia"], turn_end_threshold=0.1) as c:
            turns = asyncio.create_task(collect(c.turns()))
            signals = asyncio.create_task(collect(c.signals()))
            preflights = asyncio.create_task(collect(c.preflights()))
            events = asyncio.create_task(collect(aiter(c)))
            await asyncio.sleep(0)
            await c.send_audio(SPEECH)
            await c.aclose()
            assert c.state == "done"
            ended = await turns
            assert [t.text for t in ended] == ["Hi there."]
            assert [(s.kind, s.text) for s in await signals] == [
                ("start", ""),
                ("eager", "Hi there."),
                ("end", "Hi there."),
            ]
            (pre,) = await preflights
            assert (pre.text, pre.state, await pre.withdrawn()) == ("Hi there.", "confirmed", False)
            assert [e.type for e in await events] == [
                "connected",
                "turn.start",
                "turn.update",
                "turn.eager_end",
                "turn.end",
            ]
            assert isinstance((await events)[-1], stt.TurnEndEvent)
            assert c.transcript.text == "Hi there."
            assert ended[0].request_id == "req-0"
        (conn,) = server.conns
        assert conn.path.startswith("/stt/turns/websocket?")
        assert "keyterm=Cartesia" in conn.path and "turn_end_threshold=0.1" in conn.path
        assert conn.received[-1] == '{"type":"close"}'
        assert conn.audio_bytes == len(SPEECH)
        assert CANARY in conn.headers.get("authorization", "")


async def test_odd_orders_each_turn_signalled_once_and_text_joined_verbatim() -> None:
    async def script(conn: TurnsConn) -> None:
        # No 'connected' at first, a duplicated one later, updates before start, an end with
        # no eager end, repeated eager/resume cycles, empty transcripts, an unknown event.
        await conn.heard(len(SPEECH))
        await conn.events(
            ("turn.update", "one"),
            "turn.start",
            ("turn.end", "One."),
            "connected",
            "connected",
            "turn.start",
            ("turn.eager_end", " two"),
            "turn.resume",
            ("turn.eager_end", " two"),
            "turn.resume",
            ("turn.eager_end", " two too"),
            ("turn.end", " two too"),
            "turn.start",
            ("turn.update", ""),
            ("turn.end", ""),
            ("turn.end", " Four "),
            "turn.mystery",
        )
        await closes_cleanly(conn)

    async with bounded(10), turns_server(script) as server:
        async with open_turns(server.base_url) as c:
            signals = asyncio.create_task(collect(c.signals()))
            preflights = asyncio.create_task(collect(c.preflights()))
            raw = asyncio.create_task(collect(aiter(c)))
            await asyncio.sleep(0)
            await c.send_audio(SPEECH)
        assert [t.text for t in c.transcript.turns] == ["One.", " two too", "", " Four "]
        assert c.transcript.text == "One. two too Four "
        kinds = [(s.kind, s.turn.index) for s in await signals]
        assert kinds.count(("start", 0)) == kinds.count(("start", 3)) == 1
        assert [k for k in kinds if k[1] == 1] == [
            ("start", 1),
            ("eager", 1),
            ("resume", 1),
            ("eager", 1),
            ("resume", 1),
            ("eager", 1),
            ("end", 1),
        ]
        outcomes = [(p.turn.index, p.text, p.state) for p in await preflights]
        assert outcomes == [
            (0, "One.", "confirmed"),
            (1, " two", "withdrawn"),
            (1, " two", "withdrawn"),
            (1, " two too", "confirmed"),
            (2, "", "confirmed"),
            (3, " Four ", "confirmed"),
        ]
        unknown = [e for e in await raw if isinstance(e, stt.UnknownEvent)]
        assert [e.type for e in unknown] == ["turn.mystery"]


async def test_eager_reply_recipe_and_barge_in() -> None:
    release = asyncio.Event()

    async def script(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events("turn.start", ("turn.eager_end", "Book a"), "turn.resume")
        await release.wait()
        await conn.events(("turn.eager_end", "Book a table"), ("turn.end", "Book a table"))
        await closes_cleanly(conn)

    replies: list[tuple[str, str]] = []

    async def agent(conn: stt.AsyncTurnConnection) -> None:
        async for pre in conn.preflights():
            reply = asyncio.create_task(asyncio.sleep(0, f"reply to {pre.text}"))
            if await pre.withdrawn():
                reply.cancel()
                replies.append(("dropped", pre.text))
                release.set()
            else:
                replies.append(("spoken", await reply))

    async with bounded(10), turns_server(script) as server, open_turns(server.base_url) as c:
        barge = asyncio.create_task(c.wait_barge_in())
        task = asyncio.create_task(agent(c))
        await asyncio.sleep(0)
        await c.send_audio(SPEECH)
        turn = await barge
        assert turn.index == 0 and c.speaking
        await c.turns().__anext__()
        await c.aclose()
        await task
    assert replies == [("dropped", "Book a"), ("spoken", "reply to Book a table")]


async def test_an_open_turn_gets_its_end_on_close() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events("turn.start", ("turn.update", "still"))
        await conn.command("close")
        await conn.events(("turn.end", "still talking"))
        await conn.close(1000)

    async with bounded(10), turns_server(script) as server:
        async with open_turns(server.base_url) as c:
            await c.send_audio(SPEECH)
            await c.wait_barge_in()
        assert c.transcript.text == "still talking"
        assert c.state == "done"


async def test_a_clean_close_with_the_turn_unanswered_names_it() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events("turn.start")
        await closes_cleanly(conn)

    async with bounded(10), turns_server(script) as server:
        c = await open_turns(server.base_url).enter()
        turns = asyncio.create_task(collect(c.turns()))
        await c.send_audio(SPEECH)
        await c.wait_barge_in()
        with pytest.raises(stt.ConnectionClosedError, match="turn #0 unanswered") as err:
            await c.aclose()
        assert err.value.unanswered == (0,)
        with pytest.raises(stt.ConnectionClosedError):
            await turns


async def test_a_server_error_is_an_event_and_a_typed_error() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.event("error", message="invalid_command", status_code=400, done=False)
        await conn.event("error", title="Not found", message="model_not_found", status_code=404)
        await conn.close(1000)

    async with bounded(10), turns_server(script) as server:
        c = await open_turns(server.base_url).enter()
        events = [e async for e in c]
        assert [e.type for e in events] == ["error", "error"]  # the first one was not fatal
        assert isinstance(events[1], stt.ErrorEvent) and events[1].status_code == 404
        with pytest.raises(stt.NotFoundError):
            await c.send_audio(SPEECH)
        await c.close()


async def test_a_fatal_error_event_ends_turns_and_signals_with_the_error() -> None:
    """turns() and signals() show no events: a fatal error event must end them with the
    error, not quietly."""

    async def script(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(len(SPEECH))
        await conn.event("turn.start")
        await conn.event("error", title="Server error", message="boom", status_code=500)
        await conn.close(1011)

    async with bounded(10), turns_server(script) as server, open_turns(server.base_url) as c:
        signals = asyncio.create_task(collect(c.signals()))
        await asyncio.sleep(0)  # the listener is registered before any event
        await c.send_audio(SPEECH)
        with pytest.raises(stt.ServerError, match="boom"):
            async for _ in c.turns():
                pass
        with pytest.raises(stt.ServerError, match="boom"):
            await signals
        # Told: leaving `async with` normally raises nothing more.


async def test_configure_checks_then_sends_and_official_commands_pass_through() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.command("config", 2)
        await closes_cleanly(conn)

    async with bounded(10), turns_server(script) as server:
        async with open_turns(server.base_url, turn_start_threshold=0.6) as c:
            with pytest.raises(stt.TurnConfigError, match="eager_end_threshold") as err:
                await c.configure(eager_end_threshold=0.6)  # not below start 0.6
            assert (err.value.name, err.value.value) == ("eager_end_threshold", 0.6)
            with pytest.raises(stt.TurnConfigError, match="end_timeout_ms"):
                await c.configure(end_timeout_ms=100)
            settings = await c.configure(end_threshold=0.1, end_timeout_ms=800)
            assert settings.start_threshold == 0.6 and settings.end_threshold == 0.1
            await c.send({"type": "config", "turn": {"eager_end_threshold": 0.35}})
            with pytest.raises(stt.InvalidCommandError):
                await c.send({"type": "finalize"})
            await c.send({"type": "close"})
        (conn,) = server.conns
        assert [json.loads(m) for m in conn.received if isinstance(m, str)] == [
            {"type": "config", "turn": {"end_threshold": 0.1, "end_timeout_ms": 800.0}},
            {"type": "config", "turn": {"eager_end_threshold": 0.35}},
            {"type": "close"},
        ]


async def test_connect_options_are_checked_before_any_io() -> None:
    client = client_for("http://127.0.0.1:9")
    with pytest.raises(stt.TurnConfigError, match="turn_end_threshold") as err:
        client.stt.auto_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, turn_end_threshold=0.6
        )
    assert err.value.value == 0.6
    with pytest.raises(stt.UsageError, match="unknown option"):
        client.stt.auto_finalize.websocket(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            final_order="auto",  # type: ignore[call-arg]
        )


@pytest.mark.parametrize("fill", [True, False])
async def test_silence_keeps_an_open_turn_moving_unless_turned_off(fill: bool) -> None:
    filled = asyncio.Event()

    async def script(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events("turn.start")
        try:
            async with asyncio.timeout(1.2 * SLACK):
                await conn.heard(len(SPEECH) + 3 * 3200)  # the server's clock: audio time
            filled.set()
            await conn.events(("turn.end", "done talking"))
        except TimeoutError:
            await conn.command("close")  # the server flushes the open turn on close
            await conn.events(("turn.end", "cut short"))
        await closes_cleanly(conn)

    async with bounded(10), turns_server(script) as server:
        async with open_turns(server.base_url, fill_silence=fill) as c:
            await c.send_audio(SPEECH)
            if fill:
                (turn,) = [t async for t in _first(c.turns())]
                assert turn.text == "done talking"
            else:
                await asyncio.sleep(1.3 * SLACK)
        assert filled.is_set() is fill
        assert c.transcript.text == ("done talking" if fill else "cut short")
        (conn,) = server.conns
        extra = b"".join(conn.audio)[len(SPEECH) :]
        assert (len(extra) >= 3 * 3200) is fill and not extra.strip(b"\x00")
        assert (c.stats.silence_fill_bytes > 0) is fill


async def _first(items: AsyncIterator[_T]) -> AsyncIterator[_T]:
    async for item in items:
        yield item
        return


async def test_stream_sends_files_and_bytes_paced_then_closes(tmp_path: Path) -> None:
    wav = tmp_path / "second.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm(3200, 7))
    first = pcm(32000)  # 1 s
    total = len(first) + 3200

    async def script(conn: TurnsConn) -> None:
        await conn.heard(total)
        await conn.events("turn.start", ("turn.end", "first"), "turn.start")
        await conn.command("close")
        await conn.events(("turn.end", " second"))
        await conn.close(1000)

    async with bounded(10), turns_server(script) as server:
        async with open_turns(server.base_url) as c:
            loop = asyncio.get_running_loop()
            started = loop.time()
            transcript = await c.stream([first, wav], speed=4.0)
            elapsed = loop.time() - started
        assert transcript is c.transcript and transcript.text == "first second"
        assert elapsed >= 0.2  # 1 s of audio at four times real time: paced
        (conn,) = server.conns
        assert b"".join(conn.audio) == first + pcm(3200, 7)
        assert conn.commands == [{"type": "close"}]


@pytest.mark.parametrize("endpoint", ["turns", "manual"])
async def test_stream_is_bounded_by_close_timeout_when_the_server_never_ends(
    endpoint: str,
) -> None:
    """A server that takes audio and ``close`` and never ends the session: ``stream()`` raises
    APITimeoutError after ``close_timeout``, as ``aclose()`` does, instead of hanging."""

    async def never_answers(conn: PeerConn) -> None:
        await conn.hang()  # reads everything, answers nothing, never closes

    async with bounded(10), Peer(handler=never_answers) as peer:
        manager: stt.TurnConnectionManager | stt.ConnectionManager
        if endpoint == "turns":
            manager = open_turns(peer.base_url, close_timeout=0.5)
        else:
            manager = open_ws(peer.base_url, close_timeout=0.5)
        conn = await manager.enter()
        try:
            with pytest.raises(stt.APITimeoutError, match="close_timeout"):
                await conn.stream([SPEECH])
        finally:
            await conn.close()
