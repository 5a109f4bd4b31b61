"""The session state machine: exact outgoing messages and utterance attribution.

The writer is simulated by :func:`out`, which takes everything queued in the outbox (as the
I/O layer does, one item at a time) and returns the items in wire order.

protocol.md §3 (commands are bare text frames), §4 (events), §10.1 and §11 (finals may arrive
before or after their ``flush_done``). Times are binary fractions where equality is exact.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field

import msgspec
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
    Word,
)
from cartesia_stt_async.protocol.session import (
    FinalOrder,
    FinalOrderOption,
    Outgoing,
    Session,
    State,
)
from cartesia_stt_async.protocol.transcript import Utterance

FMT = AudioFormat("pcm_s16le", 16000)  # 32000 bytes per second, 3200 per 100 ms frame


def final(text: str, rid: str = "req", words: bytes | None = None) -> TranscriptEvent:
    if words is None:
        return TranscriptEvent(is_final=True, text=text, request_id=rid)
    return TranscriptEvent(is_final=True, text=text, request_id=rid, words_raw=msgspec.Raw(words))


def interim(text: str) -> TranscriptEvent:
    return TranscriptEvent(is_final=False, text=text, request_id="req")


FLUSH = FlushDoneEvent(request_id="req")
DONE = DoneEvent(request_id="req")


def out(session: Session, now: float = 0.0) -> list[Outgoing]:
    """Take everything the outbox holds, as the writer would, and return it in order."""
    items: list[Outgoing] = []
    while (entry := session.next_item(now)) is not None:
        items.append(entry.item)
    return items


def audio(session: Session, chunk: object) -> list[Outgoing]:
    session.audio(chunk)  # type: ignore[arg-type]
    return out(session)


def raw(session: Session, data: object) -> list[Outgoing]:
    session.raw_audio(data)  # type: ignore[arg-type]
    return out(session)


def fin(session: Session) -> tuple[list[Outgoing], Utterance]:
    ticket = session.finalize()
    return out(session), ticket


def close(session: Session) -> list[Outgoing]:
    session.close()
    return out(session)


def feed(session: Session, events: list[Event], now: float = 1.0) -> list[Utterance]:
    done: list[Utterance] = []
    for event in events:
        done += session.receive(event, now)
    return done


def texts(utterances: list[Utterance]) -> list[str]:
    return [u.text for u in utterances]


def order(session: Session) -> FinalOrder:
    """The session's order (a call, so that mypy does not narrow it across receive())."""
    return session.order


# -- states --------------------------------------------------------------------------------------


def test_states_and_orders_are_int_enums() -> None:
    assert [int(s) for s in State] == [0, 1, 2, 3]
    assert [s.name for s in State] == ["OPEN", "CLOSING", "DONE", "FAILED"]
    assert [o.name for o in FinalOrder] == ["UNKNOWN", "FINALS_FIRST", "FLUSH_FIRST"]


def test_a_new_session() -> None:
    s = Session(FMT)
    assert s.state is State.OPEN
    assert order(s) is FinalOrder.FINALS_FIRST  # the current docs' order, unless told
    assert order(Session(FMT, final_order="flush_first")) is FinalOrder.FLUSH_FIRST
    assert order(Session(FMT, final_order="auto")) is FinalOrder.UNKNOWN
    assert s.frame_bytes == 3200
    assert s.request_id == ""
    assert s.stats.audio_bytes_sent == 0
    assert s.stats.unmatched_flush_done == 0
    assert s.pending_finalizes == 0
    assert s.next_deadline is None
    assert s.unfinished() == []
    assert s.transcript.text == ""
    assert s.late_final_grace == 0.25


@pytest.mark.parametrize(
    ("fmt", "frame_ms", "frame_bytes"),
    [
        (AudioFormat("pcm_s16le", 16000), 20, 640),
        (AudioFormat("pcm_mulaw", 8000), 100, 800),
        (AudioFormat("pcm_f32le", 44100), 100, 17640),
    ],
)
def test_frame_size_follows_the_format(fmt: AudioFormat, frame_ms: int, frame_bytes: int) -> None:
    s = Session(fmt, frame_ms=frame_ms)
    assert s.frame_bytes == frame_bytes
    assert audio(s, b"\x00" * (frame_bytes * 2 + fmt.sample_width)) == [b"\x00" * frame_bytes] * 2


# -- audio ---------------------------------------------------------------------------------------


def test_audio_frames_are_exact() -> None:
    s = Session(FMT)
    assert audio(s, b"\x00" * 3000) == []
    assert audio(s, b"\x01" * 3600) == [b"\x00" * 3000 + b"\x01" * 200, b"\x01" * 3200]
    assert audio(s, b"") == []
    assert audio(s, bytearray(b"\x02" * 3200)) == [b"\x01" * 200 + b"\x02" * 3000]
    assert audio(s, memoryview(b"\x03" * 3400)) == [b"\x02" * 200 + b"\x03" * 3000]
    assert s.stats.audio_bytes_sent == 4 * 3200


@pytest.mark.parametrize("seed", range(10))
def test_audio_random_chunking_reproduces_the_stream(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(2 * rng.randrange(0, 40000))
    s = Session(FMT)
    out: list[Outgoing] = []
    pos = 0
    while pos < len(data):
        n = rng.randrange(0, 7000)
        out += audio(s, data[pos : pos + n])
        pos += n
    assert all(not isinstance(f, str) and len(f) == 3200 for f in out)
    items, _ = fin(s)
    assert items[-1] == "finalize"
    rest = items[:-1]
    assert len(rest) == (1 if len(data) % 3200 else 0)
    assert b"".join(bytes(f) for f in out + rest if not isinstance(f, str)) == data
    assert s.stats.audio_bytes_sent == len(data)


@pytest.mark.parametrize("bad", ["text", 5, None, [1, 2], array("h", [1])])
def test_audio_must_be_bytes_like(bad: object) -> None:
    s = Session(FMT)
    with pytest.raises(InvalidAudioError, match=f"got {type(bad).__name__}"):
        audio(s, bad)
    with pytest.raises(InvalidAudioError, match=f"got {type(bad).__name__}"):
        raw(s, bad)
    assert s.state is State.OPEN


def test_audio_from_a_typed_memoryview_is_framed_by_bytes() -> None:
    s = Session(FMT)
    frames = audio(s, memoryview(array("h", [7] * 3200)))
    assert [len(f) for f in frames] == [3200, 3200]


def test_raw_audio_from_a_typed_memoryview_is_checked_by_bytes() -> None:
    s = Session(FMT)
    assert raw(s, memoryview(array("h", [1, 2, 3]))) == [array("h", [1, 2, 3]).tobytes()]
    assert s.stats.audio_bytes_sent == 6


def test_raw_audio_flushes_held_audio_first_and_is_sent_whole() -> None:
    s = Session(FMT)
    assert audio(s, b"\x00" * 100) == []
    big = b"\x02" * 10000  # larger than a frame: raw audio is never reframed
    assert raw(s, big) == [b"\x00" * 100, big]
    assert raw(s, b"") == []
    assert raw(s, bytearray(b"\x03\x03")) == [b"\x03\x03"]
    assert s.stats.audio_bytes_sent == 100 + 10000 + 2


def test_raw_audio_checks_alignment() -> None:
    s = Session(AudioFormat("pcm_s32le", 16000))
    audio(s, b"\x00" * 4)
    with pytest.raises(InvalidAudioError, match="6 bytes is not a whole number"):
        raw(s, b"\x02" * 6)
    # The held-back audio was not flushed by the refused call.
    assert raw(s, b"\x01" * 4) == [b"\x00" * 4, b"\x01" * 4]


def test_audio_seconds_are_accounted_to_the_open_utterance() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 4000)  # 3200 sent now, 800 held back
    raw(s, b"\x00" * 4000)
    items, first = fin(s)
    assert items == ["finalize"]  # raw_audio already flushed the held-back bytes
    assert first.audio_seconds == 0.25
    audio(s, b"\x00" * 16000)
    _, second = fin(s)
    assert second.audio_seconds == 0.5
    _, third = fin(s)
    assert third.audio_seconds == 0.0
    assert s.stats.audio_bytes_sent == 24000


# -- finalize and close --------------------------------------------------------------------------


def test_finalize_flushes_the_partial_frame_then_finalize() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 3000)
    audio(s, b"\x01" * 3600)
    sent, ticket = fin(s)
    assert sent == [b"\x01" * 200, "finalize"]
    assert ticket.index == 0
    assert ticket.complete is False
    assert ticket.audio_seconds == pytest.approx(6600 / 32000, abs=1e-12)
    assert s.pending_finalizes == 1
    sent2, ticket2 = fin(s)
    assert sent2 == ["finalize"]
    assert ticket2.index == 1
    assert ticket2 is not ticket
    assert s.unfinished() == [ticket, ticket2]


def test_finalize_with_a_stray_byte_refuses_and_drops_it() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 3)
    with pytest.raises(InvalidAudioError, match="1 stray byte"):
        fin(s)
    assert s.state is State.OPEN
    assert s.pending_finalizes == 0
    sent, ticket = fin(s)
    assert sent == ["finalize"]
    assert ticket.index == 0


def test_close_flushes_then_close() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 3210)
    assert close(s) == [b"\x00" * 10, "close"]
    assert s.state is State.CLOSING


def test_close_without_held_audio() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 3200)
    assert close(s) == ["close"]


def test_close_after_a_finalize_keeps_the_ticket_pending() -> None:
    s = Session(FMT)
    _, ticket = fin(s)
    assert close(s) == ["close"]
    assert s.unfinished() == [ticket]


def test_sends_after_close_raise_connection_state_error() -> None:
    s = Session(FMT)
    close(s)
    with pytest.raises(ConnectionStateError, match="cannot send audio after 'close' was sent"):
        audio(s, b"\x00\x00")
    with pytest.raises(ConnectionStateError, match="cannot send audio after 'close' was sent"):
        raw(s, b"")
    with pytest.raises(ConnectionStateError, match="cannot finalize after 'close' was sent"):
        fin(s)
    with pytest.raises(ConnectionStateError, match="cannot close after 'close' was sent"):
        close(s)


def test_close_with_a_stray_byte_raises_but_the_session_is_closing() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 3)
    with pytest.raises(InvalidAudioError):
        close(s)
    assert s.state is State.CLOSING
    with pytest.raises(ConnectionStateError):
        close(s)


# -- transcript ----------------------------------------------------------------------------------


def test_finals_are_concatenated_verbatim() -> None:
    s = Session(FMT)
    fin(s)
    feed(s, [final("This is a"), final(" single sentence."), final(""), final(" 日本 🙂 ")])
    feed(s, [final("Insert"), final("ing spaces ...")])
    assert s.transcript.text == "This is a single sentence. 日本 🙂 Inserting spaces ..."
    assert s.transcript.final_chunks == 6


def test_interim_replaces_the_view_and_a_final_clears_it() -> None:
    s = Session(FMT)
    fin(s)
    feed(s, [interim("hel")])
    assert s.transcript.interim == "hel"
    feed(s, [interim("hello wor")])
    assert s.transcript.interim == "hello wor"
    assert s.transcript.text == ""
    feed(s, [final("Hello world.")])
    assert s.transcript.interim == ""
    feed(s, [interim(" Ignore this")])
    assert s.transcript.interim == " Ignore this"
    feed(s, [final("")])  # even an empty final clears the view
    assert s.transcript.interim == ""
    assert s.transcript.text == "Hello world."


def test_interims_are_never_attributed() -> None:
    s = Session(FMT)
    _, ticket = fin(s)
    assert feed(s, [interim("a"), final("b"), interim("c"), FLUSH]) == [ticket]
    assert ticket.text == "b"
    assert ticket.final_chunks == 1


def test_words_of_final_chunks_are_collected() -> None:
    s = Session(FMT)
    _, ticket = fin(s)
    feed(
        s,
        [
            final("a", words=b'[{"word":"a","start":0.0,"end":0.25}]'),
            TranscriptEvent(is_final=False, text="zz"),
            final(" b", words=b'[{"words":["b"],"start":[0.25],"end":[0.5]}]'),
            final(" c"),
            FLUSH,
        ],
    )
    assert ticket.words == [Word("a", 0.0, 0.25), Word("b", 0.25, 0.5)]


# -- finals first (current docs, the twin's default) ---------------------------------------------


def test_finals_first_completes_each_utterance_at_its_flush_done() -> None:
    s = Session(FMT)
    _, first = fin(s)
    assert s.receive(final("Hello"), 1.0) == []
    assert s.receive(final(" world."), 1.0) == []
    assert first.complete is False
    assert s.receive(FLUSH, 1.0) == [first]
    assert first.complete is True
    assert first.text == "Hello world."
    assert first.final_chunks == 2
    assert first.flushed_at == 1.0
    assert order(s) is FinalOrder.FINALS_FIRST
    assert s.next_deadline is None
    _, second = fin(s)
    assert s.receive(final(" Again."), 2.0) == []
    assert s.receive(FLUSH, 2.0) == [second]
    assert second.text == " Again."
    assert s.transcript.utterances == [first, second]


def test_fifo_matching_with_several_finalizes_outstanding() -> None:
    s = Session(FMT)
    tickets = [fin(s)[1] for _ in range(4)]
    assert s.pending_finalizes == 4
    done = feed(
        s,
        [final("a"), final("b"), FLUSH, final(" c"), FLUSH, final(" d"), FLUSH, final(" e"), FLUSH],
    )
    assert done == tickets
    assert texts(tickets) == ["ab", " c", " d", " e"]
    assert [u.index for u in s.transcript.utterances] == [0, 1, 2, 3]
    assert s.pending_finalizes == 0


def test_silent_utterance_after_finals_first_is_known_completes_immediately() -> None:
    s = Session(FMT)
    _, first = fin(s)
    _, silent = fin(s)
    _, third = fin(s)
    assert feed(s, [final("x"), FLUSH]) == [first]
    assert order(s) is FinalOrder.FINALS_FIRST
    assert s.receive(FLUSH, 2.0) == [silent]
    assert silent.text == ""
    assert silent.complete is True
    assert s.next_deadline is None
    assert feed(s, [final(" y"), FLUSH]) == [third]
    assert third.text == " y"


# -- auto: flush first (older docs) learned from the events ---------------------------------------


def test_flush_first_late_finals_complete_on_poll_after_the_grace() -> None:
    s = Session(FMT, late_final_grace=0.25, final_order="auto")
    _, first = fin(s)
    assert s.receive(FLUSH, 1.0) == []  # no text yet: wait for late finals
    assert order(s) is FinalOrder.UNKNOWN
    assert s.next_deadline == 1.25
    assert s.unfinished() == [first]
    assert s.poll(1.125) == []
    assert s.receive(final("late"), 1.125) == []
    assert order(s) is FinalOrder.FLUSH_FIRST
    assert s.next_deadline == 1.375  # re-armed by the late chunk
    assert s.receive(interim(" ch"), 1.25) == []
    assert s.next_deadline == 1.375  # interims do not re-arm
    assert s.receive(final(" chunk"), 1.25) == []
    assert s.next_deadline == 1.5
    assert s.poll(1.375) == []
    assert first.complete is False
    assert s.poll(1.5) == [first]  # exactly at the deadline
    assert first.complete is True
    assert first.text == "late chunk"
    assert first.flushed_at == 1.0
    assert s.next_deadline is None
    assert s.poll(10.0) == []
    assert s.transcript.utterances == [first]


def test_flush_first_next_flush_done_ends_the_window_early() -> None:
    s = Session(FMT, final_order="auto")
    _, first = fin(s)
    _, second = fin(s)
    assert s.receive(FLUSH, 1.0) == []
    assert s.receive(final("one"), 1.0) == []
    assert s.receive(FLUSH, 1.0625) == [first]
    assert first.text == "one"
    assert s.receive(final(" two"), 1.125) == []
    assert s.unfinished() == [second]
    _, third = fin(s)
    assert s.receive(FLUSH, 1.1875) == [second]
    assert second.text == " two"
    assert s.unfinished() == [third]
    assert s.next_deadline == 1.4375
    assert s.poll(1.4375) == [third]
    assert third.text == ""


def test_flush_first_with_several_finalizes_outstanding() -> None:
    s = Session(FMT, final_order="auto")
    tickets = [fin(s)[1] for _ in range(4)]
    done = feed(
        s,
        [
            FLUSH,
            final("a"),
            final("b"),
            FLUSH,  # ends the first window
            # the second finalize was silent
            FLUSH,
            final(" c"),
            FLUSH,
            final(" d"),
        ],
    )
    assert done == tickets[:3]
    assert s.poll(1.0 + 0.25) == [tickets[3]]
    assert texts(tickets) == ["ab", "", " c", " d"]
    assert order(s) is FinalOrder.FLUSH_FIRST


def test_flush_first_silent_utterance_waits_for_the_grace() -> None:
    s = Session(FMT, late_final_grace=0.5, final_order="auto")
    _, ticket = fin(s)
    assert s.receive(FLUSH, 2.0) == []
    assert s.next_deadline == 2.5
    assert s.poll(2.25) == []
    assert s.poll(2.5) == [ticket]
    assert ticket.text == ""
    assert order(s) is FinalOrder.UNKNOWN  # nothing was learned


def test_a_final_after_the_window_ran_out_is_not_a_late_final() -> None:
    s = Session(FMT, late_final_grace=0.25, final_order="auto")
    _, first = fin(s)
    _, second = fin(s)
    assert s.receive(FLUSH, 1.0) == []
    assert s.next_deadline == 1.25
    # 1.5 s > 1.25: the window has ended; this chunk answers the second finalize.
    assert s.receive(final("second"), 2.5) == [first]
    assert first.text == ""
    assert feed(s, [FLUSH], now=2.5) == [second]
    assert second.text == "second"


# -- transcript independence from attribution ----------------------------------------------------


@dataclass
class Script:
    """One utterance as the server answers it."""

    finals: list[str]
    interims: list[str] = field(default_factory=list)


def random_scripts(rng: random.Random, n: int, first_has_text: bool) -> list[Script]:
    pieces = ["", " ", "Hi", " there", "日本", " 🙂", "ing", " a b ", ".", " ok?"]
    scripts = []
    for i in range(n):
        k = rng.randrange(1 if (i == 0 and first_has_text) else 0, 4)
        finals = [rng.choice(pieces) for _ in range(k)]
        interims = [rng.choice(pieces) for _ in range(rng.randrange(0, 3))]
        scripts.append(Script(finals, interims))
    return scripts


def server_events(scripts: list[Script], finals_first: bool) -> list[Event]:
    events: list[Event] = []
    for script in scripts:
        answer: list[Event] = [interim(t) for t in script.interims]
        answer += [final(t) for t in script.finals]
        events += [*answer, FLUSH] if finals_first else [FLUSH, *answer]
    return events


@pytest.mark.parametrize("learn", [False, True], ids=["told", "auto"])
@pytest.mark.parametrize("finals_first", [True, False], ids=["finals-first", "flush-first"])
@pytest.mark.parametrize("upfront", [True, False], ids=["all-outstanding", "one-at-a-time"])
@pytest.mark.parametrize("seed", range(25))
def test_attribution_in_either_order(
    seed: int, upfront: bool, finals_first: bool, learn: bool
) -> None:
    rng = random.Random(seed)
    scripts = random_scripts(rng, rng.randrange(1, 7), first_has_text=True)
    told: FinalOrderOption = "finals_first" if finals_first else "flush_first"
    s = Session(FMT, final_order="auto" if learn else told)
    completed: list[Utterance] = []
    tickets: list[Utterance] = []
    if upfront:
        tickets = [fin(s)[1] for _ in scripts]
        completed += feed(s, server_events(scripts, finals_first))
    else:
        for script in scripts:
            tickets.append(fin(s)[1])
            completed += feed(s, server_events([script], finals_first))
    completed += s.poll(1.0 + s.late_final_grace)
    assert completed == tickets
    assert texts(tickets) == ["".join(sc.finals) for sc in scripts]
    assert s.transcript.text == "".join("".join(sc.finals) for sc in scripts)
    if finals_first:
        assert order(s) is FinalOrder.FINALS_FIRST
    elif learn and upfront:
        # Pipelined finalizes never prove flush-first (rule 4): it may stay unknown.
        assert order(s) in (FinalOrder.UNKNOWN, FinalOrder.FLUSH_FIRST)
    else:
        assert order(s) is FinalOrder.FLUSH_FIRST


@pytest.mark.parametrize("seed", range(40))
def test_transcript_text_never_depends_on_attribution(seed: int) -> None:
    rng = random.Random(seed)
    scripts = random_scripts(rng, rng.randrange(0, 6), first_has_text=False)
    # A hostile interleaving: finals, interims and flush_dones in any order, polls in between.
    s = Session(FMT)
    for _ in scripts:
        fin(s)
    events: list[Event] = [final(t) for sc in scripts for t in sc.finals]
    events += [interim(t) for sc in scripts for t in sc.interims]
    events += [FLUSH] * (len(scripts) + rng.randrange(0, 2))
    rng.shuffle(events)
    now = 0.0
    completed: list[Utterance] = []
    for event in events:
        now += rng.choice([0.0, 0.125, 0.5])
        completed += s.poll(now)
        completed += s.receive(event, now)
    if rng.random() < 0.5:
        audio(s, b"\x00" * 6400)
        completed += s.receive(final(" tail"), now)
    close(s)
    completed += s.receive(DONE, now)
    finals = [e.text for e in events if isinstance(e, TranscriptEvent) and e.is_final]
    expected = "".join(finals) + (" tail" if s.stats.audio_bytes_sent else "")
    assert s.transcript.text == expected
    assert "".join(u.text for u in s.transcript.utterances) == expected
    assert completed == s.transcript.utterances
    indices = [u.index for u in completed]
    assert indices == sorted(set(indices))
    assert all(u.complete for u in completed)
    assert s.unfinished() == []
    assert s.state is State.DONE


# -- done ----------------------------------------------------------------------------------------


def test_done_completes_everything() -> None:
    s = Session(FMT, final_order="flush_first")
    _, late = fin(s)
    _, pending = fin(s)
    audio(s, b"\x00" * 8000)
    close(s)
    assert s.receive(FLUSH, 1.0) == []  # the first is in its late window
    assert s.receive(final("one"), 1.0) == []
    done = s.receive(DONE, 1.0625)
    assert len(done) == 3
    assert done[:2] == [late, pending]
    assert texts(done) == ["one", "", ""]
    assert done[2].index == 2
    assert done[2].audio_seconds == 0.25  # the audio sent after the last finalize
    assert all(u.complete for u in done)
    assert s.state is State.DONE
    assert s.pending_finalizes == 0
    assert s.unfinished() == []
    assert s.next_deadline is None


def test_done_seals_finals_without_a_finalize() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 3200)
    s.receive(final("auto"), 1.0)
    close(s)
    assert texts(s.receive(DONE, 2.0)) == ["auto"]


def test_done_does_not_invent_an_empty_utterance() -> None:
    s = Session(FMT)
    _, ticket = fin(s)
    close(s)
    assert s.receive(DONE, 1.0) == [ticket]
    assert len(s.transcript.utterances) == 1


def test_done_without_close_ends_the_session() -> None:
    s = Session(FMT)
    assert s.receive(DONE, 1.0) == []
    assert s.state is State.DONE
    with pytest.raises(ConnectionStateError, match="cannot send audio after the session ended"):
        audio(s, b"\x00\x00")
    with pytest.raises(ConnectionStateError, match="cannot finalize after the session ended"):
        fin(s)


def test_finals_without_finalize_belong_to_the_next_ticket() -> None:
    s = Session(FMT)
    audio(s, b"\x00" * 3200)
    assert s.receive(final("auto"), 1.0) == []
    _, ticket = fin(s)
    assert ticket.text == "auto"
    assert s.receive(FLUSH, 1.0) == [ticket]


# -- errors --------------------------------------------------------------------------------------


def test_error_event_fails_the_session() -> None:
    s = Session(FMT)
    _, ticket = fin(s)
    err = ErrorEvent(message="bad", status_code=400, request_id="rid-1")
    assert s.receive(err, 1.0) == []
    assert s.state is State.FAILED
    assert s.request_id == "rid-1"
    assert s.unfinished() == [ticket]
    for call in (lambda: s.audio(b"\x00\x00"), s.finalize, s.close):
        with pytest.raises(ConnectionStateError, match="after the server reported an error"):
            call()


def test_error_while_closing_fails_the_session() -> None:
    s = Session(FMT)
    close(s)
    s.receive(ErrorEvent(message="x"), 1.0)
    assert s.state is State.FAILED


def test_error_after_done_leaves_done_standing() -> None:
    s = Session(FMT)
    close(s)
    s.receive(DONE, 1.0)
    err = ErrorEvent(message="late")
    s.receive(err, 1.0)
    assert s.state is State.DONE


def test_unmatched_flush_done_is_counted_not_raised() -> None:
    s = Session(FMT)
    assert s.receive(FLUSH, 1.0) == []
    assert s.receive(FLUSH, 1.0) == []
    assert s.stats.unmatched_flush_done == 2
    assert s.state is State.OPEN
    _, ticket = fin(s)
    assert feed(s, [final("x"), FLUSH, FLUSH]) == [ticket]
    assert s.stats.unmatched_flush_done == 3


def test_unmatched_flush_done_still_ends_a_late_window() -> None:
    s = Session(FMT, final_order="flush_first")
    _, ticket = fin(s)
    s.receive(FLUSH, 1.0)
    assert s.receive(FLUSH, 1.0625) == [ticket]
    assert s.stats.unmatched_flush_done == 1


def test_unknown_events_are_ignored() -> None:
    s = Session(FMT)
    _, ticket = fin(s)
    event = UnknownEvent(type="speech_started", data={"type": "speech_started"})
    assert s.receive(event, 1.0) == []
    assert s.state is State.OPEN
    assert s.unfinished() == [ticket]


# -- latency and request id ----------------------------------------------------------------------


def test_latency_is_flushed_at_minus_finalize_sent_at() -> None:
    s = Session(FMT)
    s.audio(b"\x00\x00")
    first = s.finalize()
    second = s.finalize()
    assert first.latency is None
    s.next_item(9.0)  # audio does not stamp
    assert (first.finalize_sent_at, second.finalize_sent_at) == (None, None)
    s.next_item(10.0)
    s.next_item(10.5)
    assert (first.finalize_sent_at, second.finalize_sent_at) == (10.0, 10.5)
    s.receive(final("a"), 10.125)
    s.receive(FLUSH, 10.25)
    s.receive(final("b"), 10.625)
    s.receive(FLUSH, 10.875)
    assert first.latency == 0.25
    assert second.latency == 0.375
    assert s.next_item(11.0) is None  # nothing left to write


def test_latency_is_none_without_a_flush_done() -> None:
    s = Session(FMT)
    ticket = s.finalize()
    s.next_item(5.0)
    s.close()
    assert s.receive(DONE, 6.0) == [ticket]
    assert ticket.flushed_at is None
    assert ticket.latency is None


def test_latency_is_none_when_the_answer_came_before_the_write() -> None:
    s = Session(FMT)
    first = s.finalize()
    second = s.finalize()
    s.receive(final("a"), 1.0)
    s.receive(FLUSH, 1.0)  # a server cannot do this; the session copes all the same
    s.next_item(2.0)
    assert first.finalize_sent_at is None  # written after its answer: no latency
    s.next_item(2.0)
    s.receive(final("b"), 2.0)
    s.receive(FLUSH, 2.5)
    assert first.latency is None
    assert second.latency == 0.5


def test_request_id_is_captured_from_the_first_event_that_has_one() -> None:
    s = Session(FMT)
    _, ticket = fin(s)
    s.receive(TranscriptEvent(is_final=False, text="", request_id=""), 1.0)
    assert s.request_id == ""
    s.receive(UnknownEvent(type="x", data={"type": "x", "request_id": "rid-9"}), 1.0)
    assert s.request_id == "rid-9"
    s.receive(final("a", rid="other"), 1.0)
    assert s.request_id == "rid-9"  # the first one sticks
    s.receive(FLUSH, 1.0)
    assert ticket.request_id == "other"  # a chunk's own id wins for its utterance


def test_utterance_request_id_falls_back_to_the_session() -> None:
    s = Session(FMT, final_order="flush_first")
    _, ticket = fin(s)
    s.receive(FlushDoneEvent(request_id="rid-1"), 1.0)
    s.receive(final("x", rid=""), 1.0)
    assert s.poll(2.0) == [ticket]
    assert ticket.request_id == "rid-1"


# -- the order choice (rule 4) -------------------------------------------------------------------


def test_finals_first_completes_a_silent_utterance_at_its_flush_done() -> None:
    s = Session(FMT)  # the default
    _, silent = fin(s)
    _, second = fin(s)
    assert s.receive(FLUSH, 1.0) == [silent]  # no late window, whatever the text
    assert s.next_deadline is None
    assert feed(s, [final(" two"), FLUSH]) == [second]
    assert (silent.text, second.text) == ("", " two")


def test_flush_first_keeps_a_window_even_after_early_finals() -> None:
    s = Session(FMT, final_order="flush_first", late_final_grace=0.25)
    _, first = fin(s)
    assert feed(s, [final("a"), FLUSH], now=1.0) == []
    assert s.receive(final("b"), 1.125) == []
    assert s.poll(1.375) == [first]
    assert first.text == "ab"
    assert order(s) is FinalOrder.FLUSH_FIRST


def test_a_late_window_never_ends_by_time_while_close_is_outstanding() -> None:
    s = Session(FMT, final_order="flush_first", late_final_grace=0.25)
    s.audio(b"\x00" * 3200)
    _, first = fin(s)
    s.audio(b"\x00" * 3200)
    close(s)  # the tail is answered on close: its final may land in the window
    assert s.receive(FLUSH, 1.0) == []
    assert s.receive(final(" one"), 1.0) == []
    assert s.next_deadline is None
    assert s.poll(100.0) == []  # still open: a drop now replays it with the tail
    assert s.receive(final(" tail"), 100.0) == []
    first_done, tail = s.receive(DONE, 100.0)  # the tail's utterance is sealed too
    assert first_done is first and first.text == " one tail" and tail.index == 1
    assert s.transcript.text == " one tail"


@pytest.mark.parametrize("pipelined", [True, False])
def test_auto_learns_flush_first_only_from_unambiguous_evidence(pipelined: bool) -> None:
    s = Session(FMT, final_order="auto")
    fin(s)  # a silent utterance
    if pipelined:
        fin(s)  # another finalize outstanding: a final could be its answer (finals first)
    s.receive(FLUSH, 1.0)
    s.receive(final(" x"), 1.0)
    assert order(s) is (FinalOrder.UNKNOWN if pipelined else FinalOrder.FLUSH_FIRST)


def test_auto_learns_finals_first_from_finals_before_their_flush_done() -> None:
    s = Session(FMT, final_order="auto")
    _, first = fin(s)
    assert feed(s, [final("a"), FLUSH]) == [first]
    assert order(s) is FinalOrder.FINALS_FIRST


def test_unanswered_turns_name_what_a_session_ending_now_would_lose() -> None:
    """Issue 20 #1: a close that ends the session names these turns as lost."""
    s = Session(FMT, final_order="flush_first")
    assert s.unanswered_turns() == ()
    s.audio(b"\x01\x00" * 1600)
    assert s.unanswered_turns() == (0,)  # queued audio of the open turn
    out(s)
    s.finalize()
    s.audio(b"\x01\x00" * 1600)
    s.finalize()
    out(s)
    assert s.unanswered_turns() == (0, 1)
    s.receive(FLUSH, 0.0)  # flush-first: turn 0 in its late window, its final may follow
    assert s.unanswered_turns() == (0, 1)
    s.receive(final(" a"), 0.0)
    s.receive(FLUSH, 0.0)  # seals turn 0; turn 1 in its late window
    assert s.unanswered_turns() == (1,)
    assert s.poll(1.0) and s.unanswered_turns() == ()  # the window ended
    s.audio(b"\x00\x01")  # held back mid-frame: still audio of the open turn
    assert s.unanswered_turns() == (2,)
    s.close()
    out(s)
    assert s.unanswered_turns() == (2,)  # the answer to close is owed
    s.receive(DONE, 1.0)
    assert s.unanswered_turns() == ()
