"""The turn-detection session (protocol/turns.py rules 1-11): exact messages, no sockets."""

from __future__ import annotations

import pytest

from cartesia_stt_async.errors import ConnectionStateError, ProtocolError, TurnConfigError
from cartesia_stt_async.protocol.audio import AudioFormat
from cartesia_stt_async.protocol.events import (
    ConnectedEvent,
    ErrorEvent,
    TurnEagerEndEvent,
    TurnEndEvent,
    TurnEvent,
    TurnResumeEvent,
    TurnStartEvent,
    TurnUpdateEvent,
    UnknownEvent,
    encode_event,
    parse_turn_event,
)
from cartesia_stt_async.protocol.outbox import Outgoing
from cartesia_stt_async.protocol.sending import State
from cartesia_stt_async.protocol.turns import (
    CLOSE_COMMAND,
    Phase,
    TurnSession,
    TurnSettings,
    check_turn_settings,
)

FMT = AudioFormat("pcm_s16le", 16000)  # 3200 bytes per 100 ms frame
A = b"\x01\x00" * 1600  # one frame
B = b"\x02\x00" * 1600


def write(session: TurnSession, now: float = 0.0) -> list[tuple[Outgoing, bool]]:
    """Take everything queued, as the writer would: ``(item, is_replay)`` in order."""
    taken: list[tuple[Outgoing, bool]] = []
    while (entry := session.next_item(now)) is not None:
        taken.append((entry.item, session.replaying))
    return taken


def feed(session: TurnSession, *events: TurnEvent) -> list[int]:
    """Feed events; the indexes of the turns that ended."""
    ended: list[int] = []
    for event in events:
        ended.extend(t.index for t in session.receive(event, 0.0))
    return ended


def kinds(session: TurnSession) -> list[tuple[str, int, str]]:
    out: list[tuple[str, int, str]] = [(s.kind, s.turn.index, s.text) for s in session.signals]
    session.signals.clear()
    return out


# -- events ----------------------------------------------------------------------------------


def test_every_turn_event_decodes_and_round_trips() -> None:
    for event in (
        ConnectedEvent(request_id="r"),
        TurnStartEvent(request_id="r"),
        TurnUpdateEvent(transcript="Hel", request_id="r"),
        TurnEagerEndEvent(transcript="Hello", request_id="r"),
        TurnResumeEvent(request_id="r"),
        TurnEndEvent(transcript=" Hello.", request_id="r"),
        ErrorEvent(message="bad", status_code=400, error_code="model_not_found"),
    ):
        assert parse_turn_event(encode_event(event)) == event
    assert TurnEndEvent.type == "turn.end"


def test_unknown_turn_events_are_decoded_not_fatal_and_malformed_ones_are() -> None:
    event = parse_turn_event('{"type":"turn.mystery","x":1}')
    assert isinstance(event, UnknownEvent) and event.data == {"type": "turn.mystery", "x": 1}
    with pytest.raises(ProtocolError, match=r"malformed 'turn\.end'"):
        parse_turn_event('{"type":"turn.end","transcript":5}')
    with pytest.raises(ProtocolError, match="not a JSON object"):
        parse_turn_event("[1]")


# -- the plain order -------------------------------------------------------------------------


def test_a_plain_turn_signals_start_eager_end_and_joins_text_verbatim() -> None:
    s = TurnSession(FMT)
    s.audio(A + B)
    write(s)
    assert feed(s, ConnectedEvent(request_id="req"), TurnStartEvent()) == []
    assert s.phase is Phase.SPEAKING
    assert kinds(s) == [("start", 0, "")]
    feed(s, TurnUpdateEvent(transcript="Hi"), TurnEagerEndEvent(transcript="Hi there"))
    assert s.phase.name == "EAGER"
    assert kinds(s) == [("eager", 0, "Hi there")]
    assert feed(s, TurnEndEvent(transcript="Hi there.")) == [0]
    assert kinds(s) == [("end", 0, "Hi there.")]
    feed(s, TurnStartEvent(), TurnEndEvent(transcript=" Bye "))
    assert s.transcript.text == "Hi there. Bye "  # verbatim: no strip, no separator
    turn = s.transcript.turns[0]
    assert (turn.text, turn.request_id, turn.start, turn.end) == ("Hi there.", "req", 0.2, 0.2)
    assert turn.latency == 0.0


def test_positions_are_the_audio_written_when_events_arrived() -> None:
    s = TurnSession(FMT)
    s.audio(A)
    write(s)
    feed(s, TurnStartEvent())
    s.audio(A + A)
    write(s)
    feed(s, TurnUpdateEvent(transcript="one"))
    s.audio(A)
    write(s)
    feed(s, TurnEndEvent(transcript="one"))
    turn = s.transcript.turns[0]
    start, end = turn.audio_span
    assert start == pytest.approx(0.1)
    assert end == pytest.approx(0.4)
    assert turn.speech_end == pytest.approx(0.3)
    assert turn.latency == pytest.approx(0.1)


# -- odd orders ------------------------------------------------------------------------------


def test_an_update_before_start_opens_the_turn_and_signals_start_once() -> None:
    s = TurnSession(FMT)
    feed(s, TurnUpdateEvent(transcript="a"), TurnStartEvent(), TurnStartEvent())
    assert kinds(s) == [("start", 0, "")]
    assert s.transcript.interim == "a"


def test_an_end_without_start_or_eager_is_a_whole_turn() -> None:
    s = TurnSession(FMT)
    assert feed(s, TurnEndEvent(transcript="x")) == [0]
    assert kinds(s) == [("start", 0, ""), ("end", 0, "x")]


def test_repeated_eager_resume_cycles_signal_each_time() -> None:
    s = TurnSession(FMT)
    feed(
        s,
        TurnStartEvent(),
        TurnEagerEndEvent(transcript="a"),
        TurnEagerEndEvent(transcript="a"),  # a repeat: ignored
        TurnResumeEvent(),
        TurnResumeEvent(),  # nothing to withdraw: ignored
        TurnEagerEndEvent(transcript="a b"),
        TurnEagerEndEvent(transcript="a b c"),  # another text: a new eager end
        TurnEndEvent(transcript="a b c"),
    )
    assert kinds(s) == [
        ("start", 0, ""),
        ("eager", 0, "a"),
        ("resume", 0, ""),
        ("eager", 0, "a b"),
        ("eager", 0, "a b c"),
        ("end", 0, "a b c"),
    ]
    turn = s.transcript.turns[0]
    assert (turn.eager_ends, turn.resumes) == (3, 1)


def test_empty_transcripts_are_kept_verbatim() -> None:
    s = TurnSession(FMT)
    feed(s, TurnStartEvent(), TurnUpdateEvent(transcript="hm"), TurnEndEvent(transcript=""))
    turn = s.transcript.turns[0]
    assert (turn.text, turn.interim, s.transcript.text) == ("", "hm", "")


def test_connected_twice_or_never_changes_nothing() -> None:
    s = TurnSession(FMT)
    feed(s, TurnStartEvent(request_id="r1"))
    assert s.request_id == "r1" and not s.connected
    feed(s, ConnectedEvent(request_id="r2"), ConnectedEvent(request_id="r3"))
    assert s.connected and s.request_id == "r1"


def test_error_fails_and_unknown_changes_nothing() -> None:
    s = TurnSession(FMT)
    feed(s, UnknownEvent(type="x", data={}))
    assert s.state is State.OPEN
    feed(s, ErrorEvent(message="bad command", done=False))  # the server goes on
    assert s.state is State.OPEN
    feed(s, ErrorEvent(message="m"))
    assert s.state.name == "FAILED"
    with pytest.raises(ConnectionStateError, match="auto_finalize"):
        s.audio(A)


# -- commands --------------------------------------------------------------------------------


def test_close_is_json_and_ends_sending() -> None:
    s = TurnSession(FMT)
    s.audio(A[:100])
    s.close()
    assert [item for item, _ in write(s)] == [A[:100], '{"type":"close"}']
    with pytest.raises(ConnectionStateError, match="after 'close'"):
        s.configure({"end_threshold": 0.1})


def test_the_clean_end_needs_our_close_written_a_1000_and_no_open_turn() -> None:
    s = TurnSession(FMT)
    s.close()
    s.socket_ended(1000)
    assert s.state is State.CLOSING  # close not written yet
    write(s)
    s.socket_ended(1006)
    assert s.state is State.CLOSING
    s.socket_ended(1000)
    assert s.finished and s.unanswered_turns() == ()


def test_a_close_with_a_turn_open_names_the_turn_lost() -> None:
    s = TurnSession(FMT)
    s.audio(A)
    feed(s, TurnStartEvent())
    s.close()
    write(s)
    s.socket_ended(1000)
    assert s.state is State.CLOSING
    assert s.unanswered_turns() == (0,)


def test_configure_sends_only_the_fields_given_and_checks_against_current() -> None:
    s = TurnSession(FMT, settings=TurnSettings(start_threshold=0.55))
    settings = s.configure({"end_threshold": 0.1, "end_timeout_ms": 800})
    assert settings == TurnSettings(0.55, None, 0.1, 800.0)
    assert [item for item, _ in write(s)] == [
        '{"type":"config","turn":{"end_threshold":0.1,"end_timeout_ms":800.0}}'
    ]
    with pytest.raises(TurnConfigError, match=r"start_threshold \(0.55\) must be greater") as err:
        s.configure({"eager_end_threshold": 0.6})
    assert err.value.name == "eager_end_threshold"
    assert write(s) == []  # nothing queued by a refused configure


@pytest.mark.parametrize(
    ("changes", "name", "value"),
    [
        ({"start_threshold": 0.95}, "turn_start_threshold", 0.95),
        ({"start_threshold": 0.45}, "turn_start_threshold", 0.45),
        ({"eager_end_threshold": 0.29}, "turn_eager_end_threshold", 0.29),
        ({"eager_end_threshold": 0.61}, "turn_eager_end_threshold", 0.61),
        ({"end_threshold": 0.04}, "turn_end_threshold", 0.04),
        ({"end_threshold": 0.51}, "turn_end_threshold", 0.51),
        ({"end_timeout_ms": 639}, "turn_end_timeout_ms", 639),
        ({"end_timeout_ms": 11201}, "turn_end_timeout_ms", 11201),
        ({"end_threshold": True}, "turn_end_threshold", True),
        ({"end_threshold": "0.1"}, "turn_end_threshold", "0.1"),
        ({"end_threshold": 0.45}, "turn_end_threshold", 0.45),  # above the default eager 0.4
        ({"eager_end_threshold": 0.5, "start_threshold": 0.5}, "turn_eager_end_threshold", 0.5),
    ],
)
def test_settings_out_of_range_or_order_name_the_value(
    changes: dict[str, object], name: str, value: object
) -> None:
    with pytest.raises(TurnConfigError) as err:
        check_turn_settings(changes)
    assert (err.value.name, err.value.value) == (name, value)
    assert name in str(err.value)


def test_settings_at_the_bounds_are_accepted_and_written_to_the_query() -> None:
    s = check_turn_settings(
        {"start_threshold": 0.9, "eager_end_threshold": 0.6, "end_threshold": 0.5}
    )
    assert s.query() == [
        ("turn_start_threshold", "0.9"),
        ("turn_eager_end_threshold", "0.6"),
        ("turn_end_threshold", "0.5"),
    ]
    assert check_turn_settings({"end_timeout_ms": 640}).query() == [("turn_end_timeout_ms", "640")]
    with pytest.raises(TurnConfigError, match="unknown turn setting 'x'"):
        check_turn_settings({"x": 1})


# -- replay ----------------------------------------------------------------------------------


def test_idle_journal_keeps_only_the_preroll() -> None:
    s = TurnSession(FMT, preroll_ms=200)
    s.audio(A * 5)
    write(s)
    assert s.outbox.journal_bytes == 2 * len(A)


def test_an_open_turn_keeps_its_audio_and_a_drop_replays_it_without_a_second_barge_in() -> None:
    s = TurnSession(FMT, preroll_ms=100)
    s.audio(A * 3)
    write(s)
    feed(s, TurnStartEvent(), TurnEagerEndEvent(transcript="hi"))
    s.audio(B)
    write(s)
    assert s.outbox.journal_bytes == 2 * len(A)  # preroll + B: kept while the turn is open
    assert s.has_unanswered
    assert s.rewind() == 2
    s.audio(A)
    assert write(s) == [(A, True), (B, True), (A, False)]
    kinds(s)
    # The replay's events: the same turn, no second start, the same eager end not repeated.
    feed(s, TurnStartEvent(), TurnUpdateEvent(transcript="h"), TurnEagerEndEvent(transcript="hi"))
    assert kinds(s) == []
    assert feed(s, TurnEndEvent(transcript="hi.")) == [0]
    assert kinds(s) == [("end", 0, "hi.")]
    assert len(s.transcript.turns) == 1


def test_a_drop_after_turn_end_never_replays_the_turn() -> None:
    s = TurnSession(FMT, preroll_ms=100)
    s.audio(A * 3)
    write(s)
    feed(s, TurnStartEvent(), TurnEndEvent(transcript="x"))
    assert s.outbox.journal_bytes == 0  # everything before turn.end is answered
    assert not s.has_unanswered
    s.audio(B * 2)
    write(s)
    assert s.outbox.journal_bytes == len(B)  # then the preroll builds up again
    s.rewind()
    assert write(s) == [(B, True)]


def test_a_drop_after_resume_reissues_the_eager_end_only_if_it_comes_again() -> None:
    s = TurnSession(FMT)
    feed(s, TurnStartEvent(), TurnEagerEndEvent(transcript="a"), TurnResumeEvent())
    kinds(s)
    s.rewind()
    feed(s, TurnStartEvent(), TurnEagerEndEvent(transcript="a"))
    assert kinds(s) == [("eager", 0, "a")]


def test_a_rewind_restores_changed_settings_first_and_drops_old_configs() -> None:
    s = TurnSession(FMT, settings=TurnSettings(end_threshold=0.1))
    s.audio(A)
    feed(s, TurnStartEvent())
    s.configure({"end_timeout_ms": 700})
    write(s)
    s.rewind()
    assert write(s) == [
        ('{"type":"config","turn":{"end_threshold":0.1,"end_timeout_ms":700.0}}', True),
        (A, True),
    ]


def test_a_drop_during_close_replays_close() -> None:
    s = TurnSession(FMT, preroll_ms=100)
    s.audio(A)
    feed(s, TurnStartEvent())
    s.close()
    write(s)
    s.rewind()
    assert write(s) == [(A, True), (CLOSE_COMMAND, True)]
    feed(s, TurnEndEvent(transcript="z"))
    s.socket_ended(1000)
    assert s.finished


# -- silence fill ----------------------------------------------------------------------------


def test_silence_fills_an_open_turn_only() -> None:
    s = TurnSession(FMT)
    assert s.idle_deadline(10.0, None) is None  # no turn: nothing (keepalive off)
    assert s.idle_deadline(10.0, 3.0) == 13.0
    feed(s, TurnStartEvent())
    assert s.idle_deadline(10.0, None) == 10.5  # max(2 x 100 ms, 0.5 s)
    assert s.fill_idle()
    assert write(s) == [(b"\x00" * 3200, False)]
    assert s.idle_deadline(10.5, None) == pytest.approx(10.6)  # then one frame per frame
    s.audio(A)
    write(s)  # the caller's audio is written: the fill waits its full delay again
    assert s.idle_deadline(10.6, None) == 10.6 + 0.5
    feed(s, TurnEndEvent(transcript="k"))
    assert s.idle_deadline(10.0, None) is None
    assert s.stats.silence_fill_bytes == 3200
    off = TurnSession(AudioFormat("pcm_mulaw", 8000), fill_silence=False)
    feed(off, TurnStartEvent())
    assert off.idle_deadline(1.0, None) is None  # no fill: the writer never asks
    assert off.idle_deadline(1.0, 2.0) == 3.0  # the keepalive still applies
    assert off.fill_idle()  # what it asks for then: one frame of mu-law silence
    assert write(off) == [(b"\xff" * 800, False)]
    assert off.stats.silence_fill_bytes == 0 and off.stats.keepalives_sent == 1


def test_an_update_after_an_eager_end_does_not_withdraw_it() -> None:
    s = TurnSession(FMT)
    feed(s, TurnStartEvent(), TurnEagerEndEvent(transcript="a"), TurnUpdateEvent(transcript="a b"))
    assert s.phase.name == "EAGER"
    assert [k for k, _, _ in kinds(s)] == ["start", "eager"]


def test_a_resumed_turn_may_be_ended_by_the_replay_without_a_start() -> None:
    s = TurnSession(FMT)
    s.audio(A)
    write(s)
    feed(s, TurnStartEvent())
    kinds(s)
    s.rewind()
    assert s.unanswered_turns() == (0,) and s.has_unanswered
    assert feed(s, TurnEndEvent(transcript="late")) == [0]
    assert kinds(s) == [("end", 0, "late")]
    assert s.unanswered_turns() == ()


def test_a_routine_idle_close_forgets_the_preroll_but_keeps_close() -> None:
    s = TurnSession(FMT)
    s.audio(A)
    write(s)
    s.idle_closed()
    assert s.journal_empty
    s.close()
    write(s)
    s.idle_closed()
    s.rewind()
    assert write(s) == [(CLOSE_COMMAND, True)]


def test_the_fill_completes_a_held_back_partial_frame_first() -> None:
    s = TurnSession(FMT)
    s.audio(A + A[:1000])  # one frame and 1000 bytes held back
    feed(s, TurnStartEvent())
    assert write(s) == [(A, False)]
    assert s.fill_idle()
    assert write(s) == [(A[:1000] + b"\x00" * 2200, False)]
    assert s.idle_deadline(1.0, None) == pytest.approx(1.1)  # filling: one frame per frame
    assert s.stats.silence_fill_bytes == 2200
    s.audio(A[:3])  # a stray byte held back: no fill can keep the samples aligned
    assert not s.fill_idle()
