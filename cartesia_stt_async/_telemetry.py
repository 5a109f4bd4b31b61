"""Where the SDK tells operators what happened: observer records and structured log fields.

One home for both (see :mod:`cartesia_stt_async.observe` for the public side):

* :class:`Hub`: the client's observers, each method bound once; :meth:`Hub.emit` calls them
  and contains their failures (logged once per observer and method, redacted).
* :class:`SessionTrace`: one per session, made when its opening starts. It owns the ids every
  log record of the session carries (:attr:`SessionTrace.fields`: ``cartesia_session``,
  ``cartesia_socket``, ``cartesia_request_id``) and builds the session's records from what
  the link tells it: the open socket, each answer, each reconnect, the end. Without observers
  it builds no record; it is never called per audio frame.
* :class:`SessionLogger`: the SDK's logger with the trace's fields added to every record
  (``extra``), computed only for records that are emitted.
* :func:`request_record`: the record of one HTTP call.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .errors import UsageError
from .observe import (
    Endpoint,
    Observer,
    Outcome,
    Reconnected,
    RequestFinished,
    SessionClosed,
    SessionOpened,
    TurnEnded,
    Usage,
    UtteranceAnswered,
)
from .protocol.transcript import Utterance
from .protocol.turns import Turn

if TYPE_CHECKING:
    from ._redact import Secrets
    from .protocol.sending import AudioSession

__all__ = ["Hub", "SessionLogger", "SessionTrace", "check_observers", "request_record"]

logger = logging.getLogger("cartesia_stt_async")

_METHODS: Final = (
    "session_opened",
    "utterance_answered",
    "turn_ended",
    "reconnected",
    "session_closed",
    "request_finished",
)

# Session numbers, process-wide (shared by every client and loop; next() is atomic in CPython).
_SESSIONS = itertools.count(1)


def check_observers(observers: object) -> tuple[object, ...]:
    """The ``observers`` option as a tuple, each having at least one :class:`Observer` method.

    Raises:
        UsageError: For a non-iterable (a single observer included: pass ``[obs]``), or an
            item with none of the methods.
    """
    if observers is None:
        return ()
    if isinstance(observers, Observer) or not isinstance(observers, Iterable):
        raise UsageError(
            f"observers must be a list of observers, got {type(observers).__name__} "
            "(pass observers=[obs] for one)"
        )
    items = tuple(observers)
    for i, obs in enumerate(items):
        if not any(callable(getattr(obs, name, None)) for name in _METHODS):
            raise UsageError(
                f"observers[{i}] ({type(obs).__name__}) has none of the Observer methods "
                f"({', '.join(_METHODS)}); subclass cartesia_stt_async.observe.Observer"
            )
    return items


class Hub:
    """The client's observers, each method looked up once (an observer may implement only
    some of them).

    Args:
        observers: From :func:`check_observers`.
        secrets: To redact an observer's error before logging it.
    """

    __slots__ = ("_calls", "_reported", "_secrets")

    def __init__(self, observers: Sequence[object], secrets: Secrets) -> None:
        self._calls: dict[str, tuple[tuple[object, Callable[[Any], object]], ...]] = {
            name: tuple(
                (obs, method)
                for obs in observers
                if callable(method := getattr(obs, name, None))
                # A subclass that does not override a method would only spend a call.
                and getattr(type(obs), name, None) is not getattr(Observer, name)
            )
            for name in _METHODS
        }
        self._reported: set[tuple[int, str]] = set()
        self._secrets = secrets

    @classmethod
    def of(cls, observers: Sequence[object], secrets: Secrets) -> Hub | None:
        """A hub, or ``None`` when there is nobody to tell (then no record is ever built)."""
        return cls(observers, secrets) if observers else None

    def wants(self, name: str) -> bool:
        """Whether any observer implements ``name``."""
        return bool(self._calls[name])

    def emit(self, name: str, record: object) -> None:
        """Call every observer's ``name`` with ``record``; contain and log their failures."""
        for obs, method in self._calls[name]:
            try:
                method(record)
            except Exception as exc:  # the user's code: telemetry never breaks a session
                key = (id(obs), name)
                if key in self._reported:
                    continue
                self._reported.add(key)
                logger.warning(
                    "observer %s.%s raised %s (logged once; the session goes on):\n%s",
                    type(obs).__name__,
                    name,
                    type(exc).__name__,
                    self._secrets.traceback(exc),
                    extra=_fields_of(record),
                )


def _fields_of(record: object) -> dict[str, object]:
    """The log fields a record names: its session and request id (a session's records), or
    its route and request id (an HTTP call's)."""
    fields: dict[str, object] = {}
    if isinstance(record, RequestFinished):
        fields["cartesia_path"] = record.path
    elif (session := getattr(record, "session", None)) is not None:
        fields["cartesia_session"] = session
    request_id = getattr(record, "request_id", None)
    if isinstance(request_id, str):
        fields["cartesia_request_id"] = request_id
    return fields


class SessionLogger(logging.LoggerAdapter[logging.Logger]):
    """``cartesia_stt_async``'s logger with a session's fields in every record's ``extra``."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        super().__init__(logger, fields)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        fields = self.extra or {}
        extra = kwargs.get("extra")
        kwargs["extra"] = {**fields, **extra} if extra else dict(fields)
        return msg, kwargs


_Counts = tuple[int, int, int, float]


def _counts(session: AudioSession) -> _Counts:
    """First-time audio bytes, replayed bytes, dropped bytes and blocked seconds so far."""
    stats = session.stats
    return (
        stats.audio_bytes_sent - stats.replayed_bytes,
        stats.replayed_bytes,
        stats.dropped_audio_bytes,
        stats.blocked_seconds,
    )


def _usage_between(session: AudioSession, before: _Counts, after: _Counts) -> Usage:
    seconds = session.format.duration
    return Usage(
        audio_seconds=seconds(after[0] - before[0]),
        replayed_seconds=seconds(after[1] - before[1]),
        dropped_seconds=seconds(after[2] - before[2]),
        blocked_seconds=after[3] - before[3],
    )


def _error_type(exc: BaseException | None) -> str | None:
    return None if exc is None else type(exc).__name__


class SessionTrace:
    """One session's ids and records (see the module docstring).

    Args:
        hub: The client's observers, or ``None``.
        endpoint: ``manual`` or ``turns``.
        model: The model asked for.
        url: The WebSocket URL, redacted.
        now: The event loop's clock.

    Attributes:
        fields: The log fields of the session (kept current: the socket number and request id
            change on a reconnect).
        handshakes: Handshakes tried so far (the first socket's and every reconnect's).
    """

    __slots__ = (
        "_answered",
        "_endpoint",
        "_hub",
        "_last",
        "_model",
        "_now",
        "_open_at",
        "_opened",
        "_request_ids",
        "_session",
        "_started",
        "_url",
        "fields",
        "handshakes",
        "log",
        "number",
    )

    def __init__(
        self,
        hub: Hub | None,
        *,
        endpoint: Endpoint,
        model: str,
        url: str,
        now: Callable[[], float],
    ) -> None:
        self._hub = hub
        self._endpoint: Endpoint = endpoint
        self._model = model
        self._url = url
        self._now = now
        self.number = next(_SESSIONS)
        self._started = time.time()
        self._open_at = now()
        self.handshakes = 0
        self._opened = False
        self._answered = 0
        self._request_ids: list[str] = []
        self._session: AudioSession | None = None
        self._last: _Counts = (0, 0, 0, 0.0)  # at the last record
        self.fields: dict[str, object] = {
            "cartesia_session": self.number,
            "cartesia_socket": 1,
            "cartesia_request_id": "",
        }
        self.log = SessionLogger(self.fields)

    def __repr__(self) -> str:
        socket = self.fields["cartesia_socket"]
        return f"<SessionTrace #{self.number} {self._endpoint} socket {socket}>"

    # -- ids ---------------------------------------------------------------------------------

    def set_request_id(self, request_id: str) -> None:
        """The current socket's request id became known (from an event)."""
        self.fields["cartesia_request_id"] = request_id
        if self._request_ids:
            self._request_ids[-1] = request_id

    # -- records -----------------------------------------------------------------------------

    def _usage(self) -> Usage:
        """What was sent since the previous record (and remember where we are)."""
        session = self._session
        if session is None:
            return Usage()
        last, self._last = self._last, _counts(session)
        return _usage_between(session, last, self._last)

    def opened(self, request_id: str, session: AudioSession) -> None:
        """The first socket is open and its session made."""
        self._opened = True
        self._session = session
        self._request_ids.append(request_id)
        self.fields["cartesia_request_id"] = request_id
        hub = self._hub
        if hub is None or not hub.wants("session_opened"):
            return
        hub.emit(
            "session_opened",
            SessionOpened(
                session=self.number,
                endpoint=self._endpoint,
                model=self._model,
                url=self._url,
                request_id=request_id,
                started_at=self._started,
                handshake_seconds=self._now() - self._open_at,
                attempts=self.handshakes,
            ),
        )

    def answered(self, completed: Sequence[object]) -> None:
        """Answers the session completed (utterances or turns)."""
        self._answered += len(completed)
        hub = self._hub
        if hub is None:
            return
        request_id = str(self.fields["cartesia_request_id"])
        for item in completed:
            if isinstance(item, Utterance):
                if hub.wants("utterance_answered"):
                    hub.emit(
                        "utterance_answered",
                        UtteranceAnswered(
                            session=self.number,
                            request_id=item.request_id or request_id,
                            index=item.index,
                            latency=item.latency,
                            audio_seconds=item.audio_seconds,
                            usage=self._usage(),
                            utterance=item,
                        ),
                    )
            elif isinstance(item, Turn) and hub.wants("turn_ended"):
                start, end = item.audio_span
                hub.emit(
                    "turn_ended",
                    TurnEnded(
                        session=self.number,
                        request_id=item.request_id or request_id,
                        index=item.index,
                        latency=item.latency,
                        audio_seconds=max((end or start) - start, 0.0),
                        eager_ends=item.eager_ends,
                        resumes=item.resumes,
                        usage=self._usage(),
                        turn=item,
                    ),
                )

    def reconnected(
        self,
        *,
        code: int | None,
        idle: bool,
        dropped_at: float,
        handshakes_before: int,
        replay_items: int,
        request_id: str,
    ) -> None:
        """A new socket replaced a dropped one."""
        previous = str(self.fields["cartesia_request_id"])
        socket = len(self._request_ids) + 1
        self._request_ids.append(request_id)
        self.fields["cartesia_socket"] = socket
        self.fields["cartesia_request_id"] = request_id
        hub = self._hub
        if hub is None or not hub.wants("reconnected"):
            return
        close_code = code if code is not None else 1006
        hub.emit(
            "reconnected",
            Reconnected(
                session=self.number,
                endpoint=self._endpoint,
                socket=socket,
                request_id=request_id,
                previous_request_id=previous,
                cause="idle" if idle else f"close {close_code}",
                close_code=close_code,
                downtime_seconds=self._now() - dropped_at,
                attempts=self.handshakes - handshakes_before,
                replay_items=replay_items,
                usage=self._usage(),
            ),
        )

    def closed(self, outcome: Outcome, error: BaseException | None) -> None:
        """The session is over (``error``: why, when ``outcome`` is ``failed``)."""
        hub = self._hub
        if hub is None or not hub.wants("session_closed"):
            return
        session = self._session
        usage = self._usage()
        if session is not None:
            total = _usage_between(session, (0, 0, 0, 0.0), self._last)
            reconnects, events = session.stats.reconnects, session.stats.events_received
        else:
            total, reconnects, events = Usage(), 0, 0
        failed = outcome == "failed"
        hub.emit(
            "session_closed",
            SessionClosed(
                session=self.number,
                endpoint=self._endpoint,
                model=self._model,
                url=self._url,
                opened=self._opened,
                outcome=outcome,
                error_type=_error_type(error) if failed else None,
                error=str(error) if failed and error is not None else "",
                request_ids=tuple(self._request_ids),
                started_at=self._started,
                duration_seconds=self._now() - self._open_at,
                answered=self._answered,
                reconnects=reconnects,
                events_received=events,
                usage=usage,
                total=total,
            ),
        )


def request_record(
    *,
    path: str,
    url: str,
    status: int | None,
    error: BaseException | None,
    request_id: str,
    started_at: float,
    duration: float,
    attempts: int,
    audio_seconds: float | None,
) -> RequestFinished:
    """The record of one HTTP call (``url`` already redacted)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    return RequestFinished(
        method="POST",
        path=path,
        url=url,
        server_address=parts.hostname or "",
        server_port=port,
        status=status,
        error_type=_error_type(error),
        request_id=request_id,
        started_at=started_at,
        duration_seconds=duration,
        attempts=attempts,
        audio_seconds=audio_seconds,
    )
