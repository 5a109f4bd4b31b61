"""Where server events go after the session has seen them: one bounded buffer, one handler registry.

The reader task publishes every decoded event to the connection's :class:`EventBuffer`, which
``recv()``, ``async for event in conn`` and ``dispatch_events()`` consume. Nobody has to: the
transcript and ``finalize()`` never depend on it, so the buffer is bounded and drops its oldest
events when full (counted in ``stats.events_dropped``, logged once).

:class:`Handlers` is the official SDK's push style (``on``/``once``/``off``); the connection
manager and its connection share one registry, so handlers registered before ``async with``
simply stay registered. :class:`HandlerMethods` gives both classes the same typed methods.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Self, TypeVar, overload

from .errors import UsageError
from .protocol.events import ServerEvent
from .protocol.outbox import ConnectionStats

__all__ = ["EventBuffer", "EventHandler", "HandlerMethods", "Handlers"]

logger = logging.getLogger("cartesia_stt_async")

EventHandler = Callable[[Any], object]
"""A handler for ``on()``: called with the event; may return an awaitable."""

_H = TypeVar("_H", bound=EventHandler)


class EventBuffer:
    """Events waiting to be read, oldest first: at most ``max_events`` of them, and at most
    ``max_bytes`` of their messages.

    Args:
        max_events: The count bound; past it the oldest event is dropped.
        max_bytes: The size bound (wire size of the messages); likewise.
        stats: Counters (``events_dropped``).
        log: Where its warning goes (the session's logger, with its fields).
    """

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        stats: ConnectionStats,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self._log = log
        # Two parallel deques rather than one of (event, size) tuples: no object per event
        # for the garbage collector to track while nobody iterates.
        self._events: deque[ServerEvent] = deque()
        self._sizes: deque[int] = deque()
        self._max = max_events
        self._max_bytes = max_bytes
        self._bytes = 0
        self._stats = stats
        self._changed = asyncio.Event()
        self._closed = False

    def publish(self, event: ServerEvent, size: int) -> None:
        """Add an event of ``size`` wire bytes (dropping the oldest ones when full)."""
        events, sizes = self._events, self._sizes
        while events and (len(events) >= self._max or self._bytes + size > self._max_bytes):
            events.popleft()
            self._bytes -= sizes.popleft()
            self._stats.events_dropped += 1
            if self._stats.events_dropped == 1:
                self._log.warning(
                    "event backlog full (%d events, %d bytes): nobody iterates this connection, "
                    "dropping the oldest events (transcript and finalize() are unaffected)",
                    self._max,
                    self._max_bytes,
                )
        events.append(event)
        sizes.append(size)
        self._bytes += size
        self._changed.set()

    def close(self) -> None:
        """No event will follow: readers get ``None`` once the buffer is empty."""
        self._closed = True
        self._changed.set()

    async def next(self) -> ServerEvent | None:
        """The next event, waiting for one; ``None`` when closed and empty."""
        while not self._events:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        self._bytes -= self._sizes.popleft()
        return self._events.popleft()


class Handlers:
    """A registry of event handlers: ``{event type: [(handler, once), ...]}``.

    The type ``"event"`` receives every event, after the handlers of its own type.
    """

    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[EventHandler, bool]]] = {}

    def add(self, event_type: str, handler: EventHandler, *, once: bool) -> None:
        """Register ``handler``.

        Raises:
            UsageError: If ``event_type`` is not a string or ``handler`` is not callable.
        """
        if not isinstance(event_type, str):
            raise UsageError(f"event_type must be a string, got {type(event_type).__name__}")
        if not callable(handler):
            raise UsageError(f"handler must be callable, got {type(handler).__name__}")
        self._entries.setdefault(event_type, []).append((handler, once))

    def remove(self, event_type: str, handler: EventHandler) -> None:
        """Unregister ``handler`` for ``event_type`` (no error when it is not registered)."""
        entries = self._entries.get(event_type, [])
        self._entries[event_type] = [(h, once) for h, once in entries if h is not handler]

    def has_error_handler(self) -> bool:
        """True when an ``error`` or ``event`` handler would see an error event."""
        return bool(self._entries.get("error") or self._entries.get("event"))

    async def dispatch(self, event: ServerEvent) -> None:
        """Call the handlers of ``event``'s type, then the ``"event"`` handlers."""
        for key in (event.type, "event"):
            entries = self._entries.get(key, [])
            if any(once for _, once in entries):
                self._entries[key] = [(h, o) for h, o in entries if not o]
            for handler, _ in entries:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result


class HandlerMethods:
    """``on``/``once``/``off`` over a :class:`Handlers` registry in ``self._handlers``."""

    _handlers: Handlers

    @overload
    def on(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def on(self, event_type: str, handler: EventHandler) -> Self: ...
    def on(self, event_type: str, handler: EventHandler | None = None) -> Self | Callable[[_H], _H]:
        """Register ``handler`` for events of ``event_type`` (``"event"``: every event).

        Usable as ``conn.on("transcript", fn)`` (chainable) or as a decorator
        ``@conn.on("transcript")``. Handlers may be plain functions or coroutines; they run
        in ``dispatch_events()``.
        """
        return self._register(event_type, handler, once=False)

    @overload
    def once(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def once(self, event_type: str, handler: EventHandler) -> Self: ...
    def once(
        self, event_type: str, handler: EventHandler | None = None
    ) -> Self | Callable[[_H], _H]:
        """Like :meth:`on`, for the next matching event only."""
        return self._register(event_type, handler, once=True)

    def off(self, event_type: str, handler: EventHandler) -> Self:
        """Remove a handler registered with :meth:`on` or :meth:`once`."""
        self._handlers.remove(event_type, handler)
        return self

    def _register(
        self, event_type: str, handler: EventHandler | None, *, once: bool
    ) -> Self | Callable[[_H], _H]:
        if handler is not None:
            self._handlers.add(event_type, handler, once=once)
            return self

        def decorator(fn: _H) -> _H:
            self._handlers.add(event_type, fn, once=once)
            return fn

        if not isinstance(event_type, str):
            raise UsageError(f"event_type must be a string, got {type(event_type).__name__}")
        return decorator
