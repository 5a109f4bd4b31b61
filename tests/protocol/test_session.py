"""The session state machine: exact outgoing messages and utterance attribution."""

from __future__ import annotations

import pytest

from cartesia_stt_async.errors import ConnectionStateError, InvalidAudioError
from cartesia_stt_async.protocol.audio import AudioFormat
from cartesia_stt_async.protocol.events import (
    DoneEvent,
    ErrorEvent,
    Event,
    FlushDoneEvent,
    TranscriptEvent,
    UnknownEvent,
)
from cartesia_stt_async.protocol.session import FinalOrder, Session, State

FMT = AudioFormat("pcm_s16le", 16000)


def final(text: str, rid: str = "req") -> TranscriptEvent:
    return TranscriptEvent(is_final=True, text=text, request_id=rid)


def interim(text: str) -> TranscriptEvent:
    return TranscriptEvent(is_final=False, text=text, request_id="req")


FLUSH = FlushDoneEvent(request_id="req")


def feed(session: Session, events: list[Event], now: float = 1.0) -> list[str]:
    done = []
    for event in events:
        done += [u.text for u in session.receive(event, now)]
    return done


def test_audio_frames_then_finalize_flushes_the_partial_frame() -> None:
    s = Session(FMT)
    assert s.audio(b"\x00" * 3000) == []
    frames = s.audio(b"\x01" * 3600)
    assert frames == [b"\x00" * 3000 + b"\x01" * 200, b"\x01" * 3200]
    out, ticket = s.finalize()
    assert out == [b"\x01" * 200, "finalize"]
    assert ticket.index == 0
    assert ticket.audio_seconds == pytest.approx(6600 / 32000)
    assert s.audio_bytes == 6600
    out2, ticket2 = s.finalize()
    assert out2 == ["finalize"]
    assert ticket2.index == 1


def test_raw_audio_keeps_byte_order_and_checks_alignment() -> None:
    s = Session(FMT)
    s.audio(b"\x00" * 100)
    assert s.raw_audio(b"\x02" * 10) == [b"\x00" * 100, b"\x02" * 10]
    with pytest.raises(InvalidAudioError):
        s.raw_audio(b"\x02" * 3)
    with pytest.raises(InvalidAudioError):
        s.raw_audio("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidAudioError):
        s.audio([1, 2])  # type: ignore[arg-type]


def test_close_then_everything_is_refused() -> None:
    s = Session(FMT)
    s.audio(b"\x00" * 10)
    assert s.close() == [b"\x00" * 10, "close"]
    assert s.state is State.CLOSING
    for call in (lambda: s.audio(b"\x00\x00"), s.finalize, s.close, lambda: s.raw_audio(b"")):
        with pytest.raises(ConnectionStateError, match="after 'close'"):
            call()


def test_close_with_a_stray_byte_still_closes() -> None:
    s = Session(FMT)
    s.audio(b"\x00" * 3)
    with pytest.raises(InvalidAudioError):
        s.close()
    assert s.state is State.CLOSING


def test_transcript_is_verbatim_and_interim_is_a_view() -> None:
    s = Session(FMT)
    s.finalize()
    feed(s, [interim("hel"), interim("hello wor")])
    assert s.transcript.interim == "hello wor"
    assert s.transcript.text == ""
    feed(s, [final("Hello"), final(" world,"), final(""), final(" 日本 ")])
    assert s.transcript.interim == ""
    assert s.transcript.text == "Hello world, 日本 "
    assert s.transcript.final_chunks == 4


def test_finals_first_fifo_with_several_finalizes_outstanding() -> None:
    s = Session(FMT)
    tickets = [s.finalize()[1] for _ in range(3)]
    done = feed(s, [final("a"), final("b"), FLUSH, final(" c"), FLUSH, final(" d"), FLUSH])
    assert done == ["ab", " c", " d"]
    assert [t.complete for t in tickets] == [True] * 3
    assert s.order is FinalOrder.FINALS_FIRST
    assert [u.index for u in s.transcript.utterances] == [0, 1, 2]


def test_silent_utterance_completes_at_flush_done_once_order_is_known() -> None:
    s = Session(FMT)
    s.finalize()
    s.finalize()
    assert feed(s, [final("x"), FLUSH]) == ["x"]
    assert feed(s, [FLUSH]) == [""]  # no late window: the server sends finals first
    assert s.next_deadline is None


def test_flush_first_late_finals_belong_to_their_utterance() -> None:
    s = Session(FMT, late_final_grace=0.25)
    first = s.finalize()[1]
    second = s.finalize()[1]
    assert s.receive(FLUSH, 1.0) == []  # no text yet: wait for late finals
    assert s.next_deadline == 1.25
    assert s.receive(final("late"), 1.1) == []
    assert s.receive(final(" chunk"), 1.2) == []
    assert s.next_deadline == pytest.approx(1.45)  # re-armed by each late chunk
    assert s.order is FinalOrder.FLUSH_FIRST
    assert s.poll(1.3) == []
    assert s.poll(1.45) == [first]
    assert first.text == "late chunk"
    # The next flush_done also ends a late window early.
    s.receive(FLUSH, 2.0)
    s.receive(final("two"), 2.05)
    third = s.finalize()[1]
    assert s.receive(FLUSH, 2.1) == [second]
    assert second.text == "two"
    assert s.unfinished() == [third]


def test_done_completes_everything_including_unfinalized_audio() -> None:
    s = Session(FMT)
    s.finalize()
    s.audio(b"\x00" * 6400)
    s.close()
    done = feed(s, [final("one"), FLUSH, final(" tail"), DoneEvent(request_id="req")])
    assert done == ["one", " tail"]
    assert s.state is State.DONE
    assert s.pending_finalizes == 0


def test_done_with_unanswered_finalize_completes_it_without_latency() -> None:
    s = Session(FMT)
    ticket = s.finalize()[1]
    s.sent("finalize", 5.0)
    s.close()
    assert s.receive(DoneEvent(), 6.0) == [ticket]
    assert ticket.latency is None


def test_latency_uses_write_time() -> None:
    s = Session(FMT)
    first = s.finalize()[1]
    second = s.finalize()[1]
    s.sent(b"\x00\x00", 9.0)  # audio does not stamp
    s.sent("finalize", 10.0)
    s.sent("finalize", 10.5)
    s.receive(final("a"), 10.1)
    s.receive(FLUSH, 10.2)
    s.receive(final("b"), 10.7)
    s.receive(FLUSH, 10.8)
    assert first.latency == pytest.approx(0.2)
    assert second.latency == pytest.approx(0.3)


def test_error_event_fails_the_session() -> None:
    s = Session(FMT)
    err = ErrorEvent(message="bad", status_code=400, request_id="rid-1")
    s.receive(err, 1.0)
    assert s.state is State.FAILED
    assert s.error is err
    assert s.request_id == "rid-1"
    with pytest.raises(ConnectionStateError, match="error"):
        s.audio(b"\x00\x00")


def test_unmatched_flush_done_is_counted_and_unknown_events_ignored() -> None:
    s = Session(FMT)
    assert s.receive(FLUSH, 1.0) == []
    assert s.unmatched_flush_done == 1
    assert s.receive(UnknownEvent(type="x", data={"type": "x"}), 1.0) == []
    assert s.state is State.OPEN


def test_finals_without_finalize_go_to_the_open_utterance() -> None:
    s = Session(FMT)
    s.audio(b"\x00" * 3200)
    s.receive(final("auto"), 1.0)
    s.close()
    assert [u.text for u in s.receive(DoneEvent(), 2.0)] == ["auto"]
