"""Defects found in the review of the turn endpoint and batch transcription: one test each,
through the public API against a peer written here; each failed before its fix."""

from __future__ import annotations

import asyncio
import time

import pytest

import cartesia_stt_async as stt

from .conftest import SLACK, bounded, open_ws

pytestmark = [pytest.mark.both_loops, pytest.mark.asyncio]


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
