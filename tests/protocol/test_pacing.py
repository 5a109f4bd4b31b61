"""The drift-free deadline schedule, with time as a parameter."""

from __future__ import annotations

import math

import pytest

from cartesia_stt_async.errors import UsageError
from cartesia_stt_async.protocol.pacing import Pacer, check_speed


@pytest.mark.parametrize("speed", [1.0, 2.0, 0.5])
def test_deadlines_do_not_drift(speed: float) -> None:
    pacer = Pacer(speed)
    now = 100.0
    dues = []
    for _ in range(50):
        due = pacer.schedule(now, 0.1)
        dues.append(due)
        now = max(now, due) + 0.013  # every send is 13 ms late: lateness must not add up
    assert dues == pytest.approx([100.0 + n * 0.1 / speed for n in range(50)])


def test_late_within_max_late_catches_up_without_reanchoring() -> None:
    pacer = Pacer(1.0, max_late=0.25)
    assert pacer.schedule(10.0, 0.1) == 10.0
    assert pacer.schedule(10.3, 0.1) == pytest.approx(10.1)  # 200 ms late: send at once
    assert pacer.schedule(10.3, 0.1) == pytest.approx(10.2)
    assert pacer.schedule(10.3, 0.1) == pytest.approx(10.3)


def test_far_behind_reanchors() -> None:
    pacer = Pacer(1.0, max_late=0.25)
    pacer.schedule(0.0, 0.1)
    pacer.schedule(0.0, 0.1)
    assert pacer.schedule(5.0, 0.1) == 5.0  # a pause: new schedule, no burst
    assert pacer.schedule(5.0, 0.1) == pytest.approx(5.1)
    pacer.reset()
    assert pacer.schedule(6.0, 0.1) == 6.0


def test_uneven_frame_durations_accumulate() -> None:
    pacer = Pacer(1.0)
    assert pacer.schedule(0.0, 0.05) == 0.0
    assert pacer.schedule(0.0, 0.1) == pytest.approx(0.05)
    assert pacer.schedule(0.0, 0.1) == pytest.approx(0.15)


def test_unpaced() -> None:
    pacer = Pacer(None)
    assert [pacer.schedule(t, 0.1) for t in (1.0, 1.0, 2.5)] == [1.0, 1.0, 2.5]
    assert Pacer(math.inf).speed is None


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, True, "1", [1]])
def test_bad_speeds(bad: object) -> None:
    with pytest.raises(UsageError, match="speed"):
        check_speed(bad)  # type: ignore[arg-type]


def test_good_speeds() -> None:
    assert check_speed(None) is None
    assert check_speed(math.inf) is None
    assert check_speed(2) == 2.0
