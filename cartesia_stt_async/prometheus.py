"""Prometheus metrics from the SDK's observer hooks: usage, latency, reconnects and errors.

Give the client a :class:`PrometheusObserver` and expose its registry as you expose any
other (``prometheus_client.start_http_server``, or a ``/metrics`` route serving
``prometheus_client.generate_latest(registry)``)::

    observer = PrometheusObserver(registry)
    client = AsyncCartesia(observers=[observer])

Metrics (with the default ``namespace="cartesia"``; ``endpoint`` is ``manual``, ``turns`` or,
for ``stt.transcribe``, ``batch``):

==========================================================  =========  =======================
Metric                                                      Type       Labels
==========================================================  =========  =======================
``cartesia_stt_audio_seconds_total``                        counter    endpoint
``cartesia_stt_audio_replayed_seconds_total``               counter    endpoint
``cartesia_stt_audio_dropped_seconds_total``                counter    endpoint
``cartesia_stt_audio_blocked_seconds_total``                counter    endpoint
``cartesia_stt_finalize_duration_seconds``                  histogram  endpoint
``cartesia_stt_turn_latency_seconds``                       histogram  endpoint
``cartesia_stt_answers_total``                              counter    endpoint
``cartesia_stt_reconnects_total``                           counter    endpoint, cause
``cartesia_stt_errors_total``                               counter    endpoint, type
``cartesia_stt_sessions_active``                            gauge      endpoint
``cartesia_stt_session_duration_seconds``                   histogram  endpoint, outcome
``cartesia_http_request_duration_seconds``                  histogram  path, status
==========================================================  =========  =======================

Audio counters move as a session goes (each record carries what was sent since the
previous one), so a long session shows up before it ends; summed over a session they equal
its audio, to the frame. The series of the endpoints the SDK has are created at zero, so
``rate()`` works from the first scrape; ``reconnects`` and ``errors`` series appear with
their first event.

One observer per registry: its metrics are registered once, as one collector, and a second
observer with the same ``namespace`` on the same registry raises
:class:`~cartesia_stt_async.UsageError` (share the first one between clients: an observer
may serve any number of clients and sessions, on any threads). :meth:`PrometheusObserver.unregister`
takes the metrics off the registry again.

Needs the ``prometheus`` extra (``prometheus-client``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from ._install import install_hint
from .errors import ConfigurationError, UsageError
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

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.metrics_core import Metric

__all__ = ["LATENCY_BUCKETS", "SESSION_BUCKETS", "PrometheusObserver"]

LATENCY_BUCKETS: Final = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Buckets (seconds) of the finalize and turn latency histograms."""

SESSION_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Buckets (seconds) of the session duration histogram."""

_STREAMING: Final = ("manual", "turns")  # the endpoints of sessions


class _Collector:
    """The observer's metrics as one collector: registered (or refused) all at once."""

    def __init__(self, metrics: Iterable[MetricWrapperBase]) -> None:
        self._metrics = tuple(metrics)

    def collect(self) -> Iterable[Metric]:
        for metric in self._metrics:
            yield from metric.collect()

    def describe(self) -> Iterable[Metric]:
        for metric in self._metrics:
            yield from metric.describe()


class PrometheusObserver(Observer):
    """An :class:`~cartesia_stt_async.observe.Observer` that keeps Prometheus metrics.

    Args:
        registry: Where the metrics are registered; ``None``: prometheus-client's global
            ``REGISTRY`` (what ``start_http_server`` serves). A web app that builds several
            apps (tests do) should give each its own ``CollectorRegistry``.
        namespace: The metric names' prefix (``cartesia`` gives ``cartesia_stt_...``).

    Raises:
        ConfigurationError: ``prometheus-client`` is not installed (the ``prometheus`` extra).
        UsageError: ``registry`` already holds this observer's metrics (another
            ``PrometheusObserver`` with the same ``namespace``): use one per registry.

    Attributes:
        registry: The registry the metrics are on.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "cartesia"
    ) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigurationError(
                "PrometheusObserver needs prometheus-client, the 'prometheus' extra: "
                f"{install_hint('prometheus')}"
            ) from None
        if not isinstance(namespace, str) or not namespace:
            raise UsageError(f"namespace must be a non-empty string, got {namespace!r}")
        self.registry: CollectorRegistry = prom.REGISTRY if registry is None else registry
        ns = namespace
        endpoint = ("endpoint",)

        def counter(name: str, doc: str, labels: tuple[str, ...] = endpoint) -> Counter:
            return prom.Counter(name, doc, labels, namespace=ns, subsystem="stt", registry=None)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = endpoint
        ) -> Histogram:
            return prom.Histogram(
                name, doc, labels, namespace=ns, subsystem="stt", buckets=buckets, registry=None
            )

        self._audio = counter("audio_seconds", "Seconds of audio sent (first time; billed).")
        self._replayed = counter(
            "audio_replayed_seconds", "Seconds of audio written again after a reconnect."
        )
        self._dropped = counter(
            "audio_dropped_seconds", "Seconds of audio dropped unsent (drop_oldest)."
        )
        self._blocked = counter(
            "audio_blocked_seconds", "Wall seconds send_audio waited for the send queue."
        )
        self._finalize = histogram(
            "finalize_duration_seconds",
            "Seconds from finalize to its flush_done (manual endpoint).",
            LATENCY_BUCKETS,
        )
        self._turn_latency = histogram(
            "turn_latency_seconds",
            "Seconds from a turn's last words to its turn.end (turn endpoint).",
            LATENCY_BUCKETS,
        )
        self._answers = counter("answers", "Utterances answered or turns ended.")
        self._reconnects = counter(
            "reconnects", "Sockets opened to replace a dropped one.", ("endpoint", "cause")
        )
        self._errors = counter(
            "errors", "Sessions ended by an error, by its type.", ("endpoint", "type")
        )
        self._active: Gauge = prom.Gauge(
            "sessions_active",
            "Sessions open now.",
            endpoint,
            namespace=ns,
            subsystem="stt",
            registry=None,
        )
        self._duration = histogram(
            "session_duration_seconds",
            "Wall seconds from the start of opening to the end of a session.",
            SESSION_BUCKETS,
            ("endpoint", "outcome"),
        )
        self._http: Histogram = prom.Histogram(
            "request_duration_seconds",
            "Seconds of an HTTP call to Cartesia, retries included.",
            ("path", "status"),
            namespace=ns,
            subsystem="http",
            registry=None,
        )
        self._collector = _Collector(
            (
                self._audio,
                self._replayed,
                self._dropped,
                self._blocked,
                self._finalize,
                self._turn_latency,
                self._answers,
                self._reconnects,
                self._errors,
                self._active,
                self._duration,
                self._http,
            )
        )
        # The series every session can move start at zero (rate() works from the start).
        self._audio.labels("batch")
        for name in _STREAMING:
            for metric in (self._audio, self._replayed, self._dropped, self._blocked):
                metric.labels(name)
            self._answers.labels(name)
            self._active.labels(name)
        self._finalize.labels("manual")
        self._turn_latency.labels("turns")
        try:
            self.registry.register(self._collector)
        except ValueError:  # prometheus-client: "Duplicated timeseries ..."
            raise UsageError(
                f"this registry already has metrics named like {ns}_stt_*, most likely those "
                "of another PrometheusObserver: make one observer per registry and give it to "
                "every client (or pass another registry or namespace, or unregister() the "
                "first)"
            ) from None
        self._registered = True

    def __repr__(self) -> str:
        return f"<PrometheusObserver on {type(self.registry).__name__} {id(self.registry):#x}>"

    def unregister(self) -> None:
        """Take this observer's metrics off its registry (it keeps counting, unexported).

        Another observer can then register its own there. A second call does nothing.
        """
        if self._registered:
            self.registry.unregister(self._collector)
            self._registered = False

    # -- the hooks ---------------------------------------------------------------------------

    def _usage(self, endpoint: str, usage: Usage) -> None:
        for metric, seconds in (
            (self._audio, usage.audio_seconds),
            (self._replayed, usage.replayed_seconds),
            (self._dropped, usage.dropped_seconds),
            (self._blocked, usage.blocked_seconds),
        ):
            if seconds > 0:
                metric.labels(endpoint).inc(seconds)

    def session_opened(self, record: SessionOpened) -> None:
        """One more active session."""
        self._active.labels(record.endpoint).inc()

    def utterance_answered(self, record: UtteranceAnswered) -> None:
        """An answer, its finalize latency, and the audio sent since the last record."""
        self._usage("manual", record.usage)
        self._answers.labels("manual").inc()
        if record.latency is not None:
            self._finalize.labels("manual").observe(record.latency)

    def turn_ended(self, record: TurnEnded) -> None:
        """An answer, the turn's latency, and the audio sent since the last record."""
        self._usage("turns", record.usage)
        self._answers.labels("turns").inc()
        if record.latency is not None:
            self._turn_latency.labels("turns").observe(record.latency)

    def reconnected(self, record: Reconnected) -> None:
        """A reconnect, by cause, and the audio sent since the last record."""
        self._usage(record.endpoint, record.usage)
        self._reconnects.labels(record.endpoint, record.cause).inc()

    def session_closed(self, record: SessionClosed) -> None:
        """The session's last audio, its duration and outcome, its error if it failed."""
        endpoint = record.endpoint
        self._usage(endpoint, record.usage)
        if record.opened:
            self._active.labels(endpoint).dec()
        self._duration.labels(endpoint, record.outcome).observe(record.duration_seconds)
        if record.outcome == "failed":
            self._errors.labels(endpoint, record.error_type or "unknown").inc()

    def request_finished(self, record: RequestFinished) -> None:
        """The call's duration by route and status; a transcribed file's audio seconds."""
        status = "error" if record.status is None else str(record.status)
        self._http.labels(record.path, status).observe(record.duration_seconds)
        if record.path == "/stt" and record.audio_seconds is not None and record.audio_seconds > 0:
            self._audio.labels("batch").inc(record.audio_seconds)
