"""The turn endpoint keeps the manual path's guarantees: typed handshake and server errors with
secrets redacted, bounded buffers, cancellation that leaves no task, unrecoverable closes
that name the lost turn, and the routine idle close."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import cartesia_stt_async as stt

from .conftest import CANARY, SLACK, bounded, pcm
from .peer import Peer, Refusal
from .turns_peer import TurnsConn, open_turns, turns_server

pytestmark = [pytest.mark.both_loops, pytest.mark.asyncio]

SPEECH = pcm(6400)


@pytest.mark.parametrize(
    ("status", "error"), [(401, stt.AuthenticationError), (429, stt.RateLimitError)]
)
async def test_a_refused_handshake_is_typed_and_redacted(
    status: int, error: type[stt.APIStatusError]
) -> None:
    refusal = Refusal(status, json.dumps({"message": f"bad key {CANARY}"}).encode())
    # Every attempt is refused: a client that retries a 429 handshake still ends with it.
    async with bounded(10), Peer(refuse=dict.fromkeys(range(8), refusal)) as peer:
        manager = open_turns(peer.base_url, max_retries=0)
        with pytest.raises(error) as err:
            await manager.enter()
        assert CANARY not in str(err.value) and CANARY not in repr(err.value)
        assert peer.handshakes[0].target.startswith("/stt/turns/websocket?")
        assert CANARY not in repr(manager)


async def test_a_server_error_echoing_the_key_is_redacted() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.event("error", message=f"key {CANARY} is bad", status_code=401)
        await conn.close(1000)

    async with bounded(10), turns_server(script) as server:
        c = await open_turns(server.base_url).enter()
        with pytest.raises(stt.AuthenticationError) as err:
            await c.wait_barge_in()
        assert CANARY not in str(err.value)
        await c.close()


async def test_buffer_policy_raise_applies() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.command("close")
        await conn.close(1000)

    async with bounded(10), turns_server(script) as server:
        manager = open_turns(server.base_url, max_buffered_ms=200, buffer_policy="raise")
        async with manager as c:
            with pytest.raises(stt.BufferFullError, match="max_buffered_ms"):
                await c.send_audio(pcm(32000))  # 1 s at once: more than the queue holds
            assert c.stats.queued_bytes == 0  # nothing of it was queued


async def test_cancelling_waiters_and_leaving_on_an_exception_leave_no_task() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events("turn.start", ("turn.update", "never ends"))
        await conn.ws.wait_closed()

    async with bounded(10), turns_server(script) as server:
        with pytest.raises(RuntimeError, match="caller gave up"):
            async with open_turns(server.base_url) as c:
                waiters: list[asyncio.Task[Any]] = [
                    asyncio.create_task(c.wait_barge_in()),
                    asyncio.ensure_future(anext(aiter(c.turns()))),
                    asyncio.ensure_future(anext(aiter(c.preflights()))),
                ]
                await c.send_audio(SPEECH)
                await waiters[0]
                waiters[1].cancel()
                waiters[2].cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
                raise RuntimeError("caller gave up")
        assert c.state == "closed" or c.state == "failed"


async def test_an_unrecoverable_close_mid_turn_names_the_turn() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events(("turn.end", "first"), "turn.start")
        await conn.close(1008, "policy")

    async with bounded(10), turns_server(script) as server:
        c = await open_turns(server.base_url).enter()
        await c.send_audio(SPEECH)
        got: list[str] = []
        with pytest.raises(stt.ConnectionClosedError) as err:
            async for turn in c.turns():
                got.append(turn.text)
        assert got == ["first"]
        assert err.value.code == 1008 and err.value.unanswered == (1,)
        await c.close()


async def test_the_routine_idle_close_reconnects_on_the_next_send() -> None:
    async def first(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events("turn.start", ("turn.end", "one"))
        await conn.close(1001, "Idle timeout")

    async def second(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events("turn.start", ("turn.end", " two"))
        await conn.command("close")
        await conn.close(1000)

    async with bounded(10), turns_server(first, second) as server:
        async with open_turns(server.base_url) as c:
            await c.send_audio(SPEECH)
            turns = aiter(c.turns())
            assert (await anext(turns)).text == "one"
            await server.until(lambda: server.conns[0].closed)
            await asyncio.sleep(0.05)
            assert c.reconnecting  # waits for the next send: nothing is owed
            await c.send_audio(SPEECH)
            assert (await anext(turns)).text == " two"
        assert c.stats.idle_closes == 1 and c.transcript.text == "one two"
        # Nothing was replayed: the new socket heard only the new audio (idle: nothing owed).
        assert server.conns[1].audio_bytes == len(SPEECH)


async def test_a_server_that_never_closes_after_close_times_out_within_close_timeout() -> None:
    async def script(conn: TurnsConn) -> None:
        await conn.command("close")
        await conn.ws.wait_closed()  # never flushes, never closes

    async with bounded(10), turns_server(script) as server:
        c = await open_turns(server.base_url, close_timeout=0.3).enter()
        await c.send_audio(SPEECH)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(stt.APITimeoutError, match="flush its turns and close the socket"):
            await c.aclose()
        assert loop.time() - started < 0.3 + 1.0 * SLACK
        assert c.state in ("closed", "failed")


async def test_closing_after_a_routine_idle_close_needs_no_new_socket() -> None:
    async def first(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.close(1001, "Idle timeout")

    async with bounded(10), turns_server(first) as server:
        async with open_turns(server.base_url) as c:
            await c.send_audio(SPEECH)  # no turn in it: the preroll keeps it for a replay
            await server.until(lambda: server.conns[0].closed)
            await asyncio.sleep(0.05)
            assert c.reconnecting
        assert c.state == "done" and len(server.conns) == 1
