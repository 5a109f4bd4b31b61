"""``AsyncTurnConnection``: the connection of ``client.stt.auto_finalize.websocket()``.

The connection of the turn-detection endpoint (``/stt/turns/websocket``) is the same machine as
the manual one (:class:`~cartesia_stt_async._connection.BaseConnection`: link, writer,
supervisor, replay, event buffer, handlers) driving a
:class:`~cartesia_stt_async.protocol.turns.TurnSession`. On top of the official surface it adds
what a voice agent wants, each fed from the session's :class:`~.protocol.turns.TurnSignal` list
(deduplicated across reconnects, protocol/turns.py rule 10):

* :meth:`AsyncTurnConnection.turns`: every ended turn, once, in order;
* :meth:`AsyncTurnConnection.wait_barge_in` and :meth:`AsyncTurnConnection.signals`: the moment
  a turn starts (and every other signal);
* :meth:`AsyncTurnConnection.preflights`: a :class:`Preflight` per eager end, withdrawn by
  ``turn.resume`` (awaitably), confirmed by the ``turn.end`` with the same text; and one
  already confirmed for a turn that ends with no eager end standing (or with another text), so
  an agent replies exactly once per turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from typing import Any, Literal

import msgspec

from ._config import DEFAULT, Default, TurnSessionConfig
from ._connection import BaseConnection
from ._events import Handlers
from ._redact import Secrets
from ._socket import Socket
from ._sources import AudioSource
from ._stream import run_stream
from ._supervisor import Connector
from ._telemetry import SessionTrace
from .errors import ConnectionClosedError, InvalidCommandError
from .protocol.checks import check_speed
from .protocol.events import TurnEvent, parse_turn_event
from .protocol.turns import Turn, TurnSession, TurnSettings, TurnSignal, TurnTranscript

__all__ = ["AsyncTurnConnection", "Preflight"]


class Preflight:
    """An eager end: the user may be done saying :attr:`text`; a reply may start now.

    It is settled once: *confirmed* by a ``turn.end`` with the same text, or *withdrawn* by
    ``turn.resume``, by another eager end of the same turn, by a ``turn.end`` with another text,
    or by the session ending first. ``await preflight.withdrawn()`` waits for that and says
    which.

    Attributes:
        turn: The turn (its text is final once confirmed).
        text: The transcript the eager end (or ``turn.end``) carried.
    """

    __slots__ = ("_future", "text", "turn")

    def __init__(self, turn: Turn, text: str, loop: asyncio.AbstractEventLoop) -> None:
        self.turn = turn
        self.text = text
        self._future: asyncio.Future[bool] = loop.create_future()

    @property
    def state(self) -> Literal["pending", "confirmed", "withdrawn"]:
        """``pending`` until settled, then ``confirmed`` or ``withdrawn``."""
        if not self._future.done():
            return "pending"
        return "withdrawn" if self._future.result() else "confirmed"

    async def withdrawn(self) -> bool:
        """Wait until settled: True when withdrawn (drop the reply), False when confirmed."""
        return await asyncio.shield(self._future)

    async def confirmed(self) -> bool:
        """Wait until settled: True when confirmed (speak the reply)."""
        return not await self.withdrawn()

    def _settle(self, withdrawn: bool) -> None:
        if not self._future.done():
            self._future.set_result(withdrawn)

    def __repr__(self) -> str:
        return f"Preflight(turn={self.turn.index}, text={self.text!r}, state={self.state})"


class AsyncTurnConnection(BaseConnection[TurnEvent]):
    """A live turn-detection session. Get one from ``client.stt.auto_finalize.websocket()``.

    The official SDK's surface: ``send_raw``, ``send({"type": "close"})``,
    ``send({"type": "config", "turn": {...}})``, ``recv``, ``async for event in conn``,
    ``on``/``once``/``off``/``dispatch_events``, ``close``. The idiomatic surface:
    ``send_audio``, ``configure``, ``turns``, ``wait_barge_in``, ``signals``, ``preflights``,
    ``transcript``, ``stream``. Both drive the same session and can be mixed.

    Raw iteration shows every event the server sent, those of a replay after a reconnect
    included (a resumed turn's ``turn.start`` and updates come again); ``turns()``,
    ``signals()``, ``preflights()`` and ``wait_barge_in()`` never repeat a turn or its
    barge-in.

    Attributes:
        stats: Counters, see :class:`~cartesia_stt_async.ConnectionStats`.
    """

    _ENDPOINT = "turns"

    def __init__(
        self,
        ws: Socket,
        config: TurnSessionConfig,
        *,
        connector: Connector | None = None,
        handlers: Handlers | None = None,
        secrets: Secrets | None = None,
        trace: SessionTrace | None = None,
    ) -> None:
        self._session = TurnSession(
            config.audio_format,
            frame_ms=config.frame_ms,
            max_replay_bytes=config.max_replay_bytes,
            settings=config.settings,
            fill_silence=config.fill_silence,
        )
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()  # a turn ended, or the session ended
        self._listeners: list[asyncio.Queue[TurnSignal | Preflight]] = []
        self._barge_waiters: list[asyncio.Future[Turn]] = []
        self._preflight: Preflight | None = None
        super().__init__(
            ws,
            config,
            self._session,
            connector=connector,
            handlers=handlers,
            secrets=secrets,
            trace=trace,
        )

    # -- introspection ---------------------------------------------------------------------

    @property
    def transcript(self) -> TurnTranscript:
        """The ended turns (``.turns``) and their ``turn.end`` texts joined verbatim
        (``.text``); ``.interim`` is the open turn's latest text."""
        return self._session.transcript

    @property
    def settings(self) -> TurnSettings:
        """The turn settings in effect (connect options, then :meth:`configure`)."""
        return self._session.settings

    @property
    def speaking(self) -> bool:
        """True while a turn is open (between its start and its end)."""
        return self._session.turn is not None

    # -- signals (inside the reader's message handling: never waits) ------------------------

    def _publish(self, event: Any, size: int) -> None:
        super()._publish(event, size)
        signals = self._session.signals
        if signals:
            taken = list(signals)
            signals.clear()
            for signal in taken:
                self._signal(signal)
        if self._link.failure.error is not None:
            # A fatal error event: no turn will start or end; everything waiting ends now,
            # not when the server gets round to closing the socket.
            self._end_signals()

    def _signal(self, signal: TurnSignal) -> None:
        loop = self._loop
        out: list[TurnSignal | Preflight] = [signal]
        current = self._preflight
        if signal.kind == "start":
            waiters, self._barge_waiters = self._barge_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(signal.turn)
        elif signal.kind == "eager":
            if current is not None:
                current._settle(withdrawn=True)
            self._preflight = Preflight(signal.turn, signal.text, loop)
            out.append(self._preflight)
        elif signal.kind == "resume":
            if current is not None:
                current._settle(withdrawn=True)
            self._preflight = None
        else:  # end
            self._preflight = None
            if current is not None and current.text == signal.text:
                current._settle(withdrawn=False)
            else:
                if current is not None:
                    current._settle(withdrawn=True)
                final = Preflight(signal.turn, signal.text, loop)
                final._settle(withdrawn=False)
                out.append(final)
            self._changed.set()
        for queue in self._listeners:
            for item in out:
                queue.put_nowait(item)

    def _finished(self) -> None:
        """The reader ended: settle what can no longer be answered, wake every waiter."""
        super()._finished()
        self._end_signals()

    def _end_signals(self) -> None:
        """Settle the standing preflight, fail barge-in waiters, end every listener."""
        if self._preflight is not None:
            self._preflight._settle(withdrawn=True)
            self._preflight = None
        self._fail_barge_waiters()
        self._changed.set()
        for queue in self._listeners:
            queue.put_nowait(_END)

    def _fail_barge_waiters(self) -> None:
        error = self._link.failure.error or _ended()
        waiters, self._barge_waiters = self._barge_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved here: the caller sees it when awaiting

    # -- sending ---------------------------------------------------------------------------

    async def send(self, command: object) -> None:
        """Send a command as the official SDK does: ``{"type": "close"}`` or
        ``{"type": "config", "turn": {...}}`` (a mapping, a typed command object with
        ``model_dump()``, or the string ``"close"``).

        A ``config`` is checked as :meth:`configure` checks it.

        Raises:
            InvalidCommandError: For any other command.
            TurnConfigError: For a ``config`` with a value out of range or order.
            ConnectionStateError: After ``close``.
        """
        body = _command_body(command)
        kind = body.get("type")
        self._link.check_usable()
        if kind == "close":
            try:
                self._session.close()
            finally:
                self._link.kick()
            return
        if kind == "config":
            turn = body.get("turn") or {}
            if not isinstance(turn, Mapping):
                raise InvalidCommandError(f"config 'turn' must be an object, got {turn!r}")
            self._session.configure(turn)
            self._link.kick()
            return
        raise InvalidCommandError(
            f"unknown command type {kind!r}: the turn endpoint takes 'close' and 'config' "
            "(audio goes through send_audio/send_raw as bytes)"
        )

    async def configure(
        self,
        *,
        start_threshold: float | None = None,
        eager_end_threshold: float | None = None,
        end_threshold: float | None = None,
        end_timeout_ms: float | None = None,
    ) -> TurnSettings:
        """Change turn settings mid-session: checked, then sent as ``config``.

        Each range is checked (start 0.5-0.9, eager end 0.3-0.6, end 0.05-0.5, timeout
        640-11200 ms), then the order start > eager end > end on the settings that result
        (a setting not given keeps its current value). Nothing is sent when a check fails.
        The server does not acknowledge ``config``; it applies to decisions after it.

        Returns:
            The settings in effect from now on.

        Raises:
            TurnConfigError: Naming the bad value (``.name``, ``.value``).
            ConnectionStateError: After ``close``.
        """
        self._link.check_usable()
        settings = self._session.configure(
            {
                "start_threshold": start_threshold,
                "eager_end_threshold": eager_end_threshold,
                "end_threshold": end_threshold,
                "end_timeout_ms": end_timeout_ms,
            }
        )
        self._link.kick()
        return settings

    # -- receiving -------------------------------------------------------------------------

    @staticmethod
    def parse_event(data: bytes | str) -> TurnEvent:
        """Decode one server message of this endpoint (as the official connection's
        ``parse_event``).

        Raises:
            ProtocolError: If ``data`` is not a well-formed server event.
        """
        return parse_turn_event(data)

    async def turns(self) -> AsyncGenerator[Turn, None]:
        """Yield every ended turn once, in order (from the session's first), until the
        session ends.

        Each :class:`~cartesia_stt_async.Turn` has its final ``text`` (the ``turn.end``
        transcript verbatim), its positions and latency. A reconnect never yields a turn
        twice (protocol/turns.py rule 10).

        Raises:
            CartesiaSTTError: Why the session ended early, as iteration does (a clean close
                with a turn open: :class:`ConnectionClosedError` with ``.unanswered``).
        """
        session, link = self._session, self._link
        done = session.transcript.turns
        sent = 0
        while True:
            while sent < len(done):
                yield done[sent]
                sent += 1
            if session.finished:
                return
            if link.finished.is_set() or link.failure.error is not None:
                err = link.end_error(events_shown=False)
                if err is not None:
                    raise err
                return
            self._changed.clear()
            await self._changed.wait()

    async def wait_barge_in(self) -> Turn:
        """Wait for the next turn to start (``turn.start``) and return it: stop speaking.

        Signalled once per turn, also across a reconnect's replay.

        Raises:
            CartesiaSTTError: Why the session ended first (:class:`ConnectionClosedError`
                when it ended cleanly).
        """
        fut: asyncio.Future[Turn] = self._loop.create_future()
        if self._link.failure.error is not None:
            self._link.failure.raise_it()
        if self._link.finished.is_set():
            raise _ended()
        self._barge_waiters.append(fut)
        try:
            return await fut
        finally:
            if fut in self._barge_waiters:
                self._barge_waiters.remove(fut)

    async def signals(self) -> AsyncGenerator[TurnSignal, None]:
        """Yield every signal from now on: ``start`` (barge-in), ``eager``, ``resume``,
        ``end``, each with its turn, until the session ends.

        Raises:
            CartesiaSTTError: Why the session ended early, as iteration does.
        """
        async for item in self._listen():
            if isinstance(item, TurnSignal):
                yield item

    async def preflights(self) -> AsyncGenerator[Preflight, None]:
        """Yield a :class:`Preflight` per eager end from now on, and an already confirmed one
        for each turn that ends without its eager end standing; until the session ends.

        The eager-reply recipe: start a reply on each preflight, drop it when
        ``await preflight.withdrawn()`` is True, speak it when False. Every turn gets
        exactly one confirmed preflight.

        Raises:
            CartesiaSTTError: Why the session ended early, as iteration does.
        """
        async for item in self._listen():
            if isinstance(item, Preflight):
                yield item

    async def _listen(self) -> AsyncGenerator[TurnSignal | Preflight, None]:
        queue: asyncio.Queue[TurnSignal | Preflight] = asyncio.Queue()
        if self._link.finished.is_set() or self._link.failure.error is not None:
            queue.put_nowait(_END)
        self._listeners.append(queue)
        try:
            while (item := await queue.get()) is not _END:
                yield item
        finally:
            self._listeners.remove(queue)
        err = self._link.end_error(events_shown=False)
        if err is not None:
            raise err

    # -- the idiomatic flow ----------------------------------------------------------------

    async def stream(
        self,
        sources: Iterable[AudioSource] | AsyncIterable[AudioSource],
        *,
        speed: float | Default | None = DEFAULT,
    ) -> TurnTranscript:
        """Stream audio sources one after the other, ``close``, and wait for the server's
        clean close (every open turn's ``turn.end`` first).

        Args:
            sources: Each item is ``bytes``, an iterable or async iterable of ``bytes``, or a
                path to a WAV file matching the session.
            speed: Pacing (1.0 real time; ``None`` unpaced). Defaults to the connection's.

        Returns:
            The connection's :attr:`transcript`, complete.

        Raises:
            APIError: If the server reports an error.
            InvalidAudioError: For a WAV file that does not match the session.
            ConnectionClosedError: If the socket closes first (``.unanswered``: a turn lost).
            APITimeoutError: If the server did not close within ``close_timeout`` after
                ``close`` was written.
        """
        pace = self._speed if isinstance(speed, Default) else check_speed(speed)
        await run_stream(self, self._link, sources, speed=pace, finalize_each=False)
        return self._session.transcript


_END: Any = object()  # the end of a listener's stream (never yielded)


def _ended() -> ConnectionClosedError:
    return ConnectionClosedError("the session is over: no turn will start")


def _command_body(command: object) -> Mapping[str, object]:
    """The JSON object of a command given as the official SDK takes it (or as its JSON text,
    which ``send_raw`` passes on)."""
    if command == "close":
        return {"type": "close"}
    if isinstance(command, str):
        try:
            command = msgspec.json.decode(command)
        except msgspec.DecodeError:
            raise InvalidCommandError(
                f"unknown command {command!r}: the turn endpoint takes 'close' and 'config' "
                "as JSON objects"
            ) from None
    dump = getattr(command, "model_dump", None)
    if callable(dump):
        command = dump(exclude_none=True)
    if isinstance(command, Mapping):
        return command
    raise InvalidCommandError(
        "commands are {'type': 'close'} or {'type': 'config', 'turn': {...}}, "
        f"got {type(command).__name__}"
    )
