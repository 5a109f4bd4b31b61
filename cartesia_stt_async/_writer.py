"""The write path: a session's outbox onto its socket, paced by one clock per event loop.

There is no writer task. Whoever queues something (``send_audio``, ``finalize``, ...) calls
:meth:`Writer.pump`, which writes at once every item that is due: a live frame forwarded at its
deadline goes out inside ``send_audio``, with no task switch. An item that is not due yet (paced
audio queued ahead) arms the event loop's :class:`Clock`: one timer for every connection of the
loop, which writes all frames due by then (within a millisecond) in one wake-up. When the
transport pushes back (asyncio calls the protocol's ``pause_writing``), the writer stops and
one task waits for it to drain; the queue fills up behind it and the buffer policy applies.

Audio frames and text commands are framed here (:class:`FrameWriter`: a client's masked
frame, RFC 6455 section 5.2, masked by websockets' C ``apply_mask``) and written to the
transport directly: what ``await ws.send()`` does minus the frame object, the lock, the async
context manager and the task switch per frame. This happens only while websockets' protocol
is OPEN; nothing else writes data frames on our connections (websockets itself only writes
pings, pongs and the close frame, each atomically, and flushes them at once). Masks come from
one pool per event loop (the loop's :class:`Clock` holds it), drawn from the OS's random
source 4 KiB at a time, rather than 4 KiB per connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import weakref
from collections.abc import Callable
from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State as WSState

from ._config import SessionConfig
from .protocol.audio import Span
from .protocol.clock import WakeQueue
from .protocol.outbox import Entry
from .protocol.pacing import Pacer
from .protocol.sending import AudioSession

try:  # websockets' C speedup, present in its binary wheels
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the pure-Python fallback
    from websockets.utils import apply_mask

__all__ = ["Clock", "FrameWriter", "Writer"]

logger = logging.getLogger("cartesia_stt_async")

# Frames due within this many seconds of a wake-up go out in it (a little early, never late).
_SLOP: Final = 0.001


_HEAD16: Final = struct.Struct("!BBH")
_HEAD64: Final = struct.Struct("!BBQ")
_MASKS_PER_DRAW: Final = 1024


class FrameWriter:
    """Builds masked binary WebSocket frames (what a client must send), masks drawn from the
    OS's random source 1024 at a time."""

    __slots__ = ("_masks", "_next")

    def __init__(self) -> None:
        self._masks = b""
        self._next = 0

    def binary(self, data: bytes | memoryview) -> bytes:
        """One final (FIN) binary frame carrying ``data``, masked."""
        return self.frame(0x82, data)

    def text(self, data: bytes) -> bytes:
        """One final (FIN) text frame carrying ``data`` (UTF-8), masked."""
        return self.frame(0x81, data)

    def frame(self, first: int, data: bytes | memoryview) -> bytes:
        """One frame with first byte ``first`` (FIN and opcode: 0x82 binary, 0x81 text)
        carrying ``data``, masked (the writer calls this directly: one call per frame)."""
        size = len(data)
        if size < 126:
            head = bytes((first, 0x80 | size))
        elif size < 65536:
            head = _HEAD16.pack(first, 0x80 | 126, size)
        else:
            head = _HEAD64.pack(first, 0x80 | 127, size)
        at = self._next
        if at >= len(self._masks):
            self._masks, at = os.urandom(4 * _MASKS_PER_DRAW), 0
        mask = self._masks[at : at + 4]
        self._next = at + 4
        # Any buffer (websockets 15 types it as bytes only).
        return head + mask + apply_mask(data, mask)  # type: ignore[arg-type, unused-ignore]


class Clock:
    """The one timer of an event loop for every writer's next due item, and the loop's
    frame masks (:attr:`frames`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.frames = FrameWriter()
        self._queue: WakeQueue[Writer] = WakeQueue(_SLOP)
        # uvloop returns a plain Handle (no when()) for a time already past: keep it here.
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0

    def wake(self, writer: Writer, when: float) -> None:
        """Call ``writer.pump()`` at ``when`` (or earlier, if already armed earlier)."""
        if self._queue.arm(writer, when):
            self._rearm()

    def cancel(self, writer: Writer) -> None:
        """Forget ``writer``'s wake-up."""
        self._queue.disarm(writer)

    def _rearm(self) -> None:
        due = self._queue.next_due()
        timer = self._timer
        if timer is not None:
            if due is not None and self._timer_at <= due:
                return
            timer.cancel()
            self._timer = None
        if due is not None:
            self._timer = self._loop.call_at(due, self._fire)
            self._timer_at = due

    def _fire(self) -> None:
        self._timer = None
        for writer in self._queue.pop_due(self._loop.time()):
            writer.pump()
        self._rearm()


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Clock] = weakref.WeakKeyDictionary()


def clock_for(loop: asyncio.AbstractEventLoop) -> Clock:
    """The clock of ``loop`` (made on first use)."""
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = Clock(loop)
    return clock


class Writer:
    """Writes one session's outbox to the current socket (see the module docstring).

    Args:
        session: The session whose outbox it writes (either endpoint's).
        config: ``keepalive`` and ``catch_up_speed``.
        on_room: Called after an item was taken while :attr:`room_wanted` is set (a blocked
            producer may queue more); the flag is cleared then.
        on_error: Called with an unexpected exception (a bug): the link fails the session.
        log: Where its records go (the session's logger, with its fields).
    """

    def __init__(
        self,
        session: AudioSession,
        config: SessionConfig,
        *,
        on_room: Callable[[], None],
        on_error: Callable[[Exception], None],
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self._log = log
        self._session = session
        self._bytes_per_second = float(session.format.bytes_per_second)
        self._keepalive = config.keepalive
        self._catch_up = config.catch_up_speed
        self._on_room = on_room
        # Set by a producer about to wait for room: no callback per frame when nobody waits.
        self.room_wanted = False
        self._on_error = on_error
        self._loop = asyncio.get_running_loop()
        self._clock = clock_for(self._loop)
        self._ws: ClientConnection | None = None
        self._pacer: Pacer | None = None
        self._pending: Entry | None = None  # taken from the outbox, not yet written
        self._due = 0.0
        self._drainer: asyncio.Task[None] | None = None
        self._last_write = self._loop.time()
        self._frames = self._clock.frames
        # An idle socket never needs anything (keepalive off, and the session keeps the
        # default rule): nothing to arm after a write.
        self._idle_never = (
            config.keepalive is None and type(session).idle_deadline is AudioSession.idle_deadline
        )
        # The idle deadline a clock wake is pending for (None: none). Until it fires, a write
        # cannot make the deadline earlier (see _keep_alive): nothing is recomputed per frame.
        self._idle_at: float | None = None

    def attach(self, ws: ClientConnection) -> None:
        """Write to ``ws`` from now on (a new socket: the session has been rewound)."""
        self._ws = ws
        self._drainer = None  # a drain of the old socket was cancelled by detach()
        self._pending = None  # it is in the journal: the rewind put it back in the queue
        self._pacer = None
        self._last_write = self._loop.time()
        self._idle_at = None
        self.pump()

    def detach(self) -> None:
        """Stop writing (the socket ended, or the connection closes)."""
        self._ws = None
        self._idle_at = None
        self._clock.cancel(self)
        if self._drainer is not None:
            self._drainer.cancel()

    async def aclose(self) -> None:
        """Stop writing for good and wait for the drain task, if any, to end."""
        self.detach()
        drainer = self._drainer
        if drainer is not None:
            await asyncio.gather(drainer, return_exceptions=True)

    def pump(self) -> None:
        """Write every item that is due now, in order; arrange to be called for the rest."""
        ws = self._ws
        if ws is None or self._drainer is not None:
            return
        try:
            self._pump(ws, None, self._loop.time())
        except Exception as exc:  # a bug: fail the session rather than hang its callers
            self._fail(exc)

    def write_live(self, frame: bytes, speed: float | None, now: float) -> bool:
        """Write one whole live frame handed over now, without queueing it, when the writer
        is idle (attached, not waiting for a drain, nothing taken and unwritten) and the
        session takes it (``AudioSession.audio_through``: nothing queued or held back).

        It is then paced and written as :meth:`pump` would have after queueing it, and
        whatever else is due after it. Returns False, having done nothing, otherwise: the
        caller queues the frame and calls :meth:`pump`.
        """
        ws = self._ws
        if ws is None or self._drainer is not None or self._pending is not None:
            return False
        try:
            entry = self._session.audio_through(frame, speed, now)
            if entry is None:
                return False
            self._pump(ws, entry, now)
        except Exception as exc:  # a bug: fail the session rather than hang its callers
            self._fail(exc)
        return True

    def _fail(self, exc: Exception) -> None:
        self._log.exception("writer failed")
        self.detach()
        self._on_error(exc)

    def _pump(self, ws: ClientConnection, taken: Entry | None, now: float) -> None:
        session, loop = self._session, self._loop
        outbox = session.outbox
        bps = self._bytes_per_second
        protocol = ws.protocol
        frame = self._frames.frame
        while True:
            entry = self._pending
            if entry is None:
                if taken is not None:
                    entry, taken = taken, None
                elif outbox.queue:  # (a clock wake of an idle writer finds nothing)
                    entry = session.next_item(now)
                if entry is None:
                    if not self._idle_never:
                        self._keep_alive(now)
                    return
                self._pending = entry
                if self.room_wanted:
                    self.room_wanted = False
                    self._on_room()
                item = entry.item
                self._due = now
                # A replay (outbox.replayed) goes out unpaced.
                if entry.speed is not None and type(item) is not str and not outbox.replayed:
                    pacer = self._pacer
                    if pacer is None or pacer.speed != entry.speed:
                        pacer = self._pacer = Pacer(entry.speed, catch_up=self._catch_up)
                    backlog = session.stats.queued_bytes / bps
                    self._due = pacer.schedule(now, len(item) / bps, backlog, entry.at)
            if self._due > now + _SLOP:
                self._idle_at = None  # this wake may replace the idle one: recompute then
                self._clock.wake(self, self._due)
                return
            transport = ws.transport
            if protocol.state is not WSState.OPEN or transport.is_closing():
                return  # the reader sees the end and repairs or fails the session
            item = entry.item
            if type(item) is bytes:
                transport.write(frame(0x82, item))
            elif type(item) is Span:
                transport.write(frame(0x82, item.view()))
            else:
                transport.write(frame(0x81, item.encode()))  # type: ignore[union-attr]
                if self._log.isEnabledFor(logging.DEBUG):
                    stats = session.stats
                    self._log.debug(
                        "sent %r after %d frames (%d bytes)",
                        item,
                        stats.frames_sent,
                        stats.audio_bytes_sent,
                    )
            self._pending = None
            self._last_write = now
            if ws.paused:  # the transport's buffer is full: wait until it drains
                self._drainer = loop.create_task(self._drain(ws), name="cartesia-stt-drain")
                return
            if not outbox.queue:  # the usual case: one live frame, written
                if not self._idle_never:
                    self._keep_alive(now)  # (it makes sure its wake is armed: see there)
                return
            now = loop.time()

    def idle_changed(self) -> None:
        """What an idle socket needs changed (a turn opened): arm it again now."""
        self._idle_at = None
        self.pump()

    def _keep_alive(self, now: float) -> None:
        """Nothing to write: arm what an idle socket needs (keepalive, the turn endpoint's
        silence fill), if anything.

        Not per frame: while a wake armed for an earlier deadline is pending, a write only
        moves the deadline later (it is the last write plus a delay that shortens only when
        the fill starts, which happens at a deadline, or when a turn opens, which calls
        :meth:`idle_changed`), so the pending wake comes first and recomputes it then.
        """
        idle_at = self._idle_at
        if idle_at is not None and now < idle_at - _SLOP:
            # The pending wake may be an earlier one that just fired (a deadline recomputed
            # later, after idle_changed): make sure one is armed for idle_at. Cheap when it
            # is (a dict look-up: the clock keeps the earliest).
            self._clock.wake(self, idle_at)
            return
        self._idle_at = None
        when = self._session.idle_deadline(self._last_write, self._keepalive)
        if when is None:
            return
        if now >= when - _SLOP:
            if self._session.fill_idle():
                self.pump()
        else:
            self._idle_at = when
            self._clock.wake(self, when)

    async def _drain(self, ws: ClientConnection) -> None:
        try:
            await ws.drain()
        except Exception:  # the socket failed: the reader sees the end
            return
        finally:
            self._drainer = None
        self.pump()
