"""Defects found in the review of the turn endpoint and batch transcription: one test each,
through the public API against a peer written here; each failed before its fix."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest

import cartesia_stt_async as stt

from .conftest import SLACK, bounded, open_ws, pcm
from .test_http_retry import HTTPScript, answer, call
from .turns_peer import TurnsConn, open_turns, turns_server

pytestmark = [pytest.mark.both_loops, pytest.mark.asyncio]

_T = TypeVar("_T")


async def test_the_first_handshake_retry_stays_within_open_timeout() -> None:
    """``open_timeout`` bounds every attempt and wait of the first handshake together
    (first_socket): a retried attempt that hangs must not get a whole ``open_timeout`` more."""
    seen = 0
    held: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        await reader.readuntil(b"\r\n\r\n")
        if seen == 1:  # a brief outage: retried after the server's Retry-After
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0.5\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()
        else:
            held.append(writer)  # then a server that never answers the upgrade

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    open_timeout = 1.0
    try:
        async with bounded(10):
            started = time.monotonic()
            with pytest.raises(stt.APIConnectionError):
                async with open_ws(f"http://127.0.0.1:{port}", open_timeout=open_timeout):
                    pass
            took = time.monotonic() - started
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert seen == 2  # the 503 was retried
    assert took < open_timeout + 0.25 * SLACK, f"gave up after {took:.2f} s"


SPEECH = b"".join(pcm(3200, v) for v in range(1, 16))  # 1.5 s, each 100 ms frame distinct
PREROLL = 16000  # 500 ms of pcm_s16le at 16 kHz: the replay of a turn open from the start


async def test_an_eager_end_standing_across_two_drops_is_not_issued_again() -> None:
    """A drop while an eager end stands, then a second drop once the replay reopened the turn:
    the third socket's eager end with the same text is the same one (rule 10), not a new
    preflight withdrawing the first (an agent would drop its reply and start it again)."""

    async def first(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(len(SPEECH))
        await conn.events("turn.start", ("turn.eager_end", "e"))
        await asyncio.sleep(0.05)  # the events reach the client before the drop
        conn.abort()

    async def second(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(PREROLL)
        await conn.events("turn.start")  # the replay reopens the turn, then drops again
        await asyncio.sleep(0.05)
        conn.abort()

    async def third(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(PREROLL)
        await conn.events("turn.start", ("turn.eager_end", "e"), ("turn.end", "e"))
        await conn.command("close")
        await conn.close(1000)

    async with bounded(15), turns_server(first, second, third) as server:
        async with open_turns(server.base_url) as c:
            preflights = asyncio.create_task(collect(c.preflights()))
            await asyncio.sleep(0)
            await c.send_audio(SPEECH)
            await anext(aiter(c.turns()))
        got = [(p.text, p.state) for p in await preflights]
        assert c.stats.reconnects == 2
    assert got == [("e", "confirmed")]


async def collect(items: AsyncIterator[_T]) -> list[_T]:
    return [item async for item in items]


async def test_a_fatal_error_settles_the_preflight_and_ends_signals_at_once() -> None:
    """A fatal ``error`` event ends the session (rule 7): turns() ends with it at once, and so
    must signals(), preflights() and a standing preflight, even while the server keeps the
    socket open (else an agent waiting on ``withdrawn()`` hangs until the server closes)."""
    release = asyncio.Event()

    async def script(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(len(SPEECH))
        await conn.events("turn.start", ("turn.eager_end", "e"))
        await conn.event("error", title="Server error", message="boom", status_code=500)
        await release.wait()  # the socket stays open
        await conn.close(1011)

    async with bounded(15), turns_server(script) as server, open_turns(server.base_url) as c:
        signals = asyncio.create_task(collect(c.signals()))
        preflights = aiter(c.preflights())
        first = asyncio.ensure_future(anext(preflights))
        await asyncio.sleep(0)
        await c.send_audio(SPEECH)
        preflight = await first
        with pytest.raises(stt.ServerError, match="boom"):
            async for _ in c.turns():
                pass
        try:
            assert await asyncio.wait_for(preflight.withdrawn(), 2 * SLACK) is True
            with pytest.raises(stt.ServerError, match="boom"):
                await asyncio.wait_for(signals, 2 * SLACK)
            with pytest.raises(stt.ServerError, match="boom"):
                await asyncio.wait_for(anext(preflights), 2 * SLACK)
        finally:
            release.set()
            signals.cancel()
            await asyncio.gather(signals, return_exceptions=True)


async def test_an_answer_that_is_not_a_transcript_names_the_request_id() -> None:
    """A 200 whose body is not a transcript is a ProtocolError: it must carry the server's
    ``X-Request-Id`` (the one thing support needs), as status errors do."""
    script = HTTPScript([answer(200, b"<html>maintenance</html>", X_Request_Id="rid-7")])
    result, error = await call("transcribe", script)
    assert result is None and isinstance(error, stt.ProtocolError)
    assert "rid-7" in str(error)
