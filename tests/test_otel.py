"""OpenTelemetryObserver: the real client against the real twin over loopback, read back through
the OpenTelemetry SDK's in-memory span exporter and metric reader (providers passed explicitly,
never the global ones).

The spans and points asserted are the ones docs/observability.md promises (issue 24's check: a
session with a fault-plan drop and a reconnect gives one session span with its request ids, a
reconnect recorded, as many latency points as utterances, and the audio counter equal to the
audio sent, to the frame).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import cartesia_stt_async as stt
from cartesia_stt_async.observe import SessionClosed
from cartesia_stt_async.otel import OpenTelemetryObserver
from cartesia_stt_async.twin import Fault, Faults, HTTPFault, ScriptedEngine, Turn, Twin, serve

from .conftest import SLACK, RecordingObserver, client_for, pcm, ws
from .test_batch import wav

FRAME = 3200  # 100 ms of 16 kHz pcm_s16le
FRAME_SECONDS = 0.1


@dataclass
class Telemetry:
    """An observer wired to in-memory OpenTelemetry providers, and what they collected."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    observer: OpenTelemetryObserver

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """Every data point of ``metric`` (one per attribute set)."""
        data = self.reader.get_metrics_data()
        assert data is not None
        out: list[Any] = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "cartesia_stt_async"
                assert scope.scope.version == stt.__version__
                for m in scope.metrics:
                    if m.name == metric:
                        out.extend(m.data.data_points)
        return out

    def unit(self, metric: str) -> str:
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        return m.unit or ""
        raise AssertionError(f"no metric {metric}")


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Telemetry(spans, reader, tracer_provider, observer)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def attrs(point: Any) -> dict[str, Any]:
    return dict(point.attributes or {})


def only(points: Sequence[Any], **where: Any) -> Any:
    """The single point whose attributes include ``where`` (dots spelled as ``__``)."""
    wanted = {k.replace("__", "."): v for k, v in where.items()}
    found = [p for p in points if wanted.items() <= attrs(p).items()]
    assert len(found) == 1, (wanted, [attrs(p) for p in points])
    return found[0]


def utterance(k: int) -> bytes:
    """Utterance k: three frames of a distinct sample value (the twin answers by content)."""
    return pcm(3 * FRAME_SECONDS, value=k + 1)


REPLIES = [["Hello", " world."], [" Second", " one."], [" Third."]]


def manual(client: stt.AsyncCartesia) -> stt.ConnectionManager:
    """A manual-endpoint session (16 kHz pcm_s16le, unpaced, fast reconnects)."""
    return ws(client, close_timeout=5 * SLACK)


async def send_frames(conn: stt.AsyncConnection, audio: bytes) -> int:
    """Send ``audio`` one 100 ms frame at a time; the number of frames."""
    assert len(audio) % FRAME == 0
    for i in range(0, len(audio), FRAME):
        await conn.send_audio(audio[i : i + FRAME])
    return len(audio) // FRAME


@pytest.mark.asyncio
async def test_a_dropped_and_resumed_session_is_one_span_with_every_request_id(
    otel: Telemetry,
) -> None:
    engine = ScriptedEngine([], by_audio={utterance(k): r for k, r in enumerate(REPLIES)})
    # The first socket dies (TCP abort, no close frame) after 4 frames: mid-utterance 2.
    faults = Faults([Fault("abort", connection=0, after_frames=4)])
    records = RecordingObserver()
    user = otel.tracer_provider.get_tracer("the-app")
    async with serve(engine=engine, faults=faults) as twin:
        client = client_for(twin, observers=[otel.observer, records])
        frames = 0
        with user.start_as_current_span("handle-call") as parent:
            async with manual(client) as conn:
                for k in range(len(REPLIES)):
                    frames += await send_frames(conn, utterance(k))
                    await conn.finalize(timeout=5 * SLACK)
                assert conn.stats.reconnects == 1
        await client.close()
        sockets = [s.request_id for s in twin.sessions]
    assert frames == 9 and len(sockets) == 2
    (closed,) = records.of(SessionClosed)
    assert closed.request_ids == tuple(sockets)
    assert closed.outcome == "done" and closed.reconnects == 1

    # One session span, a child of the caller's span, holding both sockets' request ids.
    (span,) = otel.finished("cartesia.stt.session")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context is not None
    assert span.context.trace_id == parent.get_span_context().trace_id
    a = dict(span.attributes or {})
    assert a["cartesia.request_ids"] == tuple(sockets)
    assert a["cartesia.request_id"] == sockets[0]
    assert a["cartesia.stt.endpoint"] == "manual"
    assert a["cartesia.stt.model"] == "ink-2"
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == twin.port
    assert str(a["url.full"]).startswith(f"ws://127.0.0.1:{twin.port}/stt/websocket?")
    assert a["cartesia.stt.outcome"] == "done"
    assert a["cartesia.stt.answers"] == 3 and a["cartesia.stt.reconnects"] == 1
    assert a["cartesia.stt.audio.duration"] == pytest.approx(frames * FRAME_SECONDS, abs=1e-9)
    assert float(str(a["cartesia.stt.audio.replayed"])) > 0
    assert span.status.status_code is StatusCode.UNSET
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time == int(closed.started_at * 1e9)
    assert span.end_time == int((closed.started_at + closed.duration_seconds) * 1e9)

    # The reconnect is an event of the span, naming both sockets.
    events: dict[str, list[dict[str, Any]]] = {}
    for event in span.events:
        events.setdefault(event.name, []).append(dict(event.attributes or {}))
    (reconnect,) = events["cartesia.stt.reconnect"]
    assert reconnect["cause"] == "close 1006" and reconnect["close_code"] == 1006
    assert reconnect["socket"] == 2
    assert (reconnect["previous_request_id"], reconnect["request_id"]) == tuple(sockets)
    assert [e["index"] for e in events["cartesia.stt.utterance"]] == [0, 1, 2]
    assert all(
        e["audio_seconds"] > 0 and e["latency"] >= 0 for e in events["cartesia.stt.utterance"]
    )

    # Metrics: one latency point per utterance, the audio to the frame, one reconnect by cause.
    latency = only(otel.points("cartesia.stt.finalize.duration"), cartesia__stt__endpoint="manual")
    assert isinstance(latency, HistogramDataPoint) and latency.count == 3
    audio = only(otel.points("cartesia.stt.audio.duration"), cartesia__stt__endpoint="manual")
    assert isinstance(audio, NumberDataPoint)
    assert audio.value == pytest.approx(frames * FRAME_SECONDS, abs=1e-9)
    assert audio.value == pytest.approx(closed.total.audio_seconds, abs=1e-9)
    replayed = only(otel.points("cartesia.stt.audio.replayed"), cartesia__stt__endpoint="manual")
    assert replayed.value == pytest.approx(closed.total.replayed_seconds, abs=1e-9)
    (reconnects,) = otel.points("cartesia.stt.reconnects")
    assert attrs(reconnects) == {
        "cartesia.stt.endpoint": "manual",
        "cartesia.stt.reconnect.cause": "close 1006",
    }
    assert reconnects.value == 1
    assert only(otel.points("cartesia.stt.answers"), cartesia__stt__endpoint="manual").value == 3
    (active,) = otel.points("cartesia.stt.sessions.active")
    assert active.value == 0  # +1 at open, -1 at close
    (duration,) = otel.points("cartesia.stt.session.duration")
    assert attrs(duration) == {"cartesia.stt.endpoint": "manual", "cartesia.stt.outcome": "done"}
    assert duration.count == 1 and duration.sum == pytest.approx(closed.duration_seconds)
    assert otel.points("cartesia.stt.errors") == []
    units = {
        "cartesia.stt.audio.duration": "s",
        "cartesia.stt.finalize.duration": "s",
        "cartesia.stt.session.duration": "s",
        "cartesia.stt.reconnects": "{reconnect}",
        "cartesia.stt.answers": "{answer}",
        "cartesia.stt.sessions.active": "{session}",
    }
    assert {name: otel.unit(name) for name in units} == units
    assert otel.observer._spans == {}  # nothing held after the end


SPEECH = (3000).to_bytes(2, "little") * 8000  # 0.5 s, loud enough to be speech


@pytest.mark.asyncio
async def test_turns_give_one_latency_point_per_turn(otel: Telemetry) -> None:
    engine = ScriptedEngine(
        turns=[Turn(updates=["Hel", "Hello"], end="Hello world"), Turn(end=" Again")]
    )
    records = RecordingObserver()
    async with serve(engine=engine) as twin:
        client = client_for(twin, observers=[otel.observer, records])
        manager = client.stt.auto_finalize.websocket(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            speed=None,
            close_timeout=5 * SLACK,
        )
        async with manager as conn:
            turns = aiter(conn.turns())
            await conn.send_audio(SPEECH)  # the SDK's silence fill lets the twin end it
            first = await anext(turns)
            await conn.send_audio(SPEECH)
            second = await anext(turns)
            # Silence after the last turn: counted by SessionClosed's usage alone.
            await conn.send_audio(bytes(FRAME))
        await client.close()
        (socket,) = [s.request_id for s in twin.sessions]
    assert (first.text, second.text) == ("Hello world", " Again")
    (closed,) = records.of(SessionClosed)
    assert closed.usage.audio_seconds >= FRAME_SECONDS
    latency = only(otel.points("cartesia.stt.turn.latency"), cartesia__stt__endpoint="turns")
    assert latency.count == 2
    assert latency.sum == pytest.approx((first.latency or 0) + (second.latency or 0))
    assert only(otel.points("cartesia.stt.answers"), cartesia__stt__endpoint="turns").value == 2
    assert otel.points("cartesia.stt.finalize.duration") == []
    audio = only(otel.points("cartesia.stt.audio.duration"), cartesia__stt__endpoint="turns")
    assert audio.value == pytest.approx(closed.total.audio_seconds, abs=1e-9)
    assert audio.value >= 2 * 0.5  # the speech, and the silence fill after it
    (span,) = otel.finished("cartesia.stt.session")
    assert span.parent is None  # no span was current: a root
    a = dict(span.attributes or {})
    assert a["cartesia.stt.endpoint"] == "turns" and a["cartesia.request_ids"] == (socket,)
    assert a["cartesia.stt.answers"] == 2
    assert [dict(e.attributes or {})["index"] for e in span.events] == [0, 1]
    assert {e.name for e in span.events} == {"cartesia.stt.turn"}


@pytest.mark.asyncio
async def test_a_refused_first_handshake_is_an_error_span(otel: Telemetry) -> None:
    async with serve(engine=ScriptedEngine([]), faults=Faults(refuse={0: 401})) as twin:
        client = client_for(twin, observers=[otel.observer])
        with pytest.raises(stt.AuthenticationError):
            async with manual(client):
                pass
        await client.close()
    (span,) = otel.finished("cartesia.stt.session")
    a = dict(span.attributes or {})
    assert a["error.type"] == "AuthenticationError"
    assert a["cartesia.stt.outcome"] == "failed"
    assert a["cartesia.request_ids"] == ()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description and "401" in span.status.description
    (errors,) = otel.points("cartesia.stt.errors")
    assert attrs(errors) == {
        "cartesia.stt.endpoint": "manual",
        "error.type": "AuthenticationError",
    }
    assert errors.value == 1
    (duration,) = otel.points("cartesia.stt.session.duration")
    assert attrs(duration)["error.type"] == "AuthenticationError"
    # Never opened: never counted active.
    assert all(p.value == 0 for p in otel.points("cartesia.stt.sessions.active"))
    assert otel.observer._spans == {}


async def _transcribe(twin: Twin, otel: Telemetry) -> stt.Transcription:
    policy = stt.RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)
    async with client_for(twin, observers=[otel.observer], max_retries=policy) as client:
        return await client.stt.transcribe(file=wav(pcm(2.0)), model="ink-whisper")


@pytest.mark.asyncio
async def test_transcribe_is_an_http_span_and_a_duration_point(otel: Telemetry) -> None:
    user = otel.tracer_provider.get_tracer("the-app")
    async with serve(engine=ScriptedEngine([["Hi there."]])) as twin:
        with user.start_as_current_span("upload") as parent:
            result = await _transcribe(twin, otel)
    (span,) = otel.finished("POST /stt")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    a = dict(span.attributes or {})
    assert a == {
        "http.request.method": "POST",
        "url.full": f"http://127.0.0.1:{twin.port}/stt",
        "url.template": "/stt",
        "server.address": "127.0.0.1",
        "server.port": twin.port,
        "http.response.status_code": 200,
        "cartesia.request_id": result.request_id,
    }
    assert span.status.status_code is StatusCode.UNSET
    (point,) = otel.points("http.client.request.duration")
    assert point.count == 1
    assert attrs(point) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": twin.port,
        "url.template": "/stt",
        "http.response.status_code": 200,
    }
    assert otel.unit("http.client.request.duration") == "s"
    (audio,) = otel.points("cartesia.stt.audio.duration")
    assert attrs(audio) == {"cartesia.stt.endpoint": "batch"}
    assert audio.value == result.duration == 2.0


@pytest.mark.asyncio
async def test_a_retried_request_counts_its_resend(otel: Telemetry) -> None:
    faults = Faults(http=[HTTPFault("status", request=0, status=503)])
    async with serve(engine=ScriptedEngine([["Hi there."]]), faults=faults) as twin:
        await _transcribe(twin, otel)
    (span,) = otel.finished("POST /stt")
    a = dict(span.attributes or {})
    assert a["http.request.resend_count"] == 1
    assert a["http.response.status_code"] == 200 and "error.type" not in a
    (point,) = otel.points("http.client.request.duration")
    assert attrs(point)["http.response.status_code"] == 200


@pytest.mark.asyncio
async def test_a_failed_request_is_an_error_span(otel: Telemetry) -> None:
    faults = Faults(http=[HTTPFault("status", status=503)])  # every attempt
    async with serve(engine=ScriptedEngine([]), faults=faults) as twin:
        with pytest.raises(stt.ServerError):
            await _transcribe(twin, otel)
    (span,) = otel.finished("POST /stt")
    a = dict(span.attributes or {})
    assert a["error.type"] == "ServerError" and a["http.response.status_code"] == 503
    assert a["http.request.resend_count"] == 2
    assert span.status.status_code is StatusCode.ERROR
    (point,) = otel.points("http.client.request.duration")
    assert attrs(point)["error.type"] == "ServerError"
    assert otel.points("cartesia.stt.audio.duration") == []


def test_without_opentelemetry_the_import_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "cartesia_stt_async.otel")
    with pytest.raises(ImportError, match=r"pip install 'cartesia-stt-async\[otel\]'"):
        importlib.import_module("cartesia_stt_async.otel")
