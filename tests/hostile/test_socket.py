"""Server messages are handed over inline (``_socket.Socket``): what websockets' ``recv()`` used
to do for us must still hold, against peers that do what a normal server never does.

* events that arrive in the same TCP read as the handshake response are not lost;
* a fragmented event (with a ping between its fragments) is joined;
* invalid UTF-8 fails the connection with 1007 and a :class:`ProtocolError`, as ``recv()`` did;
* a binary message is a :class:`ProtocolError` (the client closes with 1002);
* a fragmented message over ``max_message_size`` fails the session (1009), it is not retried.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import cartesia_stt_async as stt

from .conftest import bounded, leftover_tasks, open_ws, pcm
from .peer import Closed, Peer, PeerConn

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def _event(obj: object) -> bytes:
    return _frame(0x1, json.dumps(obj).encode())


@asynccontextmanager
async def eager_server(first_write: bytes) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server whose 101 response and ``first_write`` leave in ONE TCP write; then it reads
    until the client's close frame and closes TCP. Yields the base URL and what it received."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in raw.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + first_write
        )
        try:
            while chunk := await reader.read(65536):
                received.append(chunk)
                if chunk[0] & 0x0F == 0x8:  # the client's close frame (first in its read)
                    break
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", received
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_events_in_the_same_read_as_the_handshake_are_kept() -> None:
    # A server that finished the whole session before the client said a word: two finals,
    # done, and a close frame, all in the same segment as the 101.
    early = (
        _event({"type": "transcript", "is_final": True, "text": "Early", "request_id": "r"})
        + _event({"type": "transcript", "is_final": True, "text": " bird.", "request_id": "r"})
        + _event({"type": "done", "request_id": "r"})
        + _frame(0x8, (1000).to_bytes(2, "big"))
    )
    async with bounded(10), eager_server(early) as (base_url, _):
        conn = await open_ws(base_url, max_retries=0).enter()
        events = [event async for event in conn]
        await conn.aclose()
    assert [e.type for e in events] == ["transcript", "transcript", "done"]
    assert conn.transcript.text == "Early bird."
    assert conn.state == "done"
    assert await leftover_tasks() == []


async def _fragmented(conn: PeerConn) -> None:
    """Answer each finalize with a final split into three frames, a ping in the middle."""
    while True:
        message = await conn.recv()
        if isinstance(message, Closed):
            return
        if message == "finalize":
            event = {"type": "transcript", "is_final": True, "text": " frag\u00e9 ok"}
            body = json.dumps(event).encode()
            a, b = len(body) // 3, 2 * len(body) // 3
            await conn.send_frame(0x1, body[:a], fin=False)
            await conn.send_frame(0x0, body[a:b], fin=False)
            await conn.send_frame(0x9, b"between")  # control frames may interleave
            await conn.send_frame(0x0, body[b:], fin=True)
            await conn.send_json({"type": "flush_done", "request_id": "r"})
        elif message == "close":
            await conn.send_json({"type": "done", "request_id": "r"})
            await conn.close(1000)
            return


@pytest.mark.asyncio
async def test_a_fragmented_event_is_joined() -> None:
    async with bounded(10), Peer(handler=_fragmented) as peer, open_ws(peer.base_url) as conn:
        await conn.send_audio(pcm(3200))
        first = await conn.finalize()
        await conn.send_audio(pcm(3200))
        second = await conn.finalize()
    assert (first.text, second.text) == (" frag\u00e9 ok", " frag\u00e9 ok")
    assert conn.transcript.text == " frag\u00e9 ok frag\u00e9 ok"
    assert conn.state == "done"


async def _send_then_hang(conn: PeerConn, frames: list[tuple[int, bytes, bool]]) -> None:
    """After the first audio message: write ``frames``, then read until the client closes."""
    await conn.recv()
    for opcode, payload, fin in frames:
        await conn.send_frame(opcode, payload, fin=fin)
    while not isinstance(await conn.recv(), Closed):
        pass
    await conn.close_frame(1000)


async def _failure(peer: Peer, **options: Any) -> tuple[BaseException, stt.AsyncConnection]:
    conn = await open_ws(peer.base_url, **options).enter()
    await conn.send_audio(pcm(3200))
    with pytest.raises(stt.CartesiaSTTError) as info:
        await conn.finalize(timeout=5)
    await conn.aclose()
    return info.value, conn


@pytest.mark.asyncio
async def test_invalid_utf8_fails_the_connection_with_1007() -> None:
    bad = b'{"type": "transcript", "is_final": true, "text": "\xff\xfe"}'

    async def handler(conn: PeerConn) -> None:
        await _send_then_hang(conn, [(0x1, bad, True)])

    async with bounded(10), Peer(handler=handler) as peer:
        error, conn = await _failure(peer)
    assert isinstance(error, stt.ProtocolError), error
    assert "1007" in str(error)
    assert peer.conns[0].close_received is not None
    assert peer.conns[0].close_received.code == 1007
    assert peer.accepted == 1  # never retried
    assert conn.transcript.text == ""


@pytest.mark.asyncio
async def test_a_binary_message_is_a_protocol_error_and_the_client_closes_with_1002() -> None:
    async def handler(conn: PeerConn) -> None:
        await _send_then_hang(conn, [(0x2, b"\x00\x01\x02", True)])

    async with bounded(10), Peer(handler=handler) as peer:
        error, _ = await _failure(peer)
    assert isinstance(error, stt.ProtocolError), error
    assert "binary" in str(error)
    assert peer.conns[0].close_received is not None
    assert peer.conns[0].close_received.code == 1002
    assert peer.accepted == 1


@pytest.mark.asyncio
async def test_a_fragmented_message_over_the_size_limit_is_refused_not_retried() -> None:
    part = b'{"type": "transcript", "is_final": true, "text": "' + b"x" * 60

    async def handler(conn: PeerConn) -> None:
        # Each fragment is small; together they pass max_message_size (100 bytes).
        await _send_then_hang(conn, [(0x1, part, False), (0x0, b"y" * 60, False)])

    async with bounded(10), Peer(handler=handler) as peer:
        error, conn = await _failure(peer, max_message_size=100)
    assert isinstance(error, stt.ConnectionClosedError), error
    assert error.code == 1009
    assert peer.accepted == 1
    assert conn.stats.reconnects == 0
