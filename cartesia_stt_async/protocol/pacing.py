"""Real-time pacing on a drift-free deadline schedule (pure: the caller passes ``now``).

Cartesia's realtime endpoints accept at most one second of audio per wall-clock second
(docs/protocol.md). A ``sleep(0.1)`` after every send drifts: each loop adds the send time and the
scheduler's lateness. Instead, frame *n* is due at ``anchor + (audio sent before it) / speed`` on
the monotonic clock, so lateness in one frame is absorbed by the next ones.

Two ways to fall behind the schedule are told apart by what is queued behind the late frame:

* a *gap*: the producer had nothing to send (a pause between utterances, push-to-talk released);
  the late frame is alone. More than ``max_late`` behind, the schedule re-anchors at ``now``.
* a *stall*: the network or the event loop held frames back, so audio queued up behind the late
  frame (the *backlog*). Sending it at real time would keep every later answer late by the
  stall, so the backlog drains at up to ``catch_up`` times the speed until the schedule is met
  (``catch_up=1.0``: never faster than the speed, the lateness stays).

A live source (a microphone, a relayed stream) hands over each frame as it happens, on its own
clock, which never quite matches the schedule's anchor (the first frame may have gone out late).
A frame is *live* when it was handed over (``arrived``) at least half a frame's duration after
the previous one: such a source produces audio no faster than twice real time by itself. A live
frame ahead of the schedule moves the anchor earlier to meet it, so live frames go as they come
despite their source's jitter or a first frame that went out late, while audio handed over in
bulk or in a loop without sleeps (not live) is held to the speed.
"""

from __future__ import annotations

from .checks import check_catch_up, check_speed

__all__ = ["Pacer", "backoff_delay"]


class Pacer:
    """Tells when each frame may be sent.

    Args:
        speed: 1.0 for real time, 2.0 for twice as fast, ``None`` for no pacing.
        max_late: Seconds behind schedule after which a frame with nothing queued behind it
            re-anchors the schedule at ``now`` (a gap).
        catch_up: How much faster than ``speed`` a backlog may drain (>= 1).
    """

    __slots__ = (
        "_anchor",
        "_arrived",
        "_last",
        "_last_duration",
        "_sent",
        "catch_up",
        "max_late",
        "speed",
    )

    def __init__(
        self,
        speed: float | None = 1.0,
        *,
        max_late: float = 0.25,
        catch_up: float = 1.5,
    ) -> None:
        self.speed = check_speed(speed)
        self.max_late = max_late
        self.catch_up = check_catch_up(catch_up)
        self._anchor: float | None = None
        self._sent = 0.0
        self._last = 0.0
        self._arrived = 0.0
        self._last_duration = 0.0

    def schedule(
        self, now: float, duration: float, backlog: float = 0.0, arrived: float | None = None
    ) -> float:
        """Reserve the next slot for a frame of ``duration`` seconds of audio.

        Args:
            now: The current monotonic time.
            duration: Seconds of audio in the frame.
            backlog: Seconds of audio queued behind this frame.
            arrived: When the frame was handed over (monotonic time), if known.

        Returns:
            The monotonic time at which the frame is due (``<= now`` means send at once).
        """
        speed = self.speed
        if speed is None:
            return now
        live = arrived is not None and arrived - self._arrived >= self._last_duration / (2 * speed)
        if arrived is not None:
            self._arrived = arrived
        due = None if self._anchor is None else self._anchor + self._sent / speed
        if due is None:
            self._anchor, self._sent = now, 0.0
            due = now
        elif due > now:
            if live and backlog <= 0:
                # A live source ahead of the schedule: the schedule follows its clock.
                self._anchor -= due - now  # type: ignore[operator]  # set: due is not None
                due = now
        elif now - due > self.max_late and backlog <= 0:
            self._anchor, self._sent = now, 0.0  # a gap: start a new schedule
            due = now
        elif backlog > 0:
            # A stall: drain the backlog, but no faster than catch_up times the speed.
            due = max(due, self._last + self._last_duration / (speed * self.catch_up))
        self._sent += duration
        self._last = max(due, now)
        self._last_duration = duration
        return due


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Capped, jittered exponential backoff, as the official SDKs compute it (docs/protocol.md).

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
