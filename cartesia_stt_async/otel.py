"""OpenTelemetry for the SDK: a span per session and per HTTP call, and metrics.

:class:`OpenTelemetryObserver` turns the records of :mod:`cartesia_stt_async.observe` into
spans and metric points through the OpenTelemetry API (``opentelemetry-api``, the ``otel``
extra: ``pip install 'cartesia-stt-async[otel]'``). It needs no SDK at run time: install and
configure the OpenTelemetry SDK (exporters, readers) as your service already does, and pass the
providers, or let it use the global ones::

    from cartesia_stt_async import AsyncCartesia
    from cartesia_stt_async.otel import OpenTelemetryObserver

    client = AsyncCartesia(observers=[OpenTelemetryObserver()])

Spans (instrumentation scope ``cartesia_stt_async``):

* ``cartesia.stt.session`` (kind CLIENT), one per session, from the start of its opening to
  its end, a child of the span current where the session was opened. Events
  ``cartesia.stt.reconnect``, ``cartesia.stt.utterance`` / ``cartesia.stt.turn``. A session
  whose first handshake failed still gets its span (status ERROR, ``error.type``).
* ``POST {path}`` (kind CLIENT), one per HTTP call (``POST /stt``, ``POST /tts/bytes``,
  ``POST /access-token``), retries included (``http.request.resend_count``).

Metrics: ``cartesia.stt.audio.duration`` (and ``.replayed``, ``.dropped``, ``.blocked``),
``cartesia.stt.finalize.duration``, ``cartesia.stt.turn.latency``, ``cartesia.stt.answers``,
``cartesia.stt.reconnects``, ``cartesia.stt.errors``, ``cartesia.stt.session.duration``,
``cartesia.stt.sessions.active`` and ``http.client.request.duration``; docs/observability.md
lists each with its unit and attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import urlsplit

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised in a subprocess (tests/test_otel.py)
    raise ImportError(
        "cartesia_stt_async.otel needs the OpenTelemetry API: "
        "pip install 'cartesia-stt-async[otel]'"
    ) from exc

from ._version import __version__
from .observe import (
    Observer,
    Reconnected,
    RequestFinished,
    SessionClosed,
    SessionOpened,
    TurnEnded,
    Usage,
    UtteranceAnswered,
)

__all__ = ["OpenTelemetryObserver"]

SCOPE: Final = "cartesia_stt_async"
"""The instrumentation scope of the tracer and the meter."""

SESSION_SPAN: Final = "cartesia.stt.session"
"""The name of a session's span."""

ENDPOINT: Final = "cartesia.stt.endpoint"

# Advisory histogram buckets (seconds): the SDK's default buckets are made for milliseconds.
LATENCY_BUCKETS: Final = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
SESSION_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
HTTP_BUCKETS: Final = (  # the HTTP semantic conventions' advice
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

_Attrs = Mapping[str, str | int | float | bool | Sequence[str]]

# One attribute set per endpoint, made once (the common case of every metric point).
_BY_ENDPOINT: Final[Mapping[str, _Attrs]] = {
    name: {ENDPOINT: name} for name in ("manual", "turns", "batch")
}


def _ns(seconds: float) -> int:
    """Wall-clock seconds (``time.time()``) as OpenTelemetry's nanoseconds."""
    return int(seconds * 1e9)


def _server(url: str) -> dict[str, str | int]:
    """``server.address`` and ``server.port`` of a URL (the port defaulted by its scheme)."""
    parts = urlsplit(url)
    out: dict[str, str | int] = {}
    if parts.hostname:
        out["server.address"] = parts.hostname
    try:
        port = parts.port
    except ValueError:
        return out
    if port is None:
        port = 443 if parts.scheme in ("wss", "https") else 80
    out["server.port"] = port
    return out


class OpenTelemetryObserver(Observer):
    """An :class:`~cartesia_stt_async.observe.Observer` that records spans and metrics through
    the OpenTelemetry API.

    Args:
        tracer_provider: Where spans go; ``None``: the global tracer provider
            (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: Where metric points go; ``None``: the global meter provider.

    The instruments are made once, here; each record then costs a few calls into the
    OpenTelemetry API. The spans of open sessions are held by session number until their
    :class:`~cartesia_stt_async.observe.SessionClosed` ends them.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self._audio = meter.create_counter(
            "cartesia.stt.audio.duration", "s", "Audio sent for transcription (replays excluded)"
        )
        self._replayed = meter.create_counter(
            "cartesia.stt.audio.replayed", "s", "Audio sent again on a new socket after a drop"
        )
        self._dropped = meter.create_counter(
            "cartesia.stt.audio.dropped", "s", "Audio dropped unsent by the buffer policy"
        )
        self._blocked = meter.create_counter(
            "cartesia.stt.audio.blocked", "s", "Wall time send_audio waited for queue room"
        )
        self._finalize = meter.create_histogram(
            "cartesia.stt.finalize.duration",
            "s",
            "From writing finalize to its whole answer (manual endpoint)",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self._turn_latency = meter.create_histogram(
            "cartesia.stt.turn.latency",
            "s",
            "From the turn's last words to its end (turn endpoint)",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self._answers = meter.create_counter(
            "cartesia.stt.answers", "{answer}", "Utterances answered and turns ended"
        )
        self._reconnects = meter.create_counter(
            "cartesia.stt.reconnects", "{reconnect}", "Sockets opened to replace a dropped one"
        )
        self._errors = meter.create_counter(
            "cartesia.stt.errors", "{error}", "Sessions an error ended"
        )
        self._session_duration = meter.create_histogram(
            "cartesia.stt.session.duration",
            "s",
            "Sessions' wall time, from the start of opening to the end",
            explicit_bucket_boundaries_advisory=SESSION_BUCKETS,
        )
        self._active = meter.create_up_down_counter(
            "cartesia.stt.sessions.active", "{session}", "Sessions open now"
        )
        self._http_duration = meter.create_histogram(
            "http.client.request.duration",
            "s",
            "Duration of HTTP client requests (retries included)",
            explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
        )
        self._spans: dict[int, Span] = {}

    def __repr__(self) -> str:
        return f"<OpenTelemetryObserver open_sessions={len(self._spans)}>"

    # -- helpers -----------------------------------------------------------------------------

    def _count_usage(self, usage: Usage, attrs: _Attrs) -> None:
        if usage.audio_seconds > 0:
            self._audio.add(usage.audio_seconds, attrs)
        if usage.replayed_seconds > 0:
            self._replayed.add(usage.replayed_seconds, attrs)
        if usage.dropped_seconds > 0:
            self._dropped.add(usage.dropped_seconds, attrs)
        if usage.blocked_seconds > 0:
            self._blocked.add(usage.blocked_seconds, attrs)

    def _session_span(self, *, endpoint: str, model: str, url: str, start_time: int) -> Span:
        attributes: dict[str, str | int] = {
            ENDPOINT: endpoint,
            "cartesia.stt.model": model,
            "url.full": url,
            **_server(url),
        }
        return self._tracer.start_span(
            SESSION_SPAN, kind=SpanKind.CLIENT, start_time=start_time, attributes=attributes
        )

    # -- the observer methods ----------------------------------------------------------------

    def session_opened(self, record: SessionOpened) -> None:
        """Start the session's span (a child of the current context) and count it active."""
        span = self._session_span(
            endpoint=record.endpoint,
            model=record.model,
            url=record.url,
            start_time=_ns(record.started_at),
        )
        if record.request_id:
            span.set_attribute("cartesia.request_id", record.request_id)
        self._spans[record.session] = span
        self._active.add(1, _BY_ENDPOINT[record.endpoint])

    def utterance_answered(self, record: UtteranceAnswered) -> None:
        """Count the answer, its latency and its usage; add an event to the session's span."""
        self._answer("manual", self._finalize, "cartesia.stt.utterance", record)

    def turn_ended(self, record: TurnEnded) -> None:
        """Count the turn, its latency and its usage; add an event to the session's span."""
        self._answer("turns", self._turn_latency, "cartesia.stt.turn", record)

    def _answer(
        self,
        endpoint: str,
        latencies: metrics.Histogram,
        event_name: str,
        record: UtteranceAnswered | TurnEnded,
    ) -> None:
        attrs = _BY_ENDPOINT[endpoint]
        self._answers.add(1, attrs)
        if record.latency is not None:
            latencies.record(record.latency, attrs)
        self._count_usage(record.usage, attrs)
        span = self._spans.get(record.session)
        if span is not None:
            event: dict[str, int | float] = {
                "index": record.index,
                "audio_seconds": record.audio_seconds,
            }
            if record.latency is not None:
                event["latency"] = record.latency
            span.add_event(event_name, event)

    def reconnected(self, record: Reconnected) -> None:
        """Count the reconnect by cause; add an event to the session's span."""
        attrs = _BY_ENDPOINT[record.endpoint]
        self._reconnects.add(
            1, {ENDPOINT: record.endpoint, "cartesia.stt.reconnect.cause": record.cause}
        )
        self._count_usage(record.usage, attrs)
        span = self._spans.get(record.session)
        if span is not None:
            span.add_event(
                "cartesia.stt.reconnect",
                {
                    "socket": record.socket,
                    "cause": record.cause,
                    "close_code": record.close_code,
                    "request_id": record.request_id,
                    "previous_request_id": record.previous_request_id,
                    "downtime_seconds": record.downtime_seconds,
                    "attempts": record.attempts,
                },
            )

    def session_closed(self, record: SessionClosed) -> None:
        """Count the end (duration, outcome, error) and end the session's span."""
        endpoint = record.endpoint
        attrs = _BY_ENDPOINT[endpoint]
        self._count_usage(record.usage, attrs)
        failed = record.outcome == "failed"
        ended: dict[str, str] = {ENDPOINT: endpoint, "cartesia.stt.outcome": record.outcome}
        if failed:
            error_type = record.error_type or "Exception"
            ended["error.type"] = error_type
            self._errors.add(1, {ENDPOINT: endpoint, "error.type": error_type})
        self._session_duration.record(record.duration_seconds, ended)
        span = self._spans.pop(record.session, None)
        if record.opened:
            self._active.add(-1, attrs)
        if span is None:  # the first handshake failed (or opened before this observer knew)
            span = self._session_span(
                endpoint=endpoint,
                model=record.model,
                url=record.url,
                start_time=_ns(record.started_at),
            )
        total = record.total
        span.set_attributes(
            {
                "cartesia.request_ids": list(record.request_ids),
                "cartesia.stt.audio.duration": total.audio_seconds,
                "cartesia.stt.audio.replayed": total.replayed_seconds,
                "cartesia.stt.answers": record.answered,
                "cartesia.stt.reconnects": record.reconnects,
                "cartesia.stt.outcome": record.outcome,
            }
        )
        if record.request_ids and record.request_ids[0]:
            span.set_attribute("cartesia.request_id", record.request_ids[0])
        if failed:
            span.set_attribute("error.type", ended["error.type"])
            span.set_status(Status(StatusCode.ERROR, record.error))
        span.end(end_time=_ns(record.started_at + record.duration_seconds))

    def request_finished(self, record: RequestFinished) -> None:
        """Record the HTTP call's span and duration (and ``/stt``'s audio)."""
        attrs: dict[str, str | int] = {
            "http.request.method": record.method,
            "server.address": record.server_address,
            "url.template": record.path,
        }
        if record.server_port is not None:
            attrs["server.port"] = record.server_port
        if record.status is not None:
            attrs["http.response.status_code"] = record.status
        if record.error_type is not None:
            attrs["error.type"] = record.error_type
        self._http_duration.record(record.duration_seconds, attrs)
        if record.path == "/stt" and record.audio_seconds is not None:
            self._audio.add(record.audio_seconds, _BY_ENDPOINT["batch"])
        span_attrs: dict[str, str | int] = {**attrs, "url.full": record.url}
        if record.attempts > 1:
            span_attrs["http.request.resend_count"] = record.attempts - 1
        if record.request_id:
            span_attrs["cartesia.request_id"] = record.request_id
        span = self._tracer.start_span(
            f"{record.method} {record.path}",
            kind=SpanKind.CLIENT,
            start_time=_ns(record.started_at),
            attributes=span_attrs,
        )
        if record.error_type is not None:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=_ns(record.started_at + record.duration_seconds))
