"""The checks of numeric options: the one home of "a number of seconds", "an int >= 1", a pacing
speed (pure: stdlib only).

Every SDK module that takes a numeric option checks it here, so the rules agree everywhere:

* ``bool`` is never a number (``True`` is an ``int`` to Python, but ``speed=True`` is a mistake);
* a number is an ``int`` or a ``float`` (not a string, not a complex), and finite unless the
  check says otherwise (a pacing speed takes ``math.inf`` for "unpaced");
* ``None`` passes only where the check is told it may (``none=True``);
* a failure raises :class:`~cartesia_stt_async.errors.UsageError` naming the option and the
  value: ``"close_timeout must be a finite number >= 0.0, got -1"``. A caller with its own
  wording (``"silence_ms must be a positive number"``) passes ``wanted``, the text after
  "must be"; the rule stays here.
"""

from __future__ import annotations

import math
from typing import Literal, TypeGuard, overload

from ..errors import UsageError

__all__ = ["check_catch_up", "check_int", "check_number", "check_speed", "check_timeout"]


def _fail(name: str, wanted: str, value: object) -> UsageError:
    return UsageError(f"{name} must be {wanted}, got {value!r}")


def _is_number(value: object) -> TypeGuard[int | float]:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return not isinstance(value, bool) and isinstance(value, int | float)


@overload
def check_number(
    name: str,
    value: object,
    *,
    low: float | None = ...,
    strict: bool = ...,
    none: Literal[False] = ...,
    wanted: str | None = ...,
) -> float: ...


@overload
def check_number(
    name: str,
    value: object,
    *,
    low: float | None = ...,
    strict: bool = ...,
    none: bool,
    wanted: str | None = ...,
) -> float | None: ...


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    strict: bool = False,
    none: bool = False,
    wanted: str | None = None,
) -> float | None:
    """Check a finite number, at least ``low`` (above it with ``strict``), or ``None`` if allowed.

    Args:
        name: The option, as the caller knows it (``"close_timeout"``, ``"--finalize-every"``).
        value: What was given.
        low: The lower bound; ``None``: any finite number.
        strict: ``value`` must be above ``low``, not equal to it.
        none: ``None`` is accepted (and returned).
        wanted: What the message says ``name`` must be; default
            ``"a finite number >= {low}"`` (``> {low}`` with ``strict``, ``or None`` with
            ``none``).

    Returns:
        ``value`` as a ``float``, or ``None``.

    Raises:
        UsageError: For a ``bool``, a non-number, NaN, an infinity, or a value out of bounds.
    """
    if value is None and none:
        return None
    if (
        _is_number(value)
        and math.isfinite(value)
        and (low is None or (value > low if strict else value >= low))
    ):
        return float(value)
    if wanted is None:
        bound = "" if low is None else f" > {low}" if strict else f" >= {low}"
        wanted = f"a finite number{bound}{' or None' if none else ''}"
    raise _fail(name, wanted, value)


@overload
def check_int(
    name: str,
    value: object,
    *,
    low: int,
    high: int | None = ...,
    none: Literal[False] = ...,
    wanted: str | None = ...,
) -> int: ...


@overload
def check_int(
    name: str,
    value: object,
    *,
    low: int,
    high: int | None = ...,
    none: bool,
    wanted: str | None = ...,
) -> int | None: ...


def check_int(
    name: str,
    value: object,
    *,
    low: int,
    high: int | None = None,
    none: bool = False,
    wanted: str | None = None,
) -> int | None:
    """Check an ``int`` from ``low`` to ``high`` (inclusive), or ``None`` if allowed.

    Args:
        name: The option.
        value: What was given.
        low: The smallest value accepted.
        high: The largest value accepted; ``None``: no limit.
        none: ``None`` is accepted (and returned).
        wanted: What the message says ``name`` must be; default ``"an int >= {low}"``
            (``"an int from {low} to {high}"`` with ``high``; ``or None`` with ``none``).

    Returns:
        ``value``, or ``None``.

    Raises:
        UsageError: For a ``bool``, a ``float`` (even ``2.0``), a non-number, or a value out of
            bounds.
    """
    if value is None and none:
        return None
    if (
        not isinstance(value, bool)
        and isinstance(value, int)
        and low <= value
        and (high is None or value <= high)
    ):
        return value
    if wanted is None:
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        wanted = f"an int {bound}{' or None' if none else ''}"
    raise _fail(name, wanted, value)


def check_speed(value: object, name: str = "speed", *, wanted: str | None = None) -> float | None:
    """Check a pacing speed: ``None`` or ``math.inf`` (no pacing), or a positive number.

    Args:
        value: What was given: 1.0 is real time, 2.0 twice as fast.
        name: The option (``"speed"``; the command line's ``"--speed"``).
        wanted: What the message says ``name`` must be, for every refusal; default
            ``"a positive number or None"`` for a non-number or NaN, ``"positive (1.0 is real
            time)"`` for zero or less.

    Returns:
        ``None`` for no pacing, else the speed as a ``float``.

    Raises:
        UsageError: For a ``bool``, a non-number, NaN, zero or a negative speed.
    """
    if value is None:
        return None
    if not _is_number(value) or math.isnan(value):
        raise _fail(name, wanted or "a positive number or None", value)
    if value <= 0:
        raise _fail(name, wanted or "positive (1.0 is real time)", value)
    return None if math.isinf(value) else float(value)


def check_catch_up(value: object) -> float:
    """Check ``catch_up_speed``: a finite number >= 1 (1.0: never faster than ``speed``).

    Raises:
        UsageError: Otherwise.
    """
    return check_number("catch_up_speed", value, low=1.0)


def check_timeout(name: str, value: object) -> float | None:
    """Check a timeout in seconds: a finite number >= 0, or ``None`` (no limit).

    Returns:
        ``value`` as a ``float``, or ``None``.

    Raises:
        UsageError: Otherwise.
    """
    return check_number(name, value, low=0, none=True, wanted="a number of seconds >= 0 or None")
