"""PrometheusObserver: the real client against the real twin over loopback, metrics read back
from the registry, the way a scrape would see them.

Each test owns a ``CollectorRegistry``, so the counters start at zero and a value is exactly
what the test's sessions did: audio seconds to the frame, one answer per utterance or turn,
reconnects by cause, errors by type, no session left active.
"""

from __future__ import annotations

import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import cartesia_stt_async as stt
from cartesia_stt_async._telemetry import request_record
from cartesia_stt_async.observe import Reconnected, SessionClosed, Usage
from cartesia_stt_async.prometheus import LATENCY_BUCKETS, SESSION_BUCKETS, PrometheusObserver
from cartesia_stt_async.twin import (
    Fault,
    Faults,
    HTTPFault,
    ScriptedEngine,
    Turn,
    TwinServer,
    start_twin,
)

from .conftest import API_KEY, SLACK, pcm, ws

pytestmark = pytest.mark.both_loops

BYTES_PER_S = 32000  # 16 kHz pcm_s16le
EXACT = 1e-9  # seconds: "to the frame" (a frame is milliseconds), with float sums' rounding
# Two utterances of 0.25 s (distinct audio: the twin answers each by its bytes, also when a
# reconnect replays it).
FIRST, SECOND = pcm(0.25, value=1), pcm(0.25, value=2)
ANSWERS = {FIRST: ["Hello", " world."], SECOND: [" Bye."]}


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own (never the global one)."""
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series that does not exist (yet)."""
    return registry.get_sample_value(name, labels) or 0.0


def client(twin: TwinServer, observer: PrometheusObserver, **kw: object) -> stt.AsyncCartesia:
    return stt.AsyncCartesia(
        api_key=API_KEY,
        base_url=twin.base_url,
        observers=[observer],
        **kw,  # type: ignore[arg-type]
    )


def manual(c: stt.AsyncCartesia, **kw: object) -> stt.ConnectionManager:
    """A 16 kHz session with the suite's test defaults (unpaced, quick reconnects)."""
    return ws(c, close_timeout=5 * SLACK, **kw)


@pytest.mark.asyncio
async def test_a_session_with_a_drop_moves_every_counter_by_what_it_did(
    registry: CollectorRegistry,
) -> None:
    observer = PrometheusObserver(registry)
    # The first socket is aborted (close 1006) inside the first utterance: it is replayed.
    faults = Faults([Fault("abort", connection=0, after_frames=2)])
    with start_twin(ScriptedEngine(by_audio=ANSWERS), faults=faults) as twin:
        async with client(twin, observer) as c, manual(c) as conn:
            assert value(registry, "cartesia_stt_sessions_active", endpoint="manual") == 1
            await conn.send_audio(FIRST)
            first = await conn.finalize(timeout=5 * SLACK)
            await conn.send_audio(SECOND)
            second = await conn.finalize(timeout=5 * SLACK)
        assert (first.text, second.text) == ("Hello world.", " Bye.")
        assert conn.stats.reconnects == 1
        sent = (conn.stats.audio_bytes_sent - conn.stats.replayed_bytes) / BYTES_PER_S

    def m(name: str, **labels: str) -> float:
        return value(registry, name, endpoint="manual", **labels)

    # Audio: what the session wrote the first time, to the frame (the keepalive sends none
    # here: the session is short and unpaced); the replay is counted apart.
    assert sent == len(FIRST + SECOND) / BYTES_PER_S
    assert m("cartesia_stt_audio_seconds_total") == pytest.approx(sent, abs=EXACT)
    replayed = m("cartesia_stt_audio_replayed_seconds_total")
    assert replayed == pytest.approx(conn.stats.replayed_bytes / BYTES_PER_S, abs=EXACT)
    assert replayed > 0
    assert m("cartesia_stt_audio_dropped_seconds_total") == 0
    assert m("cartesia_stt_answers_total") == 2
    assert m("cartesia_stt_reconnects_total", cause="close 1006") == 1
    # One latency point per utterance, each of them the utterance's own.
    assert m("cartesia_stt_finalize_duration_seconds_count") == 2
    assert m("cartesia_stt_finalize_duration_seconds_sum") == pytest.approx(
        (first.latency or 0) + (second.latency or 0)
    )
    assert m("cartesia_stt_sessions_active") == 0
    assert m("cartesia_stt_session_duration_seconds_count", outcome="done") == 1
    assert m("cartesia_stt_errors_total", type="ConnectionClosedError") == 0
    assert value(registry, "cartesia_stt_audio_seconds_total", endpoint="turns") == 0
    # The turn endpoint's series exist at zero (rate() works before its first session).
    assert registry.get_sample_value("cartesia_stt_answers_total", {"endpoint": "turns"}) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("faults", "error_type", "opened"),
    [
        pytest.param(Faults(refuse={0: 401}), "AuthenticationError", False, id="refused"),
        pytest.param(
            Faults([Fault("error_event", connection=0, after_frames=1, code=500)]),
            "ServerError",
            True,
            id="error-event",
        ),
    ],
)
async def test_a_failed_session_counts_one_error_by_type_and_leaves_none_active(
    registry: CollectorRegistry, faults: Faults, error_type: str, opened: bool
) -> None:
    observer = PrometheusObserver(registry)
    with start_twin(ScriptedEngine(by_audio=ANSWERS), faults=faults) as twin:
        async with client(twin, observer, max_retries=0) as c:
            with pytest.raises(stt.CartesiaSTTError) as raised:
                async with manual(c, max_retries=0) as conn:
                    await conn.send_audio(FIRST)
                    await conn.finalize(timeout=5 * SLACK)
    assert type(raised.value).__name__ == error_type
    labels = {"endpoint": "manual"}
    assert value(registry, "cartesia_stt_errors_total", type=error_type, **labels) == 1
    assert value(registry, "cartesia_stt_sessions_active", **labels) == 0
    assert (
        value(registry, "cartesia_stt_session_duration_seconds_count", outcome="failed", **labels)
        == 1
    )
    assert value(registry, "cartesia_stt_answers_total", **labels) == 0
    # A refused handshake sent nothing; the other session had sent its first frames.
    audio = value(registry, "cartesia_stt_audio_seconds_total", **labels)
    assert (audio > 0) is opened


LOUD = (3000).to_bytes(2, "little") * 8000  # 0.5 s, speech to the twin's energy detector
PAUSE = bytes(48000)  # 1.5 s: a turn ends in it


@pytest.mark.asyncio
async def test_turns_count_answers_latency_and_audio_on_the_turn_endpoint(
    registry: CollectorRegistry,
) -> None:
    observer = PrometheusObserver(registry)
    engine = ScriptedEngine(turns=[Turn(updates=["Book"], end="Book a table."), Turn(end=" Two.")])
    with start_twin(engine) as twin:
        async with (
            client(twin, observer) as c,
            c.stt.auto_finalize.websocket(
                model="ink-2",
                encoding="pcm_s16le",
                sample_rate=16000,
                speed=None,
                fill_silence=False,
                close_timeout=5 * SLACK,
            ) as conn,
        ):
            await conn.send_audio(LOUD + PAUSE + LOUD + PAUSE)
        turns = conn.transcript.turns
        sent = (conn.stats.audio_bytes_sent - conn.stats.replayed_bytes) / BYTES_PER_S
    assert [t.text for t in turns] == ["Book a table.", " Two."]

    def t(name: str, **labels: str) -> float:
        return value(registry, name, endpoint="turns", **labels)

    assert sent == 2 * len(LOUD + PAUSE) / BYTES_PER_S
    assert t("cartesia_stt_audio_seconds_total") == pytest.approx(sent, abs=EXACT)
    assert t("cartesia_stt_answers_total") == 2
    latencies = [turn.latency for turn in turns if turn.latency is not None]
    assert t("cartesia_stt_turn_latency_seconds_count") == len(latencies) == 2
    assert t("cartesia_stt_turn_latency_seconds_sum") == pytest.approx(sum(latencies))
    assert t("cartesia_stt_sessions_active") == 0
    assert t("cartesia_stt_session_duration_seconds_count", outcome="done") == 1
    assert value(registry, "cartesia_stt_answers_total", endpoint="manual") == 0


@pytest.mark.asyncio
async def test_http_calls_by_route_and_status_and_the_files_audio_as_batch(
    registry: CollectorRegistry,
) -> None:
    observer = PrometheusObserver(registry)
    # Request 1 is answered 400 (not retried); request 2 is dropped unanswered.
    faults = Faults(http=[HTTPFault("status", request=1, status=400), HTTPFault("drop", request=2)])
    with start_twin(ScriptedEngine([["Hello."]] * 3), faults=faults) as twin:
        async with client(twin, observer, max_retries=0) as c:
            result = await c.stt.transcribe(
                model="ink-whisper", file=pcm(2.0), encoding="pcm_s16le", sample_rate=16000
            )
            with pytest.raises(stt.BadRequestError):
                await c.stt.transcribe(
                    model="ink-whisper", file=pcm(1.0), encoding="pcm_s16le", sample_rate=16000
                )
            with pytest.raises(stt.APIConnectionError):
                await c.stt.transcribe(
                    model="ink-whisper", file=pcm(1.0), encoding="pcm_s16le", sample_rate=16000
                )
            await c.access_token.create(grants={"stt": True}, expires_in=60)
    assert result.duration == 2.0
    # Only the transcribed file's audio counts (what the server said it transcribed).
    assert value(registry, "cartesia_stt_audio_seconds_total", endpoint="batch") == 2.0
    h = "cartesia_http_request_duration_seconds_count"
    assert value(registry, h, path="/stt", status="200") == 1
    assert value(registry, h, path="/stt", status="400") == 1
    assert value(registry, h, path="/stt", status="error") == 1
    assert value(registry, h, path="/access-token", status="200") == 1


def test_every_metric_has_the_specified_name_type_labels_and_buckets(
    registry: CollectorRegistry,
) -> None:
    observer = PrometheusObserver(registry)
    # The series that appear only with their first event.
    observer.reconnected(
        Reconnected(
            session=1,
            endpoint="manual",
            socket=2,
            request_id="b",
            previous_request_id="a",
            cause="close 1006",
            close_code=1006,
            downtime_seconds=0.1,
            attempts=1,
            replay_items=3,
            usage=Usage(),
        )
    )
    observer.session_closed(
        SessionClosed(
            session=1,
            endpoint="manual",
            model="ink-2",
            url="ws://127.0.0.1:1/stt/websocket",
            opened=False,
            outcome="failed",
            error_type="APIError",
            error="refused",
            request_ids=(),
            started_at=0.0,
            duration_seconds=0.5,
            answered=0,
            reconnects=0,
            events_received=0,
            usage=Usage(),
            total=Usage(),
        )
    )
    observer.request_finished(
        request_record(
            path="/stt",
            url="http://127.0.0.1:1/stt",
            status=None,
            error=OSError("refused"),
            request_id="",
            started_at=0.0,
            duration=0.2,
            attempts=1,
            audio_seconds=None,
        )
    )
    assert value(registry, "cartesia_stt_sessions_active", endpoint="manual") == 0

    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    expected = {
        "cartesia_stt_audio_seconds": ("counter", {"endpoint"}),
        "cartesia_stt_audio_replayed_seconds": ("counter", {"endpoint"}),
        "cartesia_stt_audio_dropped_seconds": ("counter", {"endpoint"}),
        "cartesia_stt_audio_blocked_seconds": ("counter", {"endpoint"}),
        "cartesia_stt_finalize_duration_seconds": ("histogram", {"endpoint"}),
        "cartesia_stt_turn_latency_seconds": ("histogram", {"endpoint"}),
        "cartesia_stt_answers": ("counter", {"endpoint"}),
        "cartesia_stt_reconnects": ("counter", {"endpoint", "cause"}),
        "cartesia_stt_errors": ("counter", {"endpoint", "type"}),
        "cartesia_stt_sessions_active": ("gauge", {"endpoint"}),
        "cartesia_stt_session_duration_seconds": ("histogram", {"endpoint", "outcome"}),
        "cartesia_http_request_duration_seconds": ("histogram", {"path", "status"}),
    }
    for name, (kind, labels) in expected.items():
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
    counters = [n for n, (kind, _) in expected.items() if kind == "counter"]
    assert {s.name for n in counters for s in families[n].samples} >= {
        f"{n}_total" for n in counters
    }

    def buckets(name: str) -> tuple[float, ...]:
        return tuple(
            float(s.labels["le"])
            for s in families[name].samples
            if s.name == f"{name}_bucket" and s.labels["le"] != "+Inf"
        )

    spec = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
    assert spec == LATENCY_BUCKETS
    assert buckets("cartesia_stt_finalize_duration_seconds") == spec
    assert buckets("cartesia_stt_turn_latency_seconds") == spec
    assert buckets("cartesia_stt_session_duration_seconds") == SESSION_BUCKETS
    assert SESSION_BUCKETS == (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


def test_one_observer_per_registry(registry: CollectorRegistry) -> None:
    first = PrometheusObserver(registry)
    with pytest.raises(stt.UsageError, match="one observer per registry"):
        PrometheusObserver(registry)
    # Nothing of the refused one was registered: the first one's metrics are all there.
    assert registry.get_sample_value("cartesia_stt_answers_total", {"endpoint": "manual"}) == 0
    PrometheusObserver(registry, namespace="other")  # another namespace is another family
    assert registry.get_sample_value("other_stt_answers_total", {"endpoint": "manual"}) == 0
    first.unregister()
    first.unregister()  # a second call does nothing
    assert registry.get_sample_value("cartesia_stt_answers_total", {"endpoint": "manual"}) is None
    PrometheusObserver(registry)  # the place is free again
    with pytest.raises(stt.UsageError, match="namespace"):
        PrometheusObserver(CollectorRegistry(), namespace="")


def test_without_prometheus_client_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails, as uninstalled
    with pytest.raises(stt.ConfigurationError, match=r"prometheus-client.*\[prometheus\]") as err:
        PrometheusObserver(CollectorRegistry())
    assert err.value.__suppress_context__  # the clear error alone, not the ImportError
