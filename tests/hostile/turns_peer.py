"""A scripted ``/stt/turns/websocket`` server for tests (websockets' asyncio server on loopback).

Each accepted connection runs the test's script, ``async def script(conn: TurnsConn)``: it waits
on what the client sent (``await conn.audio(nbytes)``, ``await conn.command("close")``) and sends
exact events in exact orders (``await conn.event("turn.start")``), then ends the socket as the
test wants (``await conn.close(1000)``, ``conn.abort()`` for a drop without a close frame). No
recognizer: the text is what the script says, so every order (odd ones included) is exact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

import cartesia_stt_async as stt

from .conftest import FAST, SLACK, client_for

__all__ = ["Script", "TurnsConn", "TurnsServer", "open_turns", "turns_server"]


def open_turns(base_url: str, **kw: Any) -> stt.TurnConnectionManager:
    """``client.stt.auto_finalize.websocket`` with test defaults (pcm_s16le at 16 kHz,
    unpaced, fast backoff); ``kw`` overrides them."""
    options: dict[str, Any] = {"speed": None, "close_timeout": 5 * SLACK, **FAST, **kw}
    return client_for(base_url).stt.auto_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, **options
    )


class TurnsConn:
    """One accepted connection: what the client sent, and how to answer."""

    def __init__(self, ws: ServerConnection, index: int, server: TurnsServer) -> None:
        self.server = server
        self.ws = ws
        self.index = index
        self.path = ws.request.path if ws.request is not None else ""
        self.headers = dict(ws.request.headers) if ws.request is not None else {}
        self.received: list[bytes | str] = []  # every message, in order
        self.audio_bytes = 0
        self.audio: list[bytes] = []
        self.commands: list[dict[str, Any]] = []
        self.closed = False
        self._changed = asyncio.Event()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.received.append(message)
                if isinstance(message, bytes):
                    self.audio_bytes += len(message)
                    self.audio.append(message)
                else:
                    self.commands.append(json.loads(message))
                self._changed.set()
                self.server.changed.set()
        except Exception:
            pass
        finally:
            self.closed = True
            self._changed.set()
            self.server.changed.set()

    async def _until(self, check: Callable[[], bool]) -> None:
        while not check():
            if self.closed:
                raise ConnectionError("the client closed the socket first")
            self._changed.clear()
            await self._changed.wait()

    async def heard(self, nbytes: int) -> None:
        """Wait until ``nbytes`` of audio arrived on this socket."""
        await self._until(lambda: self.audio_bytes >= nbytes)

    async def command(self, kind: str, count: int = 1) -> dict[str, Any]:
        """Wait for the ``count``-th command of type ``kind`` and return it."""
        await self._until(lambda: sum(c.get("type") == kind for c in self.commands) >= count)
        return [c for c in self.commands if c.get("type") == kind][count - 1]

    async def event(self, kind: str, transcript: str | None = None, **fields: Any) -> None:
        """Send one event (``request_id`` added)."""
        body: dict[str, Any] = {"type": kind, **fields}
        if transcript is not None:
            body["transcript"] = transcript
        body.setdefault("request_id", f"req-{self.index}")
        await self.ws.send(json.dumps(body))

    async def events(self, *events: tuple[str, str | None] | str) -> None:
        """Send several events: ``"turn.start"`` or ``("turn.end", " text")``."""
        for item in events:
            if isinstance(item, str):
                await self.event(item)
            else:
                await self.event(item[0], item[1])

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket with ``code``."""
        await self.ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()


Script = Callable[[TurnsConn], Awaitable[None]]


class TurnsServer:
    """The running server: ``base_url`` for the client, ``conns`` accepted so far."""

    def __init__(self, scripts: Sequence[Script]) -> None:
        self.scripts = list(scripts)
        self.conns: list[TurnsConn] = []
        self.base_url = ""
        self.changed = asyncio.Event()  # any connection received something

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until ``check()`` holds, re-checked on every message received."""
        while not check():
            self.changed.clear()
            await self.changed.wait()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = TurnsConn(ws, len(self.conns), self)
        self.conns.append(conn)
        self.changed.set()
        script = self.scripts[min(conn.index, len(self.scripts) - 1)]
        reader = asyncio.create_task(conn._read())
        try:
            await script(conn)
            await ws.wait_closed()
        except ConnectionError:
            pass
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


@asynccontextmanager
async def turns_server(*scripts: Script) -> AsyncIterator[TurnsServer]:
    """Serve ``scripts`` on 127.0.0.1 (connection *n* runs ``scripts[n]``, the last one for
    every later connection)."""
    server = TurnsServer(scripts)
    async with serve(server._handle, "127.0.0.1", 0, compression=None) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        server.base_url = f"http://127.0.0.1:{port}"
        yield server
