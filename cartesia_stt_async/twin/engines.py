"""Recognition engines of the twin: the interface, and the scripted engine for exact tests.

An :class:`Engine` opens one :class:`RecognizerSession` per WebSocket connection. The server
feeds it audio as frames arrive and asks it for final segments on ``finalize`` and ``close``.
Methods are coroutines so an engine with CPU-bound decoding can run it in a worker thread
without blocking the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..protocol.audio import BYTES_PER_SAMPLE
from ..protocol.session import ServerOrder

__all__ = [
    "Engine",
    "RawTurn",
    "RecognizerSession",
    "Reply",
    "ScriptedEngine",
    "ScriptsTurns",
    "Segment",
    "SessionParams",
    "Turn",
]


@dataclass(frozen=True)
class SessionParams:
    """The validated query parameters of one connection."""

    model: str
    encoding: str
    sample_rate: int
    language: str | None = None
    keyterms: tuple[str, ...] = ()
    min_volume: float | None = None
    max_silence_duration_secs: float | None = None
    version: str | None = None


@dataclass(frozen=True)
class Segment:
    """One transcript chunk to send: ``text`` is a delta, sent verbatim."""

    text: str
    is_final: bool = True
    duration: float | None = None
    language: str | None = None
    words: tuple[tuple[str, float, float], ...] | None = None


class RecognizerSession(Protocol):
    """One connection's recognizer."""

    async def feed(self, audio: bytes) -> Sequence[Segment]:
        """Take one binary frame; return interim segments to send now (may be empty)."""
        ...

    async def finalize(self) -> Sequence[Segment]:
        """Recognize the audio buffered since the last finalize; return its segments."""
        ...

    async def close(self) -> Sequence[Segment]:
        """Recognize whatever is left at ``close``; return its segments."""
        ...

    async def aclose(self) -> None:
        """Release resources; called exactly once when the connection ends."""
        ...


class Engine(Protocol):
    """Makes a recognizer per connection.

    Attributes:
        order: Whether a finalize's final segments go out before its ``flush_done``
            (``finals_first``, current Cartesia docs) or after it (``flush_first``, older docs).
    """

    order: ServerOrder

    async def open(self, params: SessionParams) -> RecognizerSession:
        """Create the recognizer of one connection."""
        ...


@dataclass(frozen=True)
class Reply:
    """The scripted answer to one finalize: interim chunks, then final deltas, verbatim."""

    finals: Sequence[str]
    interims: Sequence[str] = ()


@dataclass(frozen=True)
class Turn:
    """The scripted text of one turn on ``/stt/turns/websocket`` (the twin's detector still
    decides *when*, from the audio).

    The twin sends ``turn.start`` at the speech onset, then ``updates`` one per audio frame
    received while the turn is speaking; any left are sent before the turn's
    ``turn.eager_end`` or ``turn.end``. Texts are sent verbatim, so a script may also break
    the rules (a revised text, say) to test a client.

    Attributes:
        updates: The ``turn.update`` transcripts, in order.
        eager_end: The transcript of every ``turn.eager_end`` of the turn; ``None``: the last
            text sent (``""`` if none).
        end: The ``turn.end`` transcript; ``None``: the last text sent.
        resumed: ``turn.update`` transcripts to send after the turn's first ``turn.resume``.
    """

    updates: Sequence[str] = ()
    eager_end: str | None = None
    end: str | None = None
    resumed: Sequence[str] = ()


@dataclass(frozen=True)
class RawTurn:
    """One turn's events verbatim: what the twin sends at each of the detector's decisions,
    in place of its own event (``request_id`` is added to an event that lacks one).

    Attributes:
        start: Sent when the turn starts (instead of ``turn.start``).
        eager_end: Sent at each eager end.
        resume: Sent at each resume.
        end: Sent when the turn ends (instead of ``turn.end``).
    """

    start: Sequence[Mapping[str, Any]] = ()
    eager_end: Sequence[Mapping[str, Any]] = ()
    resume: Sequence[Mapping[str, Any]] = ()
    end: Sequence[Mapping[str, Any]] = ()


@runtime_checkable
class ScriptsTurns(Protocol):
    """A recognizer session that may script the turns of ``/stt/turns/websocket``."""

    def next_turn(self) -> Turn | RawTurn | None:
        """The script of the turn starting now, or ``None`` to recognize its text."""
        ...


@dataclass
class _ScriptedSession:
    engine: ScriptedEngine
    params: SessionParams
    record: list[int]
    cursor: int = 0
    turn_cursor: int = 0
    buffered: int = 0
    total: int = 0
    audio: bytearray = field(default_factory=bytearray)

    async def feed(self, audio: bytes) -> Sequence[Segment]:
        self.buffered += len(audio)
        self.total += len(audio)
        if self.engine.by_audio is not None:
            self.audio += audio
        return ()

    def _next_reply(self) -> Sequence[str] | Reply | None:
        by_audio = self.engine.by_audio
        if by_audio is not None:
            audio, self.audio = bytes(self.audio), bytearray()
            return by_audio(audio) if callable(by_audio) else by_audio.get(audio)
        replies = self.engine.replies
        self.cursor += 1
        return replies[self.cursor - 1] if self.cursor <= len(replies) else None

    def _has_reply(self) -> bool:
        if self.engine.by_audio is not None:
            return True
        return self.cursor < len(self.engine.replies)

    def _answer(self) -> list[Segment]:
        nbytes, self.buffered = self.buffered, 0
        self.record.append(nbytes)
        reply = self._next_reply()
        if reply is None:
            return []
        if not isinstance(reply, Reply):
            reply = Reply(finals=list(reply))
        width = BYTES_PER_SAMPLE[self.params.encoding]
        duration = nbytes / (width * self.params.sample_rate)
        language = self.params.language or "en"
        out = [Segment(text, is_final=False, language=language) for text in reply.interims]
        out += [
            Segment(text, is_final=True, duration=duration, language=language)
            for text in reply.finals
        ]
        return out

    async def finalize(self) -> Sequence[Segment]:
        return self._answer()

    async def close(self) -> Sequence[Segment]:
        if self.buffered and self._has_reply():
            return self._answer()
        return []

    async def aclose(self) -> None:
        return None

    def next_turn(self) -> Turn | RawTurn | None:
        turns = self.engine.turns
        self.turn_cursor += 1
        return turns[self.turn_cursor - 1] if self.turn_cursor <= len(turns) else None


@dataclass
class ScriptedEngine:
    """Answers the k-th ``finalize`` of each connection with ``replies[k]``, verbatim.

    Each reply is a list of final deltas, or a :class:`Reply` with interim chunks first.
    A finalize past the end of the script gets no transcript, only ``flush_done``. On
    ``close``, audio that arrived since the last finalize gets the next reply, if any.

    With ``by_audio``, replies are keyed by the utterance's audio instead: the exact bytes
    received since the previous finalize (a mapping from bytes, or a function of them that
    returns ``None`` for no transcript). This is how a real recognizer behaves, and what makes
    reconnect tests exact: when a client replays an utterance on a new connection (the k-th
    finalize of the old connection may be the first of the new one), the same audio gets the
    same text. ``replies`` is then unused.

    On ``/stt/turns/websocket``, ``turns`` scripts whole turns: the k-th turn of each
    connection follows ``turns[k]`` (a :class:`Turn` or a :class:`RawTurn`). Turns past its
    end are recognized: each phrase (speech up to a pause of 250 ms, an eager end or an end)
    is one finalize, answered by the next of ``replies`` (or by ``by_audio``); the turn's text
    is its phrases' texts joined.

    Args:
        replies: The script.
        order: ``finals_first`` (default) or ``flush_first``.
        by_audio: Replies keyed by utterance audio (see above).
        turns: Turn scripts for ``/stt/turns/websocket``.

    Attributes:
        utterance_bytes: Per connection, the audio bytes of each answered finalize/close.
    """

    replies: Sequence[Sequence[str] | Reply] = ()
    order: ServerOrder = "finals_first"
    utterance_bytes: list[list[int]] = field(default_factory=list)
    by_audio: (
        Mapping[bytes, Sequence[str] | Reply]
        | Callable[[bytes], Sequence[str] | Reply | None]
        | None
    ) = None
    turns: Sequence[Turn | RawTurn] = ()

    async def open(self, params: SessionParams) -> RecognizerSession:
        """Start a connection's cursor at the first reply."""
        record: list[int] = []
        self.utterance_bytes.append(record)
        return _ScriptedSession(self, params, record)
