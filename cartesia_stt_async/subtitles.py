"""Subtitles from word timings: cut words into cues, write SRT and WebVTT (pure: no I/O).

Works on any sequence of objects with ``.word``, ``.start`` and ``.end`` (seconds): the
``words`` of a batch ``transcribe`` result, :attr:`Utterance.words
<cartesia_stt_async.Utterance.words>`, a transcript event's ``words``, or your own
(:class:`TimedWord`)::

    srt = to_srt(result.words)             # cut with the defaults, then written as SRT
    vtt = to_vtt(cues(words, max_chars=60))  # or cut, inspect or edit, then write

How words become cues, in order (docs/subtitles.md has examples):

1. Each word's text is stripped, and whitespace inside it becomes one space; words left empty
   are dropped (some recognizers emit them).
2. A pause longer than ``max_gap`` between two words always starts a new cue.
3. A cue grows while its text (words joined by single spaces) stays within ``max_chars`` and
   its time (first start to last end) within ``max_duration``. When the next word would break
   a limit, the cue is cut at the best place: after its last word that ends a sentence
   (``. ? !`` and the like, quotes and brackets after them allowed), if at least a third of the
   cue comes before it; else after its last word that ends a clause (``, ; :`` and dashes), if
   at least half comes before it; else right before the new word. A single word longer than a
   limit is a cue of its own, never broken.
4. A cue's text is wrapped onto at most ``max_lines`` lines: on one line when it fits in
   ``ceil(max_chars / max_lines)`` characters, otherwise into the fewest lines that do, each
   as long as the others as word boundaries allow.
5. A cue runs from its first word's start to its last word's end. When words overlap in time
   across a cue boundary (recognizers do this by a few milliseconds), the earlier cue ends
   where the next one starts, so cues never overlap.

Times as a server may send them: a word may last zero seconds (it is kept, and a cue of only
such words lasts zero seconds), and words may overlap. A word that ends before it starts, a
negative, infinite or NaN time, or a word starting earlier than the word before it (the text
order and the time order disagree, so no cue order is right) raise
:class:`~cartesia_stt_async.errors.UsageError` naming the word, never a wrong file.

Timestamps are rounded to the nearest millisecond, halves up, as the decimal digits of the
float read (``1.2345`` is ``00:00:01,235``); hours take as many digits as they need
(``100:00:00,000``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol, TypedDict, Unpack, cast

from .errors import UsageError
from .protocol.checks import check_int, check_number

__all__ = ["Cue", "CueOptions", "TimedWord", "cues", "format_timestamp", "to_srt", "to_vtt"]

MAX_CHARS = 84
"""Characters per cue by default: two lines of 42, the common broadcast limit."""
MAX_LINES = 2
MAX_DURATION = 7.0
"""Seconds per cue by default (a cue much longer than that is hard to follow)."""
MAX_GAP = 1.5
"""A pause longer than this many seconds always starts a new cue."""

# Closing quotes and brackets may follow the punctuation that ends a sentence or clause.
_CLOSERS = "\"')]}»”’›」』"
_SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
_CLAUSE_END = (",", ";", ":", "—", "–", "，", "、", "；", "：")


class TimedWord(Protocol):
    """A word with its time: what :func:`cues` reads (:class:`~cartesia_stt_async.Word`
    and the batch result's words are ones)."""

    @property
    def word(self) -> str:
        """The word's text."""
        ...

    @property
    def start(self) -> float:
        """When it starts, in seconds from the start of the audio."""
        ...

    @property
    def end(self) -> float:
        """When it ends, in seconds."""
        ...


@dataclass(frozen=True)
class Cue:
    """One subtitle: its lines and when to show them.

    Attributes:
        start: When it appears, in seconds.
        end: When it disappears, in seconds (``>= start``).
        lines: Its text, one string per line (at most ``max_lines``).
    """

    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The lines joined with newlines."""
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Word:
    text: str
    start: float
    end: float


def _items(source: object) -> list[object]:
    """``source`` as a list, or a :class:`UsageError` saying what was expected.

    Raises:
        UsageError: ``None`` (no timings were asked for), or not an iterable (a whole
            result rather than its ``.words``).
    """
    if source is None:
        raise UsageError(
            "no word timings (words is None): ask for them, e.g. "
            "transcribe(..., timestamp_granularities=['word'])"
        )
    if not isinstance(source, Iterable) or isinstance(source, str | bytes):
        hint = ": pass its .words" if hasattr(source, "words") else ""
        raise UsageError(f"expected words or cues, got a {type(source).__name__}{hint}")
    return list(source)


def _checked(words: Iterable[TimedWord] | None) -> list[_Word]:
    """The words with their text normalized, empty ones dropped, their times checked.

    Raises:
        UsageError: ``None``, not an iterable, a word without text or times, or times no
            cue can show.
    """
    out: list[_Word] = []
    previous: _Word | None = None
    for index, word in enumerate(cast("list[TimedWord]", _items(words))):
        try:
            raw, start, end = word.word, word.start, word.end
        except AttributeError as exc:
            raise UsageError(
                f"word {index} ({word!r}) has no .word, .start and .end: {exc}"
            ) from None
        if not isinstance(raw, str):
            raise UsageError(f"word {index}: .word must be a str, got {raw!r}")
        text = " ".join(raw.split())
        label = f"word {index} ({text!r})"
        start = check_number(f"{label} start", start, low=0, wanted="seconds >= 0")
        end = check_number(f"{label} end", end, low=0, wanted="seconds >= 0")
        if end < start:
            raise UsageError(f"{label} ends at {end} s, before it starts at {start} s")
        if previous is not None and start < previous.start:
            raise UsageError(
                f"{label} starts at {start} s, before the word before it "
                f"({previous.text!r} at {previous.start} s): words must be in time order"
            )
        if text:
            previous = _Word(text, start, end)
            out.append(previous)
    return out


def _ends(text: str, marks: tuple[str, ...]) -> bool:
    return text.rstrip(_CLOSERS).endswith(marks)


def _length(words: Sequence[_Word]) -> int:
    return sum(len(w.text) for w in words) + len(words) - 1


class _Cutter:
    """The limits of one :func:`cues` call and the cut rules of the module docstring."""

    def __init__(self, max_chars: int, max_duration: float) -> None:
        self.max_chars = max_chars
        self.max_duration = max_duration

    def fits(self, group: Sequence[_Word]) -> bool:
        if len(group) == 1:
            return True
        span = max(w.end for w in group) - group[0].start
        return _length(group) <= self.max_chars and span <= self.max_duration

    def cut(self, group: list[_Word]) -> int:
        """Where to cut a full ``group``: the number of words that stay in this cue."""
        for marks, share in ((_SENTENCE_END, 1 / 3), (_CLAUSE_END, 1 / 2)):
            for keep in range(len(group) - 1, 0, -1):
                if _ends(group[keep - 1].text, marks):
                    if _length(group[:keep]) >= share * _length(group):
                        return keep
                    break  # the latest such place is too early; earlier ones are more so
        return len(group)

    def groups(self, words: list[_Word], max_gap: float) -> list[list[_Word]]:
        done: list[list[_Word]] = []
        pending: list[_Word] = []
        for word in words:
            if pending and word.start - max(w.end for w in pending) > max_gap:
                done.append(pending)
                pending = []
            elif pending and not self.fits([*pending, word]):
                keep = self.cut(pending)
                done.append(pending[:keep])
                pending = pending[keep:]
                if pending and not self.fits([*pending, word]):
                    done.append(pending)
                    pending = []
            pending.append(word)
        if pending:
            done.append(pending)
        return done


def _wrap(texts: Sequence[str], max_lines: int, width: int) -> tuple[str, ...]:
    """``texts`` on the fewest lines (at most ``max_lines``) of at most ``width`` characters,
    balanced; when even ``max_lines`` lines cannot hold them, the most balanced of those."""
    n = len(texts)
    # best[k][i]: the longest line, and the line breaks, for the first i words on k lines.
    inf = (math.inf, ())
    best: list[list[tuple[float, tuple[int, ...]]]] = [
        [inf] * (n + 1) for _ in range(max_lines + 1)
    ]
    best[0][0] = (0, ())
    for k in range(1, max_lines + 1):
        for i in range(1, n + 1):
            for j in range(i - 1, -1, -1):
                longest, breaks = best[k - 1][j]
                if longest == math.inf:
                    continue
                line = sum(len(t) for t in texts[j:i]) + (i - j - 1)
                candidate = (max(longest, line), (*breaks, j))
                if candidate[0] < best[k][i][0]:
                    best[k][i] = candidate
    fitting = [best[k][n] for k in range(1, max_lines + 1) if best[k][n][0] <= width]
    chosen = fitting[0] if fitting else min(best[1:], key=lambda row: row[n][0])[n]
    starts = [*chosen[1][1:], n]
    lines, previous = [], 0
    for stop in starts:
        lines.append(" ".join(texts[previous:stop]))
        previous = stop
    return tuple(lines)


def cues(
    words: Iterable[TimedWord] | None,
    *,
    max_chars: int = MAX_CHARS,
    max_lines: int = MAX_LINES,
    max_duration: float = MAX_DURATION,
    max_gap: float = MAX_GAP,
) -> list[Cue]:
    """Cut timed words into subtitle cues (the rules are in the module docstring).

    Args:
        words: Objects with ``.word``, ``.start`` and ``.end`` (seconds), in time order:
            a transcribe result's ``words``, :attr:`Utterance.words
            <cartesia_stt_async.Utterance.words>`, a transcript event's ``words``.
        max_chars: The longest cue text, in characters, spaces included (a single longer
            word is a cue of its own).
        max_lines: The most lines a cue's text is wrapped onto.
        max_duration: The longest cue, in seconds (a single longer word is a cue of its own).
        max_gap: A pause longer than this many seconds between two words starts a new cue.

    Returns:
        The cues in time order; an empty list for no words.

    Raises:
        UsageError: ``words`` is ``None`` (no timings were asked for), a word lacks ``.word``,
            ``.start`` or ``.end``, a time is negative, infinite or NaN, a word ends before it
            starts or starts before the word before it; or an option out of range.
    """
    max_chars = check_int("max_chars", max_chars, low=1)
    max_lines = check_int("max_lines", max_lines, low=1)
    max_duration = check_number("max_duration", max_duration, low=0, strict=True)
    max_gap = check_number("max_gap", max_gap, low=0)
    checked = _checked(words)
    width = math.ceil(max_chars / max_lines)
    out: list[Cue] = []
    for group in _Cutter(max_chars, max_duration).groups(checked, max_gap):
        start, end = group[0].start, max(w.end for w in group)
        if out and out[-1].end > start:  # overlapping words: the earlier cue gives way
            out[-1] = Cue(out[-1].start, start, out[-1].lines)
        out.append(Cue(start, end, _wrap([w.text for w in group], max_lines, width)))
    return out


def format_timestamp(seconds: float, *, decimal: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``decimal="."``, ``HH:MM:SS.mmm`` (WebVTT).

    Args:
        seconds: A finite time >= 0; rounded to the nearest millisecond, halves up, as its
            decimal digits read (``1.2345`` gives ``00:00:01,235``).
        decimal: The separator before the milliseconds.

    Returns:
        The timestamp; hours take more than two digits when needed (``100:00:00,000``).

    Raises:
        UsageError: For a negative, infinite or NaN time.
    """
    seconds = check_number("seconds", seconds, low=0)
    # repr() is the shortest decimal that reads back as this float: round what people see.
    millis = int(Decimal(repr(seconds)).quantize(Decimal("0.001"), ROUND_HALF_UP) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


class CueOptions(TypedDict, total=False):
    """The cutting options of :func:`cues`, which :func:`to_srt` and :func:`to_vtt` pass on
    when given words."""

    max_chars: int
    max_lines: int
    max_duration: float
    max_gap: float


def _as_cues(source: Iterable[TimedWord] | Iterable[Cue] | None, options: CueOptions) -> list[Cue]:
    """``source`` as cues: cues as given, words cut by :func:`cues` with ``options``."""
    items = _items(source)
    if items and all(isinstance(item, Cue) for item in items):
        if options:
            raise UsageError("the cutting options apply to words, not to cues already cut")
        return [item for item in items if isinstance(item, Cue)]
    if items and any(isinstance(item, Cue) for item in items):
        raise UsageError("give words or cues, not a mix of both")
    return cues(cast("list[TimedWord]", items), **options)


def to_srt(
    source: Iterable[TimedWord] | Iterable[Cue] | None, **options: Unpack[CueOptions]
) -> str:
    """SubRip (``.srt``) text: numbered cues, ``00:00:01,234 --> 00:00:02,000``, blank lines.

    Args:
        source: Timed words, cut by :func:`cues` with ``options``; or cues from
            :func:`cues` (perhaps edited), written as they are.
        **options: For words only: ``max_chars``, ``max_lines``, ``max_duration``,
            ``max_gap``, as for :func:`cues`.

    Returns:
        The file's text, ending with a newline; ``""`` when there are no cues.

    Raises:
        UsageError: As :func:`cues`; or options given with cues, or words and cues mixed.
    """
    blocks = [
        f"{number}\n{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}\n{cue.text}\n"
        for number, cue in enumerate(_as_cues(source, options), 1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup: a bare & or < starts an entity or a tag, and "-->" may not
    # appear at all; escaping > too keeps "-->" out.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(
    source: Iterable[TimedWord] | Iterable[Cue] | None, **options: Unpack[CueOptions]
) -> str:
    """WebVTT (``.vtt``) text: ``WEBVTT``, then cues ``00:00:01.234 --> 00:00:02.000``.

    Cue text is escaped (``&``, ``<``, ``>`` become ``&amp;``, ``&lt;``, ``&gt;``), so words
    show as recognized, never as markup.

    Args:
        source: As for :func:`to_srt`.
        **options: As for :func:`to_srt`.

    Returns:
        The file's text, ending with a newline; ``"WEBVTT\\n"`` when there are no cues.

    Raises:
        UsageError: As :func:`to_srt`.
    """
    blocks = [
        f"{format_timestamp(cue.start, decimal='.')} --> "
        f"{format_timestamp(cue.end, decimal='.')}\n{_vtt_escape(cue.text)}\n"
        for cue in _as_cues(source, options)
    ]
    return "\n".join(["WEBVTT\n", *blocks])
