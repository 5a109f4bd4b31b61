"""The session state machine of one manual-finalize connection (pure: no I/O, no clock).

Theory of operation
-------------------
The I/O layer *commands* the session (``audio``, ``raw_audio``, ``finalize``, ``close``), which
returns the exact :data:`Outgoing` items to write, in order: audio frames as ``bytes`` (or
zero-copy spans of the caller's ``bytes``), commands as ``str``. It *feeds* every decoded server
event to :meth:`Session.receive` and every timer expiry to :meth:`Session.poll`; both return the
utterances that just became complete, so the I/O layer can resolve whoever awaits them. Time is
always a parameter (``now``), never read here.

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
   ``flush_done`` (current docs, and our twin's default) or *after* it (older docs). The
   events alone cannot always tell the two apart (a silent utterance followed by pipelined
   finalizes; finals arriving after ``close`` was sent), so the order is a choice
   (``final_order``):

   * ``finals_first`` (the default, per the current docs): a ``flush_done`` completes its
     utterance at once; finals arriving later belong to the next ticket (or the open audio).
   * ``flush_first``: a ``flush_done`` opens a *late window* for its utterance: final deltas
     arriving in it are its own. The window ends on the next ``flush_done``, on ``done``, or
     ``late_final_grace`` seconds after its last chunk; it never ends by time while ``close``
     is outstanding (the text answered on ``close`` might be its own) nor while the I/O layer
     cannot hear the server (it must not call :meth:`poll` then).
   * ``auto``: learn the order from unambiguous evidence. Until then a silent utterance's
     ``flush_done`` opens a late window as for ``flush_first``. Finals before their
     ``flush_done`` prove ``finals_first``; a final in a late window proves ``flush_first``
     only when nothing else could have produced it (no other finalize outstanding, no audio
     written since, ``close`` not sent).
5. The transcript (all final deltas, verbatim, arrival order) never depends on rule 4: only the
   attribution of deltas to utterances does.

Writing and replay (reconnecting without losing or repeating anything)
-----------------------------------------------------------------------
6. Commands append to one :class:`~.outbox.Outbox`; the I/O layer takes items with
   :meth:`Session.next_item` in wire order and tells the session nothing else. A taken item
   stays in the outbox's journal until its utterance is sealed (complete: rule 4), when the
   journal is trimmed through its ``finalize``: what remains is exactly what a new server
   session would need to hear again, namely the audio and commands of every utterance not yet
   answered, in wire order. An utterance counts the audio written for it (first writes only),
   so audio dropped by a buffer policy is not counted.
7. When the socket is replaced, :meth:`Session.rewind` puts the journal back at the head of the
   outbox and rolls back what the old socket said about those utterances: their final deltas
   leave the transcript (the replay makes the server say them again, so keeping them would
   duplicate them), a late window is reopened as an unanswered ticket. Items never written
   follow the replay, in order. Sealed utterances are never replayed, so their text is never
   repeated, and their deltas are *committed* (:attr:`Session.committed_chunks`).
8. The journal is bounded (``max_replay_bytes``): past the bound its oldest audio is dropped and
   :attr:`Session.replay_complete` is false until that utterance is answered; an exact replay
   is then impossible and the I/O layer must not pretend otherwise.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from typing import Literal

from .audio import DEFAULT_FRAME_MS, AudioFormat
from .events import DoneEvent, ErrorEvent, Event, FlushDoneEvent, TranscriptEvent, parse_event
from .outbox import ConnectionStats, Entry, Outgoing
from .sending import AudioSession, State
from .transcript import Transcript, Utterance

__all__ = ["FinalOrder", "FinalOrderOption", "Outgoing", "ServerOrder", "Session", "State"]


ServerOrder = Literal["finals_first", "flush_first"]
"""The order a server sends a finalize's final chunks and its ``flush_done`` in (rule 4)."""

FinalOrderOption = ServerOrder | Literal["auto"]
"""The ``final_order`` option: a server's order, or ``auto`` to learn it (rule 4)."""


class FinalOrder(IntEnum):
    """The order of finals and ``flush_done`` the session works with (rule 4)."""

    UNKNOWN = 0
    FINALS_FIRST = 1
    FLUSH_FIRST = 2


class Session(AudioSession):
    """Pure protocol state of one connection.

    Args:
        audio_format: The session's encoding and sample rate.
        frame_ms: Frame length for :meth:`audio` (100 ms by default).
        late_final_grace: Seconds an utterance waits for late final chunks after its
            ``flush_done`` (rule 4 above).
        max_replay_bytes: Bound of the replay journal (rule 8); ``None``: unbounded.
        final_order: ``finals_first``, ``flush_first`` or ``auto`` (rule 4).
        stats: Counters to update (a new :class:`ConnectionStats` by default).

    Attributes:
        outbox: What to write, and what was written but not yet answered (rule 6).
        transcript: Every final delta, verbatim, and the completed utterances.
    """

    def __init__(
        self,
        audio_format: AudioFormat,
        *,
        frame_ms: int = DEFAULT_FRAME_MS,
        late_final_grace: float = 0.25,
        max_replay_bytes: int | None = None,
        final_order: FinalOrderOption = "finals_first",
        stats: ConnectionStats | None = None,
    ) -> None:
        super().__init__(
            audio_format, frame_ms=frame_ms, max_replay_bytes=max_replay_bytes, stats=stats
        )
        self.late_final_grace = late_final_grace
        self.learns_order = final_order == "auto"
        self.order = {
            "finals_first": FinalOrder.FINALS_FIRST,
            "flush_first": FinalOrder.FLUSH_FIRST,
            "auto": FinalOrder.UNKNOWN,
        }[final_order]
        self.transcript = Transcript()
        self._next_index = 0
        self._open = self._new_utterance()
        self._pending: deque[Utterance] = deque()  # finalized, awaiting flush_done
        self._unwritten: deque[Utterance] = deque()  # finalize queued, never written yet
        self._late: Utterance | None = None
        self._late_deadline: float | None = None
        self._lossy_owner: Utterance | None = None  # the latest utterance that lost audio
        self._sealed_parts = 0  # transcript chunks that belong to sealed utterances

    # -- commands --------------------------------------------------------------------------

    def _new_utterance(self) -> Utterance:
        utt = Utterance(index=self._next_index)
        self._next_index += 1
        return utt

    def finalize(self) -> Utterance:
        """Flush the partial frame and queue ``finalize``.

        Returns:
            The ticket: the :class:`Utterance` that will hold the answer.

        Raises:
            ConnectionStateError: If the session is no longer open.
            InvalidAudioError: If the held-back audio ends in the middle of a sample.
        """
        self._check_open("finalize")
        self._flush_remainder()
        ticket = self._open
        self._pending.append(ticket)
        self._unwritten.append(ticket)
        self._open = self._new_utterance()
        self.outbox.append(Entry("finalize", None, ticket))
        return ticket

    def _on_taken(self, entry: Entry, replay: bool, now: float) -> None:
        """Rule 6: a ``finalize`` is stamped with ``now``, audio counts for its utterance."""
        ticket = entry.ticket
        if ticket is not None:
            if ticket.flushed_at is None and not ticket.complete:
                ticket.finalize_sent_at = now
            if not replay and self._unwritten and self._unwritten[0] is ticket:
                self._unwritten.popleft()
        elif not replay and type(entry.item) is not str:
            owner = self._unwritten[0] if self._unwritten else self._open
            owner.audio_seconds += len(entry.item) / self._bytes_per_second

    def _journal_lost(self, owner: object) -> None:
        """Rule 8: the journal dropped audio of ``owner`` past ``max_replay_bytes``."""
        self._lossy_owner = owner if isinstance(owner, Utterance) else self._open
        self._journal_lossy = True

    # -- replay ----------------------------------------------------------------------------

    @property
    def has_unanswered(self) -> bool:
        """True while a ``finalize`` or ``close`` awaits its answer (repair a drop now)."""
        return bool(self._pending or self._late or self.state is State.CLOSING)

    def rewind(self) -> int:
        """The socket was replaced: roll back unanswered utterances, queue the replay first.

        Returns:
            How many items will be written again before anything new (rule 7).
        """
        self.transcript._truncate(self._sealed_parts)
        if self._late is not None:
            self._late.flushed_at = None
            self._pending.appendleft(self._late)
            self._late, self._late_deadline = None, None
        for utt in (*self._pending, self._open):
            utt._reset()
        return self.outbox.rewind()

    # -- events ----------------------------------------------------------------------------

    @property
    def committed_chunks(self) -> int:
        """Final chunks that belong to sealed utterances: never rolled back by :meth:`rewind`.

        Once the session is DONE every chunk is committed.
        """
        return self.transcript.final_chunks if self.state is State.DONE else self._sealed_parts

    @property
    def pending_finalizes(self) -> int:
        """Finalizes whose ``flush_done`` has not arrived."""
        return len(self._pending)

    def parse(self, message: str) -> Event:
        """Decode one server text message (:func:`~.events.parse_event`).

        Raises:
            ProtocolError: If it is not a well-formed event.
        """
        return parse_event(message)

    def log_text(self, event: Event) -> str | None:
        """The transcript text ``event`` adds to the session (logged only on request)."""
        if isinstance(event, TranscriptEvent) and event.is_final:
            return event.text
        return None

    def socket_ended(self, code: int | None) -> None:
        """The socket ended with ``code``: this endpoint ends only with ``done`` (no-op)."""

    def end_locally(self, now: float) -> list[Utterance]:
        """End the session without the server (nothing was owed after an idle close).

        Returns:
            Utterances that became complete.
        """
        return self.receive(DoneEvent(request_id=self.request_id), now)

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
                self._late_deadline = now + self.late_final_grace
                if self.order is FinalOrder.UNKNOWN and self._unambiguously_late():
                    self.order = FinalOrder.FLUSH_FIRST
            target._add_final(event.text, words, event.request_id or self.request_id)
        elif isinstance(event, FlushDoneEvent):
            done.extend(self._seal_late())
            if not self._pending:
                # No finalize outstanding: nothing to acknowledge (a server quirk, harmless).
                self.stats.unmatched_flush_done += 1
                return done
            utt = self._pending.popleft()
            if utt in self._unwritten:  # a flush_done cannot precede its finalize's write
                self._unwritten.remove(utt)
            utt.flushed_at = now
            order = self.order
            if order is FinalOrder.UNKNOWN and utt.final_chunks:
                order = self.order = FinalOrder.FINALS_FIRST
            if order is FinalOrder.FINALS_FIRST:
                done.append(self._seal(utt))
            else:
                self._late = utt
                self._late_deadline = now + self.late_final_grace
        elif isinstance(event, DoneEvent):
            done.extend(self._seal_all())
            self.state = State.DONE
        elif isinstance(event, ErrorEvent) and self.state is not State.DONE:
            self.state = State.FAILED
        return done

    def _unambiguously_late(self) -> bool:
        """Whether a final arriving in the late window can only be the late utterance's."""
        return (
            not self._pending
            and self.state is State.OPEN
            and not self._open.audio_seconds
            and not self.outbox.pending
        )

    def poll(self, now: float) -> list[Utterance]:
        """Expire timers; return utterances that became complete.

        A late window does not end by time while ``close`` is outstanding (rule 4).
        """
        deadline = self._late_deadline
        if deadline is not None and now >= deadline and self.state is not State.CLOSING:
            return self._seal_late()
        return []

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`poll` should next be called, or ``None`` when no timer runs."""
        return None if self.state is State.CLOSING else self._late_deadline

    def unfinished(self) -> list[Utterance]:
        """Tickets still waiting for an answer (late window included), oldest first."""
        return ([self._late] if self._late else []) + list(self._pending)

    def unanswered_turns(self) -> tuple[int, ...]:
        """The turns whose text the server still owes, oldest first: for a session that ends
        now, what is lost.

        Every finalized turn without its complete answer (a late window included), then the
        open turn when audio was sent or queued for it (its answer is owed on ``finalize`` or
        ``close``). Empty once the session is DONE.
        """
        if self.state is State.DONE:
            return ()
        turns = [utt.index for utt in self.unfinished()]
        tail = self._open
        if (
            tail.audio_seconds
            or tail.final_chunks
            or self._reframer.pending
            or (self.stats.queued_bytes and not self._unwritten)
        ):
            turns.append(tail.index)
        return tuple(turns)

    def _seal(self, utt: Utterance) -> Utterance:
        utt.complete = True
        if not utt.request_id:
            utt.request_id = self.request_id
        self.transcript.utterances.append(utt)
        self._sealed_parts = self.transcript.final_chunks
        # Rule 6: the journal no longer needs this utterance. Only answering the utterance
        # that lost audio (or a later one) makes the journal exact again.
        if self.outbox.trim_through(utt) and (
            self._lossy_owner is None or self._lossy_owner.index <= utt.index
        ):
            self._journal_lossy = False
            self._lossy_owner = None
        return utt

    def _seal_late(self) -> list[Utterance]:
        late, self._late, self._late_deadline = self._late, None, None
        return [self._seal(late)] if late else []

    def _seal_all(self) -> list[Utterance]:
        done = self._seal_late()
        while self._pending:
            done.append(self._seal(self._pending.popleft()))
        self._unwritten.clear()
        if self._open.final_chunks or self._open.audio_seconds:
            done.append(self._seal(self._open))
            self._open = self._new_utterance()
        self.outbox.clear_journal()
        self._journal_lossy = False
        self._lossy_owner = None
        return done
