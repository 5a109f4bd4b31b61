"""The outbox: everything a connection will write, and what it wrote but may need again (pure).

In the style of websockets' sans-I/O ``data_to_send()``: the session appends items (audio frames
as ``bytes`` or zero-copy spans of ``bytes``, commands as ``str``) and the I/O layer takes them
one at a time with :meth:`Outbox.take`, in wire order, and tells it nothing else (a frame
written the moment it is handed over, with nothing queued, skips the queue:
:meth:`Outbox.write_through`). A taken item
is *written* as far as the outbox is concerned: it moves from the queue to the journal, where it
stays until the utterance it belongs to is answered (:meth:`Outbox.trim_through`). When the
socket is replaced, :meth:`Outbox.rewind` moves the whole journal back to the head of the queue:
the new socket hears it again, unpaced (``Entry.replay``), before anything new::

    journal: written, not yet answered      queue: not yet written
    [ f0 f1 "finalize" f2 f3 ] ──rewind──▶ [ f0 f1 "finalize" f2 f3 | f4 f5 "close" ]
                                  ◀──take──

Buffer policies act on the queue: ``stats.queued_bytes`` is the audio waiting to be written
for the first time, :meth:`Outbox.drop_oldest` drops the oldest of it (never a command, never a
replay). Every counter of :class:`ConnectionStats` that concerns written bytes lives here, so it
is counted in one place.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from .audio import Span

if TYPE_CHECKING:
    from .transcript import Utterance

__all__ = ["ConnectionStats", "Entry", "Outbox", "Outgoing"]

Outgoing = bytes | Span | str
"""One message to write: ``str`` is a text command; anything else is a binary audio frame
(``bytes``, or a zero-copy :class:`~.audio.Span` of the caller's ``bytes``)."""


class Entry(msgspec.Struct, frozen=True, gc=False):
    """One queued item (not tracked by the garbage collector: one is made per audio frame).

    Attributes:
        item: The message.
        speed: Pacing of an audio frame (1.0 real time), ``None`` for unpaced.
        ticket: For ``finalize``, the utterance it ends; else ``None``.
        at: When the item was handed over (monotonic time), for pacing live audio.
    """

    item: Outgoing
    speed: float | None = None
    ticket: Utterance | None = None
    at: float | None = None


@dataclass
class ConnectionStats:
    """Counters of one connection.

    Attributes:
        frames_sent: Binary frames written to the socket (replays included).
        audio_bytes_sent: Audio bytes written to the socket (replays included).
        commands_sent: Text commands written (replays included).
        events_received: Server events decoded.
        events_dropped: Events dropped from the iteration backlog because nobody iterated
            and it was full (the transcript and ``finalize()`` are never affected).
        queued_bytes: Audio bytes waiting to be written for the first time (the queue depth).
        queued_items: Frames and commands waiting to be written.
        reconnects: Sockets opened to replace a dropped one.
        replayed_bytes: Audio bytes written again on a new socket after a drop.
        dropped_audio_bytes: Audio dropped by ``buffer_policy="drop_oldest"`` (never written).
        idle_closes: Routine idle closes (1001 "Idle timeout") received.
        keepalives_sent: Silent frames queued by the opt-in keepalive.
        unmatched_flush_done: ``flush_done`` events that arrived with no finalize outstanding
            (a server quirk; nothing is attributed differently because of it).
        silence_fill_bytes: Turn endpoint: silence sent to keep an open turn moving while
            the caller sent nothing (``fill_silence``).
        blocked_seconds: Wall seconds ``send_audio`` waited for room in the queue
            (``buffer_policy="block"``).
    """

    frames_sent: int = 0
    audio_bytes_sent: int = 0
    commands_sent: int = 0
    events_received: int = 0
    events_dropped: int = 0
    queued_bytes: int = 0
    queued_items: int = 0
    reconnects: int = 0
    replayed_bytes: int = 0
    dropped_audio_bytes: int = 0
    idle_closes: int = 0
    keepalives_sent: int = 0
    unmatched_flush_done: int = 0
    silence_fill_bytes: int = 0
    blocked_seconds: float = 0.0


class Outbox:
    """The queue and the journal of one session.

    Args:
        stats: The connection's counters, updated in place.
    """

    __slots__ = (
        "_journal",
        "_journal_tickets",
        "_replay_left",
        "journal_bytes",
        "queue",
        "replayed",
        "stats",
    )

    def __init__(self, stats: ConnectionStats) -> None:
        self.stats = stats
        # What waits to be written, oldest first: read it (the writer tests it per frame, a
        # deque's truth is cheaper than a property), change it only through the methods.
        self.queue: deque[Entry] = deque()
        self._journal: deque[Entry] = deque()
        self._journal_tickets = 0  # finalize entries in the journal
        self._replay_left = 0  # entries at the head of the queue that are replays
        self.replayed = False  # whether the last item taken was a replay
        self.journal_bytes = 0

    # -- the queue ---------------------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        """Queue an item after everything queued before it."""
        self.queue.append(entry)
        stats = self.stats
        stats.queued_items += 1
        if type(entry.item) is not str:
            stats.queued_bytes += len(entry.item)

    @property
    def pending(self) -> bool:
        """True when something (new or replayed) waits to be written."""
        return bool(self.queue)

    def take(self) -> Entry | None:
        """The next item to write; ``None`` when nothing waits. :attr:`replayed` says whether
        it is a replay. The item counts as written from now on (it joins the journal)."""
        if not self.queue:
            return None
        entry = self.queue.popleft()
        item = entry.item
        stats = self.stats
        stats.queued_items -= 1
        replay = self.replayed = self._replay_left > 0
        if replay:
            self._replay_left -= 1
        if type(item) is not str:
            size = len(item)
            stats.frames_sent += 1
            stats.audio_bytes_sent += size
            self.journal_bytes += size
            if replay:
                stats.replayed_bytes += size
            else:
                stats.queued_bytes -= size
        else:
            stats.commands_sent += 1
        self._journal.append(entry)
        if entry.ticket is not None:
            self._journal_tickets += 1
        return entry

    def write_through(self, entry: Entry) -> None:
        """Count ``entry``, an audio frame, as written at once: what :meth:`append` then
        :meth:`take` do, without the queue, for a frame handed over while nothing is queued
        (the live relay's usual case). It joins the journal; :attr:`replayed` is False.

        Raises:
            RuntimeError: If something is queued (it must be written first).
        """
        if self.queue:
            raise RuntimeError("write_through with items queued: they would be overtaken")
        size = len(entry.item)
        stats = self.stats
        stats.frames_sent += 1
        stats.audio_bytes_sent += size
        self.journal_bytes += size
        self.replayed = False
        self._journal.append(entry)

    def drop_oldest(self, nbytes: int) -> int:
        """Drop the oldest queued audio until ``nbytes`` were dropped or none is left.

        Commands and replayed items are kept, in order. Dropped audio was never written, so
        no utterance counts it.

        Returns:
            The bytes dropped.
        """
        freed = frames = 0
        kept: list[Entry] = []
        queue = self.queue
        index = 0
        while queue and freed < nbytes:
            entry = queue.popleft()
            if index >= self._replay_left and type(entry.item) is not str:
                freed += len(entry.item)
                frames += 1
            else:
                kept.append(entry)
            index += 1
        queue.extendleft(reversed(kept))
        stats = self.stats
        stats.queued_bytes -= freed
        stats.queued_items -= frames
        stats.dropped_audio_bytes += freed
        return freed

    def queued_entries(self) -> list[Entry]:
        """A copy of the queue (replays first), oldest first."""
        return list(self.queue)

    # -- the journal -------------------------------------------------------------------------

    @property
    def journal_empty(self) -> bool:
        """True when nothing written awaits an answer."""
        return not self._journal

    def journal_entries(self) -> list[Entry]:
        """A copy of the journal, oldest first."""
        return list(self._journal)

    def drop_journal_audio(self) -> tuple[bool, Utterance | None]:
        """Forget the oldest audio frame of the journal (a replay can no longer be exact).

        Returns:
            Whether a frame was dropped, and whose it was: the ticket of the first
            ``finalize`` after it (written or queued), or ``None`` when no finalize follows
            it yet (it belongs to the open utterance).
        """
        journal = self._journal
        tickets_before = 0
        index = 0
        for entry in journal:  # commands only before it: a short scan
            if type(entry.item) is not str:
                break
            if entry.ticket is not None:
                tickets_before += 1
            index += 1
        else:
            return False, None
        del journal[index]
        self.journal_bytes -= len(entry.item)
        owner: Utterance | None = None
        if tickets_before < self._journal_tickets:  # a finalize after it was written
            later = itertools.islice(journal, index, None)
            owner = next(e.ticket for e in later if e.ticket is not None)
        else:
            owner = next((e.ticket for e in self.queue if e.ticket is not None), None)
        return True, owner

    def trim_through(self, ticket: Utterance) -> bool:
        """The utterance is answered: forget the journal up to and including its ``finalize``.

        Returns:
            True when its ``finalize`` was found (and the journal trimmed).
        """
        journal = self._journal
        # Utterances are answered in order: its finalize is the journal's first one, if any.
        first = next((e.ticket for e in journal if e.ticket is not None), None)
        if first is not ticket:
            return False
        while journal:
            entry = journal.popleft()
            if type(entry.item) is not str:
                self.journal_bytes -= len(entry.item)
            if entry.ticket is not None:
                self._journal_tickets -= 1
                if entry.ticket is ticket:
                    break
        return True

    def trim_head(self, keep_bytes: int, keep_commands: frozenset[str] = frozenset()) -> None:
        """Forget the journal's oldest audio beyond its newest ``keep_bytes``, and the commands
        before it, except a command in ``keep_commands`` (the trim stops there).

        For an endpoint whose answers name no position in the audio (turn detection): what
        was written long enough before an answer cannot be owed any more.
        """
        journal = self._journal
        while journal:
            item = journal[0].item
            if type(item) is str:
                if item in keep_commands:
                    return
            elif self.journal_bytes - len(item) < keep_bytes:
                return
            else:
                self.journal_bytes -= len(item)
            journal.popleft()

    def clear_journal(self) -> None:
        """Forget the whole journal (the session is over)."""
        self._journal.clear()
        self._journal_tickets = 0
        self.journal_bytes = 0

    def rewind(self, head: Entry | None = None, drop_prefix: str = "") -> int:
        """The socket was replaced: the journal goes back to the head of the queue.

        Args:
            head: An item to write before the replay (a command restoring settings).
            drop_prefix: Commands of the journal starting with it are not replayed (``head``
                replaces them); ``""``: every item is replayed.

        Returns:
            How many items will be replayed.
        """
        journal = self._journal
        if drop_prefix:
            kept = [
                e for e in journal if type(e.item) is not str or not e.item.startswith(drop_prefix)
            ]
            journal.clear()
            journal.extend(kept)
        if head is not None:
            journal.appendleft(head)
        count = len(journal)
        # Items of an unfinished replay are already at the head of the queue, after the
        # journal's: both are replayed, journal first.
        self.queue.extendleft(reversed(journal))
        self.stats.queued_items += count
        self._replay_left += count
        journal.clear()
        self._journal_tickets = 0
        self.journal_bytes = 0
        return count
