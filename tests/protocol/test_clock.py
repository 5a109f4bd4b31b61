"""The shared wake-up schedule, with time as a parameter."""

from __future__ import annotations

import random

from cartesia_stt_async.protocol.clock import WakeQueue


def test_keys_come_out_earliest_first_within_the_slop() -> None:
    q: WakeQueue[str] = WakeQueue(slop=0.001)
    assert q.arm("a", 1.0)
    assert not q.arm("b", 1.0005)  # not earlier than the earliest: no new timer needed
    assert q.arm("c", 0.5)
    assert q.next_due() == 0.5
    assert q.pop_due(0.5) == ["c"]
    assert q.pop_due(0.75) == []
    assert q.pop_due(1.0) == ["a", "b"]  # b, at 1.0005, is within the 1 ms slop
    assert q.next_due() is None and len(q) == 0


def test_a_key_is_armed_once_and_only_earlier_rearms_it() -> None:
    q: WakeQueue[str] = WakeQueue(slop=0.0)
    q.arm("a", 2.0)
    assert not q.arm("a", 3.0)  # later: the earlier wake-up stands
    assert q.arm("a", 1.0)  # earlier: replaces it
    assert len(q) == 1
    assert q.pop_due(1.0) == ["a"]
    assert q.pop_due(5.0) == []  # the 2.0 entry was stale


def test_disarmed_keys_never_come_out() -> None:
    q: WakeQueue[str] = WakeQueue(slop=0.0)
    q.arm("a", 1.0)
    q.arm("b", 2.0)
    q.disarm("a")
    assert q.next_due() == 2.0
    assert q.pop_due(10.0) == ["b"]


def test_random_schedules_match_a_sorted_list() -> None:
    rng = random.Random(7)
    q: WakeQueue[int] = WakeQueue(slop=0.0)
    expected: dict[int, float] = {}
    for _ in range(2000):
        key, when = rng.randrange(50), rng.uniform(0, 10)
        q.arm(key, when)
        expected[key] = min(expected.get(key, when), when)
    now, popped = 0.0, []
    while (due := q.next_due()) is not None:
        now = due
        popped += [(now, k) for k in q.pop_due(now)]
    assert [k for _, k in popped] == sorted(expected, key=lambda k: (expected[k], k))
    assert all(expected[k] == t for t, k in popped)
