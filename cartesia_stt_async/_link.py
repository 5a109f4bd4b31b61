"""The I/O of one connection: the socket, its reader task and its writer.

* The **writer** (:class:`~cartesia_stt_async._writer.Writer`) writes the session's outbox in
  wire order, paced on the deadline schedule, at once when an item is due and otherwise when
  the event loop's shared clock says so; it has no task of its own. A slow network backs up
  into the outbox, where the buffer policy applies.
* **Messages** are handled inline: the socket (:class:`~cartesia_stt_async._socket.Socket`)
  hands each to :meth:`Link._on_message` from inside ``data_received``, which decodes it, feeds
  the session, resolves ``finalize()`` waiters and publishes the event; it never waits.
* The **reader** task waits for each socket to end. When one ends before ``done`` it asks the
  :class:`~cartesia_stt_async._supervisor.Supervisor` for the next socket, rewinds the
  session (the replay goes first) and points the writer at it; or records why the session
  failed.

The reader task belongs to the link: created by :meth:`Link.start`, always cancelled and awaited
by :meth:`Link.shutdown`, and never left with an unretrieved exception (failures are recorded in
the :class:`Failure` and raised to callers as typed errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.protocol import State as WSState

from ._config import SessionConfig
from ._redact import Secrets
from ._socket import Socket
from ._supervisor import Supervisor
from ._telemetry import SessionTrace
from ._translate import closed_error, ended_error, io_error
from ._writer import Writer
from .errors import (
    APIError,
    APITimeoutError,
    CartesiaSTTError,
    ConnectionClosedError,
    ConnectionStateError,
    InvalidAudioError,
    ProtocolError,
    ReconnectError,
    error_for_status,
)
from .observe import Outcome
from .protocol.events import ErrorEvent, ServerEvent
from .protocol.sending import AudioSession, State
from .protocol.transcript import Utterance

__all__ = ["Failure", "Link", "api_error"]

# A clean end of the socket: normal closure or going away after the session is over.
_CLEAN_CLOSE_CODES: Final = frozenset({1000, 1001})


class Failure:
    """Why a session cannot go on, and whether the caller has been told.

    Written only through its methods: :meth:`record` keeps the first reason; :meth:`raise_it`,
    :meth:`mark_told` and :meth:`end_of_iteration` note that the caller has seen it, so that
    leaving ``async with`` raises it only when nobody has (:meth:`untold`).

    Attributes:
        error: The first reason, or ``None`` while the session is healthy.
        told: True once a call has raised it, or iteration has shown it (as an ``error``
            event or by ending).
        in_band: True when the reason is a server ``error`` event (iteration yields it as an
            event, as the official SDK does, instead of raising).
        ours: True when the reason is our own close (``close()``, ``aclose()``, leaving
            ``async with``), not a failure.
    """

    __slots__ = ("error", "in_band", "ours", "told")

    def __init__(self) -> None:
        self.error: CartesiaSTTError | None = None
        self.told = False
        self.in_band = False
        self.ours = False

    def record(self, exc: CartesiaSTTError, *, in_band: bool = False, ours: bool = False) -> bool:
        """Keep ``exc`` as the reason unless there is one already; True when it was kept.

        Args:
            exc: Why the session cannot go on.
            in_band: It is a server ``error`` event (iteration yields it).
            ours: Our own close: the caller needs no telling.
        """
        if self.error is not None:
            return False
        self.error, self.in_band, self.told, self.ours = exc, in_band, ours, ours
        return True

    @property
    def outcome(self) -> Outcome:
        """How the session ended, as telemetry reports it (``done`` is the session's to say:
        this is ``closed`` for our own close, else ``failed``)."""
        return "closed" if self.ours else "failed"

    def mark_told(self) -> None:
        """The caller has seen the failure (a call raised it, or an event showed it)."""
        self.told = True

    def raise_it(self) -> NoReturn:
        """Raise the recorded reason to the caller (who is then told)."""
        assert self.error is not None
        self.told = True
        raise self.error

    def untold(self) -> CartesiaSTTError | None:
        """The reason, if the caller has not been told yet (then they are, by the caller of
        this method raising it)."""
        if self.error is None or self.told:
            return None
        self.told = True
        return self.error

    def end_of_iteration(self, *, events_shown: bool = True) -> CartesiaSTTError | None:
        """The error that ends ``async for event in conn``; ``None`` for a clean end.

        Clean: after ``done``, after an ``error`` event was yielded, or after a clean close
        (1000/1001) that was not a failed reconnect and left no turn unanswered. Either way the
        caller is told.

        Args:
            events_shown: The stream ending is one of events, so a server ``error`` event was
                shown in it. Streams that show no events (``finals()``, ``turns()``, signals)
                pass False: there the error event is raised, or nobody would ever see it.
        """
        self.told = True
        error = self.error
        if error is None or (self.in_band and events_shown):
            return None
        if (
            isinstance(error, ConnectionClosedError)
            and not isinstance(error, ReconnectError)
            and error.code in _CLEAN_CLOSE_CODES
            and not error.unanswered
        ):
            return None
        return error


def with_lost_turns(exc: CartesiaSTTError, session: AudioSession) -> CartesiaSTTError:
    """``exc`` naming the turns whose text the session lost, when it is a close that ends
    the session while the server owes text (``unanswered`` and the message say which)."""
    if not isinstance(exc, ConnectionClosedError):
        return exc
    turns = session.unanswered_turns()
    if not turns:
        return exc
    listed = ", ".join(f"#{index}" for index in turns)
    noun, its = ("turn", "its") if len(turns) == 1 else ("turns", "their")
    exc.unanswered = turns
    exc.args = (
        f"{exc.args[0] if exc.args else exc}; {noun} {listed} unanswered: {its} text never came",
    )
    return exc


def api_error(event: ErrorEvent, secrets: Secrets) -> APIError:
    """The exception for a server ``error`` event (every server-provided string redacted)."""
    message = secrets.redact(event.message or "the server reported an error")
    title, code = secrets.optional(event.title), secrets.optional(event.error_code)
    request_id = secrets.optional(event.request_id)
    if event.status_code is not None:
        return error_for_status(
            event.status_code, message, title=title, error_code=code, request_id=request_id
        )
    return APIError(message, title=title, error_code=code, request_id=request_id)


def _header_request_id(ws: Socket) -> str:
    return (ws.response.headers.get("X-Request-Id") if ws.response else None) or ""


class Link:
    """One connection's socket I/O (see the module docstring).

    The link knows no endpoint: the session it carries decodes the messages, says what they
    completed and when the session is over (:class:`~.protocol.sending.AudioSession`).

    Args:
        ws: The open socket.
        session: The pure session it carries (either endpoint's).
        config: The session's options.
        supervisor: Decides about dropped sockets.
        publish: Called with every decoded event, after the session has seen it.
        on_finished: Called once when the reader has ended (no event will follow).
        secrets: Credentials to redact from server-provided text.
        trace: The session's telemetry and log fields.
    """

    def __init__(
        self,
        ws: Socket,
        session: AudioSession,
        config: SessionConfig,
        supervisor: Supervisor,
        *,
        publish: Callable[[ServerEvent, int], None],
        on_finished: Callable[[], None],
        secrets: Secrets,
        trace: SessionTrace,
    ) -> None:
        self.ws = ws
        self.trace = trace
        self.log = trace.log
        self.session = session
        self.failure = Failure()
        self.supervisor = supervisor
        self._config = config
        self._publish = publish
        self.secrets = secrets
        self.request_id = secrets.redact(_header_request_id(ws))
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        # The event loop's monotonic time (its bound method: one call per frame, not two).
        self.now: Callable[[], float] = self._loop.time
        self._connected_at = self._loop.time()
        self._waiters: dict[object, asyncio.Future[Any]] = {}
        self._commit_waiters: list[asyncio.Future[None]] = []
        # uvloop returns a plain Handle (no when()) for a time already past: keep it here.
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        # Our callbacks (timers, finalize futures) run in the context the connection was
        # opened in, copied once: by default every call_at and add_done_callback copies the
        # current one. One per connection, not one per module: a Context cannot be entered
        # by two threads (two event loops) at once.
        self.context = contextvars.copy_context()
        self._has_items = asyncio.Event()  # the outbox got something to write
        self._room = asyncio.Event()  # the writer took something: the queue has more room
        self.down = False  # between a drop and its repair
        self.finished = asyncio.Event()  # the reader has ended
        self.settled = asyncio.Event()  # 'done' arrived, the session failed, or the reader ended
        self.writer = Writer(
            session, config, on_room=self._room.set, on_error=self._write_failed, log=self.log
        )
        self._reader: asyncio.Task[None] | None = None
        # Resolved when a message of the current socket broke the protocol.
        self._broken: asyncio.Future[None] = self._loop.create_future()

    def start(self) -> None:
        """Start the reader and the writer."""
        self._reader = asyncio.create_task(self._read_loop(), name="cartesia-stt-reader")
        self.writer.attach(self.ws)

    # -- what the connection tells the link --------------------------------------------------

    @property
    def close_timeout(self) -> float:
        """Seconds the server has to end the session once ``close`` is written."""
        return self._config.close_timeout

    async def wait_closed_answer(self) -> None:
        """After ``close`` was queued: wait until everything queued is written, then at most
        ``close_timeout`` for the session to settle (its clean end or its failure).

        Raises:
            APITimeoutError: The server did not end the session in time (then nothing waits
                on it any more: the caller closes the socket).
        """
        session = self.session
        while session.outbox.pending and not self.settled.is_set():
            await self.wait_for_room()  # the writer took an item, or the session failed
        timeout = self._config.close_timeout
        try:
            async with asyncio.timeout(timeout):
                await self.settled.wait()
        except TimeoutError:
            raise APITimeoutError(
                f"the server did not {session.CLOSE_ANSWER} within close_timeout ({timeout} s)"
            ) from None

    def kick(self) -> None:
        """Something was queued in the outbox: write what is due (or wake an idle reconnect)."""
        if self.down:
            self._has_items.set()
        else:
            self.writer.pump()

    def _write_failed(self, exc: Exception) -> None:
        self.fail(io_error("sending", exc, self.secrets))
        self.ws.transport.abort()

    async def wait_for_room(self) -> None:
        """Return once the writer took an item, or the session failed."""
        if self.failure.error is not None:
            return
        self._room.clear()
        self.writer.room_wanted = True  # the writer sets _room when it next takes an item
        await self._room.wait()

    def check_usable(self) -> None:
        """Raise the session's failure (the caller is then told), unless it ended cleanly."""
        if self.failure.error is not None and not self.session.finished:
            self.failure.raise_it()

    def end_error(self, *, events_shown: bool = True) -> CartesiaSTTError | None:
        """The error that ends the event stream, ``finals()`` or ``turns()``, ``None`` for a
        clean end (the session's clean end, or see :meth:`Failure.end_of_iteration`, which
        takes ``events_shown``); the caller is told either way."""
        if self.session.finished:
            self.failure.mark_told()
            return None
        return self.failure.end_of_iteration(events_shown=events_shown)

    async def wait_done(self) -> None:
        """Return at the session's clean end; raise why it ended without one."""
        await self.settled.wait()
        if self.session.finished:
            return
        raise self.failure.error or ConnectionClosedError("connection ended before 'done'")

    async def abort(self) -> None:
        """Close promptly because an exception is leaving the caller's code: at most a second
        for the closing handshake."""
        await self.shutdown(code=1000, reason="client aborted", timeout=1.0)

    def waiter(self, ticket: Utterance) -> asyncio.Future[Utterance]:
        """A future resolved with ``ticket`` once it is complete (or failed with the reason)."""
        fut: asyncio.Future[Utterance] = self._loop.create_future()
        if self.failure.error is not None:
            fut.set_exception(self.failure.error)
        elif ticket.complete:
            fut.set_result(ticket)
        else:
            # Removed when the utterance completes or the session fails (no done-callback:
            # nothing per finalize for the garbage collector beyond the future itself).
            self._waiters[ticket] = fut
        return fut

    async def wait_committed(self) -> None:
        """Return once more final text is committed, or the session settled."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._commit_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._commit_waiters:
                self._commit_waiters.remove(waiter)

    def fail(self, exc: CartesiaSTTError, *, quiet: bool = False, in_band: bool = False) -> None:
        """Record why the session cannot go on and fail everyone waiting on it.

        Args:
            exc: The reason (only the first one is kept).
            quiet: Our own close: not logged, and nothing the caller must be told.
            in_band: A server ``error`` event (iteration yields it instead of raising).
        """
        failure = self.failure
        if failure.record(exc, in_band=in_band, ours=quiet) and not quiet:
            self.log.debug("connection failed: %s", type(exc).__name__)
        error = failure.error
        assert error is not None
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(error)
        self._room.set()
        self._has_items.set()
        self.settled.set()
        self._wake_committers()

    # -- completion --------------------------------------------------------------------------

    def _wake_committers(self) -> None:
        waiters, self._commit_waiters = self._commit_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _resolve(self, completed: Sequence[object]) -> None:
        if completed:
            self.supervisor.progress()
            self.trace.answered(completed)
            for utt in completed:
                fut = self._waiters.pop(utt, None)
                if fut is not None and not fut.done():
                    fut.set_result(utt)
        if completed or self.session.finished:
            self._wake_committers()

    def _arm_timer(self) -> None:
        deadline = self.session.next_deadline
        if self._timer is not None:
            if deadline is not None and self._timer_at == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None and not self.down:
            self._timer = self._loop.call_at(deadline, self._on_timer, context=self.context)
            self._timer_at = deadline

    def _disarm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.down or self.ws.state is not WSState.OPEN:
            # A close frame arrived (the closing handshake may take a while) or the socket
            # is down: the server may still be owed a replay, so a late window must not end
            # now (session rule 4). The repair re-arms the timer; a failure seals all.
            return
        self._resolve(self.session.poll(self._loop.time()))
        self._arm_timer()

    # -- the writer --------------------------------------------------------------------------

    # -- the reader --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        """Read each socket until it ends; repair it while the supervisor allows."""
        session = self.session
        try:
            while (drop := await self._read_socket(self.ws)) is not None:
                await self._repair(drop)
        except CartesiaSTTError as exc:
            self.fail(with_lost_turns(exc, session))
        except Exception as exc:  # a bug: fail the session rather than hang its callers
            self.log.error("reader failed:\n%s", self.secrets.traceback(exc))
            self.fail(io_error("receiving", exc, self.secrets))
        finally:
            self.down = False
            self._disarm_timer()
            self._resolve(session.poll(float("inf")))
            self.finished.set()
            self.settled.set()
            self._wake_committers()
            self._on_finished()
            failure = self.failure
            self.trace.closed("done" if session.finished else failure.outcome, failure.error)

    async def _read_socket(self, ws: Socket) -> ConnectionClosedError | None:
        """Read one socket to its end: each message is handled inline, as it is parsed
        (:meth:`_on_message`); this waits for the socket to end.

        Returns:
            Why it ended, when it ended before ``done`` and may be repaired; ``None`` when the
            session is over (done, failed, closed by us).
        """
        broken = self._broken = self._loop.create_future()
        ws.attach(self._on_message, self._on_bug)
        try:
            await asyncio.wait((ws.connection_lost_waiter, broken), return_when=FIRST_COMPLETED)
        finally:
            ws.detach()
        if broken.done():
            # A message broke the protocol (or our handling failed): already recorded.
            with contextlib.suppress(Exception):
                await ws.close(code=1002, reason="protocol error")
            return None
        exc = ws.protocol.close_exc
        drop: ConnectionClosedError | ProtocolError = (
            ended_error(ws.close_code, ws.close_reason, self.secrets)
            if isinstance(exc, ConnectionClosedOK)
            else closed_error(exc, self.secrets)
        )
        if isinstance(drop, ProtocolError):
            self.fail(drop)  # the server broke the WebSocket protocol: never retried
            return None
        self.session.socket_ended(ws.close_code)
        if self.session.finished or self.failure.error is not None:
            return None
        return drop

    def _on_message(self, message: str | bytes) -> None:
        """One server message, inside the socket's ``data_received`` (must not raise)."""
        if self._broken.done():
            return  # the socket is being closed for a protocol error: ignore the rest
        session = self.session
        try:
            if type(message) is not str:
                raise ProtocolError(
                    f"server sent a {len(message)}-byte binary message; "
                    "the protocol only has JSON text events"
                )
            event = session.parse(message)
            # Fields decoded lazily (a transcript's words) may break the protocol here too.
            completed = session.receive(event, self._loop.time())
        except ProtocolError as exc:
            self.fail(exc)
            self.ws.start_closing(1002, "protocol error")  # before anyone else closes
            self._broken.set_result(None)
            return
        session.stats.events_received += 1
        if not self.request_id and session.request_id:
            self.request_id = self.secrets.redact(session.request_id)
            self.trace.set_request_id(self.request_id)
        if isinstance(event, ErrorEvent) and session.fatal(event):
            self.fail(api_error(event, self.secrets), in_band=True)
        if completed and self.log.isEnabledFor(logging.DEBUG):
            self._log_completed(completed)
        elif self._config.log_transcripts and (text := session.log_text(event)) is not None:
            self.log.debug("final delta %r", text)
        if completed or session.finished:
            self._resolve(completed)
        self._arm_timer()
        if session.idle_changed:
            session.idle_changed = False
            if not self.down:
                self.writer.idle_changed()  # re-arm what an idle socket needs (the fill)
        self._publish(event, len(message))
        if session.finished:
            self.settled.set()

    def _on_bug(self, exc: Exception) -> None:
        """Handling a message raised something unexpected: fail the session, not the loop."""
        self.log.error("reader failed:\n%s", self.secrets.traceback(exc))
        self.fail(io_error("receiving", exc, self.secrets))
        if not self._broken.done():
            self._broken.set_result(None)

    async def _repair(self, drop: ConnectionClosedError) -> None:
        """Replace the socket (raises why not), rewind the session, start a new writer."""
        session, loop = self.session, self._loop
        dropped_at = loop.time()
        lived = dropped_at - self._connected_at
        handshakes = self.trace.handshakes
        self.down = True
        # A late window must not close while the socket is down: the late utterance may be
        # replayed (session rule 7), which only an unsealed utterance can be.
        self._disarm_timer()
        self.writer.detach()
        if self.failure.error is not None:
            raise self.failure.error
        ws = await self.supervisor.next_socket(
            drop, lived=lived, session=session, wait_for_send=self._wait_for_send
        )
        # No await from here on: the swap is atomic for every other task.
        self.ws = ws
        self._connected_at = loop.time()
        self.request_id = self.secrets.redact(_header_request_id(ws)) or self.request_id
        session.request_id = self.request_id
        replayed = session.rewind()
        session.stats.reconnects += 1
        self.trace.reconnected(
            code=drop.code,
            idle=self.supervisor.reopened_idle,
            dropped_at=dropped_at,
            handshakes_before=handshakes,
            replay_items=replayed,
            request_id=self.request_id,
        )
        self.log.debug(
            "reconnected (reconnect %d, attempt %d): replaying %d items",
            session.stats.reconnects,
            self.supervisor.attempt,
            replayed,
        )
        self.down = False
        self.writer.attach(ws)
        self._arm_timer()

    async def _wait_for_send(self) -> None:
        while not self.session.outbox.pending:
            if self.failure.error is not None:
                raise self.failure.error
            self._has_items.clear()
            await self._has_items.wait()
        if self.failure.error is not None:
            raise self.failure.error

    def complete_locally(self) -> None:
        """The session ended without the server (nothing was owed after an idle close)."""
        self._resolve(self.session.end_locally(self._loop.time()))
        self.settled.set()

    def _log_completed(self, completed: Sequence[object]) -> None:
        stats = self.session.stats
        for utt in completed:
            if not isinstance(utt, Utterance):
                self.log.debug(
                    "%s answered; %d frames / %d bytes sent, %d events received",
                    type(utt).__name__.lower(),
                    stats.frames_sent,
                    stats.audio_bytes_sent,
                    stats.events_received,
                )
                continue
            self.log.debug(
                "utterance #%d answered: %d final chunks, %.3f s audio, latency %s; "
                "%d frames / %d bytes sent, %d events received",
                utt.index,
                utt.final_chunks,
                utt.audio_seconds,
                f"{utt.latency * 1000:.1f} ms" if utt.latency is not None else "unknown",
                stats.frames_sent,
                stats.audio_bytes_sent,
                stats.events_received,
            )
            if self._config.log_transcripts:
                self.log.debug("utterance #%d text %r", utt.index, utt.text)

    # -- shutdown ----------------------------------------------------------------------------

    async def close_gracefully(self, timeout: float) -> None:
        """Queue ``close`` (unless queued), wait for the session's clean end (``done``; on the
        turn endpoint the server's close), then close the socket: all within ``timeout``
        seconds (see ``AsyncConnection.aclose``)."""
        session, loop = self.session, self._loop
        deadline = loop.time() + timeout  # one bound for waiting and closing together
        pending_error: InvalidAudioError | None = None
        if (
            self.supervisor.idle
            and session.state is State.OPEN
            and session.journal_empty
            and not session.outbox.pending
            and not session.pending_audio
        ):
            # The server closed the idle socket and owes nothing: no need to reopen one
            # just to hear the answer to 'close'.
            session.close()
            self.complete_locally()
        try:
            if session.state is State.OPEN and self.failure.error is None:
                try:
                    session.close()
                except InvalidAudioError as exc:
                    pending_error = exc  # 'close' is queued all the same
                self.kick()
            if session.state is State.CLOSING and self.failure.error is None:
                async with asyncio.timeout_at(deadline):
                    await self.settled.wait()
        except TimeoutError:
            await self.shutdown(timeout=0)
            raise APITimeoutError(
                f"the server did not {session.CLOSE_ANSWER} within {timeout} s"
            ) from None
        except BaseException:
            await self.abort()
            raise
        # Read before shutting down, which records our own close as the reason otherwise.
        untold = self.failure.untold() if not session.finished else None
        await self.shutdown(timeout=max(deadline - loop.time(), 0.0))
        if pending_error is not None:
            raise pending_error
        if untold is not None:
            # The session failed and nobody was told: final transcripts may be missing.
            raise untold

    async def shutdown(self, *, code: int = 1000, reason: str = "", timeout: float) -> None:
        """Stop both tasks and close the socket, bounded by ``timeout``; idempotent."""
        # Recorded first, so the reader does not blame the server for our own close, and
        # does not reconnect. Our own close is nothing the caller must be told about.
        self.fail(
            ConnectionStateError(
                "the connection is closed (by close(), aclose() or leaving `async with`); "
                f"to send more, open a new session ({self.session.REOPEN_HINT})"
            ),
            quiet=True,
        )
        self.writer.detach()
        ws = self.ws
        try:
            async with asyncio.timeout(timeout):
                await ws.close(code=code, reason=reason)
        except (TimeoutError, OSError, ConnectionClosed):
            ws.transport.abort()
        except asyncio.CancelledError:
            ws.transport.abort()
            raise
        finally:
            if self._reader is not None:
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
            # The reader may have swapped in a new socket meanwhile.
            await self.writer.aclose()
            if self.ws.state is not WSState.CLOSED:
                self.ws.transport.abort()
