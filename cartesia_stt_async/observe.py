"""Hooks for operators: usage, latency and failures of every session and HTTP call.

Pass observers to the client, ``AsyncCartesia(observers=[...])`` (or ``Cartesia``, or
``connect(observers=...)``), and the SDK calls them with a typed record at each point an
operator cares about::

    session_opened ──▶ utterance_answered / turn_ended ... ──▶ session_closed
                        └─ reconnected (after a drop, before the replay) ─┘
    request_finished   (each HTTP call: stt.transcribe, tts.generate, access_token.create)

Every record of a session carries its ``session`` number (the ``cartesia_session`` field of the
SDK's log records too) and the current ``request_id``, so records, logs and the server's own
ids line up. Usage is reported as it happens: each session record carries ``usage``, what was
sent *since the previous record of the same session*, so adding ``usage.audio_seconds`` over a
session's records gives the audio it sent, to the frame, and a counter can move during a long
session rather than at its end.

Observers are plain objects with synchronous methods (subclass :class:`Observer` and override
what you need). They run on the event loop, inside the SDK, at most a few times per utterance
and never per audio frame: keep them quick and never block (hand slow work to a queue). An
exception an observer raises is logged once per observer and method, and otherwise ignored:
telemetry never breaks a session. With no observer, the SDK builds no record at all.

Records hold no secret: URLs are redacted as in every error and log, and request ids are the
server's. ``UtteranceAnswered.utterance`` and ``TurnEnded.turn`` are the result objects
themselves, text included: an observer that exports them decides what leaves the process.

:class:`cartesia_stt_async.otel.OpenTelemetryObserver` and
:class:`cartesia_stt_async.prometheus.PrometheusObserver` are ready-made observers;
``docs/observability.md`` lists every field with its unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from .protocol.transcript import Utterance
    from .protocol.turns import Turn

__all__ = [
    "Endpoint",
    "Observer",
    "Outcome",
    "Reconnected",
    "RequestFinished",
    "SessionClosed",
    "SessionOpened",
    "TurnEnded",
    "Usage",
    "UtteranceAnswered",
]

Endpoint = Literal["manual", "turns"]
"""``manual``: ``/stt/websocket`` (``manual_finalize``); ``turns``: ``/stt/turns/websocket``
(``auto_finalize``)."""

Outcome = Literal["done", "closed", "failed"]
"""How a session ended: ``done`` (its clean end: ``done`` on the manual endpoint, the server's
close after ``close`` on the turn endpoint), ``closed`` (the caller closed it before its end,
or an exception left ``async with``), ``failed`` (an error ended it: see ``error_type``)."""


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Audio counted over a stretch of a session (seconds of audio, not wall time).

    Attributes:
        audio_seconds: Audio written to the server for the first time: your audio, plus any
            keepalive or silence fill (replays not included). What the server receives and
            bills.
        replayed_seconds: Audio written again on a new socket after a drop.
        dropped_seconds: Audio dropped unsent by ``buffer_policy="drop_oldest"``.
        blocked_seconds: Wall seconds ``send_audio`` waited for room in the send queue
            (``buffer_policy="block"``): how long the network held your producer back.
    """

    audio_seconds: float = 0.0
    replayed_seconds: float = 0.0
    dropped_seconds: float = 0.0
    blocked_seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            audio_seconds=self.audio_seconds + other.audio_seconds,
            replayed_seconds=self.replayed_seconds + other.replayed_seconds,
            dropped_seconds=self.dropped_seconds + other.dropped_seconds,
            blocked_seconds=self.blocked_seconds + other.blocked_seconds,
        )


class SessionOpened(msgspec.Struct, frozen=True, kw_only=True):
    """A session's first socket is open (its handshake, retries included, succeeded).

    Attributes:
        session: The session's number in this process (1, 2, ...): the ``cartesia_session``
            field of the SDK's log records.
        endpoint: ``manual`` or ``turns``.
        model: The model asked for.
        url: The WebSocket URL, credentials redacted.
        request_id: The server's id for the socket (``X-Request-Id``), ``""`` if it sent none.
        started_at: Wall-clock time (``time.time()``) the opening began.
        handshake_seconds: Seconds from the start of opening to the open socket, retries and
            their waits included.
        attempts: Handshakes tried (1 when the first succeeded).
    """

    session: int
    endpoint: Endpoint
    model: str
    url: str
    request_id: str
    started_at: float
    handshake_seconds: float
    attempts: int


class UtteranceAnswered(msgspec.Struct, frozen=True, kw_only=True):
    """Manual endpoint: one ``finalize`` got its whole answer (or the session's end sealed it).

    Attributes:
        session: The session's number.
        request_id: The request id of the socket that answered.
        index: The utterance's index (0 for the session's first ``finalize``).
        latency: Seconds from writing ``finalize`` to its ``flush_done``; ``None`` when
            unknown (an utterance sealed by ``done`` without its own ``flush_done``).
        audio_seconds: Seconds of audio the utterance had.
        usage: What the session sent since its previous record.
        utterance: The :class:`~cartesia_stt_async.Utterance` itself (text and words).
    """

    session: int
    request_id: str
    index: int
    latency: float | None
    audio_seconds: float
    usage: Usage
    utterance: Utterance


class TurnEnded(msgspec.Struct, frozen=True, kw_only=True):
    """Turn endpoint: a turn ended (``turn.end``).

    Attributes:
        session: The session's number.
        request_id: The request id of the socket the turn ended on.
        index: The turn's index (0 for the session's first turn).
        latency: Seconds of audio from the last growth of the turn's text to its ``turn.end``
            (:attr:`Turn.latency <cartesia_stt_async.Turn.latency>`: how long after the last
            words the turn was declared over; at real-time pacing also wall seconds);
            ``None`` for a turn that ended with no text.
        audio_seconds: Seconds of audio from ``turn.start`` to ``turn.end``, as audio
            positions (the audio written when each arrived: ``Turn.audio_span``; with unpaced
            audio, close to 0).
        eager_ends: ``turn.eager_end`` signals the turn had.
        resumes: ``turn.resume`` events that withdrew one.
        usage: What the session sent since its previous record.
        turn: The :class:`~cartesia_stt_async.Turn` itself (text included).
    """

    session: int
    request_id: str
    index: int
    latency: float | None
    audio_seconds: float
    eager_ends: int
    resumes: int
    usage: Usage
    turn: Turn


class Reconnected(msgspec.Struct, frozen=True, kw_only=True):
    """A dropped socket was replaced; the replay is queued and goes out next.

    Attributes:
        session: The session's number.
        endpoint: ``manual`` or ``turns``.
        socket: The new socket's number in the session (2 after the first drop).
        request_id: The new socket's request id.
        previous_request_id: The dropped socket's request id.
        cause: Why the old socket ended, short and stable for a metric label:
            ``close 1006``, ``idle`` (a routine idle close; reopened on the next send), ...
        close_code: The dropped socket's close code (1006 for a drop without one).
        downtime_seconds: Wall seconds from the drop to the new socket.
        attempts: Handshakes it took.
        replay_items: Frames and commands queued again for the new socket.
        usage: What the session sent since its previous record.
    """

    session: int
    endpoint: Endpoint
    socket: int
    request_id: str
    previous_request_id: str
    cause: str
    close_code: int
    downtime_seconds: float
    attempts: int
    replay_items: int
    usage: Usage


class SessionClosed(msgspec.Struct, frozen=True, kw_only=True):
    """A session is over (also when its first handshake failed: then ``opened`` is False).

    Attributes:
        session: The session's number.
        endpoint: ``manual`` or ``turns``.
        model: The model asked for.
        url: The WebSocket URL, credentials redacted.
        opened: False when no socket ever opened (the first handshake failed).
        outcome: ``done``, ``closed`` or ``failed`` (see :data:`Outcome`).
        error_type: The exception's class name when ``outcome`` is ``failed`` (for example
            ``ConnectionClosedError``, ``RateLimitError``, ``APIError``), else ``None``.
        error: Its message (redacted like every error), else ``""``.
        request_ids: Every socket's request id, in order.
        started_at: Wall-clock time the opening began.
        duration_seconds: Wall seconds from the start of opening to the end.
        answered: Utterances answered (manual) or turns ended (turns).
        reconnects: Sockets opened to replace a dropped one.
        events_received: Server events decoded.
        usage: What the session sent since its previous record.
        total: What the whole session sent (the sum of every record's ``usage``).
    """

    session: int
    endpoint: Endpoint
    model: str
    url: str
    opened: bool
    outcome: Outcome
    error_type: str | None
    error: str
    request_ids: tuple[str, ...]
    started_at: float
    duration_seconds: float
    answered: int
    reconnects: int
    events_received: int
    usage: Usage
    total: Usage


class RequestFinished(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP call is over (``stt.transcribe``, ``tts.generate``, ``access_token.create``),
    retries included.

    Attributes:
        method: ``POST``.
        path: The route: ``/stt``, ``/tts/bytes`` or ``/access-token``.
        url: The full URL, credentials redacted.
        server_address: The host the URL names.
        server_port: Its port.
        status: The last answer's status; ``None`` when no answer came.
        error_type: The exception's class name when the call failed, else ``None``.
        request_id: The last answer's ``X-Request-Id`` (``""`` if none).
        started_at: Wall-clock time the call began.
        duration_seconds: Wall seconds of the whole call, retries and waits included.
        attempts: Requests sent (1 when the first one answered).
        audio_seconds: ``/stt``: the transcribed audio's duration as the server reported it
            (``None`` when it did not, or for other routes).
    """

    method: str
    path: str
    url: str
    server_address: str
    server_port: int | None
    status: int | None
    error_type: str | None
    request_id: str
    started_at: float
    duration_seconds: float
    attempts: int
    audio_seconds: float | None = None


class Observer:
    """Receives the SDK's telemetry records. Subclass it and override what you need: every
    method does nothing by default. Methods run on the event loop and must not block; an
    exception is logged and ignored (see the module docstring)."""

    def session_opened(self, record: SessionOpened) -> None:
        """A session's first socket is open."""

    def utterance_answered(self, record: UtteranceAnswered) -> None:
        """Manual endpoint: a ``finalize`` got its answer."""

    def turn_ended(self, record: TurnEnded) -> None:
        """Turn endpoint: a turn ended."""

    def reconnected(self, record: Reconnected) -> None:
        """A dropped socket was replaced."""

    def session_closed(self, record: SessionClosed) -> None:
        """A session is over (or never opened)."""

    def request_finished(self, record: RequestFinished) -> None:
        """An HTTP call is over."""
