"""The session state machine of one turn-detection connection, ``/stt/turns/websocket`` (pure).

Theory of operation
-------------------
The server decides where turns start and end; the client only streams audio. The I/O layer
*commands* the session (``audio``, ``raw_audio``, ``configure``, ``close``) and takes the items
to write with :meth:`TurnSession.next_item`, as for the manual endpoint (the sending half is
:class:`~.sending.AudioSession`, shared). It *feeds* every decoded event to
:meth:`TurnSession.receive`, which returns the turns that just ended and appends what a voice
agent reacts to (:class:`TurnSignal`: barge-in, eager end, resume, end) to :attr:`signals`. Time is
a parameter, never read here; the only "clock" of a turn is the audio position: seconds of audio
written (first writes only) when an event arrived. The server sends no timestamps.

Session states (:class:`~.sending.State`)::

    OPEN ──close()──▶ CLOSING ──socket closed 1000, no turn open──▶ DONE
      │                  │
      └── error event ───┴──▶ FAILED

Turn phases (:class:`Phase`), from Cartesia's state machine::

    IDLE ──turn.start──▶ SPEAKING ──turn.eager_end──▶ EAGER
      ▲                    │  ▲                         │
      │                    │  └──────turn.resume────────┤
      └──────turn.end──────┴────────────turn.end────────┘

Rules:

1. Audio, ``config`` and ``close`` may only be queued while OPEN (then
   :class:`~cartesia_stt_async.errors.ConnectionStateError`).
2. ``connected`` records the request id; a repeated ``connected`` is ignored; none is needed.
3. ``turn.start`` in IDLE opens turn *n* and signals ``start`` (barge-in). A ``turn.start``
   while a turn is open is a duplicate and ignored. An event of an open turn arriving in IDLE
   (``turn.update``, ``turn.eager_end`` or ``turn.end`` with no ``turn.start``) opens the turn
   first, and signals ``start`` first: every turn is signalled ``start`` exactly once.
4. ``turn.update`` sets the turn's interim text (cumulative within the turn: it replaces, never
   appends) and keeps the phase (an update after an eager end does not withdraw it: only
   ``turn.resume`` does).
5. ``turn.eager_end`` moves to EAGER and signals ``eager`` with its text, unless the turn is
   already EAGER with the same text (a repeat, ignored). ``turn.resume`` in EAGER moves back to
   SPEAKING and signals ``resume`` (the eager end is withdrawn); elsewhere it is ignored.
6. ``turn.end`` ends the turn: its text is the event's transcript *verbatim* (an empty one
   included), the session transcript appends it verbatim (never stripped, never separated),
   the turn is returned, ``end`` is signalled, the phase is IDLE.
7. ``error`` makes the session FAILED, unless it says ``"done": false`` (the server goes on:
   the event is shown, nothing changes). An unknown event changes nothing.
8. The session is DONE when the socket closes with 1000 after ``close`` was written and no turn
   is open (:meth:`TurnSession.socket_ended`). An open turn at that close is lost:
   :meth:`unanswered_turns` names it.

Replay (reconnecting without losing or repeating a turn)
--------------------------------------------------------
9. The journal of written audio is what a new socket must hear again. While no turn is open it
   keeps only the newest ``preroll`` of audio (a turn the server is detecting in audio it has
   not answered yet starts there); while a turn is open it keeps everything since (bounded by
   ``max_replay_bytes``: past it :attr:`replay_complete` is false until the turn ends); at
   ``turn.end`` everything written before it is forgotten (replaying the ended turn's tail
   could make the server end it twice; the cost: a next turn whose onset was written before
   that ``turn.end`` arrived loses that onset after a drop); so does a routine idle close
   with no turn open (the server heard it all). ``config`` commands are not
   replayed: one ``config`` with the current settings goes first when any were changed.
10. :meth:`TurnSession.rewind` puts the journal back at the head of the outbox. A turn open at the
   drop is *resumed*: the replay's first turn event belongs to it, and its ``start`` is not
   signalled again; its ``eager`` is signalled again only with a different text. An ended turn
   is never replayed, so :meth:`receive` never returns a turn twice; the raw events of the
   replay (``turn.start``, ``turn.update`` of the resumed turn) are seen again by iteration.
11. While a turn is open and the caller sends nothing, the server cannot end the turn (it decides
   on audio time). With ``fill_silence``, :meth:`idle_deadline` asks for a frame of silence
   after ``max(2 x frame, 0.5 s)`` without writing, then one per frame, until the turn ends or
   the caller sends again. Audio held back mid-frame goes first, completed with silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Final, Literal

import msgspec

from ..errors import TurnConfigError
from .audio import DEFAULT_FRAME_MS, AudioFormat
from .events import (
    ConnectedEvent,
    ErrorEvent,
    TurnEagerEndEvent,
    TurnEndEvent,
    TurnEvent,
    TurnResumeEvent,
    TurnStartEvent,
    TurnUpdateEvent,
    parse_turn_event,
)
from .outbox import ConnectionStats, Entry
from .sending import AudioSession, State, silence

__all__ = [
    "CLOSE_COMMAND",
    "TURNS_PATH",
    "Phase",
    "Turn",
    "TurnSession",
    "TurnSettings",
    "TurnSignal",
    "TurnTranscript",
    "check_turn_settings",
]

TURNS_PATH: Final = "/stt/turns/websocket"
CLOSE_COMMAND: Final = '{"type":"close"}'
_CONFIG_PREFIX: Final = '{"type":"config"'
# Rule 11: pipecat's idle threshold, max(2 x chunk, 0.5 s).
_FILL_AFTER_S: Final = 0.5
# Rule 9: audio kept for replay while no turn is open.
DEFAULT_PREROLL_MS: Final = 500


class Phase(IntEnum):
    """Where the current turn is (rule 3-6)."""

    IDLE = 0
    SPEAKING = 1
    EAGER = 2


# -- settings -------------------------------------------------------------------------------

# (query name, config field, low, high): Cartesia's documented ranges (docs: /stt/turns).
_RANGES: Final = (
    ("turn_start_threshold", "start_threshold", 0.5, 0.9),
    ("turn_eager_end_threshold", "eager_end_threshold", 0.3, 0.6),
    ("turn_end_threshold", "end_threshold", 0.05, 0.5),
    ("turn_end_timeout_ms", "end_timeout_ms", 640, 11200),
)
# The server's defaults, for the order check of a value not given.
_DEFAULTS: Final = {"start_threshold": 0.8, "eager_end_threshold": 0.4, "end_threshold": 0.2}


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """The four turn-detection settings; ``None`` leaves one to the server's default.

    Attributes:
        start_threshold: Likelihood above which a turn starts (0.5-0.9, server default 0.8).
        eager_end_threshold: Below it, ``turn.eager_end`` fires (0.3-0.6, default 0.4).
        end_threshold: Below it, the turn ends (0.05-0.5, default 0.2).
        end_timeout_ms: Longest wait after speech stops before ending anyway (640-11200 ms,
            default 5600).
    """

    start_threshold: float | None = None
    eager_end_threshold: float | None = None
    end_threshold: float | None = None
    end_timeout_ms: float | None = None

    def query(self) -> list[tuple[str, str]]:
        """The settings given, as query pairs (``turn_start_threshold=0.8``, ...)."""
        return [
            (query, _number(getattr(self, attr)))
            for query, attr, _, _ in _RANGES
            if getattr(self, attr) is not None
        ]

    def command(self) -> str:
        """The ``config`` command carrying every setting given (compact JSON)."""
        turn = {attr: getattr(self, attr) for _, attr, _, _ in _RANGES}
        body = {k: v for k, v in turn.items() if v is not None}
        return msgspec.json.encode({"type": "config", "turn": body}).decode()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and value >= 100 else str(value)


def check_turn_settings(
    changes: Mapping[str, object], current: TurnSettings | None = None, *, names: str = "query"
) -> TurnSettings:
    """Check turn settings (ranges, then the order start > eager end > end) and merge them.

    The one home of these rules: the connect options and ``configure()`` both call it. The
    order is checked on the settings that result, a value not given taking the current one
    (or the server's default).

    Args:
        changes: ``{config field: value}`` (``start_threshold``, ...); ``None`` values are
            left as they are.
        current: The settings in effect (``None``: nothing set yet).
        names: ``"query"`` to name the settings by their query parameter
            (``turn_end_threshold``), ``"config"`` by their ``config`` field (``end_threshold``).

    Returns:
        The merged settings.

    Raises:
        TurnConfigError: Naming the first value out of range or out of order.
    """
    merged = current or TurnSettings()
    label = {attr: (query if names == "query" else attr) for query, attr, _, _ in _RANGES}
    unknown = sorted(set(changes) - set(label))
    if unknown:
        raise TurnConfigError(
            f"unknown turn setting {unknown[0]!r}; the settings are {', '.join(label)}",
            name=str(unknown[0]),
            value=changes[unknown[0]],
        )
    for _, attr, low, high in _RANGES:
        value = changes.get(attr)
        if value is None:
            continue
        name = label[attr]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            raise TurnConfigError(
                f"{name} must be a number from {low} to {high}, got {value!r}",
                name=name,
                value=value,
            )
        merged = replace(merged, **{attr: float(value)})
    values = {
        "start_threshold": merged.start_threshold,
        "eager_end_threshold": merged.eager_end_threshold,
        "end_threshold": merged.end_threshold,
    }
    for upper, lower in (
        ("start_threshold", "eager_end_threshold"),
        ("eager_end_threshold", "end_threshold"),
    ):
        given_top, given_bottom = values[upper], values[lower]
        top = given_top if given_top is not None else _DEFAULTS[upper]
        bottom = given_bottom if given_bottom is not None else _DEFAULTS[lower]
        if not top > bottom:
            # Blame the value just given (the other one was accepted before).
            attr = lower if changes.get(lower) is not None else upper
            raise TurnConfigError(
                f"{label[upper]} ({top}) must be greater than {label[lower]} ({bottom})",
                name=label[attr],
                value=values[attr],
            )
    return merged


# -- turns ----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Turn:
    """One turn of the user, as the server detected it.

    Positions are seconds of audio written on this connection (first writes only) when the
    event arrived: an upper bound of when the thing happened in the audio, server delay
    included (the server sends no timestamps).

    Attributes:
        index: 0 for the session's first turn, then 1, 2, ...
        text: The ``turn.end`` transcript, verbatim (``""`` until the turn ends; it may stay
            empty: a silence-forced end).
        interim: The latest cumulative text of ``turn.update``/``turn.eager_end``.
        request_id: The session's request id.
        start: Audio position when ``turn.start`` arrived.
        speech_end: Audio position when the turn's text last grew (the nearest observable
            to the end of speech); ``None`` while no text came.
        eager_end: Audio position of the last ``turn.eager_end`` still standing (``None``
            when none came or a ``turn.resume`` withdrew it).
        end: Audio position when ``turn.end`` arrived.
        eager_ends: How many ``turn.eager_end`` signals the turn had.
        resumes: How many ``turn.resume`` events withdrew one.
        complete: True once ``turn.end`` arrived.
    """

    index: int
    text: str = ""
    interim: str = ""
    request_id: str = ""
    start: float = 0.0
    speech_end: float | None = None
    eager_end: float | None = None
    end: float | None = None
    eager_ends: int = 0
    resumes: int = 0
    complete: bool = False

    @property
    def latency(self) -> float | None:
        """Seconds of audio from the last growth of the text (``speech_end``) to ``turn.end``:
        how long after the last words the turn was declared over, server delay included; at
        real-time pacing, also wall seconds. ``None`` until the turn ends with some text."""
        if self.end is None or self.speech_end is None:
            return None
        return self.end - self.speech_end

    @property
    def audio_span(self) -> tuple[float, float | None]:
        """``(start, end)`` audio positions (see the class docstring)."""
        return (self.start, self.end)

    def __repr__(self) -> str:
        end = f"{self.end:.2f}" if self.end is not None else "None"
        return (
            f"Turn(index={self.index}, text={self.text!r}, start={self.start:.2f}, "
            f"end={end}, complete={self.complete})"
        )


@dataclass(frozen=True, slots=True)
class TurnSignal:
    """Something a voice agent reacts to (rule 3-6).

    Attributes:
        kind: ``start`` (barge-in), ``eager`` (the user may be done: a reply may start),
            ``resume`` (the eager end is withdrawn), ``end`` (the turn is over).
        turn: The turn.
        text: The event's transcript (``eager`` and ``end``), else ``""``.
    """

    kind: Literal["start", "eager", "resume", "end"]
    turn: Turn
    text: str = ""


@dataclass(slots=True)
class TurnTranscript:
    """Everything recognized in a session so far.

    Attributes:
        turns: Ended turns, in order.
        interim: The open turn's latest cumulative text (``""`` when none is open).
    """

    turns: list[Turn] = field(default_factory=list)
    interim: str = ""
    _parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The ``turn.end`` transcripts joined verbatim (no stripping, no separators)."""
        return "".join(self._parts)

    def __str__(self) -> str:
        return self.text


class TurnSession(AudioSession):
    """Pure protocol state of one turn-detection connection (see the module docstring).

    Args:
        audio_format: The session's encoding and sample rate.
        frame_ms: Frame length for :meth:`audio` (100 ms by default).
        max_replay_bytes: Bound of the replay journal (rule 9); ``None``: unbounded.
        settings: The turn settings the connection was opened with (its query).
        fill_silence: Rule 11.
        preroll_ms: Audio kept for replay while no turn is open (rule 9).
        stats: Counters to update.

    Attributes:
        transcript: The ended turns and their joined text.
        settings: The settings in effect (connect options, then ``configure()``).
        signals: What :meth:`receive` signalled, for the I/O layer to take (and clear).
        phase: The current turn's :class:`Phase`.
    """

    REOPEN_HINT = "client.stt.auto_finalize.websocket(...)"
    CLOSE_COMMAND = CLOSE_COMMAND
    CLOSE_ANSWER = "flush its turns and close the socket after 'close'"

    def __init__(
        self,
        audio_format: AudioFormat,
        *,
        frame_ms: int = DEFAULT_FRAME_MS,
        max_replay_bytes: int | None = None,
        settings: TurnSettings | None = None,
        fill_silence: bool = True,
        preroll_ms: int = DEFAULT_PREROLL_MS,
        stats: ConnectionStats | None = None,
    ) -> None:
        super().__init__(
            audio_format, frame_ms=frame_ms, max_replay_bytes=max_replay_bytes, stats=stats
        )
        self.settings = settings or TurnSettings()
        self._connect_settings = self.settings
        self.fill_silence = fill_silence
        self._preroll = audio_format.bytes_per_second * preroll_ms // 1000
        self._frame_s = self.frame_bytes / self._bytes_per_second
        self._fill_after = max(2 * self._frame_s, _FILL_AFTER_S)
        self._filling = False
        self._fill_frame = silence(audio_format, self.frame_bytes)
        self._padded: object = None  # the last frame the fill completed (rule 11)
        self.transcript = TurnTranscript()
        self.signals: list[TurnSignal] = []
        self.phase = Phase.IDLE
        self.turn: Turn | None = None  # the open turn
        self._resumed: Turn | None = None  # rule 10: open at a drop, awaiting the replay
        self._standing_eager: str | None = None  # rule 10: its eager text standing at the drop
        self._next_index = 0
        self.position = 0.0  # seconds of audio written (first writes)
        self._close_written = False
        self.connected = False

    # -- commands --------------------------------------------------------------------------

    def configure(self, changes: Mapping[str, object]) -> TurnSettings:
        """Check new turn settings against the current ones and queue ``config``.

        Args:
            changes: ``{config field: value}``: any of ``start_threshold``,
                ``eager_end_threshold``, ``end_threshold``, ``end_timeout_ms``.

        Returns:
            The settings in effect from now on.

        Raises:
            TurnConfigError: A value out of range or out of order (nothing is queued).
            ConnectionStateError: If the session is no longer open.
        """
        self._check_open("send config")
        merged = check_turn_settings(changes, self.settings, names="config")
        given = replace(
            TurnSettings(), **{k: getattr(merged, k) for k, v in changes.items() if v is not None}
        )
        self._flush_remainder()
        self.outbox.append(Entry(given.command()))
        self.settings = merged
        return merged

    # -- writing ---------------------------------------------------------------------------

    def _on_taken(self, entry: Entry, replay: bool, now: float) -> None:
        item = entry.item
        if type(item) is str:
            if item == CLOSE_COMMAND:
                self._close_written = True
            return
        if not replay:
            self.position += len(item) / self._bytes_per_second
            # The caller's audio flows again unless this is the fill's own frame.
            self._filling = item is self._fill_frame or item is self._padded
        if self.phase is Phase.IDLE and self._resumed is None:
            self.outbox.trim_head(self._preroll, _KEEP)

    def _journal_lost(self, owner: object) -> None:
        self._journal_lossy = True

    def idle_deadline(self, last_write: float, keepalive: float | None) -> float | None:
        """Rule 11: when to fill an open turn with silence; else the keepalive's deadline."""
        if self.fill_silence and self.state is State.OPEN and self._turn_open:
            fill = last_write + (self._frame_s if self._filling else self._fill_after)
            base = super().idle_deadline(last_write, keepalive)
            return fill if base is None else min(fill, base)
        return super().idle_deadline(last_write, keepalive)

    def fill_idle(self) -> bool:
        """Queue one frame of silence for an open turn (rule 11), or keepalive silence."""
        held = self._reframer.pending
        if (
            self.fill_silence
            and self._turn_open
            and self.state is State.OPEN
            and not self.outbox.pending
            and not held % self.format.sample_width
        ):
            if held:
                # The caller's audio ended mid-frame: complete that frame with silence, so
                # the held-back tail goes out first and frames stay whole.
                pad = self.frame_bytes - held
                frame = self._reframer.push(self._fill_frame[:pad])[0]
                self._padded = frame
            else:
                frame, pad = self._fill_frame, self.frame_bytes
            self.outbox.append(Entry(frame, None))
            self.stats.silence_fill_bytes += pad
            self._filling = True
            return True
        return self.keepalive()

    @property
    def _turn_open(self) -> bool:
        return self.phase is not Phase.IDLE or self._resumed is not None

    # -- replay ----------------------------------------------------------------------------

    @property
    def has_unanswered(self) -> bool:
        """True while a turn is open or ``close`` awaits the server's close."""
        return self._turn_open or self.state is State.CLOSING

    def rewind(self) -> int:
        """The socket was replaced: the journal is replayed first (rule 10).

        Returns:
            How many items will be written before anything new.
        """
        if self.turn is not None:
            self._resumed = self.turn
            if self.phase is Phase.EAGER:
                self._standing_eager = self.turn.interim
            # Else keep what an earlier drop left standing: a replay that reopened the turn
            # and dropped before its eager end repeated does not withdraw it.
        self.turn = None
        self.phase = Phase.IDLE
        self.transcript.interim = ""
        self._close_written = False
        head = None
        if self.settings != self._connect_settings:
            head = Entry(self.settings.command())
        return self.outbox.rewind(head, _CONFIG_PREFIX)

    def idle_closed(self) -> None:
        """The server closed the socket as idle with no turn open: it heard all the audio and
        found no turn in it, so nothing is replayed (rule 9)."""
        self.outbox.trim_head(0, _KEEP)

    def unanswered_turns(self) -> tuple[int, ...]:
        """The open turn (rule 8), whose ``turn.end`` never came; empty once DONE."""
        if self.state is State.DONE:
            return ()
        turn = self.turn or self._resumed
        return (turn.index,) if turn is not None else ()

    # -- events ----------------------------------------------------------------------------

    def parse(self, message: str) -> TurnEvent:
        """Decode one server text message (:func:`~.events.parse_turn_event`).

        Raises:
            ProtocolError: If it is not a well-formed event.
        """
        return parse_turn_event(message)

    def fatal(self, event: ErrorEvent) -> bool:
        """Rule 7: an ``error`` ends the session unless it says ``"done": false``."""
        return event.done is not False

    def log_text(self, event: TurnEvent) -> str | None:
        """The transcript text ``event`` adds to the session (logged only on request)."""
        return event.transcript if isinstance(event, TurnEndEvent) else None

    def socket_ended(self, code: int | None) -> None:
        """Rule 8: a 1000 close after our ``close`` with no turn open ends the session."""
        if (
            self.state is State.CLOSING
            and code == 1000
            and self._close_written
            and not self._turn_open
        ):
            self.state = State.DONE
            self.outbox.clear_journal()

    def end_locally(self, now: float) -> list[Turn]:
        """End the session without the server (nothing was owed after an idle close)."""
        if not self._turn_open:
            self.state = State.DONE
            self.outbox.clear_journal()
        return []

    @property
    def next_deadline(self) -> float | None:
        """No timer runs on this endpoint."""
        return None

    def poll(self, now: float) -> list[Turn]:
        """No timer runs on this endpoint: nothing expires."""
        return []

    def _open_turn(self) -> Turn:
        """Rule 3: the turn of an event arriving in IDLE (a resumed one, rule 10, or new)."""
        turn = self._resumed
        self._resumed = None
        if turn is None:
            turn = Turn(index=self._next_index, request_id=self.request_id, start=self.position)
            self._next_index += 1
            self.signals.append(TurnSignal("start", turn))
        self.turn = turn
        self.phase = Phase.SPEAKING
        self.idle_changed = True  # rule 11: the writer arms the silence fill
        return turn

    def _text(self, turn: Turn, text: str) -> None:
        if len(text) > len(turn.interim) or (text and text != turn.interim):
            turn.speech_end = self.position
        turn.interim = text
        self.transcript.interim = text

    def receive(self, event: TurnEvent, now: float) -> list[Turn]:
        """Feed one server event (rules 2-7).

        Returns:
            The turn that ended, if any.
        """
        rid = getattr(event, "request_id", None)
        if isinstance(rid, str) and rid and not self.request_id:
            self.request_id = rid
        if isinstance(event, ConnectedEvent):
            self.connected = True
            return []
        if isinstance(event, ErrorEvent):
            if self.state is not State.DONE and self.fatal(event):
                self.state = State.FAILED
            return []
        if isinstance(event, TurnStartEvent):
            if self.turn is None:
                self._open_turn()
            return []
        if isinstance(event, TurnUpdateEvent):
            turn = self.turn or self._open_turn()
            self._text(turn, event.transcript)
            return []
        if isinstance(event, TurnEagerEndEvent):
            turn = self.turn or self._open_turn()
            standing = turn.interim if self.phase is Phase.EAGER else self._standing_eager
            repeat = event.transcript == standing
            self._standing_eager = None
            self._text(turn, event.transcript)
            self.phase = Phase.EAGER
            if not repeat:
                turn.eager_end = self.position
                turn.eager_ends += 1
                self.signals.append(TurnSignal("eager", turn, event.transcript))
            return []
        if isinstance(event, TurnResumeEvent):
            current = self.turn
            if current is not None and self.phase is Phase.EAGER:
                self.phase = Phase.SPEAKING
                current.eager_end = None
                current.resumes += 1
                self._standing_eager = None
                self.signals.append(TurnSignal("resume", current))
            return []
        if isinstance(event, TurnEndEvent):
            turn = self.turn or self._open_turn()
            text = event.transcript
            if text and text != turn.interim:
                turn.speech_end = self.position
            turn.text = text
            turn.end = self.position
            turn.complete = True
            if not turn.request_id:
                turn.request_id = self.request_id
            self.turn = None
            self._standing_eager = None
            self.phase = Phase.IDLE
            self.transcript.turns.append(turn)
            self.transcript._parts.append(text)
            self.transcript.interim = ""
            # Rule 9: the audio written before this answer is answered (replaying it could
            # make the server find the ended turn's tail again, a turn.end twice).
            self.outbox.trim_head(0, _KEEP)
            self._journal_lossy = False
            self.signals.append(TurnSignal("end", turn, text))
            return [turn]
        return []  # rule 7: an unknown event changes nothing


_KEEP: Final = frozenset({CLOSE_COMMAND})
