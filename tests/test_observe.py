"""Issue 24: the observer hooks (``cartesia_stt_async.observe``) and the structured log fields,
driven by the real client against the real twin over loopback.

What an operator relies on: one record per answer, a reconnect recorded with its cause and both
request ids, usage that adds up to the audio sent to the frame, failures typed, HTTP calls timed
with their retries, every log record of a session carrying its ids, and an observer that
raises never breaking a session.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.observe import (
    Observer,
    RequestFinished,
    SessionClosed,
    SessionOpened,
    TurnEnded,
    UtteranceAnswered,
)
from cartesia_stt_async.twin import HTTPFault, ScriptedEngine, Turn, serve, start_twin
from cartesia_stt_async.twin.faults import Fault, Faults

from .conftest import (
    API_KEY,
    SLACK,
    KeepRecords,
    RecordingObserver,
    client_for,
    other_tasks,
    pcm,
    ws,
)
from .test_batch import wav

pytestmark = pytest.mark.both_loops

FRAME = 3200  # 100 ms of 16 kHz pcm_s16le
SPEECH = (3000).to_bytes(2, "little") * 8000  # 0.5 s the twin's detector calls speech


def session_records(rec: RecordingObserver) -> list[Any]:
    return [r for r in rec.records if not isinstance(r, RequestFinished)]


def audio_of(rec: RecordingObserver) -> float:
    return float(sum(r.usage.audio_seconds for r in session_records(rec) if hasattr(r, "usage")))


def utterance(k: int, frames: int) -> bytes:
    """Utterance k: ``frames`` whole frames of distinct content (the twin answers by content)."""
    return pcm(frames * 0.1, value=k + 1)


@pytest.mark.asyncio
async def test_a_session_with_a_drop_reports_each_answer_the_reconnect_and_usage() -> None:
    a, b = utterance(0, 7), utterance(1, 5)
    engine = ScriptedEngine([], by_audio={a: ["Hello", " world."], b: [" Again."]})
    rec = RecordingObserver()
    faults = Faults([Fault("abort", connection=0, after_frames=9)])
    async with serve(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin, observers=[rec])) as conn:
            await conn.send_audio(a)
            await conn.finalize(timeout=5 * SLACK)
            await conn.send_audio(b)
            await conn.finalize(timeout=5 * SLACK)
        ids = [s.request_id for s in twin.sessions]
    assert conn.transcript.text == "Hello world. Again."
    kinds = [type(r).__name__ for r in rec.records]
    assert kinds == [
        "SessionOpened",
        "UtteranceAnswered",
        "Reconnected",
        "UtteranceAnswered",
        "SessionClosed",
    ]
    opened, first, again, second, closed = rec.records
    assert opened.endpoint == "manual" and opened.model == "ink-2" and opened.attempts == 1
    assert opened.request_id == ids[0] and API_KEY not in opened.url
    assert (first.index, second.index) == (0, 1)
    assert first.utterance.text == "Hello world." and second.utterance.text == " Again."
    assert first.latency is not None and second.latency is not None
    assert first.request_id == ids[0] and second.request_id == ids[1]
    assert again.socket == 2 and again.cause == "close 1006" and again.close_code == 1006
    assert (again.previous_request_id, again.request_id) == (ids[0], ids[1])
    assert again.attempts == 1 and again.replay_items > 0
    assert closed.outcome == "done" and closed.error_type is None and closed.opened
    assert closed.request_ids == tuple(ids) and closed.reconnects == 1 and closed.answered == 2
    # Usage adds up to the audio sent, to the frame; the replay is counted apart.
    sent = (len(a) + len(b)) / 32000
    assert audio_of(rec) == pytest.approx(sent, abs=1e-9)
    assert closed.total.audio_seconds == pytest.approx(sent, abs=1e-9)
    replayed = sum(r.usage.replayed_seconds for r in rec.records if hasattr(r, "usage"))
    assert replayed == pytest.approx(conn.stats.replayed_bytes / 32000, abs=1e-9) and replayed > 0
    assert not other_tasks()


@pytest.mark.asyncio
async def test_turns_are_reported_with_their_latency() -> None:
    engine = ScriptedEngine(turns=[Turn(updates=["Hel"], end="Hello"), Turn(end=" again")])
    rec = RecordingObserver()
    async with serve(engine=engine) as twin:
        client = stt.AsyncCartesia(api_key="any", base_url=twin.base_url, observers=[rec])
        async with client.stt.auto_finalize.websocket(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            speed=None,
            close_timeout=5 * SLACK,
        ) as conn:
            for _ in range(2):
                await conn.send_audio(SPEECH + bytes(32000))  # speech, then a 1 s pause
            turns = aiter(conn.turns())
            got = [await anext(turns) for _ in range(2)]
    ended = rec.of(TurnEnded)
    assert [t.index for t in ended] == [0, 1] == [t.index for t in got]
    assert [t.turn.text for t in ended] == ["Hello", " again"]
    assert all(t.latency is not None and t.latency >= 0 for t in ended)
    assert all(t.audio_seconds >= 0 for t in ended)  # audio positions: unpaced, about 0
    (closed,) = rec.of(SessionClosed)
    assert closed.endpoint == "turns" and closed.outcome == "done" and closed.answered == 2
    assert audio_of(rec) == pytest.approx(conn.stats.audio_bytes_sent / 32000, abs=1e-9)


@pytest.mark.asyncio
async def test_a_refused_first_handshake_is_a_failed_session_without_a_socket() -> None:
    rec = RecordingObserver()
    async with serve(faults=Faults(refuse={0: 401})) as twin:
        with pytest.raises(stt.AuthenticationError):
            async with ws(client_for(twin, observers=[rec])):
                pass
    (closed,) = rec.records
    assert isinstance(closed, SessionClosed)
    assert not closed.opened and closed.outcome == "failed"
    assert closed.error_type == "AuthenticationError" and "401" in closed.error
    assert closed.request_ids == () and closed.total.audio_seconds == 0.0


@pytest.mark.asyncio
async def test_closing_early_and_failing_are_told_apart() -> None:
    rec = RecordingObserver()
    faults = Faults([Fault("error_event", connection=1, after_frames=2, code=500)])
    async with serve(engine=ScriptedEngine([]), faults=faults) as twin:
        client = client_for(twin, observers=[rec])
        async with ws(client) as conn:
            await conn.send_audio(pcm(0.1))
            await conn.close()  # the caller ends it before its end
        with pytest.raises(stt.APIError):
            async with ws(client, max_retries=0) as conn:
                await conn.send_audio(pcm(0.5))
                await conn.finalize(timeout=5 * SLACK)
    early, failed = rec.of(SessionClosed)
    assert (early.outcome, early.error_type) == ("closed", None)
    assert failed.outcome == "failed" and failed.error_type is not None
    assert failed.session == early.session + 1


@pytest.mark.asyncio
async def test_an_observer_that_raises_is_logged_once_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Observer):
        def utterance_answered(self, record: UtteranceAnswered) -> None:
            raise RuntimeError("observer bug")

    rec = RecordingObserver()
    engine = ScriptedEngine([["one."], ["two."], ["three."]])
    caplog.set_level(logging.WARNING, logger="cartesia_stt_async")
    async with (
        serve(engine=engine) as twin,
        ws(client_for(twin, observers=[Broken(), rec])) as conn,
    ):
        for _ in range(3):
            await conn.send_audio(pcm(0.2))
            await conn.finalize(timeout=5 * SLACK)
    assert conn.transcript.text == "one.two.three."
    assert len(rec.of(UtteranceAnswered)) == 3  # the next observer still hears every record
    warnings = [r for r in caplog.records if "observer Broken" in r.getMessage()]
    assert len(warnings) == 1 and "RuntimeError" in warnings[0].getMessage()
    (first,) = rec.of(SessionOpened)
    assert warnings[0].cartesia_session == first.session  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_duck_typed_observer_with_one_method_is_enough() -> None:
    seen: list[SessionClosed] = []

    class OnlyEnds:
        def session_closed(self, record: SessionClosed) -> None:
            seen.append(record)

    async with (
        serve(engine=ScriptedEngine([])) as twin,
        ws(client_for(twin, observers=[OnlyEnds()])) as conn,
    ):
        await conn.send_audio(pcm(0.3))
    assert [r.outcome for r in seen] == ["done"]
    assert seen[0].total.audio_seconds == pytest.approx(0.3, abs=1e-9)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("observers", "named"),
    [
        (Observer(), "a list of observers"),
        ([object()], "observers[0] (object) has none of the Observer methods"),
        (42, "a list of observers, got int"),
    ],
)
async def test_bad_observers_are_a_usage_error(observers: object, named: str) -> None:
    with pytest.raises(stt.UsageError, match=re.escape(named)):
        stt.AsyncCartesia(api_key="k", observers=observers)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_blocked_producer_and_dropped_audio_are_counted() -> None:
    rec = RecordingObserver()
    async with serve(engine=ScriptedEngine([])) as twin:
        client = client_for(twin, observers=[rec])
        # Real-time pacing and a 300 ms queue: 1.5 s of audio handed over at once blocks.
        async with ws(client, speed=4.0, max_buffered_ms=300) as conn:
            await conn.send_audio(pcm(1.5))
        blocked = conn.stats.blocked_seconds
        async with ws(client, speed=1.0, max_buffered_ms=300, buffer_policy="drop_oldest") as c2:
            await c2.send_audio(pcm(1.0))
        dropped = c2.stats.dropped_audio_bytes
    first, second = rec.of(SessionClosed)
    assert blocked > 0 and first.total.blocked_seconds == pytest.approx(blocked)
    assert dropped > 0 and second.total.dropped_seconds == pytest.approx(dropped / 32000)
    assert second.total.audio_seconds == pytest.approx(1.0 - dropped / 32000, abs=1e-9)


# -- HTTP ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_calls_are_timed_with_their_retries_and_status() -> None:
    rec = RecordingObserver()
    plan = Faults(
        http=[
            HTTPFault("status", request=1, status=503, retry_after="0.01"),
            HTTPFault("status", request=3, status=400),
        ]
    )
    async with (
        serve(engine=ScriptedEngine([["Hi."]] * 4), faults=plan) as twin,
        client_for(twin, observers=[rec]) as client,
    ):
        first = await client.stt.transcribe(file=wav(pcm(1.0)), model="ink-whisper")
        second = await client.stt.transcribe(file=wav(pcm(0.5)), model="ink-whisper")
        with pytest.raises(stt.BadRequestError):
            await client.stt.transcribe(file=wav(pcm(0.5)), model="ink-whisper")
    ok, retried, refused = rec.of(RequestFinished)
    assert (ok.path, ok.method, ok.status, ok.attempts, ok.error_type) == (
        "/stt",
        "POST",
        200,
        1,
        None,
    )
    assert ok.request_id == first.request_id and ok.audio_seconds == first.duration
    assert ok.server_address == "127.0.0.1" and ok.server_port == int(twin.base_url.rsplit(":")[-1])
    assert (retried.status, retried.attempts) == (
        200,
        2,
    ) and retried.request_id == second.request_id
    assert (refused.status, refused.error_type) == (400, "BadRequestError")
    assert refused.audio_seconds is None and refused.attempts == 1


# -- logs ---------------------------------------------------------------------------------------


@pytest.fixture
def sdk_records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the SDK's loggers (``cartesia_stt_async`` and ``.ws``) at DEBUG."""
    root = logging.getLogger("cartesia_stt_async")
    level = root.level
    keep = KeepRecords()
    root.setLevel(logging.DEBUG)
    root.addHandler(keep)
    try:
        yield keep.records
    finally:
        root.removeHandler(keep)
        root.setLevel(level)


@pytest.mark.asyncio
async def test_every_session_log_record_carries_the_session_ids(
    sdk_records: list[logging.LogRecord],
) -> None:
    a = utterance(0, 6)
    engine = ScriptedEngine([], by_audio={a: ["Hi."]})
    faults = Faults([Fault("abort", connection=0, after_frames=3)])
    rec = RecordingObserver()
    async with serve(engine=engine, faults=faults) as twin:
        client = client_for(twin, observers=[rec])
        async with ws(client) as conn:
            await conn.send_audio(a)
            await conn.finalize(timeout=5 * SLACK)
        async with ws(client) as other:
            await other.send_audio(pcm(0.1))
        ids = [s.request_id for s in twin.sessions]
    opened = rec.of(SessionOpened)
    ours = [r for r in sdk_records if r.name.startswith("cartesia_stt_async")]
    assert len(ours) > 20
    missing = [r.getMessage() for r in ours if not hasattr(r, "cartesia_session")]
    assert not missing, missing
    # (session, socket, request id, logger) of each record.
    fields = [
        (r.cartesia_session, r.cartesia_socket, r.cartesia_request_id, r.name)  # type: ignore[attr-defined]
        for r in ours
    ]
    first, second = ([f for f in fields if f[0] == o.session] for o in opened)
    assert {socket for _, socket, _, _ in first} == {1, 2}
    # Once known, the request id is the socket's own.
    for _, socket, request_id, _ in first:
        assert request_id in ("", ids[socket - 1])
    assert {f[2] for f in first} >= {ids[0], ids[1]} and {f[2] for f in second} >= {ids[2]}
    # websockets' own records (the handshake, frames) are among them, with the same fields.
    assert any(name == "cartesia_stt_async.ws" for *_, name in first)


@pytest.mark.asyncio
async def test_http_retry_records_name_the_route(sdk_records: list[logging.LogRecord]) -> None:
    plan = Faults(http=[HTTPFault("status", request=0, status=503, retry_after="0.01")])
    async with (
        serve(engine=ScriptedEngine([["Hi."]]), faults=plan) as twin,
        client_for(twin) as client,
    ):
        await client.stt.transcribe(file=wav(pcm(0.5)), model="ink-whisper")
    retries = [r for r in sdk_records if "retry" in r.getMessage()]
    assert retries and all(r.cartesia_path == "/stt" for r in retries)  # type: ignore[attr-defined]


# -- the blocking client ------------------------------------------------------------------------


def test_the_sync_client_reports_too() -> None:
    rec = RecordingObserver()
    with start_twin(ScriptedEngine([["Sync."]])) as twin:
        client = stt.Cartesia(api_key="k", base_url=twin.base_url, observers=[rec])
        with (
            client,
            client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
            ) as conn,
        ):
            conn.send_audio(pcm(0.2))
            assert conn.finalize().text == "Sync."
    kinds = [type(r).__name__ for r in rec.records]
    assert kinds == ["SessionOpened", "UtteranceAnswered", "SessionClosed"]
