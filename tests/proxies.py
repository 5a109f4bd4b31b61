"""Plumbing of the proxies the tests write: a server on 127.0.0.1 that runs one handler task per
connection, a byte pipe between two streams, and a clean proxy environment.

The proxies themselves (what they answer) live with their tests: ``tests/test_tls_proxy.py``'s
``Proxy`` tunnels, forwards and checks credentials; ``tests/hostile/test_review3_proxy.py``'s
``HostileProxy`` misbehaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Self

import pytest

__all__ = ["PROXY_ENV", "LoopbackServer", "clean_proxy_env", "pipe"]

PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "WSS_PROXY", "WS_PROXY")


def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every proxy variable, both spellings: a test sets what it needs."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until the end, then close ``writer``."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class LoopbackServer:
    """A TCP server on 127.0.0.1 (a free port) with one ``_handle`` task per connection; on
    the way out every connection is closed and every task cancelled and awaited.

    Subclasses (dataclasses) declare ``port``, ``_tasks`` and ``_writers`` fields and define
    ``_handle``.
    """

    port: int
    _tasks: set[asyncio.Task[None]]
    _writers: set[asyncio.StreamWriter]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        def start(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.create_task(self._handle(r, w))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        server = await asyncio.start_server(start, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
