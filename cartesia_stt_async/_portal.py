"""The sync client's machinery: one event-loop thread per client, and handlers run in the
caller's thread (rules 1-4 of :mod:`cartesia_stt_async._sync`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import inspect
import queue
import threading
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Self, TypeVar, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._client import AsyncCartesia
from .errors import ConnectionStateError, UsageError
from .protocol.events import Event

if TYPE_CHECKING:
    from ._sync import SyncConnection

__all__ = ["DEFAULT", "Default", "Handler", "HandlerMethods", "Handlers", "Portal", "Runtime"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

Handler = Callable[[Any], object]
"""A sync event handler: called with the event in the thread running ``dispatch_events``."""

_H = TypeVar("_H", bound=Handler)

_Call = tuple[Handler, Event, "concurrent.futures.Future[object]"]

# How long a cancelled call may take to unwind before the interrupt propagates anyway.
_CANCEL_WAIT_S: Final = 5.0


class Default(enum.Enum):
    DEFAULT = 0


DEFAULT: Final = Default.DEFAULT


def _name_thread() -> int:
    thread = threading.current_thread()
    thread.name = f"cartesia-stt-sync-{thread.ident}"
    return threading.get_ident()


class Portal:
    """One lifetime of a client's loop thread; calls after :meth:`stop` raise."""

    def __init__(self) -> None:
        # anyio >= 4.5 runs the portal in a daemon thread: it never holds up interpreter exit.
        self._cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._cm.__enter__()
        self.thread_id: int = self._portal.call(_name_thread)
        self.stopped = False

    def _check_caller(self) -> None:
        if self.stopped:
            raise ConnectionStateError("the client is closed: this connection's thread has ended")
        if threading.get_ident() == self.thread_id:
            raise UsageError(
                "a blocking method of the sync client was called on the client's own event loop "
                "(from an on_reconnecting callback or an async handler): it would wait on itself"
            )

    def submit(
        self, fn: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> tuple[concurrent.futures.Future[_T], threading.Event]:
        """Start ``fn(*args, **kwargs)`` on the loop; the event is set once it has unwound."""
        self._check_caller()
        finished = threading.Event()

        async def run() -> _T:
            try:
                return await fn(*args, **kwargs)
            finally:
                finished.set()

        try:
            return self._portal.start_task_soon(run), finished
        except RuntimeError:  # stopped by another thread meanwhile
            raise ConnectionStateError("the client is closed") from None

    @staticmethod
    def wait(
        future: concurrent.futures.Future[Any],
        finished: threading.Event,
        block: Callable[[], _T],
    ) -> _T:
        """Run ``block`` (which waits for ``future``); cancel the call if it is interrupted."""
        try:
            return block()
        except BaseException:
            if not future.done():  # interrupted while waiting: Ctrl-C, or a handler's error
                future.cancel()
                finished.wait(_CANCEL_WAIT_S)
            raise

    def call(self, fn: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run ``fn(*args, **kwargs)`` on the loop and return its result (rule 1)."""
        future, finished = self.submit(fn, *args, **kwargs)
        return self.wait(future, finished, future.result)

    def stop(self) -> None:
        """Cancel what still runs on the loop, end it and join the thread."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(RuntimeError):
            self._portal.call(self._portal.stop, True)
        self._cm.__exit__(None, None, None)


class Runtime:
    """A client's loop thread (started on first use) and the connections open on it."""

    def __init__(self, aclient: AsyncCartesia) -> None:
        self.aclient = aclient
        self._lock = threading.Lock()
        self._portal: Portal | None = None
        self.connections: weakref.WeakSet[SyncConnection] = weakref.WeakSet()

    def portal(self) -> Portal:
        with self._lock:
            if self._portal is None:
                self._portal = Portal()
            return self._portal

    @property
    def thread_alive(self) -> bool:
        return self._portal is not None and not self._portal.stopped

    def close(self) -> None:
        """Rule 3; idempotent. A no-op when called on the loop thread (from a finalizer)."""
        with self._lock:
            portal, self._portal = self._portal, None
            if portal is None:
                return
            if threading.get_ident() == portal.thread_id:
                self._portal = portal  # cannot join our own thread: leave it be
                return
            conns = [c._aconn for c in self.connections if c._portal is portal]

            async def shutdown() -> None:
                try:
                    for conn in conns:
                        await conn.close(reason="client closed")
                finally:
                    await self.aclient.close()

            try:
                portal.call(shutdown)
            finally:
                portal.stop()


class Handlers:
    """Sync handlers registered on the async side as coroutines that run them in the caller's
    thread (rule 2). One wrapper per handler, so ``off`` finds what ``on`` registered."""

    def __init__(self) -> None:
        self._wrappers: list[tuple[Handler, Handler]] = []
        self.inbox: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.dispatching = False

    def wrapper(self, handler: Handler) -> Handler:
        if not callable(handler):
            raise UsageError(f"handler must be callable, got {type(handler).__name__}")
        known = self.find(handler)
        if known is not None:
            return known

        async def run_in_caller(event: Event) -> None:
            if not self.dispatching:
                raise UsageError("sync handlers run only inside SyncConnection.dispatch_events()")
            reply: concurrent.futures.Future[object] = concurrent.futures.Future()
            self.inbox.put((handler, event, reply))
            result = await asyncio.wrap_future(reply)
            if inspect.isawaitable(result):  # an async handler: run it on the loop
                await result

        self._wrappers.append((handler, run_in_caller))
        return run_in_caller

    def find(self, handler: Handler) -> Handler | None:
        for known, wrapper in self._wrappers:
            if known is handler or known == handler:
                return wrapper
        return None

    def pump(self, future: concurrent.futures.Future[None]) -> None:
        """Run handlers in this thread until ``future`` (the async dispatcher) is done."""
        future.add_done_callback(lambda _: self.inbox.put(None))
        while (item := self.inbox.get()) is not None:
            handler, event, reply = item
            if reply.set_running_or_notify_cancel():
                try:
                    reply.set_result(handler(event))
                except Exception as exc:
                    reply.set_exception(exc)
        future.result()


class HandlerMethods:
    """``on``/``once``/``off`` for sync handlers: on the manager (moved to the connection on
    enter) and on the connection. Each handler runs in the thread that calls
    :meth:`SyncConnection.dispatch_events` (rule 2)."""

    _handlers: Handlers

    def _apply(self, change: Callable[[Any], object]) -> None:
        """Run ``change(target)`` on the async object that keeps the handlers."""
        raise NotImplementedError

    @overload
    def on(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def on(self, event_type: str, handler: Handler) -> Self: ...
    def on(self, event_type: str, handler: Handler | None = None) -> Self | Callable[[_H], _H]:
        """Register ``handler`` for events of ``event_type`` (``"event"``: every event).

        Usable as ``connection.on("transcript", fn)`` (chainable) or as a decorator.
        """
        return self._register(event_type, handler, once=False)

    @overload
    def once(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def once(self, event_type: str, handler: Handler) -> Self: ...
    def once(self, event_type: str, handler: Handler | None = None) -> Self | Callable[[_H], _H]:
        """Like :meth:`on`, for the next matching event only."""
        return self._register(event_type, handler, once=True)

    def off(self, event_type: str, handler: Handler) -> Self:
        """Remove a handler registered with :meth:`on` or :meth:`once`."""
        wrapper = self._handlers.find(handler)
        if wrapper is not None:
            self._apply(lambda target: target.off(event_type, wrapper))
        return self

    def _register(
        self, event_type: str, handler: Handler | None, *, once: bool
    ) -> Self | Callable[[_H], _H]:
        def add(fn: Handler) -> None:
            wrapper = self._handlers.wrapper(fn)
            self._apply(lambda target: (target.once if once else target.on)(event_type, wrapper))

        if handler is not None:
            add(handler)
            return self

        def decorator(fn: _H) -> _H:
            add(fn)
            return fn

        return decorator
