"""One wake-up schedule for many connections (pure: the caller passes ``now``).

A process with hundreds of paced sessions has hundreds of frames due every 100 ms. Arming one
timer per frame per connection costs a timer and a task wake-up each; :class:`WakeQueue` keeps
every connection's next due time in one heap instead, so the I/O layer arms a single timer for
the earliest one and, when it fires, writes every frame due by then (within ``slop``) in one
go. A connection is armed at most once: re-arming it earlier replaces its entry, re-arming it
later than its current entry is a no-op until that entry fires.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["WakeQueue"]

_K = TypeVar("_K", bound=Hashable)


class WakeQueue(Generic[_K]):
    """Due times of many keys, earliest first.

    Args:
        slop: Seconds: keys due within ``slop`` after ``now`` are popped with those already due
            (their frames go out a little early rather than costing another wake-up).
    """

    __slots__ = ("_armed", "_heap", "_seq", "slop")

    def __init__(self, slop: float = 0.001) -> None:
        self.slop = slop
        self._heap: list[tuple[float, int, _K]] = []
        self._armed: dict[_K, float] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, key: _K, when: float) -> bool:
        """Wake ``key`` at ``when`` (or earlier, if it is already armed earlier).

        Returns:
            True when ``when`` is now the earliest due time of all (re-arm the timer).
        """
        current = self._armed.get(key)
        if current is not None and current <= when:
            return False
        self._armed[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))
        return self._heap[0][0] == when

    def disarm(self, key: _K) -> None:
        """Forget ``key`` (its heap entry becomes stale and is skipped)."""
        self._armed.pop(key, None)

    def next_due(self) -> float | None:
        """The earliest due time, or ``None`` when nothing is armed."""
        heap, armed = self._heap, self._armed
        while heap and armed.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # stale: disarmed or re-armed earlier
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[_K]:
        """The keys due by ``now + slop``, earliest first; they are no longer armed."""
        heap, armed = self._heap, self._armed
        limit = now + self.slop
        due: list[_K] = []
        while heap and heap[0][0] <= limit:
            when, _, key = heapq.heappop(heap)
            if armed.get(key) == when:
                del armed[key]
                due.append(key)
        return due
