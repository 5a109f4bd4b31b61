"""``AsyncConnection``: what you hold inside ``async with client.stt.manual_finalize.websocket()``.

The connection is the public surface over three parts (docs/how-it-works.md draws them):

* the pure :class:`~cartesia_stt_async.protocol.session.Session`, which owns the transcript,
  the utterances and the outbox of everything to write;
* the :class:`~cartesia_stt_async._link.Link`, which owns the socket, the reader and writer
  tasks, reconnection (through its supervisor) and the failure record;
* the :class:`~cartesia_stt_async._events.EventBuffer` and the handler registry.

Sending appends to the outbox (applying the buffer policy) and wakes the writer. ``finalize()``
waits for its utterance, which the reader completes even when nobody reads events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast

from ._config import DEFAULT, Default, SessionConfig
from ._events import EventBuffer, HandlerMethods, Handlers
from ._link import Link, api_error
from ._redact import Secrets
from ._socket import Socket
from ._sources import AudioSource
from ._stream import run_stream
from ._supervisor import Connector, Supervisor
from ._telemetry import SessionTrace
from .errors import (
    APITimeoutError,
    BufferFullError,
    CartesiaSTTError,
    ConnectionClosedError,
)
from .observe import Endpoint
from .protocol.audio import audio_bytes
from .protocol.checks import check_speed, check_timeout
from .protocol.commands import normalize_command
from .protocol.events import ErrorEvent, Event, TurnEvent, parse_event
from .protocol.outbox import ConnectionStats
from .protocol.sending import AudioSession
from .protocol.session import Session, State
from .protocol.transcript import Transcript, Utterance
from .vad import VadFinalizer

__all__ = ["AsyncConnection", "BaseConnection"]

_E = TypeVar("_E", Event, TurnEvent)


class BaseConnection(HandlerMethods, Generic[_E]):
    """What every endpoint's connection does the same way: audio, raw sends, events, handlers,
    closing. ``_E`` is the endpoint's event union; the session decides the rest.

    Attributes:
        stats: Counters, see :class:`ConnectionStats`.
    """

    _ENDPOINT: ClassVar[Endpoint] = "manual"

    def __init__(
        self,
        ws: Socket,
        config: SessionConfig,
        session: AudioSession,
        *,
        connector: Connector | None = None,
        handlers: Handlers | None = None,
        secrets: Secrets | None = None,
        trace: SessionTrace | None = None,
    ) -> None:
        if trace is None:  # made without a manager (tests): no observers, fresh log fields
            trace = SessionTrace(
                None, endpoint=self._ENDPOINT, model=config.params.model, url="", now=_now
            )
        self._config = config
        self._speed = config.speed
        self._buffer_bytes = config.buffer_bytes
        self._base_session = session
        self.stats: ConnectionStats = session.stats
        self._events = EventBuffer(
            config.max_event_backlog, config.max_event_backlog_bytes, self.stats, trace.log
        )
        self._handlers = handlers if handlers is not None else Handlers()
        self._link = Link(
            ws,
            session,
            config,
            Supervisor(config, connector, trace.log),
            publish=self._publish,
            on_finished=self._finished,
            secrets=secrets if secrets is not None else Secrets(),
            trace=trace,
        )
        trace.opened(self._link.request_id, session)
        self._link.start()

    def _publish(self, event: Any, size: int) -> None:
        """An event the session has seen: into the buffer for ``recv`` and iteration."""
        self._events.publish(event, size)

    def _finished(self) -> None:
        """The reader ended: no event will follow."""
        self._events.close()

    # -- introspection -----------------------------------------------------------------------

    @property
    def request_id(self) -> str:
        """The current socket's session id (from the ``X-Request-Id`` handshake header or
        events); it changes when the connection reconnects."""
        return self._link.request_id

    @property
    def state(self) -> Literal["open", "closing", "done", "failed", "closed"]:
        """``open``, ``closing`` (``close`` queued), ``done``, ``failed`` (an error), or
        ``closed`` (the socket ended before ``done``)."""
        state = self._base_session.state
        if self._link.finished.is_set() and state in (State.OPEN, State.CLOSING):
            return "closed"
        return state.name.lower()  # type: ignore[return-value]

    @property
    def lag(self) -> float:
        """Seconds of audio queued but not yet written: how far the wire is behind you."""
        return self._base_session.format.duration(self.stats.queued_bytes)

    @property
    def reconnecting(self) -> bool:
        """True while the socket is down and a new one is being opened (or, after a routine
        idle close, will be opened on the next send)."""
        return self._link.down

    @property
    def speed(self) -> float | None:
        """Default pacing of :meth:`send_audio` and :meth:`stream`: 1.0 real time, ``None``
        unpaced."""
        return self._speed

    @speed.setter
    def speed(self, value: float | None) -> None:
        self._speed = check_speed(value)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} request_id={self.request_id!r} state={self.state} "
            f"audio_sent={self.stats.audio_bytes_sent}B reconnects={self.stats.reconnects}>"
        )

    # -- sending -----------------------------------------------------------------------------

    async def send_audio(
        self, chunk: bytes | bytearray | memoryview, *, speed: float | Default | None = DEFAULT
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
        link = self._link
        if link.failure.error is not None:
            link.check_usable()
        pace = self._speed if speed is DEFAULT else check_speed(speed)
        session, stats = self._base_session, self.stats
        data = chunk if type(chunk) is bytes else memoryview(audio_bytes(chunk)).cast("B")
        limit = self._buffer_bytes
        now = link.now()
        if stats.queued_bytes + len(data) <= limit:  # it fits: every policy queues it whole
            # The relay's usual case, a whole frame with nothing queued: straight to the
            # writer (paced as if queued and taken), no round trip through the queue.
            if type(data) is bytes and link.writer.write_live(data, pace, now):
                return
            session.audio(data, pace, now)
            link.kick()
            return
        policy = self._config.buffer_policy
        if policy == "raise":
            raise BufferFullError(
                f"the send queue holds {stats.queued_bytes} bytes ({self.lag:.3f} s) of "
                f"audio; {len(data)} more would exceed max_buffered_ms ({limit} bytes)"
            )
        # Parts of the chunk are queued by position: frames of bytes are spans of it, no copy.
        size = len(data)
        if policy == "drop_oldest":
            session.audio(data, pace, now, session.make_room(size, limit))
            link.kick()
            return
        # Queue as the writer makes room: memory stays bounded by max_buffered_ms (plus one
        # frame) and a reference to the caller's chunk, whatever its size.
        frame = session.frame_bytes
        pos = 0
        while pos < size:
            queued = stats.queued_bytes
            if queued and queued + frame > limit:
                blocked_at = link.now()
                await link.wait_for_room()
                stats.blocked_seconds += link.now() - blocked_at
                link.check_usable()
                continue
            end = min(pos + max(limit - queued, frame), size)
            session.audio(data, pace, now, pos, end)
            link.kick()
            pos = end

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
        self._link.check_usable()
        self._base_session.raw_audio(data)
        self._link.kick()

    async def send(self, command: Any) -> None:
        """Send one command of the endpoint (each connection defines its own)."""
        raise NotImplementedError

    # -- receiving ---------------------------------------------------------------------------

    async def recv(self) -> _E:
        """Return the next server event.

        Raises:
            ConnectionClosedError: If the session is over and no event is left (also when it
                ended cleanly, as the official SDK does).
        """
        event = await self._events.next()
        if event is None:
            raise self._link.end_error() or ConnectionClosedError(
                "the session is over: no more events", code=self._link.ws.close_code
            )
        if isinstance(event, ErrorEvent):
            self._link.failure.mark_told()
        return cast(_E, event)

    def __aiter__(self) -> AsyncIterator[_E]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[_E]:
        while (event := await self._events.next()) is not None:
            if isinstance(event, ErrorEvent):
                self._link.failure.mark_told()
            yield cast(_E, event)
        # The caller sees the end of the stream: a clean end, or the error raised here.
        err = self._link.end_error()
        if err is not None:
            raise err

    async def dispatch_events(self) -> None:
        """Read events until the session ends, calling the registered handlers.

        Handlers for the event's type run first, then ``"event"`` handlers. An ``error``
        event with no handler for ``"error"`` or ``"event"`` is raised as :class:`APIError`.
        """
        async for event in self:
            if isinstance(event, ErrorEvent) and not self._handlers.has_error_handler():
                raise api_error(event, self._link.secrets)
            await self._handlers.dispatch(event)

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self, timeout: float | None = None) -> None:
        """End the session gracefully: send ``close`` (unless sent) and drain to its end.

        Every final transcript the server still owes arrives before this returns (on the
        manual endpoint ``done``; on the turn endpoint the server's close, after the open
        turn's ``turn.end``). Bounded by ``timeout`` (default: the connection's
        ``close_timeout``); on timeout the socket is closed and :class:`APITimeoutError`
        raised.

        Raises:
            APITimeoutError: If the end did not come in time.
            InvalidAudioError: If held-back audio ended mid-sample (``close`` is still sent).
            CartesiaSTTError: The reason the session failed earlier (server error event,
                dropped connection, protocol error), if no call has reported it yet.
        """
        timeout = self._config.close_timeout if timeout is None else timeout
        check_timeout("timeout", timeout)
        await self._link.close_gracefully(timeout)

    async def close(self, *, code: int = 1000, reason: str = "") -> None:
        """Close the socket now, like the official SDK (no ``close`` command, no draining).

        Use :meth:`aclose` (or leave ``async with`` normally) to keep every final transcript.
        """
        await self._link.shutdown(code=code, reason=reason, timeout=self._config.close_timeout)

    async def _abort(self) -> None:
        await self._link.abort()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            await self._abort()


class AsyncConnection(BaseConnection[Event]):
    """A live manual-finalize session. Get one from ``client.stt.manual_finalize.websocket()``.

    The official SDK's surface: ``send_raw``, ``send("finalize" | "close")``, ``recv``,
    ``async for event in conn``, ``on``/``once``/``off``/``dispatch_events``, ``close``. The
    idiomatic surface: ``send_audio``, ``finalize``, ``finalize_nowait``, ``finals``,
    ``transcript``, ``stream``. Both drive the same session and can be mixed.

    Attributes:
        stats: Counters, see :class:`ConnectionStats`.
    """

    def __init__(
        self,
        ws: Socket,
        config: SessionConfig,
        *,
        connector: Connector | None = None,
        handlers: Handlers | None = None,
        secrets: Secrets | None = None,
        trace: SessionTrace | None = None,
    ) -> None:
        self._session = Session(
            config.audio_format,
            frame_ms=config.frame_ms,
            late_final_grace=config.late_final_grace,
            max_replay_bytes=config.max_replay_bytes,
            final_order=config.final_order,
        )
        super().__init__(
            ws,
            config,
            self._session,
            connector=connector,
            handlers=handlers,
            secrets=secrets,
            trace=trace,
        )

    @property
    def transcript(self) -> Transcript:
        """The accumulator: ``.text`` (final deltas, verbatim), ``.interim``, ``.utterances``."""
        return self._session.transcript

    async def send(self, command: str) -> None:
        """Send ``"finalize"`` or ``"close"`` (``"done"``, the legacy ``close``, also works).

        ``finalize`` here does not wait for its ``flush_done``; use :meth:`finalize` or
        :meth:`finalize_nowait` for the answer.

        Raises:
            InvalidCommandError: For any other string.
            ConnectionStateError: After ``close``.
        """
        name = normalize_command(command)
        self._link.check_usable()
        if name == "finalize":
            self._session.finalize()
        else:
            self._queue_close()
        self._link.kick()

    def _queue_close(self) -> None:
        """Queue the held-back audio and ``close``; ``close`` goes out even after a stray byte."""
        try:
            self._session.close()
        finally:
            self._link.kick()

    def finalize_nowait(self) -> asyncio.Future[Utterance]:
        """Queue ``finalize`` now (after all audio queued before it) and return at once.

        Returns:
            A future that resolves to this finalize's :class:`Utterance` when its answer is
            complete, or fails with the session's error. Await it when you need the text; not
            awaiting it is fine too.

        Raises:
            ConnectionStateError: After ``close``.
        """
        self._link.check_usable()
        ticket = self._session.finalize()
        self._link.kick()
        fut = self._link.waiter(ticket)
        fut.add_done_callback(_mark_retrieved, context=self._link.context)
        return fut

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
        check_timeout("timeout", timeout)
        self._link.check_usable()
        ticket = self._session.finalize()
        self._link.kick()
        fut = self._link.waiter(ticket)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except CartesiaSTTError:
            self._link.failure.mark_told()
            raise
        except TimeoutError:
            raise APITimeoutError(
                f"no flush_done for finalize #{ticket.index} within {timeout} s"
            ) from None
        finally:
            if fut.done():
                _mark_retrieved(fut)
            else:
                fut.cancel()

    # -- receiving ---------------------------------------------------------------------------

    @staticmethod
    def parse_event(data: bytes | str) -> Event:
        """Decode one server message, as the official connection's ``parse_event`` does.

        The same as :func:`cartesia_stt_async.parse_event`.

        Raises:
            ProtocolError: If ``data`` is not a well-formed server event.
        """
        return parse_event(data)

    async def finals(self) -> AsyncGenerator[str, None]:
        """Yield committed final deltas, each exactly once, in order, until ``done``.

        A delta is committed once the utterance it answers is complete (or the session is
        done), so a reconnect's replay never yields it twice and never skips one: this is the
        stream to forward to a relay. Raw ``async for event in conn`` shows a replayed
        utterance's events again after a reconnect.

        Raises:
            CartesiaSTTError: Why the session ended early, as iteration does.
        """
        session, link = self._session, self._link
        transcript = session.transcript
        sent = 0
        while True:
            # Re-read after every yield: more may be committed while the consumer is busy.
            while sent < session.committed_chunks:
                yield transcript.delta(sent)
                sent += 1
            if session.state is State.DONE:
                return
            if link.finished.is_set() or link.failure.error is not None:
                err = link.end_error(events_shown=False)
                if err is not None:
                    raise err
                return
            await link.wait_committed()

    # -- the idiomatic flow ------------------------------------------------------------------

    async def stream(
        self,
        utterances: Iterable[AudioSource] | AsyncIterable[AudioSource],
        *,
        speed: float | Default | None = DEFAULT,
        finalize_each: bool = True,
        vad: VadFinalizer | None = None,
    ) -> Transcript:
        """Stream utterances, ``finalize`` after each, ``close``, and wait for ``done``.

        A sender task paces each utterance's audio into frames then queues ``finalize``;
        ``close`` follows the last one. A receiver task waits for ``done``. They run joined by
        :func:`asyncio.gather`: if either fails, or the caller is cancelled, the other is
        cancelled, the socket is closed and the error propagates.

        Args:
            utterances: Each item is ``bytes``, an iterable or async iterable of ``bytes``, or a
                path to a WAV file matching the session (mono, same encoding and rate).
            speed: Pacing (1.0 real time; ``None`` unpaced). Defaults to the connection's
                ``speed``.
            finalize_each: Send ``finalize`` after each utterance (default) or only ``close``.
            vad: A :class:`~cartesia_stt_async.vad.VadFinalizer`: also send ``finalize``
                wherever it finds a stretch of silence after speech (voice activity detection,
                for a live source with no turn boundaries of its own).

        Returns:
            The connection's :attr:`transcript`, complete.

        Raises:
            APIError: If the server reports an error.
            InvalidAudioError: For a WAV file that does not match the session.
            ConnectionClosedError: If the socket closes before ``done``.
            APITimeoutError: If ``done`` did not come within ``close_timeout`` after
                ``close`` was written.
        """
        pace = self._speed if isinstance(speed, Default) else check_speed(speed)
        await run_stream(
            self, self._link, utterances, speed=pace, finalize_each=finalize_each, vad=vad
        )
        return self._session.transcript


def _now() -> float:
    return asyncio.get_running_loop().time()


def _mark_retrieved(fut: asyncio.Future[Utterance]) -> None:
    """The error reached the caller another way (or nobody asked): no "never retrieved"."""
    if not fut.cancelled():
        fut.exception()
