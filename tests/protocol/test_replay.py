"""Replay (session rules 6-8): the outbox's journal holds exactly the unanswered items, a rewind
puts them back at the head of the queue, and the rollback of their text is exact.

No sockets: :func:`write` takes items from the outbox as the writer would.
"""

from __future__ import annotations

import pytest

from cartesia_stt_async.protocol.audio import AudioFormat
from cartesia_stt_async.protocol.events import DoneEvent, FlushDoneEvent, TranscriptEvent
from cartesia_stt_async.protocol.outbox import ConnectionStats, Entry, Outbox
from cartesia_stt_async.protocol.pacing import backoff_delay
from cartesia_stt_async.protocol.session import Outgoing, Session, State

FMT = AudioFormat("pcm_s16le", 16000)  # 3200 bytes per 100 ms frame
A = b"\x01\x00" * 1600  # one frame
B = b"\x02\x00" * 1600
C = b"\x03\x00" * 800  # half a frame


def final(text: str) -> TranscriptEvent:
    return TranscriptEvent(is_final=True, text=text, request_id="r")


def write(session: Session, now: float = 0.0) -> list[tuple[Outgoing, bool]]:
    """Take everything queued, as the writer would: ``(item, is_replay)`` in order."""
    taken: list[tuple[Outgoing, bool]] = []
    while (entry := session.next_item(now)) is not None:
        taken.append((entry.item, session.replaying))
    return taken


def journal(session: Session) -> list[Outgoing]:
    return [e.item for e in session.outbox.journal_entries()]


def test_the_journal_holds_exactly_the_unanswered_items() -> None:
    s = Session(FMT)
    s.audio(A)
    first = s.finalize()
    s.audio(B + C)
    s.finalize()
    write(s)
    assert journal(s) == [A, "finalize", B, C, "finalize"]
    s.receive(final(" one"), 1.0)
    s.receive(FlushDoneEvent(request_id="r"), 1.0)  # first is answered and sealed
    assert first.complete and first.text == " one"
    assert journal(s) == [B, C, "finalize"]
    assert s.outbox.journal_bytes == len(B) + len(C)
    assert s.rewind() == 3
    assert write(s) == [(B, True), (C, True), ("finalize", True)]
    assert s.transcript.text == " one"  # sealed text survives a rewind


def test_items_never_written_follow_the_replay_in_order() -> None:
    s = Session(FMT)
    s.audio(A)
    s.finalize()
    write(s)
    s.audio(B)  # queued, not yet written when the socket drops
    s.close()
    assert s.rewind() == 2
    assert write(s) == [(A, True), ("finalize", True), (B, False), ("close", False)]
    assert s.stats.replayed_bytes == len(A)
    assert s.stats.audio_bytes_sent == 2 * len(A) + len(B)


def test_rewind_discards_finals_of_unanswered_utterances() -> None:
    s = Session(FMT)
    s.audio(A)
    ticket = s.finalize()
    write(s)
    s.receive(final(" half"), 1.0)  # a final chunk, then the socket drops before flush_done
    assert s.transcript.text == " half"
    assert s.rewind() == 2
    assert s.transcript.text == "" and ticket.text == "" and ticket.final_chunks == 0
    # The replay is written and answered in full on the new socket.
    assert write(s, 2.0) == [(A, True), ("finalize", True)]
    assert ticket.finalize_sent_at == 2.0
    assert ticket.audio_seconds == 0.1  # a replay is not counted twice
    s.receive(final(" half"), 3.0)
    s.receive(final(" and whole"), 3.0)
    assert s.receive(FlushDoneEvent(request_id="r2"), 3.0) == [ticket]
    assert s.transcript.text == ticket.text == " half and whole"
    assert s.journal_empty


def test_a_second_drop_during_a_replay_replays_in_the_same_order() -> None:
    s = Session(FMT)
    s.audio(A + B)
    s.finalize()
    write(s)
    s.rewind()
    taken = s.next_item(1.0)  # the new socket wrote A, then dropped too
    assert taken is not None and taken.item == A
    assert s.rewind() == 1
    assert write(s) == [(A, True), (B, True), ("finalize", True)]


def test_a_late_window_is_reopened_by_a_rewind() -> None:
    s = Session(FMT, late_final_grace=0.5, final_order="flush_first")
    s.audio(A)
    ticket = s.finalize()
    write(s)
    s.receive(FlushDoneEvent(request_id="r"), 1.0)  # flush first: the late window opens
    s.receive(final(" late"), 1.1)
    assert s.rewind() == 2
    assert s.next_deadline is None and s.pending_finalizes == 1
    assert s.transcript.text == ""
    write(s)
    s.receive(FlushDoneEvent(request_id="r"), 2.0)
    s.receive(final(" late"), 2.1)
    s.receive(final(" again"), 2.2)
    assert s.poll(3.0) == [ticket]
    assert ticket.text == s.transcript.text == " late again"


def test_close_is_replayed_and_done_clears_the_journal() -> None:
    s = Session(FMT)
    s.audio(A)
    s.close()
    write(s)
    assert s.has_unanswered
    assert s.rewind() == 2
    assert write(s) == [(A, True), ("close", True)]
    s.receive(final(" tail"), 1.0)
    s.receive(DoneEvent(request_id="r"), 1.0)
    assert s.state is State.DONE and s.journal_empty and s.outbox.journal_bytes == 0


def test_the_journal_is_bounded_and_says_when_a_replay_would_not_be_exact() -> None:
    s = Session(FMT, max_replay_bytes=2 * len(A), final_order="auto")
    for _ in range(3):
        s.audio(A)
    write(s)
    assert s.outbox.journal_bytes == 2 * len(A)
    assert not s.replay_complete
    s.finalize()
    write(s)
    s.receive(FlushDoneEvent(request_id="r"), 1.0)
    assert not s.replay_complete  # a silent utterance waits out its late window ...
    s.poll(2.0)
    assert s.replay_complete and s.journal_empty  # ... then it is sealed


def test_keepalive_is_one_silent_frame_only_when_nothing_is_held_back_or_queued() -> None:
    s = Session(AudioFormat("pcm_mulaw", 8000))
    assert s.keepalive()
    assert write(s) == [(b"\xff" * 800, False)]
    assert s.stats.keepalives_sent == 1
    s.audio(b"\x00" * 10)
    assert not s.keepalive()
    s.audio(b"\x00" * 790)
    assert not s.keepalive()  # a frame is queued: it goes first


def test_drop_oldest_keeps_commands_and_replays_and_counts_what_it_dropped() -> None:
    stats = ConnectionStats()
    box = Outbox(stats)
    box.append(Entry(A))
    box.append(Entry("finalize"))
    assert box.take() == Entry(A)
    assert not box.replayed
    box.rewind()  # A is a replay now: never dropped
    for frame in (B, B, C):
        box.append(Entry(frame, 1.0))
    assert stats.queued_bytes == 2 * len(B) + len(C)
    assert box.drop_oldest(len(B) + 1) == 2 * len(B)
    assert [e.item for e in box.queued_entries()] == [A, "finalize", C]
    assert (stats.queued_bytes, stats.queued_items, stats.dropped_audio_bytes) == (
        len(C),
        3,
        2 * len(B),
    )


def test_skipping_audio_keeps_frames_aligned_and_counts_the_drop() -> None:
    s = Session(FMT)
    s.audio(C)  # half a frame held back
    assert s.skip_audio(len(C)) == len(A)  # the held half and the caller's next half
    s.audio(B)
    assert write(s) == [(B, False)]
    assert s.stats.dropped_audio_bytes == len(A)


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [(1, 0.0, 0.375), (1, 1.0, 0.5), (2, 1.0, 1.0), (4, 1.0, 4.0), (5, 1.0, 8.0), (9, 1.0, 8.0)],
)
def test_backoff_is_capped_exponential_with_downward_jitter(
    attempt: int, jitter: float, expected: float
) -> None:
    assert backoff_delay(attempt, 0.5, 8.0, jitter) == pytest.approx(expected)
