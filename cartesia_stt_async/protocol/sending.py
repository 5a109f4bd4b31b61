"""The sending half every session shares: its life states, audio cut into frames, the buffer
policies, the outbox and its bounded replay journal, keepalive silence (pure: no I/O, no clock).

Both endpoints' sessions (:class:`~.session.Session` for manual finalize,
:class:`~.turns.TurnSession` for turn detection) derive from :class:`AudioSession`, so audio is
queued, dropped, paced, journaled and replayed by one piece of code. A subclass adds its
commands, the events it reads, and what it does with an item once it is written
(:meth:`AudioSession._on_taken`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any, Final

from ..errors import ConnectionStateError
from .audio import (
    DEFAULT_FRAME_MS,
    SNIFF_BYTES,
    AudioFormat,
    Reframer,
    audio_bytes,
    check_not_a_file,
)
from .outbox import ConnectionStats, Entry, Outbox

__all__ = ["AudioSession", "State", "silence"]

_SILENCE: Final = {"pcm_mulaw": b"\xff", "pcm_alaw": b"\xd5"}


def silence(audio_format: AudioFormat, nbytes: int) -> bytes:
    """``nbytes`` of digital silence in ``audio_format`` (mu-law and A-law have no zero byte)."""
    return _SILENCE.get(audio_format.encoding, b"\x00") * nbytes


class State(IntEnum):
    """Where a session is in its life."""

    OPEN = 0
    CLOSING = 1
    DONE = 2
    FAILED = 3


class AudioSession:
    """Pure sending state of one connection: the outbox, the reframer, the replay bound.

    Args:
        audio_format: The session's encoding and sample rate.
        frame_ms: Frame length for :meth:`audio` (100 ms by default).
        max_replay_bytes: Bound of the replay journal; ``None``: unbounded.
        stats: Counters to update (a new :class:`ConnectionStats` by default).

    Attributes:
        outbox: What to write, and what was written but not yet answered.
        state: The session's :class:`State`.
    """

    #: How to open a new session, for error messages.
    REOPEN_HINT = "client.stt.manual_finalize.websocket(...)"
    #: What the server does to answer ``close``, for error messages.
    CLOSE_ANSWER = "answer 'close' with 'done'"
    #: The ``close`` command as written on the wire.
    CLOSE_COMMAND = "close"

    def __init__(
        self,
        audio_format: AudioFormat,
        *,
        frame_ms: int = DEFAULT_FRAME_MS,
        max_replay_bytes: int | None = None,
        stats: ConnectionStats | None = None,
    ) -> None:
        self.format = audio_format
        self._bytes_per_second = audio_format.bytes_per_second
        self.frame_bytes = audio_format.frame_bytes(frame_ms)
        self.max_replay_bytes = max_replay_bytes
        self.state = State.OPEN
        self.request_id = ""
        self.stats = stats if stats is not None else ConnectionStats()
        self.outbox = Outbox(self.stats)
        self._reframer = Reframer(self.frame_bytes, audio_format.sample_width)
        self._speed: float | None = None  # pacing of the audio held back by the reframer
        self._journal_lossy = False
        # Set when what an idle socket needs changed (a turn opened): the writer re-arms.
        self.idle_changed = False
        self._sniffed = False  # the session's first audio bytes were checked (check_not_a_file)

    # -- state -----------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self.state is not State.OPEN:
            reason = {
                State.CLOSING: "after 'close' was sent",
                State.DONE: "after the session ended",
                State.FAILED: "after the server reported an error",
            }[self.state]
            raise ConnectionStateError(
                f"cannot {what} {reason}; to send more, open a new session ({self.REOPEN_HINT})"
            )

    @property
    def finished(self) -> bool:
        """True once the session ended cleanly (DONE): nothing more is owed."""
        return self.state is State.DONE

    @property
    def closing(self) -> bool:
        """True while ``close`` is queued or written and its answer has not come."""
        return self.state is State.CLOSING

    # -- audio -----------------------------------------------------------------------------

    def _sniff(self, chunk: object, start: int) -> None:
        """Check the session's first audio bytes (rule: raw samples, not a file)."""
        data = audio_bytes(chunk)
        if len(data) > start:
            check_not_a_file(memoryview(data)[start : start + SNIFF_BYTES], self.format)
            self._sniffed = True

    def audio(
        self,
        chunk: bytes | bytearray | memoryview,
        speed: float | None = None,
        at: float | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> int:
        """Queue audio of any size, cut into exact frames (the remainder is held back).

        Args:
            chunk: Audio in the session's encoding.
            speed: Pacing of these frames (1.0 real time), ``None`` unpaced.
            at: When the caller handed it over (monotonic time): live audio is paced by it.
            start: Queue ``chunk[start:stop]`` only (a ``bytes`` chunk is not copied).
            stop: See ``start``; ``None``: to the end.

        Returns:
            How many frames were queued.

        Raises:
            ConnectionStateError: If the session is no longer open.
            InvalidAudioError: If ``chunk`` is not bytes-like.
        """
        if self.state is not State.OPEN:
            self._check_open("send audio")
        if not self._sniffed:
            self._sniff(chunk, start)
        self._speed = speed
        reframer = self._reframer
        if (
            type(chunk) is bytes
            and len(chunk) == reframer.frame_bytes
            and not start
            and stop is None
            and not reframer.pending
        ):
            self.outbox.append(Entry(chunk, speed, None, at))  # one whole frame, as it is
            return 1
        frames = reframer.push(audio_bytes(chunk), start, stop)
        append = self.outbox.append
        for frame in frames:
            append(Entry(frame, speed, None, at))
        return len(frames)

    def audio_through(self, chunk: bytes, speed: float | None, at: float) -> Entry | None:
        """Take one whole live frame for writing at once, without queueing it, when nothing
        is queued or held back (the relay's usual case); else ``None``, and nothing was done
        (the caller queues it with :meth:`audio`).

        What :meth:`audio` then :meth:`next_item` do for such a frame, in one step: the
        returned entry counts as written from now on (it is in the journal, see
        :meth:`_on_taken`); the caller must write it next, as :meth:`next_item`'s.

        Args:
            chunk: Audio in the session's encoding.
            speed: Pacing of the frame (1.0 real time), ``None`` unpaced.
            at: When the caller handed it over, which is also now (monotonic time).
        """
        reframer = self._reframer
        outbox = self.outbox
        if (
            self.state is not State.OPEN
            or not self._sniffed
            or len(chunk) != reframer.frame_bytes
            or reframer.pending
            or outbox.queue
        ):
            return None
        self._speed = speed
        entry = Entry(chunk, speed, None, at)
        outbox.write_through(entry)
        self._on_taken(entry, False, at)
        limit = self.max_replay_bytes
        if limit is not None and outbox.journal_bytes > limit:
            self._bound_journal(limit)
        return entry

    def skip_audio(self, nbytes: int) -> int:
        """Drop the held-back partial frame and the next ``nbytes`` of the caller's audio.

        For a buffer policy that keeps only the newest audio of a chunk: the caller passes the
        rest of the chunk to :meth:`audio`. ``nbytes`` + the held-back bytes must make whole
        frames, so the frames that follow stay aligned. Counted in ``dropped_audio_bytes``.

        Returns:
            The bytes dropped (held back + ``nbytes``).
        """
        dropped = self._reframer.discard() + nbytes
        self.stats.dropped_audio_bytes += dropped
        return dropped

    def make_room(self, nbytes: int, limit: int) -> int:
        """Drop the oldest queued audio so ``nbytes`` more fit in ``limit`` (``drop_oldest``).

        Queued audio is dropped oldest first. When ``nbytes`` alone overfill the queue, only
        the newest whole frames of the new audio are kept: its head and the held-back partial
        frame are dropped unsent, so a huge chunk is never cut into frames to discard.

        Returns:
            How many bytes of the head of the new audio the caller must skip.
        """
        excess = self.stats.queued_bytes + nbytes - limit
        if excess <= 0:
            return 0
        self.outbox.drop_oldest(excess)
        held, frame = self._reframer.pending, self.frame_bytes
        full = (held + nbytes) // frame
        keep = max(limit // frame, 1)
        if full <= keep:
            return 0
        skip = (full - keep) * frame - held
        self.skip_audio(skip)
        return skip

    def _flush_remainder(self) -> None:
        rest = self._reframer.flush()
        if rest:
            self.outbox.append(Entry(rest, self._speed))

    def raw_audio(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one binary message as-is and unpaced (after any audio held back by
        :meth:`audio`).

        Raises:
            ConnectionStateError: If the session is no longer open.
            InvalidAudioError: If ``data`` is not bytes-like or not whole samples.
        """
        self._check_open("send audio")
        data = audio_bytes(data)
        if not self._sniffed:
            self._sniff(data, 0)
        self.format.check_aligned(len(data))
        self._flush_remainder()
        if data:
            self.outbox.append(Entry(bytes(data)))

    def close(self) -> None:
        """Flush the partial frame and queue ``close``; the session becomes CLOSING.

        Raises:
            ConnectionStateError: If ``close`` was already queued or the session ended.
            InvalidAudioError: If the held-back audio ends in the middle of a sample. The
                stray bytes are dropped and ``close`` is queued all the same.
        """
        self._check_open("close")
        self.state = State.CLOSING
        try:
            self._flush_remainder()
        finally:
            self.outbox.append(Entry(self.CLOSE_COMMAND))

    @property
    def pending_audio(self) -> int:
        """Bytes of audio held back, waiting for the rest of their frame."""
        return self._reframer.pending

    def keepalive(self) -> bool:
        """Queue one frame of silence to keep an idle socket open.

        Nothing when the session is not open, something is queued, or audio is held back
        mid-frame (silence then would be sent ahead of older audio).

        Returns:
            True when a frame was queued.
        """
        if self.state is not State.OPEN or self._reframer.pending or self.outbox.pending:
            return False
        self.outbox.append(Entry(silence(self.format, self.frame_bytes), None))
        self.stats.keepalives_sent += 1
        return True

    def idle_deadline(self, last_write: float, keepalive: float | None) -> float | None:
        """When :meth:`fill_idle` should next be called, with nothing to write since
        ``last_write``; ``None``: never (keepalive off).

        Args:
            last_write: When the writer last wrote something (monotonic time).
            keepalive: The ``keepalive`` option (seconds), or ``None``.
        """
        return None if keepalive is None else last_write + keepalive

    def fill_idle(self) -> bool:
        """The idle deadline passed: queue what an idle socket needs (keepalive silence).

        Returns:
            True when something was queued.
        """
        return self.keepalive()

    # -- writing ---------------------------------------------------------------------------

    def next_item(self, now: float) -> Entry | None:
        """The next item to write; ``None`` when nothing waits (:attr:`replaying` says whether
        it is a replay). From now on the item counts as written (see :meth:`_on_taken`)."""
        entry = self.outbox.take()
        if entry is None:
            return None
        self._on_taken(entry, self.outbox.replayed, now)
        limit = self.max_replay_bytes
        if self.state is State.DONE:
            self.outbox.clear_journal()
        elif limit is not None and self.outbox.journal_bytes > limit:
            self._bound_journal(limit)
        return entry

    def _on_taken(self, entry: Entry, replay: bool, now: float) -> None:
        """A subclass's bookkeeping for an item just taken for writing."""

    def _bound_journal(self, limit: int) -> None:
        """Drop the journal's oldest audio past ``max_replay_bytes`` (replay no longer exact)."""
        outbox = self.outbox
        while outbox.journal_bytes > limit:
            dropped, owner = outbox.drop_journal_audio()
            if not dropped:
                break
            self._journal_lost(owner)

    def _journal_lost(self, owner: object) -> None:
        """The journal lost audio of ``owner`` (an utterance, or ``None``) to its bound."""
        self._journal_lossy = True

    @property
    def replaying(self) -> bool:
        """Whether the item :meth:`next_item` returned last is a replay (unpaced)."""
        return self.outbox.replayed

    @property
    def replay_complete(self) -> bool:
        """False while the journal has lost audio to its bound."""
        return not self._journal_lossy

    @property
    def journal_empty(self) -> bool:
        """True when nothing written awaits an answer (a new socket would replay nothing)."""
        return self.outbox.journal_empty

    # -- what each endpoint's session defines (the I/O layer calls only these) ---------------

    def parse(self, message: str) -> Any:
        """Decode one server text message into an event of this endpoint.

        Raises:
            ProtocolError: If it is not a well-formed event.
        """
        raise NotImplementedError

    def receive(self, event: Any, now: float) -> Sequence[Any]:
        """Feed one decoded event; return what it completed (answers to resolve, in order)."""
        raise NotImplementedError

    def poll(self, now: float) -> Sequence[Any]:
        """Expire timers; return what became complete."""
        raise NotImplementedError

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`poll` should next be called, or ``None``."""
        raise NotImplementedError

    def fatal(self, event: Any) -> bool:
        """Whether an ``error`` event ends the session (every one does, unless the endpoint's
        session says otherwise)."""
        return True

    def log_text(self, event: Any) -> str | None:
        """The transcript text ``event`` adds (logged only with ``log_transcripts``)."""
        raise NotImplementedError

    def socket_ended(self, code: int | None) -> None:
        """The socket ended with close ``code`` (the session may now be DONE)."""
        raise NotImplementedError

    def end_locally(self, now: float) -> Sequence[Any]:
        """End the session without the server (``close`` queued, nothing owed)."""
        raise NotImplementedError

    def rewind(self) -> int:
        """The socket was replaced: queue the replay first; how many items it has."""
        raise NotImplementedError

    def idle_closed(self) -> None:
        """The server closed the socket as idle while owing nothing (a routine close)."""

    @property
    def has_unanswered(self) -> bool:
        """True while the server owes an answer (repair a drop now)."""
        raise NotImplementedError

    def unanswered_turns(self) -> tuple[int, ...]:
        """The turns whose text the server still owes, for a session ending now."""
        raise NotImplementedError
