"""cartesia_stt_async.subtitles: exact cues, exact SRT and WebVTT text (pure: no event loop)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest

from cartesia_stt_async import Cue, UsageError, Utterance, Word, cues, to_srt, to_vtt
from cartesia_stt_async.protocol.events import TranscriptEvent, parse_event
from cartesia_stt_async.subtitles import format_timestamp


def timed(text: str, *, step: float = 0.5, length: float = 0.4, at: float = 0.0) -> list[Word]:
    """One word every ``step`` seconds from ``at``, each ``length`` long."""
    return [
        Word(w, round(at + i * step, 6), round(at + i * step + length, 6))
        for i, w in enumerate(text.split())
    ]


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0, "00:00:00,000", "00:00:00.000"),
        (1.234, "00:00:01,234", "00:00:01.234"),
        (1.2345, "00:00:01,235", "00:00:01.235"),  # half up, as the digits read
        (1.2344999, "00:00:01,234", "00:00:01.234"),
        (0.0005, "00:00:00,001", "00:00:00.001"),
        (59.9996, "00:01:00,000", "00:01:00.000"),  # rounding carries into the minutes
        (5999.999, "01:39:59,999", "01:39:59.999"),  # more than 99 minutes is hours
        (3599.9995, "01:00:00,000", "01:00:00.000"),
        (360000.0, "100:00:00,000", "100:00:00.000"),  # more than 99 hours: more digits
        (7, "00:00:07,000", "00:00:07.000"),  # an int
    ],
)
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert format_timestamp(seconds) == srt
    assert format_timestamp(seconds, decimal=".") == vtt


@pytest.mark.parametrize("bad", [-0.001, math.inf, math.nan, True, "1.0"])
def test_a_timestamp_must_be_a_finite_time(bad: object) -> None:
    with pytest.raises(UsageError, match="seconds must be"):
        format_timestamp(bad)  # type: ignore[arg-type]


# -- SRT and WebVTT text -----------------------------------------------------------------------


def test_srt_exact() -> None:
    words = [Word("Good", 0.0, 0.3), Word("morning,", 0.35, 0.8), Word("team.", 0.9, 1.4)]
    words += [Word("Let's", 3.0, 3.2), Word("start.", 3.25, 3.9)]  # after a 1.6 s pause
    assert to_srt(words) == (
        "1\n00:00:00,000 --> 00:00:01,400\nGood morning, team.\n"
        "\n"
        "2\n00:00:03,000 --> 00:00:03,900\nLet's start.\n"
    )


def test_vtt_exact_and_escaped() -> None:
    words = [Word("A&B", 0.0, 0.5), Word("<b>bold</b>", 0.5, 1.0), Word("-->", 1.0, 1.25)]
    assert to_vtt(words) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nA&amp;B &lt;b&gt;bold&lt;/b&gt; --&gt;\n"
    )


def test_empty_input() -> None:
    assert cues([]) == []
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"
    assert to_srt(iter(())) == ""
    # Words with no text (some recognizers send them) are dropped, not shown as empty cues.
    assert to_srt([Word("", 0.0, 0.1), Word("  ", 0.1, 0.2)]) == ""


def test_none_means_no_timings_were_asked_for() -> None:
    for call in (cues, to_srt, to_vtt):
        with pytest.raises(UsageError, match="timestamp_granularities"):
            call(None)


def test_a_whole_result_is_not_words() -> None:
    @dataclass
    class Result:
        text: str
        words: list[Word]

    result = Result("hi", [Word("hi", 0, 1)])
    with pytest.raises(UsageError, match=r"expected words or cues, got a Result: pass its \.words"):
        to_srt(result)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"expected words or cues, got a str$"):
        cues("hello")  # type: ignore[arg-type]
    assert to_srt(result.words) == "1\n00:00:00,000 --> 00:00:01,000\nhi\n"


def test_word_text_is_normalized() -> None:
    # The streaming endpoints' words keep their leading space; a stray newline must not end
    # an SRT block early.
    words = [Word(" Hello", 0.0, 0.4), Word("new\nline ", 0.5, 0.9)]
    (cue,) = cues(words)
    assert cue.lines == ("Hello new line",)


# -- what the recognizers give: Word structs, Utterance.words, transcript events, any object --


def test_streaming_words_work_unchanged() -> None:
    event = parse_event(
        b'{"type":"transcript","is_final":true,"text":" Hi there.","request_id":"r",'
        b'"words":[{"word":"Hi","start":0.1,"end":0.3},{"word":"there.","start":0.35,"end":0.7}]}'
    )
    assert isinstance(event, TranscriptEvent)
    utterance = Utterance(index=0, text=event.text, words=list(event.words or []))
    expected = "1\n00:00:00,100 --> 00:00:00,700\nHi there.\n"
    assert to_srt(event.words) == expected
    assert to_srt(utterance.words) == expected


def test_any_object_with_word_start_end() -> None:
    @dataclass
    class Mine:
        word: str
        start: float
        end: float

    assert cues([Mine("yes", 1, 2)]) == [Cue(1.0, 2.0, ("yes",))]


def test_an_object_without_the_fields_is_named() -> None:
    with pytest.raises(UsageError, match=r"word 1 \('x'\) has no \.word"):
        cues([Word("a", 0, 1), "x"])  # type: ignore[list-item]


# -- cutting -----------------------------------------------------------------------------------


def test_a_long_pause_starts_a_new_cue() -> None:
    words = [Word("one", 0.0, 0.4), Word("two", 2.0, 2.5), Word("three", 3.0, 3.5)]
    assert [c.lines for c in cues(words)] == [("one",), ("two three",)]  # 1.6 s > 1.5 s
    assert [c.lines for c in cues(words, max_gap=0.4)] == [("one",), ("two",), ("three",)]
    assert [c.lines for c in cues(words, max_gap=1.6)] == [("one two three",)]  # not longer


def test_max_chars_cuts_before_the_word_that_would_not_fit() -> None:
    words = timed("aaaa bbbb cccc dddd eeee")  # 24 characters
    got = cues(words, max_chars=14, max_lines=1)
    assert [c.text for c in got] == ["aaaa bbbb cccc", "dddd eeee"]
    assert [(c.start, c.end) for c in got] == [(0.0, 1.4), (1.5, 2.4)]


def test_max_duration_cuts_the_cue() -> None:
    words = timed("a b c d e f g h", step=1.0, length=0.9)
    got = cues(words, max_duration=3.0)
    assert [c.text for c in got] == ["a b c", "d e f", "g h"]
    assert all(c.end - c.start <= 3.0 for c in got)


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [
        # Without the period the cut would fall before "now" (30 characters fit).
        ("It is late. We should go home now", 30, ["It is late.", "We should go home now"]),
        # A sentence end wins over a later clause end.
        ("We are late. So, we must go home", 30, ["We are late.", "So, we must go home"]),
        (
            "When the rain stops, we will walk to the river",
            36,
            ["When the rain stops,", "we will walk to the river"],
        ),
        (
            'He said "stop." Then he left the room quietly',
            36,
            ['He said "stop."', "Then he left the room quietly"],
        ),
        # "Yes." is 4 of 29 characters, less than a third: cutting there would leave a sliver.
        ("Yes. and then we went to the shops", 29, ["Yes. and then we went to the", "shops"]),
        # "Well," is 5 of 27: less than half.
        ("Well, and then we went to the shops", 27, ["Well, and then we went to", "the shops"]),
    ],
    ids=[
        "sentence",
        "sentence-before-clause",
        "clause",
        "closing-quote",
        "early-sentence",
        "early-clause",
    ],
)
def test_where_a_full_cue_is_cut(text: str, max_chars: int, expected: list[str]) -> None:
    got = cues(timed(text), max_chars=max_chars, max_lines=1)
    assert [c.text for c in got] == expected


def test_a_word_longer_than_the_limits_is_a_cue_of_its_own() -> None:
    words = [Word("hi", 0.0, 0.2), Word("Pneumonoultramicroscopic", 0.3, 9.0), Word("ok", 9.1, 9.2)]
    got = cues(words, max_chars=10, max_duration=2.0)
    assert [c.text for c in got] == ["hi", "Pneumonoultramicroscopic", "ok"]
    assert got[1].start == 0.3 and got[1].end == 9.0


# -- wrapping ----------------------------------------------------------------------------------


def test_short_cues_stay_on_one_line() -> None:
    (cue,) = cues(timed("Hello world."))
    assert cue.lines == ("Hello world.",)


def test_long_cues_wrap_on_two_balanced_lines() -> None:
    text = "The quick brown fox jumps over the lazy dog and runs far away"  # 61 chars
    (cue,) = cues(timed(text, step=0.1, length=0.08))
    assert cue.lines == ("The quick brown fox jumps over", "the lazy dog and runs far away")
    assert all(len(line) <= 42 for line in cue.lines)


def test_three_lines_when_asked() -> None:
    (cue,) = cues(timed("aa bb cc dd ee ff", step=0.1, length=0.08), max_chars=17, max_lines=3)
    assert cue.lines == ("aa bb", "cc dd", "ee ff")


def test_every_cue_fits_the_limits() -> None:
    text = " ".join(f"word{i}," if i % 7 == 3 else f"w{i}" for i in range(300))
    got = cues(timed(text, step=0.21, length=0.2), max_chars=50, max_duration=4.0)
    assert " ".join(c.text.replace("\n", " ") for c in got) == text  # nothing lost or moved
    for cue in got:
        assert len(cue.text) <= 50 and len(cue.lines) <= 2
        assert all(len(line) <= 25 for line in cue.lines)
        assert cue.end - cue.start <= 4.0
    assert all(a.end <= b.start for a, b in itertools.pairwise(got))


# -- times a server may send -------------------------------------------------------------------


def test_zero_length_words_are_kept() -> None:
    assert cues([Word("a", 1.0, 1.0)]) == [Cue(1.0, 1.0, ("a",))]
    assert to_srt([Word("a", 1.0, 1.0)]) == "1\n00:00:01,000 --> 00:00:01,000\na\n"


def test_overlapping_words_never_make_overlapping_cues() -> None:
    words = [Word("one", 0.0, 1.0), Word("two", 0.9, 1.2), Word("three", 1.1, 1.5)]
    got = cues(words, max_chars=8, max_lines=1)
    assert [(c.text, c.start, c.end) for c in got] == [
        ("one two", 0.0, 1.1),  # it ended at 1.2; the next cue starts at 1.1
        ("three", 1.1, 1.5),
    ]


def test_equal_starts_are_in_order() -> None:
    assert [c.text for c in cues([Word("a", 1.0, 1.1), Word("b", 1.0, 1.2)])] == ["a b"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([Word("a", 1.0, 0.5)], r"word 0 \('a'\) ends at 0.5 s, before it starts at 1.0 s"),
        (
            [Word("a", 1.0, 1.5), Word("b", 0.5, 0.9)],
            r"word 1 \('b'\) starts at 0.5 s, before the word before it \('a' at 1.0 s\)",
        ),
        ([Word("a", -0.1, 0.5)], r"word 0 \('a'\) start must be seconds >= 0, got -0.1"),
        ([Word("a", 0.0, math.nan)], r"word 0 \('a'\) end must be seconds >= 0, got nan"),
        ([Word("a", 0.0, math.inf)], r"end must be seconds >= 0, got inf"),
    ],
)
def test_impossible_times_are_a_typed_error(words: list[Word], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cues(words)
    with pytest.raises(UsageError, match=message):
        to_vtt(words)


# -- options and cues --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_chars", 0),
        ("max_chars", 1.5),
        ("max_lines", 0),
        ("max_duration", 0),
        ("max_duration", math.inf),
        ("max_gap", -1),
        ("max_gap", True),
    ],
)
def test_options_are_checked(option: str, value: object) -> None:
    with pytest.raises(UsageError, match=option):
        cues(timed("a b"), **{option: value})  # type: ignore[arg-type]


def test_cues_can_be_edited_then_written() -> None:
    got = cues(timed("hello there"))
    edited = [Cue(c.start, c.end, tuple(line.upper() for line in c.lines)) for c in got]
    assert to_srt(edited) == "1\n00:00:00,000 --> 00:00:00,900\nHELLO THERE\n"
    assert to_vtt(edited) == "WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nHELLO THERE\n"
    with pytest.raises(UsageError, match="apply to words"):
        to_srt(edited, max_chars=10)
    with pytest.raises(UsageError, match="not a mix"):
        to_srt([*edited, Word("x", 2, 3)])  # type: ignore[arg-type]


def test_two_line_cues_in_srt_and_vtt() -> None:
    text = "The quick brown fox jumps over the lazy dog and runs far away"
    words = timed(text, step=0.1, length=0.08)
    assert to_srt(words) == (
        "1\n00:00:00,000 --> 00:00:01,280\n"
        "The quick brown fox jumps over\nthe lazy dog and runs far away\n"
    )
    assert to_vtt(words, max_lines=1, max_chars=42) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:00.780\nThe quick brown fox jumps over the lazy\n\n"
        "00:00:00.800 --> 00:00:01.280\ndog and runs far away\n"
    )
