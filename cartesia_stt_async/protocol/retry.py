"""The one retry policy of every call: HTTP requests and the first WebSocket handshake (pure).

Theory of operation. A call is one or more *attempts*. After a failed attempt the I/O layer
asks :meth:`RetryPolicy.decide` whether to try again and how long to wait first; it passes the
failure (an HTTP status and headers, or ``None`` for a connection failure), the attempt number,
the time left before the call's deadline and a jitter value. Nothing here sleeps or reads a
clock: ``now`` (for a ``Retry-After`` HTTP-date) and ``jitter`` are parameters.

The rules, as the official SDKs apply them (``_base_client.py`` ``_should_retry``, with our one
deviation marked):

1. A server's ``x-should-retry: true|false`` answer wins over everything below.
2. Retried: connection failures (no status), 429 and every 5xx. Never: any other 4xx (400,
   401, 403, 404, 422: the same request would get the same answer). The official SDK also
   retries 408 and 409; we do only when the server says ``x-should-retry: true``.
3. The wait is the server's ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP-date),
   when it is above 0 and at most :data:`MAX_RETRY_AFTER` seconds; else the jittered backoff
   :func:`~.pacing.backoff_delay` (``initial_delay`` doubling up to ``max_delay``).
4. No retry after ``max_retries`` retries, or when the wait would not end before the deadline.
   Never a certificate that did not verify or a proxy that failed (:func:`transient`).
5. A request whose body cannot be sent again (a non-seekable file object already partly read)
   is never retried: the I/O layer says so with ``replayable=False``.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import APIConnectionError, APIStatusError, CartesiaSTTError, ProxyError, TLSError
from .checks import check_int, check_number
from .pacing import backoff_delay

__all__ = [
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "parse_retry_after",
    "retryable_status",
    "transient",
]

MAX_RETRY_AFTER: Final = 60.0
"""A server's wait longer than this is ignored in favour of the backoff (the SDKs' bound)."""


def parse_retry_after(raw: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Args:
        raw: The header's value, or ``None``.
        now: The current ``time.time()``, for an HTTP-date.

    Returns:
        The seconds to wait (an HTTP-date in the past gives 0.0), or ``None`` for a missing,
        malformed, negative, NaN or infinite value.
    """
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        return max(when.timestamp() - now, 0.0)
    return value if math.isfinite(value) and value >= 0 else None


def _server_wait(headers: Mapping[str, str], now: float) -> float | None:
    """``retry-after-ms``, else ``Retry-After``, in seconds (unbounded; ``None`` if neither)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    return parse_retry_after(headers.get("retry-after"), now)


def transient(error: CartesiaSTTError) -> bool:
    """Whether a failed request or handshake may be worth retrying at all: a status error (the
    policy then decides by its status) or a connection failure, but never a certificate that
    did not verify (:class:`TLSError`) or a proxy that refused or could not be reached
    (:class:`ProxyError`): those are the network's configuration, which a retry cannot
    change. (A 5xx that a forwarding proxy answers is a status error, and retried.)"""
    if isinstance(error, TLSError | ProxyError):
        return False
    return isinstance(error, APIStatusError | APIConnectionError)


def retryable_status(status: int | None, headers: Mapping[str, str]) -> bool:
    """Whether a failure is worth another attempt (rules 1 and 2).

    Args:
        status: The HTTP status, or ``None`` for a connection failure.
        headers: The response headers (case-insensitive lookups are the caller's: pass a
            ``CIMultiDict`` or lower-case names).
    """
    verdict = headers.get("x-should-retry")
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return status is None or status == 429 or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried: HTTP requests (``stt.transcribe``, ``tts.generate``,
    ``access_token.create``) and the first handshake of a WebSocket session.

    Args:
        max_retries: Retries after the first attempt (0: never retry). Default 2, as the
            official SDKs.
        initial_delay: Backoff before the first retry, seconds (before jitter).
        max_delay: Cap of the backoff, seconds.

    Raises:
        UsageError: For a value of the wrong type or range.
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        check_int("max_retries", self.max_retries, low=0)
        check_number("initial_delay", self.initial_delay, low=0.0)
        check_number("max_delay", self.max_delay, low=0.0)

    @classmethod
    def of(cls, value: object) -> RetryPolicy:
        """The policy for a client's ``max_retries=`` option: an int or a policy.

        Raises:
            UsageError: For anything else, or an int below 0.
        """
        if isinstance(value, RetryPolicy):
            return value
        return cls(max_retries=check_int("max_retries", value, low=0, wanted=_WANTED))

    def decide(
        self,
        attempt: int,
        *,
        status: int | None,
        headers: Mapping[str, str],
        remaining: float | None,
        jitter: float,
        now: float,
        replayable: bool = True,
    ) -> float | None:
        """Whether to retry after failed attempt number ``attempt`` (1 for the first).

        Args:
            attempt: How many attempts failed so far (1, 2, ...).
            status: The HTTP status, or ``None`` for a connection failure.
            headers: The response headers (``{}`` for a connection failure).
            remaining: Seconds left before the call's deadline; ``None``: no deadline.
            jitter: A number in [0, 1) (``random.random()``).
            now: The current ``time.time()`` (for a ``Retry-After`` HTTP-date).
            replayable: Whether the request can be sent again as it was.

        Returns:
            Seconds to wait before the next attempt, or ``None``: do not retry.
        """
        if attempt > self.max_retries or not replayable:
            return None
        if not retryable_status(status, headers):
            return None
        wait = _server_wait(headers, now)
        if wait is None or not 0 < wait <= MAX_RETRY_AFTER:
            wait = backoff_delay(attempt, self.initial_delay, self.max_delay, jitter)
        if remaining is not None and wait >= remaining:
            return None  # the next attempt could not even start before the deadline
        return wait


_WANTED: Final = "an int >= 0 or a RetryPolicy"
