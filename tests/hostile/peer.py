"""A hostile WebSocket peer written on raw asyncio streams (not the twin, not websockets' server).

Writing the server frame by frame gives byte-level control of what the SDK never sees from a
well-behaved server: a close frame followed by a TCP connection held open, a TCP abort in the
middle of an answer, a reserved opcode, a refused handshake echoing secrets, a ``close`` that is
never answered.

The default behaviour is the *count mode* of the manual-finalize protocol: each ``finalize`` is
answered with one final transcript delta ``" <N>"``, N the audio bytes heard on this socket since
the previous ``finalize`` (no delta when that audio was all zero bytes: a silent utterance), and
a ``flush_done``, in one of the two documented orders. ``close`` (or the legacy ``done``) is
answered with the tail's delta (if it is not silent), ``done``, and close code 1000. Because the
text is a function of the bytes heard, a gap or a duplicate after a reconnect shows in the
transcript as a wrong or repeated number.

Faults (:class:`Fault`) hit one accepted connection at a point counted in messages received or
events sent, so that every point of an utterance and of ``close`` can be named.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

try:  # websockets' C unmasking, as its own frames module picks it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

__all__ = [
    "Closed",
    "Fault",
    "Handshake",
    "Peer",
    "PeerConn",
    "Refusal",
    "count_text",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Order = Literal["finals_first", "flush_first"]
Action = Literal["abort", "close", "slow_close"]


class Closed:
    """What :meth:`PeerConn.recv` returns for a received close frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason


Message = bytes | str | Closed


def count_text(audio: bytes) -> str:
    """The delta the count-mode peer says for an utterance of these exact bytes."""
    return f" <{len(audio)}>" if audio.strip(b"\x00") else ""


@dataclass(frozen=True)
class Fault:
    """One fault on one accepted connection.

    Attributes:
        conn: Index of the accepted WebSocket connection (0: the first).
        at: ``"recv"``: on receipt of the ``n``-th client message (1-based; binary frames and
            commands alike), before reacting to it; ``n=0`` right after the handshake.
            ``"sent"``: right after the ``n``-th event sent on this connection.
        n: See ``at``.
        action: ``"abort"`` (TCP abort, no close frame: the client sees 1006), ``"close"``
            (close frame with ``code``, prompt TCP close), ``"slow_close"`` (close frame, then
            the TCP connection stays open ``hold`` seconds, reading and ignoring everything).
        code: Close code for ``close`` and ``slow_close``.
        reason: Close reason.
        hold: Seconds the TCP connection stays open after a ``slow_close`` frame.
        delay: Seconds to wait (neither reading nor answering) before acting. Never applied
            between a ``flush_done`` and the final delta it still owes (flush-first order): a
            server that stalls there longer than ``late_final_grace`` cannot be told apart from
            a silent utterance by any client, so the stall would test nothing but the grace.
    """

    conn: int
    at: Literal["recv", "sent"]
    n: int
    action: Action
    code: int = 1011
    reason: str = "hostile"
    hold: float = 0.6
    delay: float = 0.0


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer instead of the WebSocket upgrade."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str = "Refused"


@dataclass
class Handshake:
    """One HTTP request seen by the peer (refused or accepted)."""

    target: str
    headers: dict[str, str]
    raw_lines: list[bytes]
    at: float
    accepted: bool = False


class PeerConn:
    """One accepted connection, with frame-level send and receive."""

    def __init__(
        self,
        peer: Peer,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake: Handshake,
    ) -> None:
        self.peer = peer
        self.index = index
        self.reader = reader
        self.writer = writer
        self.handshake = handshake
        self.commands: list[str] = []  # text messages received, in order
        self.frames = 0  # binary messages received
        self.audio_bytes = 0  # binary bytes received
        self.events_sent = 0
        self.close_received: Closed | None = None
        self.ended = False
        self.owing_final = False  # flush-first: a flush_done was sent, its final not yet
        self.request_id = ""
        self._faults = [f for f in peer.faults if f.conn == index]

    # -- receiving -------------------------------------------------------------------------

    async def _frame(self) -> tuple[bool, int, bytes]:
        head = await self.reader.readexactly(2)
        fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
        masked, length = bool(head[1] & 0x80), head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        mask = await self.reader.readexactly(4) if masked else b""
        payload = await self.reader.readexactly(length) if length else b""
        if masked and payload and (opcode != 0x2 or self.peer.inspect_audio):
            payload = apply_mask(payload, mask)
        return fin, opcode, payload

    async def recv(self) -> Message:
        """The next data message (ping answered, pong ignored), or :class:`Closed`.

        Raises:
            asyncio.IncompleteReadError: When the client's TCP connection ended.
        """
        parts: list[bytes] = []
        first = 0
        while True:
            fin, opcode, payload = await self._frame()
            if opcode == 0x9:
                await self.send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                close = Closed(code, payload[2:].decode("utf-8", "replace"))
                self.close_received = close
                return close
            if opcode != 0x0:
                first = opcode
            parts.append(payload)
            if fin:
                break
        data = b"".join(parts)
        if first == 0x1:
            text = data.decode()
            self.commands.append(text)
            return text
        self.frames += 1
        self.audio_bytes += len(data)
        self.peer.audio_bytes += len(data)
        return data

    # -- sending ---------------------------------------------------------------------------

    async def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """Write one unmasked frame (any opcode, reserved ones included)."""
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        self.writer.write(head + payload)
        await self.writer.drain()

    async def send_json(self, obj: object) -> None:
        """Send one event as a text frame, then fire any fault due after it."""
        await self.send_frame(0x1, json.dumps(obj).encode())
        self.events_sent += 1
        stall = self.peer.stalls.get((self.index, self.events_sent))
        if stall:
            await asyncio.sleep(stall)
        await self.fault_point("sent", self.events_sent)

    async def close_frame(self, code: int, reason: str = "") -> None:
        """Write a close frame (nothing else)."""
        await self.send_frame(0x8, struct.pack("!H", code) + reason.encode())

    # -- ending ----------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self.ended = True
        self.writer.transport.abort()

    async def close(self, code: int = 1000, reason: str = "", *, hold: float = 0.0) -> None:
        """Send a close frame, read (and ignore) until the client's close frame or ``hold``
        seconds, then close TCP. With ``hold``, the connection stays open that long whatever
        the client says (a slow link or a busy server)."""
        self.ended = True
        with contextlib.suppress(ConnectionError):
            await self.close_frame(code, reason)
        if self.close_received is not None and hold <= 0:
            self.writer.close()  # the client started the closing handshake: it is complete
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (hold if hold > 0 else 2.0)
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            async with asyncio.timeout_at(deadline):
                while True:
                    message = await self.recv()
                    if isinstance(message, Closed) and hold <= 0:
                        break
            if hold > 0:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
        self.writer.close()

    async def hang(self) -> None:
        """Read and ignore everything, close frames included, until the client goes away."""
        self.ended = True
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await self._frame()

    async def answer_close(self) -> None:
        """Ignore data until the client's close frame, answer it, close TCP."""
        self.ended = True
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while not isinstance(message := await self.recv(), Closed):
                pass
            await self.close_frame(message.code or 1000)
        self.writer.close()

    async def fault_point(self, at: Literal["recv", "sent"], n: int) -> None:
        """Fire the faults due at this point; raises :class:`_Ended` if one ended the socket."""
        for fault in self._faults:
            if fault.at == at and fault.n == n:
                if fault.delay and not self.owing_final:
                    await asyncio.sleep(fault.delay)
                self.peer.fired.append(fault)
                if fault.action == "abort":
                    self.abort()
                elif fault.action == "close":
                    await self.close(fault.code, fault.reason)
                else:
                    await self.close(fault.code, fault.reason, hold=fault.hold)
                raise _Ended


class _Ended(Exception):
    """The connection was ended by a fault."""


Handler = Callable[[PeerConn], Awaitable[None]]


class Peer:
    """A hostile server on 127.0.0.1:0; ``async with Peer(...) as peer``.

    Args:
        order: ``"finals_first"`` (final delta, then ``flush_done``: current docs) or
            ``"flush_first"`` (``flush_done``, then the final delta: older docs).
        faults: Faults by accepted connection (see :class:`Fault`).
        refuse: HTTP answers instead of the upgrade, by handshake attempt (0: the first).
        handler: Replaces the count mode: called with each accepted :class:`PeerConn`.
        interims: Send an interim (``is_final: false``) delta before each final one.
        request_id: The ``X-Request-Id`` of each accepted handshake (``{n}``: its index).
        inspect_audio: Unmask binary frames (needed to tell silence apart; off for bulk).
        stalls: Seconds to pause after event ``n`` of connection ``c``, by ``(c, n)``.
    """

    def __init__(
        self,
        *,
        order: Order = "finals_first",
        faults: tuple[Fault, ...] | list[Fault] = (),
        refuse: Mapping[int, Refusal] | None = None,
        handler: Handler | None = None,
        interims: bool = False,
        request_id: str = "req-{n}",
        inspect_audio: bool = True,
        stalls: Mapping[tuple[int, int], float] | None = None,
    ) -> None:
        self.order = order
        self.faults = list(faults)
        self.refuse = dict(refuse or {})
        self.handler = handler
        self.interims = interims
        self.request_id = request_id
        self.inspect_audio = inspect_audio
        self.stalls = dict(stalls or {})
        self.handshakes: list[Handshake] = []
        self.conns: list[PeerConn] = []
        self.tcp_connections = 0
        self.fired: list[Fault] = []
        self.audio_bytes = 0  # every binary byte received, on every connection
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        """The ``http://`` base URL for ``AsyncCartesia(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        """Accepted WebSocket handshakes."""
        return len(self.conns)

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self.conns:
            # Let clients see the end of sockets left open (a test that failed half-way), so
            # no client transport is left to be garbage-collected unclosed.
            await asyncio.sleep(0.02)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.tcp_connections += 1
        try:
            await self._connection(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, _Ended):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug in a test's handler: keep it for the test to see
            self.errors.append(exc)
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")[:-2]
        target = lines[0].decode("latin-1").split(" ")[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        shake = Handshake(target, headers, lines, loop.time())
        attempt = len(self.handshakes)
        self.handshakes.append(shake)
        refusal = self.refuse.get(attempt)
        if refusal is not None:
            extra = "".join(f"{k}: {v}\r\n" for k, v in refusal.headers.items())
            writer.write(
                f"HTTP/1.1 {refusal.status} {refusal.reason}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(refusal.body)}\r\n"
                f"{extra}Connection: close\r\n\r\n".encode("latin-1")
                + refusal.body
            )
            await writer.drain()
            writer.close()
            return
        key = headers["sec-websocket-key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        index = len(self.conns)
        rid = self.request_id.format(n=index)
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\nX-Request-Id: {rid}\r\n\r\n".encode("latin-1")
        )
        await writer.drain()
        shake.accepted = True
        conn = PeerConn(self, index, reader, writer, shake)
        conn.request_id = rid
        self.conns.append(conn)
        await conn.fault_point("recv", 0)
        if self.handler is not None:
            await self.handler(conn)
        else:
            await self.count_mode(conn)

    async def count_mode(self, conn: PeerConn) -> None:
        """Serve one connection in count mode (a handler may call this after its own start)."""
        rid = conn.request_id
        heard, loud, n = 0, False, 0

        async def final(count: int) -> None:
            if self.interims:
                await conn.send_json(
                    {"type": "transcript", "is_final": False, "text": " ~", "request_id": rid}
                )
            await conn.send_json(
                {"type": "transcript", "is_final": True, "text": f" <{count}>", "request_id": rid}
            )

        while True:
            message = await conn.recv()
            if isinstance(message, Closed):
                await conn.close(message.code or 1000)
                return
            n += 1
            await conn.fault_point("recv", n)
            if isinstance(message, bytes):
                heard += len(message)
                loud = loud or not self.inspect_audio or bool(message.strip(b"\x00"))
            elif message == "finalize":
                count, said, heard, loud = heard, loud, 0, False
                if self.order == "flush_first":
                    conn.owing_final = said
                    await conn.send_json({"type": "flush_done", "request_id": rid})
                if said:
                    await final(count)
                    conn.owing_final = False
                if self.order == "finals_first":
                    await conn.send_json({"type": "flush_done", "request_id": rid})
            elif message in ("close", "done"):
                if loud:
                    await final(heard)
                await conn.send_json({"type": "done", "request_id": rid})
                await conn.close(1000)
                return
