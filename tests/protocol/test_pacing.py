"""The drift-free deadline schedule (protocol.md §8), with time as a parameter.

Durations and times are binary fractions (0.125, 0.25, ...) wherever exact equality is asserted,
so that the expected values are exact floats.
"""

from __future__ import annotations

import math

import pytest

from cartesia_stt_async.errors import UsageError
from cartesia_stt_async.protocol.checks import check_speed
from cartesia_stt_async.protocol.pacing import Pacer


@pytest.mark.parametrize("speed", [1.0, 2.0, 4.0, 0.5])
def test_frame_n_is_due_at_anchor_plus_n_durations(speed: float) -> None:
    pacer = Pacer(speed)
    anchor = 1024.0
    now = anchor
    for n in range(64):
        due = pacer.schedule(now, 0.125)
        assert due == anchor + n * 0.125 / speed
        # The sender wakes a little late every time; the lateness must not accumulate.
        now = max(now, due) + 0.0078125


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_no_drift_with_100ms_frames(speed: float) -> None:
    pacer = Pacer(speed)
    now = 100.0
    dues: list[float] = []
    for _ in range(600):  # one minute of audio at speed 1
        due = pacer.schedule(now, 0.1)
        dues.append(due)
        now = max(now, due) + 0.013  # 13 ms late on every send
    assert dues[0] == 100.0
    assert dues == pytest.approx([100.0 + n * 0.1 / speed for n in range(600)], abs=1e-9)
    # A sleep(0.1)-per-frame loop would have drifted by 600 * 13 ms = 7.8 s.
    assert dues[-1] == pytest.approx(100.0 + 59.9 / speed, abs=1e-9)


def test_first_frame_is_due_now() -> None:
    assert Pacer(1.0).schedule(42.5, 0.1) == 42.5


def test_early_caller_is_told_to_wait() -> None:
    pacer = Pacer(1.0)
    assert pacer.schedule(10.0, 0.25) == 10.0
    assert pacer.schedule(10.0, 0.25) == 10.25  # due in the future: sleep until then
    assert pacer.schedule(10.0, 0.25) == 10.5


def test_late_within_max_late_gets_due_times_in_the_past_without_reanchoring() -> None:
    pacer = Pacer(1.0, max_late=0.25)
    assert pacer.schedule(10.0, 0.125) == 10.0
    # 250 ms later: frame 1 was due at 10.125, i.e. 0.125 s late. Send at once, keep schedule.
    assert pacer.schedule(10.25, 0.125) == 10.125
    assert pacer.schedule(10.25, 0.125) == 10.25
    assert pacer.schedule(10.25, 0.125) == 10.375
    assert pacer.schedule(10.375, 0.125) == 10.5


def test_exactly_max_late_does_not_reanchor() -> None:
    pacer = Pacer(1.0, max_late=0.25)
    assert pacer.schedule(0.0, 0.5) == 0.0
    assert pacer.schedule(0.75, 0.5) == 0.5  # exactly 0.25 s late: still on schedule
    assert pacer.schedule(0.75, 0.5) == 1.0


def test_later_than_max_late_reanchors_at_now() -> None:
    pacer = Pacer(1.0, max_late=0.25)
    assert pacer.schedule(0.0, 0.5) == 0.0
    assert pacer.schedule(0.0, 0.5) == 0.5
    # Frame 2 was due at 1.0; at 1.375 it is 0.375 s late: a pause, start a new schedule.
    assert pacer.schedule(1.375, 0.5) == 1.375
    assert pacer.schedule(1.375, 0.5) == 1.875
    assert pacer.schedule(1.375, 0.5) == 2.375


def test_a_long_pause_does_not_burst_the_backlog() -> None:
    pacer = Pacer(1.0, max_late=0.25)
    for n in range(10):
        pacer.schedule(n * 0.125, 0.125)
    # Five seconds of silence from the producer, then more audio: no burst of past due times.
    dues = [pacer.schedule(6.25, 0.125) for _ in range(4)]
    assert dues == [6.25, 6.375, 6.5, 6.625]


@pytest.mark.parametrize("speed", [2.0, 0.5])
def test_reanchor_threshold_is_in_wall_clock_seconds(speed: float) -> None:
    pacer = Pacer(speed, max_late=1.0)
    pacer.schedule(0.0, 1.0)
    next_due = 1.0 / speed
    assert pacer.schedule(next_due + 0.75, 1.0) == next_due  # within max_late: no re-anchor
    pacer = Pacer(speed, max_late=1.0)  # a new schedule
    pacer.schedule(0.0, 1.0)
    assert pacer.schedule(next_due + 1.5, 1.0) == next_due + 1.5  # beyond: re-anchored


def test_uneven_frame_durations_accumulate() -> None:
    pacer = Pacer(1.0)
    assert pacer.schedule(0.0, 0.0625) == 0.0
    assert pacer.schedule(0.0, 0.125) == 0.0625
    assert pacer.schedule(0.0, 0.5) == 0.1875
    assert pacer.schedule(0.0, 0.125) == 0.6875


@pytest.mark.parametrize("speed", [None, math.inf])
def test_no_pacing_is_always_now(speed: float | None) -> None:
    pacer = Pacer(speed)
    assert pacer.speed is None
    assert [pacer.schedule(t, 10.0) for t in (1.0, 1.0, 2.5, 0.0, 1e9)] == [
        1.0,
        1.0,
        2.5,
        0.0,
        1e9,
    ]


def test_pacer_defaults() -> None:
    pacer = Pacer()
    assert pacer.speed == 1.0
    assert pacer.max_late == 0.25


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (0, "speed must be positive"),
        (0.0, "speed must be positive"),
        (-1.0, "speed must be positive"),
        (-math.inf, "speed must be positive"),
        (math.nan, "speed must be a positive number or None"),
        (True, "speed must be a positive number or None"),
        (False, "speed must be a positive number or None"),
        ("1", "speed must be a positive number or None"),
        ([1], "speed must be a positive number or None"),
        (1j, "speed must be a positive number or None"),
    ],
)
def test_check_speed_errors(bad: object, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        check_speed(bad)
    with pytest.raises(UsageError, match=match):
        Pacer(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("speed", "expected"),
    [(None, None), (math.inf, None), (1, 1.0), (2, 2.0), (0.5, 0.5), (1e-9, 1e-9)],
)
def test_check_speed_accepts(speed: float | None, expected: float | None) -> None:
    result = check_speed(speed)
    assert result == expected
    if expected is not None:
        assert type(result) is float


# -- stalls: a backlog drains at a bounded catch-up speed ----------------------------------------


def stall_then_drain(catch_up: float) -> list[float]:
    """A live producer makes frame n (0.125 s) at n * 0.125; the sender is held from 0.5 to
    1.0 s, so frames queue up behind the late one. Returns each frame's due time."""
    pacer = Pacer(1.0, catch_up=catch_up)
    now = 0.0
    dues = []
    for n in range(16):
        now = max(now, n * 0.125)  # the frame exists from then on
        if 0.5 <= now < 1.0:
            now = 1.0  # the stall
        queued = sum(1 for m in range(n + 1, 16) if m * 0.125 <= now)
        due = pacer.schedule(now, 0.125, queued * 0.125)
        dues.append(due)
        now = max(now, due)
    return dues


def test_a_stall_backlog_drains_at_the_catch_up_speed_until_on_schedule() -> None:
    dues = stall_then_drain(2.0)
    assert dues[:4] == [0.0, 0.125, 0.25, 0.375]
    # After the stall: spaced 0.0625 s (0.125 / 2) while behind ...
    assert dues[4:9] == [0.5, 1.0625, 1.125, 1.1875, 1.25]
    # ... then on time again: frame n at n * 0.125, 0.5 s of lateness made up in 0.5 s.
    assert dues[10:] == [n * 0.125 for n in range(10, 16)]


def test_without_catch_up_the_stall_is_never_made_up() -> None:
    dues = stall_then_drain(1.0)
    # Every frame while the producer still runs stays 0.5 s late (the old behaviour).
    assert [round(d - n * 0.125, 9) for n, d in enumerate(dues)][5:10] == [0.5] * 5


def test_a_late_frame_alone_is_a_gap_and_reanchors() -> None:
    pacer = Pacer(1.0, catch_up=2.0)
    pacer.schedule(0.0, 0.125)
    assert pacer.schedule(5.0, 0.125, backlog=0.0) == 5.0  # a pause: new schedule
    assert pacer.schedule(5.0, 0.125, backlog=0.0) == 5.125


@pytest.mark.parametrize("bad", [0.5, 0, -1, math.nan, math.inf, True, "2"])
def test_catch_up_must_be_a_finite_number_at_least_one(bad: object) -> None:
    with pytest.raises(UsageError, match="catch_up_speed"):
        Pacer(1.0, catch_up=bad)  # type: ignore[arg-type]


def test_a_live_frame_a_little_early_goes_now_and_the_schedule_follows_it() -> None:
    pacer = Pacer(1.0)
    assert pacer.schedule(10.0, 0.1, arrived=10.0) == 10.0  # the first frame anchors it
    # The source's clock runs 3 ms ahead of the anchor: each frame goes as it comes.
    times = [10.0 + n * 0.1 - 0.003 for n in range(1, 4)]
    assert [pacer.schedule(t, 0.1, arrived=t) for t in times] == times


@pytest.mark.parametrize(("late", "held"), [(0.04, 0), (0.07, 1)])
def test_a_late_first_frame_holds_live_frames_back_at_most_once(late: float, held: int) -> None:
    pacer = Pacer(1.0)
    assert pacer.schedule(late, 0.1, arrived=late) == late  # the first frame went out late
    # The source hands frame n over at n * 0.1 and the sender takes it 1 ms later. Frame 1
    # comes only 0.1 - late after frame 0: within half a frame it is not live and waits for its
    # slot, once; every later frame goes at once.
    taken = [n * 0.1 + 0.001 for n in range(1, 8)]
    dues = [pacer.schedule(t, 0.1, arrived=t - 0.001) for t in taken]
    waited = [round(d - t, 6) for d, t in zip(dues, taken, strict=True) if d > t]
    assert len(waited) == held
    assert all(d <= t for d, t in zip(dues[held:], taken[held:], strict=True))


def test_frames_handed_over_in_a_tight_loop_are_paced() -> None:
    pacer = Pacer(1.0)
    pacer.schedule(0.0, 0.1, arrived=0.0)
    dues = [pacer.schedule(0.0, 0.1, arrived=0.0) for _ in range(3)]
    assert dues == pytest.approx([0.1, 0.2, 0.3])  # not live: on the schedule


def test_a_jittery_live_source_is_forwarded_as_it_comes() -> None:
    pacer = Pacer(1.0)
    arrivals = [0.0, 0.12, 0.19, 0.31, 0.4, 0.48, 0.6]  # +-20 ms around every 100 ms
    sent = [max(t, pacer.schedule(t, 0.1, arrived=t)) for t in arrivals]  # due <= now: at once
    assert sent == arrivals


def test_queued_audio_and_frames_far_ahead_are_still_paced() -> None:
    pacer = Pacer(1.0)
    pacer.schedule(0.0, 0.125)
    assert pacer.schedule(0.0, 0.125, backlog=0.125, arrived=1.0) == 0.125  # queued behind it
    assert pacer.schedule(0.0, 0.125) == 0.25  # arrival unknown: paced
