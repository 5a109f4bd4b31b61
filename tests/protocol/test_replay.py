"""The session's replay journal (rules 6-8): exact items to replay, exact rollback.

No sockets: items are "written" by calling ``sent`` as the writer would.
"""

from __future__ import annotations

import pytest

from cartesia_stt_async.protocol.audio import AudioFormat
from cartesia_stt_async.protocol.events import DoneEvent, FlushDoneEvent, TranscriptEvent
from cartesia_stt_async.protocol.pacing import backoff_delay
from cartesia_stt_async.protocol.session import Outgoing, Session, State

FMT = AudioFormat("pcm_s16le", 16000)  # 3200 bytes per 100 ms frame
A = b"\x01\x00" * 1600  # one frame
B = b"\x02\x00" * 1600
C = b"\x03\x00" * 800  # half a frame


def final(text: str) -> TranscriptEvent:
    return TranscriptEvent(is_final=True, text=text, request_id="r")


def write(session: Session, items: list[Outgoing], now: float = 0.0) -> list[Outgoing]:
    for item in items:
        session.sent(item, now)
    return items


def test_the_journal_holds_exactly_the_unanswered_items() -> None:
    s = Session(FMT)
    write(s, s.audio(A))
    items, first = s.finalize()
    write(s, items)
    write(s, s.audio(B + C))
    items, _ = s.finalize()
    write(s, items)
    assert s.rewind() == [A, "finalize", B, C, "finalize"]
    s.receive(final(" one"), 1.0)
    s.receive(FlushDoneEvent(request_id="r"), 1.0)  # first is answered and sealed
    assert first.complete and first.text == " one"
    assert s.rewind() == [B, C, "finalize"]
    assert s.journal_bytes == len(B) + len(C)
    assert s.transcript.text == " one"  # sealed text survives a rewind


def test_rewind_discards_finals_of_unanswered_utterances() -> None:
    s = Session(FMT)
    write(s, s.audio(A))
    items, ticket = s.finalize()
    write(s, items)
    s.receive(final(" half"), 1.0)  # a final chunk, then the socket drops before flush_done
    assert s.transcript.text == " half"
    replay = s.rewind()
    assert replay == [A, "finalize"]
    assert s.transcript.text == "" and ticket.text == "" and ticket.final_chunks == 0
    # The replay is written and answered in full on the new socket.
    for item in replay:
        s.sent(item, 2.0, replay=True)
    assert ticket.finalize_sent_at == 2.0
    s.receive(final(" half"), 3.0)
    s.receive(final(" and whole"), 3.0)
    assert s.receive(FlushDoneEvent(request_id="r2"), 3.0) == [ticket]
    assert s.transcript.text == ticket.text == " half and whole"
    assert s.journal_empty


def test_a_late_window_is_reopened_by_a_rewind() -> None:
    s = Session(FMT, late_final_grace=0.5)
    write(s, s.audio(A))
    items, ticket = s.finalize()
    write(s, items)
    s.receive(FlushDoneEvent(request_id="r"), 1.0)  # flush first: the late window opens
    s.receive(final(" late"), 1.1)
    assert s.rewind() == [A, "finalize"]
    assert s.next_deadline is None and s.pending_finalizes == 1
    assert s.transcript.text == ""
    s.receive(FlushDoneEvent(request_id="r"), 2.0)
    s.receive(final(" late"), 2.1)
    s.receive(final(" again"), 2.2)
    assert s.poll(3.0) == [ticket]
    assert ticket.text == s.transcript.text == " late again"


def test_close_is_replayed_and_done_clears_the_journal() -> None:
    s = Session(FMT)
    write(s, s.audio(A))
    write(s, s.close())
    assert s.has_unanswered
    assert s.rewind() == [A, "close"]
    s.receive(final(" tail"), 1.0)
    s.receive(DoneEvent(request_id="r"), 1.0)
    assert s.state is State.DONE and s.journal_empty and s.journal_bytes == 0


def test_the_journal_is_bounded_and_says_when_a_replay_would_not_be_exact() -> None:
    s = Session(FMT, max_replay_bytes=2 * len(A))
    for _ in range(3):
        write(s, s.audio(A))
    assert s.journal_bytes == 2 * len(A)
    assert not s.replay_complete
    items, _ = s.finalize()
    write(s, items)
    s.receive(FlushDoneEvent(request_id="r"), 1.0)
    assert not s.replay_complete  # a silent utterance waits out its late window ...
    s.poll(2.0)
    assert s.replay_complete and s.journal_empty  # ... then it is sealed


def test_keepalive_is_one_silent_frame_only_when_nothing_is_held_back() -> None:
    s = Session(AudioFormat("pcm_mulaw", 8000))
    assert s.keepalive() == [b"\xff" * 800]
    s.audio(b"\x00" * 10)
    assert s.keepalive() == []


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [(1, 0.0, 0.375), (1, 1.0, 0.5), (2, 1.0, 1.0), (4, 1.0, 4.0), (5, 1.0, 8.0), (9, 1.0, 8.0)],
)
def test_backoff_is_capped_exponential_with_downward_jitter(
    attempt: int, jitter: float, expected: float
) -> None:
    assert backoff_delay(attempt, 0.5, 8.0, jitter) == pytest.approx(expected)
