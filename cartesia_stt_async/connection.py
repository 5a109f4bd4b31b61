"""The asyncio connection: one websockets socket, one protocol session, one reader, one writer.

Every outgoing message goes through one bounded send queue drained by one writer task, which
paces audio frames on the :class:`~cartesia_stt_async.protocol.pacing.Pacer` deadline schedule
and awaits the transport (websockets' ``send`` waits for the write buffer to drain), so a slow
network blocks :meth:`AsyncConnection.send_audio` instead of growing memory. Every incoming
message is read by one reader task that decodes it, feeds the pure
:class:`~cartesia_stt_async.protocol.session.Session`, resolves ``finalize()`` waiters and
buffers the event for ``async for event in conn``. ``finalize()`` therefore resolves even when
nobody iterates.

Both tasks belong to the connection: they are created on open and always cancelled and awaited
on close, and they never end with an unretrieved exception (failures are stored and re-raised
to callers as typed errors).

Reconnection (docs/reliability.md). The reader also supervises the socket: when it ends with a
recoverable code (1001, 1006, 1011, 1012, 1013) before ``done``, the reader opens a new socket
(capped, jittered exponential backoff), asks the session to :meth:`~Session.rewind` (the audio
and commands of every utterance not yet answered, rule 6 of the session), starts a new writer
that writes that replay first, then the queue. Callers keep the same object throughout; a
pending ``finalize()`` resolves from the new socket. Cartesia's idle close (1001 "Idle
timeout") with nothing outstanding is routine: the reconnect waits for the next message queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import math
import random
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, overload

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as WSState

from ._sources import AudioSource, iter_audio
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    BufferFullError,
    CartesiaSTTError,
    ConnectionClosedError,
    ConnectionStateError,
    InvalidAudioError,
    ProtocolError,
    ReconnectError,
    UsageError,
    error_for_status,
)
from .protocol.commands import normalize_command
from .protocol.events import DoneEvent, ErrorEvent, Event, TranscriptEvent, parse_event
from .protocol.pacing import Pacer, backoff_delay, check_speed
from .protocol.session import Outgoing, Session, State
from .protocol.transcript import Transcript, Utterance

__all__ = [
    "AsyncConnection",
    "BufferPolicy",
    "ConnectionStats",
    "ReconnectPolicy",
    "ReconnectingEvent",
]

logger = logging.getLogger("cartesia_stt_async")

# A clean end of the socket: normal closure or going away after the session is over.
_CLEAN_CLOSE_CODES = frozenset({1000, 1001})
# Closes worth a new socket (issue 4; protocol.md §5 lists these and more). 1006: a drop.
RECOVERABLE_CLOSE_CODES: Final = frozenset({1001, 1006, 1011, 1012, 1013})
# Handshake statuses that will not change by retrying.
_PERMANENT_STATUSES: Final = frozenset({400, 401, 403, 404})
# A socket that dies sooner than this after its handshake counts as a quick failure.
_QUICK_FAILURE_S: Final = 1.0
# A socket that lived this long restores the retry budget.
_STABLE_S: Final = 10.0

BufferPolicy = Literal["block", "drop_oldest", "raise"]
"""What ``send_audio`` does when ``max_buffered_ms`` of audio is already waiting: wait for room
(``block``), drop the oldest unsent audio (``drop_oldest``), or raise :class:`BufferFullError`."""


@dataclass(frozen=True)
class ReconnectingEvent:
    """Passed to ``on_reconnecting`` before each reconnect attempt (as the official SDK does).

    Attributes:
        attempt: 1 for the first attempt after a failure, then 2, 3, ...
        max_attempts: ``max_retries``.
        delay: Seconds the connection waits before the attempt.
        close_code: The close code that ended the previous socket (1006 for a drop), or
            ``None`` when the previous attempt's handshake failed.
        extra_query: The extra query parameters the attempt will use.
        extra_headers: The extra headers the attempt will use.

    The callback may return ``{"abort": True}`` to give up, or replacement ``extra_query``
    and/or ``extra_headers`` (e.g. a fresh access token); it may be a coroutine function.
    """

    attempt: int
    max_attempts: int
    delay: float
    close_code: int | None
    extra_query: Mapping[str, object]
    extra_headers: Mapping[str, str]


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a connection repairs a dropped socket.

    Attributes:
        max_retries: Attempts in a row without progress before giving up (0: never reconnect).
        initial_delay: Backoff before the first attempt, seconds (before jitter).
        max_delay: Backoff cap, seconds.
        on_reconnecting: Called before each attempt with a :class:`ReconnectingEvent`.
        max_replay_ms: Unacknowledged audio kept for replay; past it, a drop is not repaired.
    """

    max_retries: int = 5
    initial_delay: float = 0.5
    max_delay: float = 8.0
    on_reconnecting: Callable[[ReconnectingEvent], object] | None = None
    max_replay_ms: int = 120_000

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise UsageError(f"max_retries must be an int, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise UsageError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("initial_delay", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise UsageError(f"{name} must be a number >= 0, got {value!r}")
        if self.on_reconnecting is not None and not callable(self.on_reconnecting):
            raise UsageError("on_reconnecting must be callable")
        if isinstance(self.max_replay_ms, bool) or not isinstance(self.max_replay_ms, int):
            raise UsageError(f"max_replay_ms must be an int, got {self.max_replay_ms!r}")
        if self.max_replay_ms < 0:
            raise UsageError(f"max_replay_ms must be >= 0, got {self.max_replay_ms}")


def check_buffer_options(buffer_policy: object, keepalive: object) -> None:
    """Validate ``buffer_policy`` and ``keepalive``.

    Raises:
        UsageError: Naming the bad value.
    """
    if buffer_policy not in ("block", "drop_oldest", "raise"):
        raise UsageError(
            f"buffer_policy must be 'block', 'drop_oldest' or 'raise', got {buffer_policy!r}"
        )
    if keepalive is not None and (
        isinstance(keepalive, bool)
        or not isinstance(keepalive, int | float)
        or not math.isfinite(keepalive)
        or keepalive <= 0
    ):
        raise UsageError(f"keepalive must be a positive number of seconds, got {keepalive!r}")


Connector = Callable[[Mapping[str, object], Mapping[str, str]], Awaitable[ClientConnection]]
"""Opens a new socket with replacement ``extra_query`` and ``extra_headers``."""


@dataclass
class ConnectionStats:
    """Counters of one connection.

    Attributes:
        frames_sent: Binary frames written to the socket.
        audio_bytes_sent: Audio bytes written to the socket.
        commands_sent: Text commands written.
        events_received: Server events decoded.
        events_dropped: Events dropped from the iteration backlog because nobody iterated
            and it was full (the transcript and ``finalize()`` are never affected).
        queued_bytes: Audio bytes waiting in the send queue right now (the queue depth).
        queued_items: Frames and commands waiting in the send queue right now.
        reconnects: Sockets opened to replace a dropped one.
        replayed_bytes: Audio bytes written again on a new socket after a drop.
        dropped_audio_bytes: Audio dropped by ``buffer_policy="drop_oldest"``.
        idle_closes: Routine idle closes (1001 "Idle timeout") received.
        keepalives_sent: Silent frames sent by the opt-in keepalive.
    """

    frames_sent: int = 0
    audio_bytes_sent: int = 0
    commands_sent: int = 0
    events_received: int = 0
    events_dropped: int = 0
    queued_bytes: int = 0
    queued_items: int = 0
    reconnects: int = 0
    replayed_bytes: int = 0
    dropped_audio_bytes: int = 0
    idle_closes: int = 0
    keepalives_sent: int = 0


EventHandler = Callable[[Any], object]
"""A handler for :meth:`AsyncConnection.on`: called with the event; may return an awaitable."""


_H = TypeVar("_H", bound=EventHandler)


class _Unset(enum.Enum):
    UNSET = 0


UNSET: Final = _Unset.UNSET

_Item = tuple[Outgoing, float | None, bool]  # (message, speed, paced)


class _SendQueue:
    """A FIFO of outgoing messages bounded by audio bytes (commands cost nothing)."""

    def __init__(self, limit: int, stats: ConnectionStats) -> None:
        self._items: deque[_Item] = deque()
        self._limit = limit
        self._stats = stats
        self._changed = asyncio.Event()
        self._in_flight = False  # the writer is sending items[0]
        self.failure: BaseException | None = None

    def _size(self, item: _Item) -> int:
        return len(item[0]) if isinstance(item[0], bytes) else 0

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self._changed.set()

    async def put_all(self, items: Iterable[_Item], *, block: bool = True) -> None:
        """Queue items in order, waiting for room unless ``block`` is false.

        Commands are queued with ``block=False`` together with the partial frame they flush
        (at most one frame over the limit), so a cancelled caller can never leave a
        ``finalize`` half-queued: the session's FIFO of tickets always matches the wire.
        """
        for item in items:
            size = self._size(item)
            # Always admit one item into an empty queue, so one huge frame cannot deadlock.
            while (
                block
                and self.failure is None
                and self._items
                and self._stats.queued_bytes + size > self._limit
            ):
                self._changed.clear()
                await self._changed.wait()
            if self.failure is not None:
                raise self.failure
            self._append(item)

    def put_nowait(self, items: Iterable[Outgoing]) -> None:
        """Queue commands (and the partial frame they flush) without waiting for room."""
        if self.failure is not None:
            raise self.failure
        for item in items:
            self._append((item, None, False))

    def _append(self, item: _Item) -> None:
        self._items.append(item)
        self._stats.queued_bytes += self._size(item)
        self._stats.queued_items += 1
        self._changed.set()

    def room_for(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more audio fits (an empty queue always admits one item)."""
        return not self._items or self._stats.queued_bytes + nbytes <= self._limit

    def put_dropping(self, items: Iterable[_Item]) -> None:
        """Queue items, dropping the oldest unsent audio to stay within the limit."""
        if self.failure is not None:
            raise self.failure
        for item in items:
            size = self._size(item)
            start = 1 if self._in_flight else 0
            index = start
            while self._stats.queued_bytes + size > self._limit and index < len(self._items):
                old = self._items[index]
                if isinstance(old[0], bytes):
                    del self._items[index]
                    self._stats.queued_bytes -= len(old[0])
                    self._stats.queued_items -= 1
                    self._stats.dropped_audio_bytes += len(old[0])
                else:
                    index += 1
            self._append(item)

    async def get(self) -> _Item:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        self._in_flight = True
        return self._items[0]

    def pop(self) -> None:
        item = self._items.popleft()
        self._in_flight = False
        self._stats.queued_bytes -= self._size(item)
        self._stats.queued_items -= 1
        self._changed.set()

    def release(self) -> None:
        """The writer stopped before sending the head item: it stays queued."""
        self._in_flight = False

    async def wait_nonempty(self) -> None:
        while not self._items and self.failure is None:
            self._changed.clear()
            await self._changed.wait()

    def audio_bytes(self) -> int:
        return self._stats.queued_bytes

    def empty(self) -> bool:
        return not self._items

    async def drained(self) -> None:
        while self._items and self.failure is None:
            self._changed.clear()
            await self._changed.wait()


class AsyncConnection:
    """A live manual-finalize session. Get one from ``client.stt.manual_finalize.websocket()``.

    The official SDK's surface: ``send_raw``, ``send("finalize" | "close")``, ``recv``,
    ``async for event in conn``, ``close``. The idiomatic surface: ``send_audio``,
    ``finalize``, ``transcript``, ``stream``. Both drive the same session and can be mixed.

    Attributes:
        request_id: The current socket's session id (from the ``X-Request-Id`` handshake
            header or events); it changes when the connection reconnects.
        stats: Counters, see :class:`ConnectionStats`.
    """

    def __init__(
        self,
        ws: ClientConnection,
        session: Session,
        *,
        speed: float | None = 1.0,
        max_buffered_ms: int = 2000,
        close_timeout: float = 10.0,
        max_event_backlog: int = 10_000,
        connector: Connector | None = None,
        reconnect: ReconnectPolicy | None = None,
        buffer_policy: BufferPolicy = "block",
        keepalive: float | None = None,
        log_transcripts: bool = False,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        check_buffer_options(buffer_policy, keepalive)
        self._ws = ws
        self._session = session
        self._speed = check_speed(speed)
        self._close_timeout = close_timeout
        self._connector = connector
        self._policy = reconnect if reconnect is not None else ReconnectPolicy(max_retries=0)
        if connector is None:
            self._policy = ReconnectPolicy(max_retries=0)
        self._buffer_policy = buffer_policy
        self._keepalive = keepalive
        self._log_transcripts = log_transcripts
        self._extra_query: Mapping[str, object] = dict(extra_query or {})
        self._extra_headers: Mapping[str, str] = dict(extra_headers or {})
        self._attempt = 0  # reconnect attempts since the last progress
        self._idle = False  # the server closed an idle socket; reconnect on the next send
        self._down = False  # between a drop and its repair
        self._drop = ConnectionClosedError("the socket ended", code=1006)  # why, when it does
        self.stats = ConnectionStats()
        limit = max(session.frame_bytes, session.format.bytes_per_second * max_buffered_ms // 1000)
        self._queue = _SendQueue(limit, self.stats)
        self._backlog: deque[Event] = deque()
        self._max_backlog = max_event_backlog
        self._backlog_changed = asyncio.Event()
        self._subscribers: list[asyncio.Queue[Event | None]] = []
        self._handlers: dict[str, list[tuple[EventHandler, bool]]] = {}
        self._waiters: dict[Utterance, asyncio.Future[Utterance]] = {}
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._failure: CartesiaSTTError | None = None  # why the session cannot go on
        self._error_event_seen = False
        self._failure_delivered = False  # has the caller been told why the session failed?
        self._finished = asyncio.Event()  # the reader has ended
        self._settled = asyncio.Event()  # 'done' arrived, or the reader has ended
        self._loop = asyncio.get_running_loop()
        self._connected_at = self._loop.time()
        self.request_id: str = _header_request_id(ws)
        self._writer = self._start_writer(ws, [])
        self._reader = asyncio.create_task(self._run(), name="cartesia-stt-reader")

    # -- introspection ---------------------------------------------------------------------

    @property
    def transcript(self) -> Transcript:
        """The accumulator: ``.text`` (final deltas, verbatim), ``.interim``, ``.utterances``."""
        return self._session.transcript

    @property
    def state(self) -> Literal["open", "closing", "done", "failed", "closed"]:
        """``open``, ``closing`` (``close`` queued), ``done``, ``failed`` (an error), or
        ``closed`` (the socket ended before ``done``)."""
        state = self._session.state
        if self._finished.is_set() and state in (State.OPEN, State.CLOSING):
            return "closed"
        return state.name.lower()  # type: ignore[return-value]

    @property
    def lag(self) -> float:
        """Seconds of audio queued but not yet written: how far the wire is behind you."""
        return self._session.format.duration(self.stats.queued_bytes)

    @property
    def reconnecting(self) -> bool:
        """True while the socket is down and a new one is being opened (or, after a routine
        idle close, will be opened on the next send)."""
        return self._down

    @property
    def speed(self) -> float | None:
        """Default pacing of :meth:`send_audio`: 1.0 real time, ``None`` unpaced."""
        return self._speed

    @speed.setter
    def speed(self, value: float | None) -> None:
        self._speed = check_speed(value)

    def __repr__(self) -> str:
        return (
            f"<AsyncConnection request_id={self.request_id!r} state={self.state} "
            f"audio_sent={self.stats.audio_bytes_sent}B reconnects={self.stats.reconnects}>"
        )

    # -- sending ---------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None and self._session.state is not State.DONE:
            self._failure_delivered = True
            raise self._failure

    async def _enqueue(self, items: list[Outgoing], *, speed: float | None, paced: bool) -> None:
        await self._queue.put_all((item, speed, paced) for item in items)

    async def _enqueue_command(self, items: list[Outgoing]) -> None:
        await self._queue.put_all(((item, None, False) for item in items), block=False)

    async def send_audio(
        self, chunk: bytes | bytearray | memoryview, *, speed: float | _Unset | None = UNSET
    ) -> None:
        """Queue audio of any size; it goes out in exact frames, paced to real time.

        Returns once the audio is queued. The queue holds at most ``max_buffered_ms`` of
        audio: when the network (or the pacing) is slower than the caller, this waits
        (``buffer_policy="block"``, the default), drops the oldest unsent audio
        (``"drop_oldest"``) or raises :class:`BufferFullError` (``"raise"``).

        Args:
            chunk: Raw audio in the session's encoding; any length (a sample split across two
                calls is fine).
            speed: Pacing for this audio: 1.0 real time, 4.0 four times faster, ``None`` as fast
                as the transport allows. Defaults to the connection's ``speed``.

        Raises:
            ConnectionStateError: After ``close``.
            InvalidAudioError: If ``chunk`` is not bytes-like.
            BufferFullError: With ``buffer_policy="raise"``, when the queue is full; nothing
                of ``chunk`` was queued.
            APIError, ConnectionClosedError: If the session has failed.
        """
        self._check_usable()
        pace = self._speed if isinstance(speed, _Unset) else check_speed(speed)
        if self._buffer_policy == "raise" and isinstance(chunk, bytes | bytearray | memoryview):
            nbytes = memoryview(chunk).nbytes
            if not self._queue.room_for(nbytes):
                raise BufferFullError(
                    f"the send queue holds {self.stats.queued_bytes} bytes "
                    f"({self.lag:.3f} s) of audio; {nbytes} more would exceed max_buffered_ms"
                )
        frames = self._session.audio(chunk)
        if self._buffer_policy == "drop_oldest":
            self._queue.put_dropping((f, pace, True) for f in frames)
        else:
            await self._enqueue(frames, speed=pace, paced=True)

    async def send_raw(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send one message as-is, like the official SDK: bytes as a binary frame, unpaced.

        A ``str`` is treated as a command (see :meth:`send`).

        Raises:
            InvalidAudioError: If the bytes are not a whole number of samples.
            InvalidCommandError: If a ``str`` is not a known command.
            ConnectionStateError: After ``close``.
        """
        if isinstance(data, str):
            await self.send(data)
            return
        self._check_usable()
        await self._enqueue(self._session.raw_audio(data), speed=None, paced=False)

    async def send(self, command: str) -> None:
        """Send ``"finalize"`` or ``"close"`` (``"done"``, the legacy ``close``, also works).

        ``finalize`` here does not wait for its ``flush_done``; use :meth:`finalize` for that.

        Raises:
            InvalidCommandError: For any other string.
            ConnectionStateError: After ``close``.
        """
        name = normalize_command(command)
        self._check_usable()
        if name == "finalize":
            items, _ = self._session.finalize()
            await self._enqueue_command(items)
        else:
            await self._queue_close()

    async def _queue_close(self) -> None:
        """Queue the held-back audio and ``close``; ``close`` goes out even after a stray byte."""
        try:
            items = self._session.close()
        except InvalidAudioError:
            await self._enqueue_command(["close"])
            raise
        await self._enqueue_command(items)

    async def finalize(self, timeout: float | None = 30.0) -> Utterance:
        """Send any held-back audio and ``finalize``; wait for the matching ``flush_done``.

        Args:
            timeout: Seconds to wait for the answer; ``None`` waits forever.

        Returns:
            The :class:`Utterance`: its final text, words, request id and latency.

        Raises:
            APIError: If the server reports an error.
            APITimeoutError: If no answer came in time.
            ConnectionClosedError: If the socket closed first.
            ConnectionStateError: After ``close``.
        """
        self._check_usable()
        items, ticket = self._session.finalize()
        fut: asyncio.Future[Utterance] = self._loop.create_future()
        self._waiters[ticket] = fut
        try:
            await self._enqueue_command(items)
            async with asyncio.timeout(timeout):
                return await fut
        except CartesiaSTTError:
            self._failure_delivered = True
            raise
        except TimeoutError:
            raise APITimeoutError(
                f"no flush_done for finalize #{ticket.index} within {timeout} s"
            ) from None
        finally:
            self._waiters.pop(ticket, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # mark retrieved: the error reached the caller another way

    def finalize_nowait(self) -> asyncio.Future[Utterance]:
        """Queue ``finalize`` now (after all audio queued before it) and return at once.

        Returns:
            A future that resolves to this finalize's :class:`Utterance` when its answer is
            complete, or fails with the session's error. Await it when you need the text.

        Raises:
            ConnectionStateError: After ``close``.
        """
        self._check_usable()
        items, ticket = self._session.finalize()
        fut: asyncio.Future[Utterance] = self._loop.create_future()
        self._waiters[ticket] = fut

        def forget(f: asyncio.Future[Utterance]) -> None:
            self._waiters.pop(ticket, None)
            if not f.cancelled():
                f.exception()  # the caller may never await it: no "never retrieved" noise

        fut.add_done_callback(forget)
        self._queue.put_nowait(items)
        return fut

    # -- receiving -------------------------------------------------------------------------

    async def finals(self) -> AsyncIterator[str]:
        """Yield committed final deltas, each exactly once, in order, until ``done``.

        A delta is committed once the utterance it answers is complete (or the session is
        done), so a reconnect's replay never yields it twice and never skips one: this is the
        stream to forward to a relay. Raw ``async for event in conn`` shows a replayed
        utterance's events again after a reconnect.

        Raises:
            CartesiaSTTError: Why the session ended early, as iteration does.
        """
        sent = 0
        session = self._session
        while True:
            committed = session.committed_chunks
            if session.state is State.DONE:
                committed = session.transcript.final_chunks
            while sent < committed:
                yield session.transcript._parts[sent]
                sent += 1
            if session.state is State.DONE:
                return
            if self._finished.is_set():
                self._failure_delivered = True
                err = self._end_error()
                if err is not None:
                    raise err
                return
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._commit_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._commit_waiters:
                    self._commit_waiters.remove(waiter)

    async def recv(self) -> Event:
        """Return the next server event.

        Raises:
            ConnectionClosedError: If the session is over and no event is left (also when it
                ended cleanly, as the official SDK does).
        """
        event = await self._next_event()
        if isinstance(event, ErrorEvent):
            self._failure_delivered = True
        if event is None:
            self._failure_delivered = True
            raise self._end_error() or ConnectionClosedError(
                "the session is over: no more events", code=self._ws.close_code
            )
        return event

    @staticmethod
    def parse_event(data: bytes | str) -> Event:
        """Decode one server message, as the official connection's ``parse_event`` does.

        The same as :func:`cartesia_stt_async.parse_event`.

        Raises:
            ProtocolError: If ``data`` is not a well-formed server event.
        """
        return parse_event(data)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while (event := await self._next_event()) is not None:
            if isinstance(event, ErrorEvent):
                self._failure_delivered = True
            yield event
        # The caller sees the end of the stream: a clean end, or the error raised here.
        self._failure_delivered = True
        err = self._end_error()
        if err is not None:
            raise err

    async def _next_event(self) -> Event | None:
        while not self._backlog:
            if self._finished.is_set():
                return None
            self._backlog_changed.clear()
            await self._backlog_changed.wait()
        return self._backlog.popleft()

    def _end_error(self) -> CartesiaSTTError | None:
        """The error that ends iteration, or None for a clean end (done, or error yielded)."""
        if self._session.state is State.DONE or self._error_event_seen:
            return None
        if (
            isinstance(self._failure, ConnectionClosedError)
            and not isinstance(self._failure, ReconnectError)
            and self._failure.code in _CLEAN_CLOSE_CODES
        ):
            return None
        return self._failure

    # -- handlers (the official SDK's push style) -------------------------------------------

    @overload
    def on(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def on(self, event_type: str, handler: EventHandler) -> AsyncConnection: ...
    def on(
        self, event_type: str, handler: EventHandler | None = None
    ) -> AsyncConnection | Callable[[_H], _H]:
        """Register ``handler`` for events of ``event_type`` (``"event"``: every event).

        Usable as ``conn.on("transcript", fn)`` (chainable) or as a decorator
        ``@conn.on("transcript")``. Handlers may be plain functions or coroutines; they run
        in :meth:`dispatch_events`.
        """
        return self._register(event_type, handler, once=False)

    @overload
    def once(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def once(self, event_type: str, handler: EventHandler) -> AsyncConnection: ...
    def once(
        self, event_type: str, handler: EventHandler | None = None
    ) -> AsyncConnection | Callable[[_H], _H]:
        """Like :meth:`on`, for the next matching event only."""
        return self._register(event_type, handler, once=True)

    def off(self, event_type: str, handler: EventHandler) -> AsyncConnection:
        """Remove a handler registered with :meth:`on` or :meth:`once`."""
        self._handlers[event_type] = [
            (h, once) for h, once in self._handlers.get(event_type, []) if h is not handler
        ]
        return self

    def _register(
        self, event_type: str, handler: EventHandler | None, *, once: bool
    ) -> AsyncConnection | Callable[[_H], _H]:
        if not isinstance(event_type, str):
            raise UsageError(f"event_type must be a string, got {type(event_type).__name__}")
        if handler is not None:
            self._handlers.setdefault(event_type, []).append((handler, once))
            return self

        def decorator(fn: _H) -> _H:
            self._handlers.setdefault(event_type, []).append((fn, once))
            return fn

        return decorator

    async def dispatch_events(self) -> None:
        """Read events until the session ends, calling the registered handlers.

        Handlers for the event's type run first, then ``"event"`` handlers. An ``error``
        event with no handler for ``"error"`` or ``"event"`` is raised as :class:`APIError`.
        """
        async for event in self:
            specific = self._handlers.get(event.type, [])
            generic = self._handlers.get("event", [])
            if isinstance(event, ErrorEvent) and not specific and not generic:
                raise _api_error(event)
            for key, entries in ((event.type, specific), ("event", generic)):
                if any(once for _, once in entries):
                    self._handlers[key] = [(h, o) for h, o in entries if not o]
                for handler, _ in entries:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result

    # -- the idiomatic flow ----------------------------------------------------------------

    async def stream(
        self,
        utterances: Iterable[AudioSource] | AsyncIterable[AudioSource],
        *,
        speed: float | None = 1.0,
        finalize_each: bool = True,
    ) -> Transcript:
        """Stream utterances, ``finalize`` after each, ``close``, and wait for ``done``.

        A sender task paces each utterance's audio into frames then queues ``finalize``;
        ``close`` follows the last one. A receiver task consumes events until ``done``. They
        run joined by :func:`asyncio.gather`: if either fails, or the caller is cancelled,
        the other is cancelled, the socket is closed and the error propagates.

        Args:
            utterances: Each item is ``bytes``, an iterable or async iterable of ``bytes``, or a
                path to a WAV file matching the session (mono, same encoding and rate).
            speed: Pacing (1.0 real time; ``None`` unpaced).
            finalize_each: Send ``finalize`` after each utterance (default) or only ``close``.

        Returns:
            The connection's :attr:`transcript`, complete.

        Raises:
            APIError: If the server reports an error.
            InvalidAudioError: For a WAV file that does not match the session.
            ConnectionClosedError: If the socket closes before ``done``.
        """
        pace = check_speed(speed)
        self._check_usable()
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.append(events)

        async def sender() -> None:
            async def one(source: AudioSource) -> None:
                async for chunk in iter_audio(source, self._session.format):
                    await self.send_audio(chunk, speed=pace)
                if finalize_each:
                    await self.send("finalize")

            if isinstance(utterances, AsyncIterable):
                async for source in utterances:
                    await one(source)
            else:
                for source in utterances:
                    await one(source)
            await self.send("close")

        async def receiver() -> None:
            while (event := await events.get()) is not None:
                if isinstance(event, ErrorEvent):
                    raise _api_error(event)
                if event.type == "done":
                    return
            raise self._failure or ConnectionClosedError("connection ended before 'done'")

        tasks = [
            asyncio.create_task(sender(), name="cartesia-stt-sender"),
            asyncio.create_task(receiver(), name="cartesia-stt-receiver"),
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            self._failure_delivered = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._abort()
            raise
        finally:
            self._subscribers.remove(events)
        return self.transcript

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self, timeout: float | None = None) -> None:
        """End the session gracefully: send ``close`` (unless sent) and drain to ``done``.

        Every final transcript the server still owes arrives before this returns. Bounded by
        ``timeout`` (default: the connection's ``close_timeout``); on timeout the socket is
        closed and :class:`APITimeoutError` raised.

        Raises:
            APITimeoutError: If ``done`` did not arrive in time.
            InvalidAudioError: If held-back audio ended mid-sample (``close`` is still sent).
            CartesiaSTTError: The reason the session failed earlier (server error event,
                dropped connection, protocol error), if no call has reported it yet.
        """
        timeout = self._close_timeout if timeout is None else timeout
        pending_error: InvalidAudioError | None = None
        session = self._session
        if (
            self._idle
            and session.state is State.OPEN
            and session.journal_empty
            and self._queue.empty()
            and not session.pending_audio
        ):
            # The server closed the idle socket and owes nothing: no need to reopen one
            # just to hear 'done'.
            session.close()
            self._resolve(session.receive(DoneEvent(request_id=self.request_id), self._loop.time()))
            self._settled.set()
        try:
            if self._session.state is State.OPEN and self._failure is None:
                try:
                    await self._queue_close()
                except InvalidAudioError as exc:
                    pending_error = exc
            if self._session.state is State.CLOSING and self._failure is None:
                async with asyncio.timeout(timeout):
                    await self._settled.wait()
        except TimeoutError:
            await self._abort()
            raise APITimeoutError(
                f"the server did not answer 'close' with 'done' within {timeout} s"
            ) from None
        except BaseException:
            await self._abort()
            raise
        failure = self._failure
        await self._shutdown()
        if pending_error is not None:
            raise pending_error
        if failure is not None and not self._failure_delivered:
            # The session failed and nobody was told: final transcripts may be missing.
            self._failure_delivered = True
            raise failure

    async def close(self, *, code: int = 1000, reason: str = "") -> None:
        """Close the socket now, like the official SDK (no ``close`` command, no draining).

        Use :meth:`aclose` (or leave ``async with`` normally) to keep every final transcript.
        """
        await self._shutdown(code=code, reason=reason)

    async def _abort(self) -> None:
        # Prompt: an exception is leaving; wait at most a second for the closing handshake.
        await self._shutdown(code=1000, reason="client aborted", timeout=1.0)

    async def _shutdown(
        self, *, code: int = 1000, reason: str = "", timeout: float | None = None
    ) -> None:
        """Stop both tasks and close the socket, bounded in time; idempotent."""
        # Recorded first, so the reader does not blame the server for our own close, and
        # does not reconnect.
        self._fail(ConnectionStateError("the connection is closed"), code=None, quiet=True)
        self._writer.cancel()
        ws = self._ws
        try:
            async with asyncio.timeout(self._close_timeout if timeout is None else timeout):
                await ws.close(code=code, reason=reason)
        except (TimeoutError, OSError, ConnectionClosed):
            ws.transport.abort()
        except asyncio.CancelledError:
            ws.transport.abort()
            raise
        finally:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            # The reader may have swapped in a new socket and writer meanwhile.
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            if self._ws.state is not WSState.CLOSED:
                self._ws.transport.abort()

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            await self._abort()

    # -- the two tasks ---------------------------------------------------------------------

    def _start_writer(self, ws: ClientConnection, replay: list[Outgoing]) -> asyncio.Task[None]:
        return asyncio.create_task(self._write_loop(ws, replay), name="cartesia-stt-writer")

    async def _write_loop(self, ws: ClientConnection, replay: list[Outgoing]) -> None:
        """Write the replay (unpaced), then drain the queue until cancelled or the socket fails.

        A failed write is not the writer's to judge: it aborts the transport so that the
        reader, which supervises the socket, sees the end at once and decides.
        """
        session, stats, queue = self._session, self.stats, self._queue
        pacer = Pacer(1.0)
        loop = self._loop
        try:
            for item in replay:
                await ws.send(item)
                if isinstance(item, bytes):
                    stats.frames_sent += 1
                    stats.audio_bytes_sent += len(item)
                    stats.replayed_bytes += len(item)
                else:
                    stats.commands_sent += 1
                session.sent(item, loop.time(), replay=True)
            if replay:
                logger.debug(
                    "replayed %d items (%d audio bytes in all replays so far)",
                    len(replay),
                    stats.replayed_bytes,
                )
            while True:
                if self._keepalive is not None and queue.empty():
                    try:
                        async with asyncio.timeout(self._keepalive):
                            await queue.wait_nonempty()
                    except TimeoutError:
                        await self._send_keepalive(ws)
                        continue
                item, speed, paced = await queue.get()
                if isinstance(item, bytes):
                    if paced and speed is not None:
                        if pacer.speed != speed:
                            pacer = Pacer(speed)
                        due = pacer.schedule(loop.time(), session.format.duration(len(item)))
                        delay = due - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    await ws.send(item)
                    stats.frames_sent += 1
                    stats.audio_bytes_sent += len(item)
                else:
                    await ws.send(item)
                    stats.commands_sent += 1
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug(
                            "sent %r after %d frames (%d bytes)",
                            item,
                            stats.frames_sent,
                            stats.audio_bytes_sent,
                        )
                session.sent(item, loop.time())
                queue.pop()
        except (ConnectionClosed, OSError) as exc:
            logger.debug("write failed: %s", type(exc).__name__)
            ws.transport.abort()
        except Exception as exc:  # a bug: fail the session rather than hang its callers
            logger.exception("writer failed")
            self._fail(APIConnectionError(f"sending failed: {exc!r}"), code=None)
            ws.transport.abort()
        finally:
            queue.release()

    async def _send_keepalive(self, ws: ClientConnection) -> None:
        """Send one frame of silence (protocol.md §3: no keepalive command exists; silent audio
        is what integrations send), unless audio is held back mid-frame or the session ends."""
        for frame in self._session.keepalive():
            await ws.send(frame)
            self._session.sent(frame, self._loop.time())
            self.stats.frames_sent += 1
            self.stats.audio_bytes_sent += len(frame)
            self.stats.keepalives_sent += 1

    async def _run(self) -> None:
        """The reader: read each socket until it ends, repair it when it may be repaired."""
        session = self._session
        try:
            while await self._read_socket() and await self._recover():
                pass
        except Exception as exc:  # a bug: fail the session rather than hang its callers
            logger.exception("reader failed")
            self._fail(APIConnectionError(f"receiving failed: {exc!r}"), code=None)
        finally:
            self._down = False
            if self._timer is not None:
                self._timer.cancel()
            self._resolve(session.poll(float("inf")))
            self._finished.set()
            self._wake_committers()
            self._settled.set()
            self._backlog_changed.set()
            for sub in self._subscribers:
                sub.put_nowait(None)

    async def _read_socket(self) -> bool:
        """Read the current socket to its end.

        Returns:
            True when the socket ended before ``done`` and may be repaired (the reason is in
            ``self._drop``); False when the session is over (done, failed, closed by us).
        """
        session, ws = self._session, self._ws
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    raise ProtocolError(
                        f"server sent a {len(message)}-byte binary message; "
                        "the protocol only has JSON text events"
                    )
                event = parse_event(message)
                self.stats.events_received += 1
                now = self._loop.time()
                completed = session.receive(event, now)
                if not self.request_id and session.request_id:
                    self.request_id = session.request_id
                if isinstance(event, ErrorEvent):
                    self._error_event_seen = True
                    self._fail(_api_error(event), code=None)
                if completed:
                    self._attempt = 0  # progress: the retry budget is whole again
                    if logger.isEnabledFor(logging.DEBUG):
                        self._log_completed(completed, now)
                elif (
                    self._log_transcripts and isinstance(event, TranscriptEvent) and event.is_final
                ):
                    logger.debug("final delta %r", event.text)
                self._resolve(completed)
                self._arm_timer()
                self._publish(event)
                if session.state is State.DONE:
                    self._settled.set()
            self._drop = ConnectionClosedError(
                f"server closed the connection (code {ws.close_code}"
                + (f", reason {ws.close_reason!r})" if ws.close_reason else ")")
                + " before 'done'",
                code=ws.close_code,
                reason=ws.close_reason or "",
            )
        except ConnectionClosed as exc:
            self._drop = _closed_error(exc)
        except ProtocolError as exc:
            self._fail(exc, code=None)
            with contextlib.suppress(Exception):
                await ws.close(code=1002, reason="protocol error")
            return False
        return session.state is not State.DONE and self._failure is None

    def _log_completed(self, completed: list[Utterance], now: float) -> None:
        for utt in completed:
            logger.debug(
                "utterance #%d answered: %d final chunks, %.3f s audio, latency %s; "
                "%d frames / %d bytes sent, %d events received",
                utt.index,
                utt.final_chunks,
                utt.audio_seconds,
                f"{utt.latency * 1000:.1f} ms" if utt.latency is not None else "unknown",
                self.stats.frames_sent,
                self.stats.audio_bytes_sent,
                self.stats.events_received,
            )
            if self._log_transcripts:
                logger.debug("utterance #%d text %r", utt.index, utt.text)

    async def _recover(self) -> bool:
        """Decide about a socket that ended before ``done``; open a new one if allowed.

        Returns:
            True with a new socket and writer running; False when the session has failed
            (the reason is recorded with :meth:`_fail`).
        """
        drop = self._drop
        session, policy, loop = self._session, self._policy, self._loop
        code = drop.code if drop.code is not None else 1006
        lived = loop.time() - self._connected_at
        self._down = True
        # A late window must not close while the socket is down: the late utterance may be
        # replayed (session rule 7), which only an unsealed utterance can be.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # The old writer is done with this socket (it may be waiting on the queue).
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        if self._failure is not None:
            return False
        if policy.max_retries == 0 or code not in RECOVERABLE_CLOSE_CODES:
            self._fail(drop, code=code)
            return False
        if not session.replay_complete:
            self._fail(
                ConnectionClosedError(
                    f"{drop} and more than max_replay_ms of unacknowledged audio was sent, "
                    "so it cannot be replayed exactly; not reconnecting",
                    code=drop.code,
                    reason=drop.reason,
                ),
                code=code,
            )
            return False
        quick = lived < _QUICK_FAILURE_S
        if lived >= _STABLE_S:
            self._attempt = 0
        idle = code == 1001 and "idle" in drop.reason.lower()
        logger.debug(
            "socket ended (code %s%s) after %.3f s; %s",
            code,
            ", idle" if idle else "",
            lived,
            "reconnecting" if not idle or session.has_unanswered else "reconnecting on next send",
        )
        if idle:
            self.stats.idle_closes += 1
            # Routine only when nothing is owed: then the new socket waits for your next
            # send, so it can never loop. A server "idle" while it owes an answer is no
            # routine: that reconnect uses the budget like any other.
            idle = not session.has_unanswered
        if idle:
            self._idle = True
            try:
                await self._queue.wait_nonempty()
            finally:
                self._idle = False
            if self._failure is not None:
                return False
        last: CartesiaSTTError = drop
        close_code: int | None = code
        first = True
        while True:
            if not (idle and first):
                self._attempt += 1
                if self._attempt > policy.max_retries:
                    self._fail(self._give_up(last, quick), code=code)
                    return False
                delay = backoff_delay(
                    self._attempt, policy.initial_delay, policy.max_delay, random.random()
                )
                retry_after = getattr(last, "retry_after", None)
                if isinstance(retry_after, float):
                    # The server's Retry-After, within the same cap as the backoff.
                    delay = max(delay, min(retry_after, policy.max_delay))
                try:
                    go_on = await self._notify(delay, close_code)
                except Exception as exc:  # the user's callback: its failure ends reconnecting
                    err = ReconnectError(
                        f"on_reconnecting raised {type(exc).__name__}: {exc}",
                        code=drop.code,
                        reason=drop.reason,
                        attempts=self._attempt - 1,
                    )
                    err.__cause__ = exc
                    self._fail(err, code=code)
                    return False
                if not go_on:
                    self._fail(
                        ReconnectError(
                            f"reconnecting aborted by on_reconnecting after: {last}",
                            code=drop.code,
                            reason=drop.reason,
                            attempts=self._attempt - 1,
                        ),
                        code=code,
                    )
                    return False
                await asyncio.sleep(delay)
            first = False
            if self._failure is not None:
                return False
            assert self._connector is not None
            try:
                ws = await self._connector(self._extra_query, self._extra_headers)
            except APIStatusError as exc:
                if exc.status_code in _PERMANENT_STATUSES:
                    self._fail(exc, code=None)
                    return False
                last, close_code, quick = exc, None, False
                logger.debug("reconnect attempt %d refused: %s", self._attempt, exc.status_code)
                continue
            except APIConnectionError as exc:
                last, close_code, quick = exc, None, False
                logger.debug("reconnect attempt %d failed: %s", self._attempt, type(exc).__name__)
                continue
            break
        # No await from here on: the swap is atomic for every other task.
        self._ws = ws
        self._connected_at = loop.time()
        self.request_id = _header_request_id(ws) or self.request_id
        session.request_id = self.request_id
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        replay = session.rewind()
        self.stats.reconnects += 1
        logger.debug(
            "reconnected (reconnect %d, attempt %d): replaying %d items, %d audio bytes",
            self.stats.reconnects,
            self._attempt,
            len(replay),
            sum(len(i) for i in replay if isinstance(i, bytes)),
        )
        self._writer = self._start_writer(ws, replay)
        self._down = False
        return self._failure is None

    def _give_up(self, last: CartesiaSTTError, quick: bool) -> ReconnectError:
        attempts = self._attempt - 1
        if quick:
            why = "each socket closed right after its handshake"
        else:
            why = f"the last attempt failed: {last}"
        code = last.code if isinstance(last, ConnectionClosedError) else None
        err = ReconnectError(
            f"gave up reconnecting after {attempts} attempt(s) in a row without progress; {why}",
            code=code,
            reason=last.reason if isinstance(last, ConnectionClosedError) else "",
            attempts=attempts,
        )
        err.__cause__ = last
        return err

    async def _notify(self, delay: float, close_code: int | None) -> bool:
        """Call ``on_reconnecting``; False if it asked to abort."""
        callback = self._policy.on_reconnecting
        if callback is None:
            return True
        event = ReconnectingEvent(
            attempt=self._attempt,
            max_attempts=self._policy.max_retries,
            delay=delay,
            close_code=close_code,
            extra_query=self._extra_query,
            extra_headers=self._extra_headers,
        )
        result = callback(event)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Mapping):
            if result.get("abort"):
                return False
            if result.get("extra_query") is not None:
                self._extra_query = dict(result["extra_query"])
            if result.get("extra_headers") is not None:
                self._extra_headers = dict(result["extra_headers"])
        return True

    def _publish(self, event: Event) -> None:
        if len(self._backlog) >= self._max_backlog:
            self._backlog.popleft()
            self.stats.events_dropped += 1
            if self.stats.events_dropped == 1:
                logger.warning(
                    "event backlog full (%d): nobody iterates this connection, dropping the "
                    "oldest events (transcript and finalize() are unaffected)",
                    self._max_backlog,
                )
        self._backlog.append(event)
        self._backlog_changed.set()
        for sub in self._subscribers:
            sub.put_nowait(event)

    def _wake_committers(self) -> None:
        waiters, self._commit_waiters = self._commit_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _resolve(self, completed: list[Utterance]) -> None:
        if completed or self._session.state is State.DONE:
            self._wake_committers()
        for utt in completed:
            fut = self._waiters.get(utt)
            if fut is not None and not fut.done():
                fut.set_result(utt)

    def _arm_timer(self) -> None:
        deadline = self._session.next_deadline
        if self._timer is not None:
            if deadline is not None and self._timer.when() == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        completed = self._session.poll(self._loop.time())
        if completed:
            self._attempt = 0  # progress
        self._resolve(completed)
        self._arm_timer()

    def _fail(self, exc: CartesiaSTTError, *, code: int | None, quiet: bool = False) -> None:
        """Record why the session cannot go on and fail everyone waiting on it."""
        if self._failure is None:
            self._failure = exc
            if not quiet:
                logger.debug("connection failed: %s (close code %s)", type(exc).__name__, code)
        failure = self._failure
        self._queue.fail(failure)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(failure)


def _api_error(event: ErrorEvent) -> APIError:
    message = event.message or "the server reported an error"
    kw: dict[str, Any] = {
        "title": event.title,
        "error_code": event.error_code,
        "request_id": event.request_id,
    }
    if event.status_code is not None:
        return error_for_status(event.status_code, message, **kw)
    return APIError(message, status_code=None, **kw)


def _header_request_id(ws: ClientConnection) -> str:
    return (ws.response.headers.get("X-Request-Id") if ws.response else None) or ""


def _closed_error(exc: ConnectionClosed) -> ConnectionClosedError:
    if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1009:
        # websockets failed the connection itself: a server message over max_message_size.
        # Not a drop: it would happen again on a new socket.
        return ConnectionClosedError(
            f"the connection was closed by the client (code {exc.sent.code}, "
            f"reason {exc.sent.reason!r})",
            code=exc.sent.code,
            reason=exc.sent.reason,
        )
    if exc.rcvd is None:
        return ConnectionClosedError(
            "the connection dropped without a close frame (1006)", code=1006
        )
    reason = exc.rcvd.reason
    return ConnectionClosedError(
        f"server closed the connection (code {exc.rcvd.code}"
        + (f", reason {reason!r})" if reason else ")"),
        code=exc.rcvd.code,
        reason=reason,
    )
