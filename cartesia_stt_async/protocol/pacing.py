"""Real-time pacing on a drift-free deadline schedule (pure: the caller passes ``now``).

Cartesia's realtime endpoints accept at most one second of audio per wall-clock second
(protocol.md §8). A ``sleep(0.1)`` after every send drifts: each loop adds the send time and the
scheduler's lateness. Instead, frame *n* is due at ``anchor + (audio sent before it) / speed`` on
the monotonic clock, so lateness in one frame is absorbed by the next ones.

When the producer falls far behind the schedule (a pause between utterances, a slow microphone),
the schedule is re-anchored at ``now`` instead of bursting the backlog out at network speed.
"""

from __future__ import annotations

import math

from ..errors import UsageError

__all__ = ["Pacer", "backoff_delay", "check_speed"]


def check_speed(speed: float | None) -> float | None:
    """Validate a pacing speed: ``None`` or ``math.inf`` (no pacing) or a positive number.

    Returns:
        ``None`` for no pacing, else the speed as a float.

    Raises:
        UsageError: For zero, negative, NaN or non-numeric speeds.
    """
    if speed is None:
        return None
    if isinstance(speed, bool) or not isinstance(speed, int | float) or math.isnan(speed):
        raise UsageError(f"speed must be a positive number or None, got {speed!r}")
    if speed <= 0:
        raise UsageError(f"speed must be positive (1.0 is real time), got {speed!r}")
    return None if math.isinf(speed) else float(speed)


class Pacer:
    """Tells when each frame may be sent.

    Args:
        speed: 1.0 for real time, 2.0 for twice as fast, ``None`` for no pacing.
        max_late: Seconds behind schedule after which the schedule re-anchors at ``now``.
    """

    __slots__ = ("_anchor", "_sent", "max_late", "speed")

    def __init__(self, speed: float | None = 1.0, *, max_late: float = 0.25) -> None:
        self.speed = check_speed(speed)
        self.max_late = max_late
        self._anchor: float | None = None
        self._sent = 0.0

    def reset(self) -> None:
        """Forget the schedule; the next frame anchors a new one."""
        self._anchor = None
        self._sent = 0.0

    def schedule(self, now: float, duration: float) -> float:
        """Reserve the next slot for a frame of ``duration`` seconds of audio.

        Args:
            now: The current monotonic time.
            duration: Seconds of audio in the frame.

        Returns:
            The monotonic time at which the frame is due (``<= now`` means send at once).
        """
        if self.speed is None:
            return now
        due = None if self._anchor is None else self._anchor + self._sent / self.speed
        if due is None or now - due > self.max_late:
            self._anchor, self._sent = now, 0.0
            due = now
        self._sent += duration
        return due


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Capped, jittered exponential backoff, as the official SDKs compute it (protocol.md §5).

    ``min(initial * 2 ** (attempt - 1), maximum) * (0.75 + 0.25 * jitter)``.

    Args:
        attempt: 1 for the first retry, then 2, 3, ...
        initial: Delay of the first attempt before jitter, seconds.
        maximum: Cap before jitter, seconds.
        jitter: A number in [0, 1) (``random.random()``), passed in to keep this pure.

    Returns:
        Seconds to wait before the attempt.
    """
    base = min(initial * 2.0 ** max(attempt - 1, 0), maximum)
    return base * (0.75 + 0.25 * jitter)
