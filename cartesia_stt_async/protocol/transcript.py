"""The transcript accumulator: final deltas concatenated verbatim (pure).

Cartesia's ``transcript`` events carry DELTAS. The full transcript is the concatenation of the
``text`` of every ``is_final`` chunk, in arrival order, exactly as sent: never stripped, never
joined with separators (docs/protocol.md: ``"This is a"`` + ``" single sentence."``). Interim
chunks (``is_final: false``) are a preview of the text since the last final chunk; they never
enter the transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import Word

__all__ = ["Transcript", "Utterance"]


@dataclass(eq=False, slots=True)
class Utterance:
    """The result of one ``finalize``: the final deltas that answered it.

    Attributes:
        index: 0 for the first finalize of the session, then 1, 2, ...
        text: Its final deltas concatenated verbatim.
        words: Word timings from those deltas (empty when the server sent none).
        request_id: The session's request id.
        audio_seconds: Seconds of audio the client sent for it.
        finalize_sent_at: Monotonic time the ``finalize`` command was written, if it was.
        flushed_at: Monotonic time its ``flush_done`` arrived, if it did.
        final_chunks: How many final chunks it received.
        complete: True once no more deltas will be attributed to it.
    """

    index: int
    text: str = ""
    words: list[Word] = field(default_factory=list)
    request_id: str = ""
    audio_seconds: float = 0.0
    finalize_sent_at: float | None = None
    flushed_at: float | None = None
    final_chunks: int = 0
    complete: bool = False

    @property
    def latency(self) -> float | None:
        """Seconds from writing ``finalize`` to receiving its ``flush_done`` (None if unknown)."""
        if self.finalize_sent_at is None or self.flushed_at is None:
            return None
        return self.flushed_at - self.finalize_sent_at

    def _add_final(self, text: str, words: list[Word] | None, request_id: str) -> None:
        self.text += text
        self.final_chunks += 1
        if words:
            self.words.extend(words)
        if request_id:
            self.request_id = request_id

    def _reset(self) -> None:
        """Forget the answer (its utterance is being replayed on a new connection)."""
        self.text = ""
        self.words = []
        self.final_chunks = 0
        self.flushed_at = None
        self.complete = False

    def __repr__(self) -> str:
        lat = f"{self.latency:.3f}s" if self.latency is not None else "None"
        return (
            f"Utterance(index={self.index}, text={self.text!r}, words={len(self.words)}, "
            f"latency={lat}, complete={self.complete})"
        )


class Transcript:
    """Everything recognized in a session so far.

    Attributes:
        utterances: Completed utterances, in finalize order.
        interim: The latest interim (non-final) text since the last final chunk.
    """

    __slots__ = ("_cache", "_parts", "interim", "utterances")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._cache: str | None = ""
        self.interim = ""
        self.utterances: list[Utterance] = []

    @property
    def text(self) -> str:
        """Every final delta concatenated verbatim, in arrival order."""
        if self._cache is None:
            self._cache = "".join(self._parts)
        return self._cache

    @property
    def final_chunks(self) -> int:
        """How many final chunks have been received."""
        return len(self._parts)

    def delta(self, index: int) -> str:
        """The ``index``-th final delta (0: the first), exactly as received."""
        return self._parts[index]

    def add_final(self, text: str) -> None:
        """Append one final delta exactly as received and clear the interim view."""
        self._parts.append(text)
        self._cache = None
        self.interim = ""

    def _truncate(self, chunks: int) -> None:
        """Keep only the first ``chunks`` final deltas (the rest are being replayed)."""
        if chunks < len(self._parts):
            del self._parts[chunks:]
            self._cache = None
        self.interim = ""

    def set_interim(self, text: str) -> None:
        """Replace the interim view with the latest non-final chunk's text."""
        self.interim = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return (
            f"Transcript(text={self.text!r}, interim={self.interim!r}, "
            f"utterances={len(self.utterances)})"
        )
