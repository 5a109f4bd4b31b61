"""The session state machine of one manual-finalize connection (pure: no I/O, no clock).

Theory of operation
-------------------
The I/O layer *commands* the session (``audio``, ``raw_audio``, ``finalize``, ``close``), which
returns the exact :data:`Outgoing` items to write, in order: audio frames as ``bytes``, commands as
``str``. It *feeds* every decoded server event to :meth:`Session.receive` and every timer expiry
to :meth:`Session.poll`; both return the utterances that just became complete, so the I/O layer
can resolve whoever awaits them. Time is always a parameter (``now``), never read here.

States (an :class:`IntEnum`)::

    OPEN ──close()──▶ CLOSING ──done event──▶ DONE
      │                  │
      └── error event ───┴──▶ FAILED

Rules:

1. Audio and commands may only be queued while OPEN. After ``close()`` every send is a
   :class:`~cartesia_stt_async.errors.ConnectionStateError`.
2. Each ``finalize`` opens a ticket (an :class:`Utterance`); ``flush_done`` events acknowledge
   tickets first in, first out.
3. Final deltas go to the utterance being answered: the oldest ticket whose ``flush_done`` has
   not arrived; with no ticket outstanding, the audio not yet finalized (the server may flush it
   on its own, or on ``close``).
4. Servers have been documented to send a finalize's final chunks either *before* its
   ``flush_done`` (current docs; the default of our twin) or *after* it (older docs), see
   protocol.md §10.1 and §11. So when ``flush_done`` arrives for an utterance that has no final
   text yet, and the server has not yet shown that it sends finals first, the utterance stays
   open for ``late_final_grace`` seconds (re-armed by every late chunk): final deltas arriving
   in that window are its own. It completes when the window ends, on the next ``flush_done``,
   or on ``done``. Once any utterance received its finals before its ``flush_done``, the server
   is known to send finals first and silent utterances complete at their ``flush_done``.
5. The transcript (all final deltas, verbatim, arrival order) never depends on rule 4: only the
   attribution of deltas to utterances does.

Replay (reconnecting without losing or repeating anything)
----------------------------------------------------------
6. Every item the I/O layer reports written (:meth:`Session.sent`) goes into a *journal*. When an
   utterance is sealed (complete: rule 4), the journal is trimmed through its ``finalize``:
   what remains is exactly what a new server session would need to hear again, namely the
   audio and commands of every utterance not yet answered, in wire order.
7. When the socket is replaced, :meth:`Session.rewind` returns the journal to write first on
   the new socket, and rolls back what the old socket said about those utterances: their final
   deltas leave the transcript (the replay makes the server say them again, so keeping them
   would duplicate them), a late window is reopened as an unanswered ticket. Items queued but
   never written follow the replay, in order. Sealed utterances are never replayed, so their
   text is never repeated.
8. The journal is bounded (``max_replay_bytes``): past the bound its oldest audio is dropped and
   :attr:`Session.replay_complete` is false until that utterance is answered; an exact replay
   is then impossible and the I/O layer must not pretend otherwise.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from itertools import islice

from ..errors import ConnectionStateError, InvalidAudioError
from .audio import DEFAULT_FRAME_MS, AudioFormat, Reframer, as_bytes_view
from .events import DoneEvent, ErrorEvent, Event, FlushDoneEvent, TranscriptEvent
from .transcript import Transcript, Utterance

__all__ = ["FinalOrder", "Outgoing", "Session", "State"]

Outgoing = bytes | str
"""One message to write: ``bytes`` is a binary audio frame, ``str`` a text command."""


class State(IntEnum):
    """Where the session is in its life."""

    OPEN = 0
    CLOSING = 1
    DONE = 2
    FAILED = 3


class FinalOrder(IntEnum):
    """What the server has shown about the order of finals and ``flush_done``."""

    UNKNOWN = 0
    FINALS_FIRST = 1
    FLUSH_FIRST = 2


class Session:
    """Pure protocol state of one connection.

    Args:
        audio_format: The session's encoding and sample rate.
        frame_ms: Frame length for :meth:`audio` (100 ms by default).
        late_final_grace: Seconds an utterance waits for late final chunks after its
            ``flush_done`` (rule 4 above).
        max_replay_bytes: Bound of the replay journal (rule 8); ``None``: unbounded.
    """

    def __init__(
        self,
        audio_format: AudioFormat,
        *,
        frame_ms: int = DEFAULT_FRAME_MS,
        late_final_grace: float = 0.25,
        max_replay_bytes: int | None = None,
    ) -> None:
        self.format = audio_format
        self.frame_bytes = audio_format.frame_bytes(frame_ms)
        self.late_final_grace = late_final_grace
        self.state = State.OPEN
        self.order = FinalOrder.UNKNOWN
        self.transcript = Transcript()
        self.request_id = ""
        self.error: ErrorEvent | None = None
        self.audio_bytes = 0
        self.unmatched_flush_done = 0
        self._reframer = Reframer(self.frame_bytes, audio_format.sample_width)
        self._next_index = 0
        self._open = self._new_utterance()
        self._pending: deque[Utterance] = deque()  # finalized, awaiting flush_done
        self._unsent: deque[Utterance] = deque()  # finalize queued, not yet written
        self._late: Utterance | None = None
        self._late_deadline: float | None = None
        # Rule 6: written items since the last sealed utterance, with the ticket of a finalize.
        self._journal: deque[tuple[Outgoing, Utterance | None]] = deque()
        self.journal_bytes = 0
        self.max_replay_bytes = max_replay_bytes
        self._journal_lossy = False
        self._lossy_owner: Utterance | None = None  # the latest utterance that lost audio
        self._sealed_parts = 0  # transcript chunks that belong to sealed utterances
        self._replaying: deque[Utterance] = deque()  # tickets of replayed finalizes, in order

    # -- commands --------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self.state is not State.OPEN:
            reason = {
                State.CLOSING: "after 'close' was sent",
                State.DONE: "after the session ended",
                State.FAILED: "after the server reported an error",
            }[self.state]
            raise ConnectionStateError(f"cannot {what} {reason}")

    def _new_utterance(self) -> Utterance:
        utt = Utterance(index=self._next_index)
        self._next_index += 1
        return utt

    def _account(self, nbytes: int) -> None:
        self.audio_bytes += nbytes
        self._open.audio_seconds += self.format.duration(nbytes)

    def audio(self, chunk: bytes | bytearray | memoryview) -> list[Outgoing]:
        """Queue audio of any size; return the complete frames now ready to send.

        Raises:
            ConnectionStateError: If the session is no longer open.
            InvalidAudioError: If ``chunk`` is not bytes-like.
        """
        self._check_open("send audio")
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidAudioError(
                f"audio must be bytes, bytearray or memoryview, got {type(chunk).__name__}"
            )
        frames: list[Outgoing] = list(self._reframer.push(as_bytes_view(chunk)))
        for frame in frames:
            self._account(len(frame))
        return frames

    def _flush_remainder(self) -> list[Outgoing]:
        rest = self._reframer.flush()
        if rest:
            self._account(len(rest))
            return [rest]
        return []

    def raw_audio(self, data: bytes | bytearray | memoryview) -> list[Outgoing]:
        """Queue one binary message as-is (after any audio held back by :meth:`audio`).

        Raises:
            ConnectionStateError: If the session is no longer open.
            InvalidAudioError: If ``data`` is not bytes-like or not whole samples.
        """
        self._check_open("send audio")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidAudioError(
                f"audio must be bytes, bytearray or memoryview, got {type(data).__name__}"
            )
        data = as_bytes_view(data)
        self.format.check_aligned(len(data))
        out = self._flush_remainder()
        if data:
            self._account(len(data))
            out.append(bytes(data))
        return out

    def finalize(self) -> tuple[list[Outgoing], Utterance]:
        """Flush the partial frame and queue ``finalize``.

        Returns:
            The items to write, and the ticket: the :class:`Utterance` that will hold the answer.

        Raises:
            ConnectionStateError: If the session is no longer open.
            InvalidAudioError: If the held-back audio ends in the middle of a sample.
        """
        self._check_open("finalize")
        out = self._flush_remainder()
        out.append("finalize")
        ticket = self._open
        self._pending.append(ticket)
        self._unsent.append(ticket)
        self._open = self._new_utterance()
        return out, ticket

    def close(self) -> list[Outgoing]:
        """Flush the partial frame and queue ``close``; the session becomes CLOSING.

        Raises:
            ConnectionStateError: If ``close`` was already queued or the session ended.
            InvalidAudioError: If the held-back audio ends in the middle of a sample. The
                stray bytes are dropped and the session is CLOSING all the same: the caller
                must still write ``"close"`` (nothing else would end the session).
        """
        self._check_open("close")
        try:
            out = self._flush_remainder()
        finally:
            self.state = State.CLOSING
        out.append("close")
        return out

    @property
    def pending_audio(self) -> int:
        """Bytes of audio held back, waiting for the rest of their frame."""
        return self._reframer.pending

    def keepalive(self) -> list[Outgoing]:
        """One frame of silence to keep an idle socket open, or nothing.

        Nothing when the session is not open or audio is held back mid-frame (silence then
        would be sent ahead of older audio). The silence is audio of the open utterance.
        """
        if self.state is not State.OPEN or self._reframer.pending:
            return []
        silent = {"pcm_mulaw": b"\xff", "pcm_alaw": b"\xd5"}.get(self.format.encoding, b"\x00")
        return self.audio(silent * self.frame_bytes)

    def sent(self, item: Outgoing, now: float, *, replay: bool = False) -> None:
        """Tell the session an item has been written (stamps ``finalize`` send times).

        Args:
            item: The item, as returned by a command or by :meth:`rewind`.
            now: The current monotonic time.
            replay: True for an item of :meth:`rewind` (already in the journal).
        """
        if replay:
            if item == "finalize" and self._replaying:
                self._replaying.popleft().finalize_sent_at = now
            return
        ticket: Utterance | None = None
        if item == "finalize" and self._unsent:
            ticket = self._unsent.popleft()
            ticket.finalize_sent_at = now
        if self.state is State.DONE:
            return
        self._journal.append((item, ticket))
        if isinstance(item, bytes):
            self.journal_bytes += len(item)
            limit = self.max_replay_bytes
            while limit is not None and self.journal_bytes > limit:
                index = next(i for i, (it, _) in enumerate(self._journal) if isinstance(it, bytes))
                dropped = self._journal[index][0]
                # The audio belongs to the next finalize written after it, else to the next
                # one not yet written, else to the open utterance.
                owner = self._unsent[0] if self._unsent else self._open
                self._lossy_owner = next(
                    (t for _, t in islice(self._journal, index, None) if t is not None), owner
                )
                del self._journal[index]
                self.journal_bytes -= len(dropped)
                self._journal_lossy = True

    # -- replay ----------------------------------------------------------------------------

    @property
    def replay_complete(self) -> bool:
        """False while the journal has lost audio to its bound (rule 8)."""
        return not self._journal_lossy

    @property
    def journal_empty(self) -> bool:
        """True when nothing written awaits an answer (a new socket would replay nothing)."""
        return not self._journal

    @property
    def has_unanswered(self) -> bool:
        """True while a ``finalize`` or ``close`` awaits its answer (repair a drop now)."""
        return bool(self._pending or self._late or self.state is State.CLOSING)

    def rewind(self) -> list[Outgoing]:
        """The socket was replaced: roll back unanswered utterances, return what to replay.

        Returns:
            The journal's items (rule 7), to write before anything else on the new socket;
            report each with ``sent(item, now, replay=True)``.
        """
        self.transcript._truncate(self._sealed_parts)
        if self._late is not None:
            self._late.flushed_at = None
            self._pending.appendleft(self._late)
            self._late, self._late_deadline = None, None
        for utt in (*self._pending, self._open):
            utt._reset()
        self._replaying = deque(t for item, t in self._journal if t is not None)
        return [item for item, _ in self._journal]

    # -- events ----------------------------------------------------------------------------

    @property
    def committed_chunks(self) -> int:
        """Final chunks that belong to sealed utterances: never rolled back by :meth:`rewind`."""
        return self._sealed_parts

    @property
    def pending_finalizes(self) -> int:
        """Finalizes whose ``flush_done`` has not arrived."""
        return len(self._pending)

    def receive(self, event: Event, now: float) -> list[Utterance]:
        """Feed one server event.

        Returns:
            Utterances that became complete, in order.
        """
        rid = getattr(event, "request_id", None)
        if isinstance(rid, str) and rid and not self.request_id:
            self.request_id = rid
        # A late window that ran out before its timer fired is over: seal it first.
        done: list[Utterance] = self.poll(now)
        if isinstance(event, TranscriptEvent):
            if not event.is_final:
                self.transcript.set_interim(event.text)
                return done
            words = event.words  # may raise ProtocolError: before anything is recorded
            self.transcript.add_final(event.text)
            target = self._late or (self._pending[0] if self._pending else self._open)
            if target is self._late:
                self.order = FinalOrder.FLUSH_FIRST
                self._late_deadline = now + self.late_final_grace
            target._add_final(event.text, words, event.request_id or self.request_id)
        elif isinstance(event, FlushDoneEvent):
            done.extend(self._seal_late())
            if not self._pending:
                self.unmatched_flush_done += 1
                return done
            utt = self._pending.popleft()
            if utt in self._unsent:  # a flush_done cannot precede its finalize's write
                self._unsent.remove(utt)
            utt.flushed_at = now
            if utt.final_chunks:
                if self.order is FinalOrder.UNKNOWN:
                    self.order = FinalOrder.FINALS_FIRST
                done.append(self._seal(utt))
            elif self.order is FinalOrder.FINALS_FIRST:
                done.append(self._seal(utt))
            else:
                self._late = utt
                self._late_deadline = now + self.late_final_grace
        elif isinstance(event, DoneEvent):
            done.extend(self._seal_all())
            self.state = State.DONE
        elif isinstance(event, ErrorEvent):
            self.error = event
            if self.state is not State.DONE:
                self.state = State.FAILED
        return done

    def poll(self, now: float) -> list[Utterance]:
        """Expire timers; return utterances that became complete."""
        if self._late_deadline is not None and now >= self._late_deadline:
            return self._seal_late()
        return []

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`poll` should next be called, or ``None`` when no timer runs."""
        return self._late_deadline

    def unfinished(self) -> list[Utterance]:
        """Tickets still waiting for an answer (late window included), oldest first."""
        return ([self._late] if self._late else []) + list(self._pending)

    def _seal(self, utt: Utterance) -> Utterance:
        utt.complete = True
        if not utt.request_id:
            utt.request_id = self.request_id
        self.transcript.utterances.append(utt)
        self._sealed_parts = self.transcript.final_chunks
        # Rule 6: the journal no longer needs this utterance.
        journal = self._journal
        if any(ticket is utt for _, ticket in journal):
            while journal:
                item, ticket = journal.popleft()
                if isinstance(item, bytes):
                    self.journal_bytes -= len(item)
                if ticket is utt:
                    # Only answering the utterance that lost audio (or a later one) makes
                    # the journal exact again.
                    if self._lossy_owner is None or self._lossy_owner.index <= utt.index:
                        self._journal_lossy = False
                        self._lossy_owner = None
                    break
        return utt

    def _seal_late(self) -> list[Utterance]:
        late, self._late, self._late_deadline = self._late, None, None
        return [self._seal(late)] if late else []

    def _seal_all(self) -> list[Utterance]:
        done = self._seal_late()
        while self._pending:
            done.append(self._seal(self._pending.popleft()))
        self._unsent.clear()
        if self._open.final_chunks or self._open.audio_seconds:
            done.append(self._seal(self._open))
            self._open = self._new_utterance()
        self._journal.clear()
        self.journal_bytes = 0
        self._journal_lossy = False
        self._lossy_owner = None
        return done
