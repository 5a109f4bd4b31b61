"""Reconnect supervision: given why a socket ended, return the next socket or raise why not.

The connection's reader reads a socket until it ends, then asks :meth:`Supervisor.next_socket`.
That either returns a new, open socket (the reader then rewinds the session and goes on) or
raises the error that ends the session:

* a close that is not recoverable (1001, 1005, 1006, 1011, 1012, 1013 and 1015 are), or
  reconnecting turned off (``max_retries=0``): the close itself (:class:`ConnectionClosedError`);
* more unanswered audio than ``max_replay_ms`` (an exact replay is impossible);
* a permanent refusal of a new handshake (400, 401, 403, 404): that :class:`APIStatusError`;
  likewise a certificate that does not verify (:class:`TLSError`) and a proxy refusing the
  tunnel with 403 or 407 (:class:`ProxyError`): retrying cannot change them;
* ``max_retries`` attempts in a row without progress, or ``on_reconnecting`` aborting or
  raising: :class:`ReconnectError`.

Cartesia's idle close (1001 "Idle timeout") with nothing owed is routine: the supervisor waits
for the next thing to send before opening a socket, and that costs no retry budget. Progress
(an answered utterance, or a socket that lived ``_STABLE_S``) makes the budget whole again.

A session's *first* socket is not a reconnect: :func:`first_socket` opens it under the client's
one retry policy (:class:`~.protocol.retry.RetryPolicy`, shared with the HTTP calls).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from ._config import ReconnectingEvent, SessionConfig
from ._socket import Socket
from .errors import (
    APIConnectionError,
    APIStatusError,
    CartesiaSTTError,
    ConnectionClosedError,
    ProxyError,
    ReconnectError,
    TLSError,
)
from .protocol.pacing import backoff_delay
from .protocol.retry import RetryPolicy, transient
from .protocol.sending import AudioSession

__all__ = ["RECOVERABLE_CLOSE_CODES", "Connector", "Supervisor", "first_socket"]

logger = logging.getLogger("cartesia_stt_async")

# Closes worth a new socket. 1006: a drop without a close frame; 1005: a close frame without a
# code (some proxies and load balancers send it); 1015: the TLS layer failed mid-session.
RECOVERABLE_CLOSE_CODES: Final = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1015})
# Handshake statuses that will not change by retrying.
_PERMANENT_STATUSES: Final = frozenset({400, 401, 403, 404})
# A proxy's refusals that will not change by retrying (forbidden, authentication required).
_PERMANENT_PROXY_STATUSES: Final = frozenset({403, 407})
# A socket that dies sooner than this after its handshake counts as a quick failure.
_QUICK_FAILURE_S: Final = 1.0
# A socket that lived this long restores the retry budget.
_STABLE_S: Final = 10.0

Connector = Callable[[Mapping[str, object], Mapping[str, str]], Awaitable[Socket]]
"""Opens a new socket with replacement ``extra_query`` and ``extra_headers``."""


async def first_socket(
    connect: Callable[[float | None], Awaitable[Socket]],
    policy: RetryPolicy,
    deadline: float | None,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
) -> Socket:
    """Open a session's first socket, retrying as the client's policy says (429, 5xx and
    network failures; never 400, 401, 403, 404, a TLS failure or a failing proxy), so a
    brief outage at the start of a call does not fail it. The server's ``Retry-After`` is
    honoured.

    Args:
        connect: Opens one socket within the seconds it is given (``None``: its own bound).
        policy: The client's retry policy.
        deadline: Seconds for every attempt and wait together (the session's
            ``open_timeout``): a handshake that timed out leaves no time for another.
        log: Where the retries are logged (the session's logger).

    Raises:
        APIStatusError: The last refusal, when it is not retried or retries ran out.
        APIConnectionError: Likewise for the last network failure.
    """
    loop = asyncio.get_running_loop()
    end = None if deadline is None else loop.time() + deadline
    attempt = 0
    while True:
        attempt += 1
        try:
            # A retry gets only the time left, not a whole open_timeout more.
            return await connect(None if end is None else max(end - loop.time(), 0.001))
        except (APIStatusError, APIConnectionError) as exc:
            if not transient(exc):
                raise
            retry_after = getattr(exc, "retry_after", None)
            wait = policy.decide(
                attempt,
                status=exc.status_code if isinstance(exc, APIStatusError) else None,
                headers={"retry-after": str(retry_after)} if retry_after is not None else {},
                remaining=None if end is None else end - loop.time(),
                jitter=random.random(),
                now=time.time(),
            )
            if wait is None:
                raise
            log.debug("handshake failed (%s); retry %d in %.2f s", exc, attempt, wait)
        await asyncio.sleep(wait)


class Supervisor:
    """Decides about each dropped socket of one connection.

    Args:
        config: The session's options (``max_retries``, backoff, ``on_reconnecting``).
        connector: Opens a socket; ``None`` means reconnecting is impossible.
        log: Where its decisions are logged (the session's logger).

    Attributes:
        attempt: Reconnect attempts since the last progress.
        idle: True while waiting for the next send after a routine idle close.
        reopened_idle: True when the last socket it opened replaced one the server closed
            for idleness while nothing was owed (reopened on the next send).
        extra_query: The query parameters of the next handshake (``on_reconnecting`` may
            replace them).
        extra_headers: Likewise for headers.
    """

    def __init__(
        self,
        config: SessionConfig,
        connector: Connector | None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self._log = log
        self.reopened_idle = False
        self._config = config
        self._connector = connector
        self._max_retries = config.max_retries if connector is not None else 0
        self.attempt = 0
        self.idle = False
        self.extra_query: Mapping[str, object] = dict(config.extra_query or {})
        self.extra_headers: Mapping[str, str] = dict(config.extra_headers or {})

    def progress(self) -> None:
        """Something was answered: the retry budget is whole again."""
        self.attempt = 0

    async def next_socket(
        self,
        drop: ConnectionClosedError,
        *,
        lived: float,
        session: AudioSession,
        wait_for_send: Callable[[], Awaitable[None]],
    ) -> Socket:
        """Decide about a socket that ended before ``done``; open the next one if allowed.

        Args:
            drop: Why the socket ended.
            lived: Seconds the socket lived after its handshake.
            session: The session (what is owed, whether a replay can be exact).
            wait_for_send: Returns once something is queued to send (for idle closes).

        Returns:
            A new, open socket.

        Raises:
            CartesiaSTTError: Why the session cannot go on (see the module docstring).
        """
        code = drop.code if drop.code is not None else 1006
        if self._max_retries == 0 or code not in RECOVERABLE_CLOSE_CODES:
            raise drop
        if not session.replay_complete:
            raise ConnectionClosedError(
                f"{drop} and more than max_replay_ms of unacknowledged audio was sent, "
                "so it cannot be replayed exactly; not reconnecting",
                code=drop.code,
                reason=drop.reason,
            )
        quick = lived < _QUICK_FAILURE_S
        if lived >= _STABLE_S:
            self.attempt = 0
        idle = code == 1001 and "idle" in drop.reason.lower()
        owed = session.has_unanswered
        self._log.debug(
            "socket ended (code %s%s) after %.3f s; %s",
            code,
            ", idle" if idle else "",
            lived,
            "reconnecting" if not idle or owed else "reconnecting on next send",
        )
        if idle:
            session.stats.idle_closes += 1
            # Routine only when nothing is owed: then the new socket waits for your next
            # send, so it can never loop. A server "idle" while it owes an answer is no
            # routine: that reconnect uses the budget like any other.
            idle = not owed
        self.reopened_idle = idle
        if idle:
            session.idle_closed()
            self.idle = True
            try:
                await wait_for_send()
            finally:
                self.idle = False
            return await self._connect_first(drop)
        return await self._retry(drop, drop, code, quick)

    async def _connect_first(self, drop: ConnectionClosedError) -> Socket:
        """After a routine idle close: one free attempt, then the budget applies."""
        try:
            return await self._connect()
        except (APIStatusError, APIConnectionError) as exc:
            self._check_permanent(exc)
            return await self._retry(drop, exc, None, False)

    async def _retry(
        self,
        drop: ConnectionClosedError,
        last: CartesiaSTTError,
        close_code: int | None,
        quick: bool,
    ) -> Socket:
        """Back off and reconnect until a socket opens or the budget runs out."""
        while True:
            self.attempt += 1
            if self.attempt > self._max_retries:
                raise self._give_up(last, quick)
            config = self._config
            delay = backoff_delay(
                self.attempt, config.initial_delay, config.max_delay, random.random()
            )
            retry_after = getattr(last, "retry_after", None)
            if isinstance(retry_after, float):
                # The server's Retry-After, within the same cap as the backoff.
                delay = max(delay, min(retry_after, config.max_delay))
            await self._notify(delay, close_code, drop, last)
            await asyncio.sleep(delay)
            try:
                return await self._connect()
            except (APIStatusError, APIConnectionError) as exc:
                self._check_permanent(exc)
                last, close_code, quick = exc, None, False
                self._log.debug(
                    "reconnect attempt %d failed: %s",
                    self.attempt,
                    getattr(exc, "status_code", None) or type(exc).__name__,
                )

    async def _connect(self) -> Socket:
        assert self._connector is not None
        return await self._connector(self.extra_query, self.extra_headers)

    @staticmethod
    def _check_permanent(exc: CartesiaSTTError) -> None:
        if isinstance(exc, APIStatusError) and exc.status_code in _PERMANENT_STATUSES:
            raise exc
        if isinstance(exc, TLSError):
            raise exc
        if isinstance(exc, ProxyError) and exc.status_code in _PERMANENT_PROXY_STATUSES:
            raise exc

    def _give_up(self, last: CartesiaSTTError, quick: bool) -> ReconnectError:
        attempts = self.attempt - 1
        if quick:
            why = "each socket closed right after its handshake"
        else:
            why = f"the last attempt failed: {last}"
        closed = last if isinstance(last, ConnectionClosedError) else None
        err = ReconnectError(
            f"gave up reconnecting after {attempts} attempt(s) in a row without progress; {why}",
            code=closed.code if closed is not None else None,
            reason=closed.reason if closed is not None else "",
            attempts=attempts,
        )
        err.__cause__ = last
        return err

    async def _notify(
        self,
        delay: float,
        close_code: int | None,
        drop: ConnectionClosedError,
        last: CartesiaSTTError,
    ) -> None:
        """Call ``on_reconnecting``; raise :class:`ReconnectError` if it aborts or fails."""
        callback = self._config.on_reconnecting
        if callback is None:
            return
        event = ReconnectingEvent(
            attempt=self.attempt,
            max_attempts=self._max_retries,
            delay=delay,
            close_code=close_code,
            extra_query=self.extra_query,
            extra_headers=self.extra_headers,
        )
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the user's callback: its failure ends reconnecting
            err = ReconnectError(
                f"on_reconnecting raised {type(exc).__name__}: {exc}",
                code=drop.code,
                reason=drop.reason,
                attempts=self.attempt - 1,
            )
            err.__cause__ = exc
            raise err from exc
        if isinstance(result, Mapping):
            if result.get("abort"):
                raise ReconnectError(
                    f"reconnecting aborted by on_reconnecting after: {last}",
                    code=drop.code,
                    reason=drop.reason,
                    attempts=self.attempt - 1,
                )
            if result.get("extra_query") is not None:
                self.extra_query = dict(result["extra_query"])
            if result.get("extra_headers") is not None:
                self.extra_headers = dict(result["extra_headers"])
