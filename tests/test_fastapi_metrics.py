"""The FastAPI example's ``GET /metrics``, scraped after sessions relayed through the app.

The app's client reports to a ``PrometheusObserver`` on the app's own registry; these tests
relay turns through the app's WebSocket routes to the twin (as the browser does), then
scrape ``/metrics`` like Prometheus and check that the counters moved by what the sessions
did: the audio the twin received, to the frame; one answer and one latency point per turn;
a drop's reconnect by cause; a refused session's error by type; no session left active.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from cartesia_stt_async.testing import TwinFactory, TwinServer
from cartesia_stt_async.twin import Fault, Faults

from .conftest import SLACK
from .test_fastapi_app import (
    ANSWERS,
    BOOK,
    BYE,
    HELLO,
    LOUD,
    PAUSE,
    app_for,
    finals,
    frames,
    pytest_generate_tests,  # the relay_loop parameter: the app on each loop of --loops
    talk,
)

__all__ = ["pytest_generate_tests"]

BYTES_PER_S = 32000  # what the pages send: 16 kHz mono pcm_s16le
EXACT = 1e-9  # seconds: "to the frame" (a frame is milliseconds), with float sums' rounding

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: TestClient) -> Samples:
    """``GET /metrics``, parsed as Prometheus parses it: (sample name, labels) → value."""
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series not there (one that never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def relay_two_turns(http: TestClient) -> list[dict[str, Any]]:
    """Two turns through ``/ws/transcribe``: audio, finalize, audio, finalize, close."""
    with http.websocket_connect("/ws/transcribe") as ws:
        return talk(ws, HELLO, "finalize", BYE, "finalize", "close")


@pytest.mark.parametrize("drop", [False, True], ids=["clean", "drop"])
def test_metrics_after_two_relayed_turns(
    cartesia_twin_factory: TwinFactory, drop: bool, relay_loop: str
) -> None:
    # With a drop: the first socket is aborted (1006) after the first turn's first final;
    # the session reconnects and replays the turn, and the browser sees nothing of it.
    faults = Faults([Fault("abort", connection=0, after_events=1)] if drop else [])
    twin = cartesia_twin_factory(by_audio=ANSWERS, faults=faults)
    with app_for(twin, loop=relay_loop) as http:
        before = scrape(http)
        got = relay_two_turns(http)
        after = scrape(http)
    assert finals(got) == ["Hello", ", world.", " Bye."]
    assert got[-1] == {"closed": 1000}
    twin.wait_idle(5 * SLACK)
    assert len(twin.sessions) == (2 if drop else 1)

    def moved(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    manual = {"endpoint": "manual"}
    # The session's audio, counted once (the replay apart), to the frame.
    assert moved("cartesia_stt_audio_seconds_total", **manual) == pytest.approx(
        len(HELLO + BYE) / BYTES_PER_S, abs=EXACT
    )
    assert moved("cartesia_stt_answers_total", **manual) == 2
    assert moved("cartesia_stt_finalize_duration_seconds_count", **manual) == 2
    assert moved("cartesia_stt_finalize_duration_seconds_sum", **manual) > 0
    assert moved("cartesia_stt_reconnects_total", cause="close 1006", **manual) == int(drop)
    assert (moved("cartesia_stt_audio_replayed_seconds_total", **manual) > 0) is drop
    assert get(after, "cartesia_stt_sessions_active", **manual) == 0
    assert moved("cartesia_stt_session_duration_seconds_count", outcome="done", **manual) == 1
    assert not [key for key in after if key[0] == "cartesia_stt_errors_total"]
    # Nothing on the other endpoints.
    assert get(after, "cartesia_stt_answers_total", endpoint="turns") == 0
    assert get(after, "cartesia_stt_audio_seconds_total", endpoint="batch") == 0


@pytest.mark.cartesia_twin(turns=BOOK)
def test_metrics_after_two_hands_free_turns(cartesia_twin: TwinServer, relay_loop: str) -> None:
    audio = LOUD + PAUSE + LOUD + PAUSE
    with app_for(cartesia_twin, loop=relay_loop) as http:
        with http.websocket_connect("/ws/turns") as ws:
            got = talk(ws, *frames(audio), "close")
        after = scrape(http)
    ends = [m["text"] for m in got if m.get("type") == "turn.end"]
    assert ends == ["Book a table.", " For two, please."]
    cartesia_twin.wait_idle(5 * SLACK)
    (record,) = cartesia_twin.sessions
    turns = {"endpoint": "turns"}
    # What the twin received (the browser's audio, and any silence fill the SDK added).
    assert record.audio_bytes >= len(audio)
    assert get(after, "cartesia_stt_audio_seconds_total", **turns) == pytest.approx(
        record.audio_bytes / BYTES_PER_S, abs=EXACT
    )
    assert get(after, "cartesia_stt_answers_total", **turns) == 2
    assert get(after, "cartesia_stt_turn_latency_seconds_count", **turns) == 2
    assert get(after, "cartesia_stt_sessions_active", **turns) == 0
    assert get(after, "cartesia_stt_session_duration_seconds_count", outcome="done", **turns) == 1
    assert get(after, "cartesia_stt_answers_total", endpoint="manual") == 0


@pytest.mark.cartesia_twin(api_keys=["the-real-key"])
def test_a_refused_relay_session_counts_one_error_by_type(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    with app_for(cartesia_twin, loop=relay_loop) as http:
        with http.websocket_connect("/ws/transcribe") as ws:
            message = ws.receive_json()
        after = scrape(http)
    assert message["type"] == "error" and message["fatal"] is True
    manual = {"endpoint": "manual"}
    assert get(after, "cartesia_stt_errors_total", type="AuthenticationError", **manual) == 1
    assert get(after, "cartesia_stt_sessions_active", **manual) == 0
    assert (
        get(after, "cartesia_stt_session_duration_seconds_count", outcome="failed", **manual) == 1
    )
    assert get(after, "cartesia_stt_audio_seconds_total", **manual) == 0
