"""One connection's socket as the session loop sees it, with the fault plan applied.

Every event the twin sends and every binary frame it receives passes through a :class:`Wire`,
which counts them and fires the faults of the :class:`~.faults.Faults` plan whose trigger
holds (see :mod:`.faults` for what each action does). A fault that ends the connection raises
:class:`EndSession`; the handshake handler catches it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping

from aiohttp import WSMsgType, web

from ..protocol.events import ErrorEvent, FlushDoneEvent, encode_event
from ._state import SessionRecord, Twin
from .faults import Fault, Faults

__all__ = ["EndSession", "Wire"]


class EndSession(Exception):
    """A fault ended the connection."""


class Wire:
    """One connection's socket, counting frames and events and firing scheduled faults.

    Args:
        ws: The prepared WebSocket.
        record: The connection's record.
        twin: The twin (a ``stop_reading`` fault waits for its shutdown).
        faults: The twin's fault plan.
        index: The connection's index among accepted connections.
        request: The handshake request (``abort`` aborts its transport).
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        record: SessionRecord,
        twin: Twin,
        faults: Faults,
        index: int,
        request: web.Request,
    ) -> None:
        self.ws = ws
        self.record = record
        self.twin = twin
        self.index = index
        self._plan = faults
        self._faults = faults.for_connection(index)
        self._request = request
        self.frames = 0
        self.events = 0

    @property
    def request_id(self) -> str:
        """The connection's ``request_id``."""
        return self.record.request_id

    async def start(self) -> None:
        """Fire the faults with no trigger (right after the handshake)."""
        await self._fire(lambda f: f.after_frames is None and f.after_events is None)

    async def send(self, event: object) -> None:
        """Send one event, then fire the faults due after it."""
        await self._send_text(encode_event(event).decode())  # type: ignore[arg-type]

    async def send_json(self, event: Mapping[str, object]) -> None:
        """Send one event given as a mapping (``request_id`` added if absent), then fire the
        faults due after it."""
        if "request_id" not in event:
            event = {**event, "request_id": self.request_id}
        await self._send_text(json.dumps(event))

    async def _send_text(self, text: str) -> None:
        await self.ws.send_str(text)
        self.events += 1
        await self._fire(lambda f: f.after_events == self.events)

    def error(
        self, message: str, status_code: int, title: str, error_code: str, *, done: bool = True
    ) -> ErrorEvent:
        """An ``error`` event in Cartesia's error format; ``done`` says whether the session
        ends with it (``"done": true``, as Cartesia's errors do) or goes on."""
        return ErrorEvent(
            message=message,
            status_code=status_code,
            title=title,
            error_code=error_code,
            request_id=self.request_id,
            done=done,
        )

    async def send_flush_done(self) -> None:
        """Send ``flush_done``, unless the plan delays or withholds it."""
        if self._plan.withholds(self.index):
            return
        if self._plan.flush_done_delay > 0:
            await asyncio.sleep(self._plan.flush_done_delay)
        await self.send(FlushDoneEvent(request_id=self.request_id))

    async def close_normally(self) -> None:
        """Close 1000 after the client's close command, once the plan's ``close_delay``
        has passed."""
        if self._plan.close_delay > 0:
            await asyncio.sleep(self._plan.close_delay)
        await self.ws.close(code=1000)

    async def receive(self, idle_timeout: float) -> bytes | str | None:
        """The next message, recorded: an audio frame (bytes) or a text command (str).

        Returns ``None`` once the connection is over: the client went away, or nothing came
        for ``idle_timeout`` seconds (the socket is then closed 1001 "Idle timeout").
        """
        try:
            msg = await self.ws.receive(timeout=idle_timeout)
        except TimeoutError:
            await self.ws.close(code=1001, message=b"Idle timeout")
            return None
        now = asyncio.get_running_loop().time()
        if msg.type == WSMsgType.BINARY:
            data: bytes = msg.data
            self.record.frames.append((now, len(data)))
            self.record.audio_bytes += len(data)
            return data
        if msg.type == WSMsgType.TEXT:
            text: str = msg.data
            self.record.commands.append((now, text))
            return text
        return None  # CLOSE, CLOSING, CLOSED, ERROR: the client is gone

    async def frame_received(self) -> None:
        """Count one binary frame, then fire the faults due after it."""
        self.frames += 1
        await self._fire(lambda f: f.after_frames == self.frames)

    async def _fire(self, due: Callable[[Fault], bool]) -> None:
        for fault in [f for f in self._faults if due(f)]:
            self._faults.remove(fault)
            await self._act(fault)

    async def _act(self, fault: Fault) -> None:
        ws, rid = self.ws, self.request_id
        if fault.action == "abort":
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            raise EndSession
        if fault.action == "close":
            await ws.close(code=fault.code, message=fault.reason.encode())
            raise EndSession
        if fault.action == "stop_reading":
            await self.twin.stopping()  # nothing is read: the client's sends back up
            raise EndSession
        if fault.action == "malformed_json":
            await ws.send_str('{"type": "transcript", "text": ')
        elif fault.action == "unknown_event":
            await ws.send_str(json.dumps({"type": "twin_mystery", "request_id": rid, "n": 1}))
        elif fault.action == "binary":
            await ws.send_bytes(b"\x00\x01")
        elif fault.action == "error_event":
            error = self.error("injected server error", fault.code, "Injected", "injected")
            await ws.send_str(encode_event(error).decode())
            await ws.close(code=1011, message=b"injected error")
            raise EndSession
