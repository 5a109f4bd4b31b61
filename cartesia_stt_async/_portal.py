"""The sync client's machinery: one event-loop thread per client, and handlers run in the
caller's thread (rules 1-4 of :mod:`cartesia_stt_async._sync`).

Lifetimes. A :class:`Runtime` starts its loop thread (a :class:`Portal`) on first use and
stops it on ``close()``. A client that is collected without ``close()`` is closed by its
finalizer (:meth:`Runtime.finalize`): from a thread that runs an event loop (the client's own
thread, when the last reference died there, or any other loop's), another thread does the
closing, since a thread cannot join itself and a loop must not be blocked. A forked child
gets none of the parent's threads: every runtime forgets its portal in the child
(:func:`_after_fork_in_child`), without touching it (its sockets are the parent's), and
starts a new thread on its next call; connections opened before the fork raise there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import os
import queue
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Self, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal

from ._client import AsyncCartesia
from .errors import ConnectionStateError, UsageError
from .protocol.events import ServerEvent

if TYPE_CHECKING:
    from ._connection import BaseConnection

__all__ = ["Handler", "Portal", "Runtime", "SyncHandlerMethods", "SyncHandlers"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

Handler = Callable[[Any], object]
"""A sync event handler: called with the event in the thread running ``dispatch_events``."""

_H = TypeVar("_H", bound=Handler)

_Call = tuple[Handler, ServerEvent, "concurrent.futures.Future[object]"]

# How long a cancelled call may take to unwind before the interrupt propagates anyway.
_CANCEL_WAIT_S: Final = 5.0

_LIVE: Final = ("open", "closing")


def _run_portal(ready: concurrent.futures.Future[BlockingPortal]) -> None:
    """The loop thread: run a blocking portal until it is stopped."""

    async def main() -> None:
        async with BlockingPortal() as portal:
            ready.set_result(portal)
            await portal.sleep_until_stopped()

    try:
        anyio.run(main)
    except BaseException as exc:
        if not ready.done():
            ready.set_exception(exc)


class Portal:
    """One lifetime of a client's loop thread; calls after :meth:`stop` raise.

    The thread is started here rather than with anyio's ``start_blocking_portal``, whose
    context manager joins the thread when it is collected: in a forked child, where that
    thread does not exist, the join would wait forever.

    Attributes:
        connections: The async connections opened on this loop (read and changed on it only).
        forked: True in a forked child: the loop is the parent's, gone with its thread.
    """

    def __init__(self) -> None:
        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()
        # A daemon thread: it never holds up interpreter exit.
        self._thread = threading.Thread(target=_run_portal, args=(ready,), daemon=True)
        self._thread.start()
        self._portal = ready.result()
        assert self._thread.ident is not None
        self.thread_id: int = self._thread.ident
        self._thread.name = f"cartesia-stt-sync-{self.thread_id}"
        self.stopped = False
        self.forked = False
        self.connections: set[BaseConnection[Any]] = set()

    def _check_caller(self, closing: bool = False) -> None:
        if self.forked:
            raise ConnectionStateError(
                "this connection was opened before os.fork(): it belongs to the parent "
                "process (its thread did not come along); open a new one in this process"
            )
        if self.stopped:
            raise ConnectionStateError("the client is closed: this connection's thread has ended")
        if threading.get_ident() == self.thread_id:
            raise UsageError(
                "a blocking method of the sync client was called on the client's own event loop "
                "(from an on_reconnecting callback or an async handler): it would wait on itself"
            )
        if not closing:
            _refuse_in_event_loop()

    def submit(
        self,
        fn: Callable[_P, Awaitable[_T]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> tuple[concurrent.futures.Future[_T], threading.Event]:
        """Start ``fn(*args, **kwargs)`` on the loop; the event is set once it has unwound."""
        self._check_caller()
        return self._start(fn, *args, **kwargs)

    def _start(
        self, fn: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> tuple[concurrent.futures.Future[_T], threading.Event]:
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

    def call_closing(self, fn: Callable[[], Awaitable[None]]) -> None:
        """:meth:`call` for closing: allowed from a thread that runs an event loop too (a
        client left by ``with`` in async code must still close; closing is bounded)."""
        self._check_caller(closing=True)
        future, finished = self._start(fn)
        self.wait(future, finished, future.result)

    def track(self, connection: BaseConnection[Any]) -> None:
        """Remember an open connection, for :meth:`Runtime.close` (on the loop thread)."""
        self.connections = {c for c in self.connections if c.state in _LIVE}
        self.connections.add(connection)

    def stop(self) -> None:
        """Cancel what still runs on the loop, end it and join the thread (from another)."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(RuntimeError):
            self._portal.call(self._portal.stop, True)
        self._thread.join()


def _in_event_loop() -> bool:
    """Whether this thread is running an event loop (a blocking wait here would stall it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _refuse_in_event_loop() -> None:
    """Refuse a blocking call from a thread that runs an event loop: it would stall that loop,
    and whatever serves on it (a twin from ``serve()``, a web app) could never answer (it
    used to end in a misleading open timeout)."""
    if _in_event_loop():
        raise UsageError(
            "the sync client (Cartesia) was called from inside a running event loop: a "
            "blocking call would stall that loop. In async code use AsyncCartesia and await "
            "its calls (in a notebook, top-level await works)"
        )


class Runtime:
    """A client's loop thread (started on first use) and the connections open on it."""

    def __init__(self, aclient: AsyncCartesia) -> None:
        self.aclient = aclient
        self._lock = threading.Lock()
        self._portal: Portal | None = None
        _RUNTIMES.add(self)

    def portal(self) -> Portal:
        _refuse_in_event_loop()  # before a thread is started for nothing
        with self._lock:
            if self._portal is None:
                self._portal = Portal()
            return self._portal

    def close(self) -> None:
        """Rule 3; idempotent.

        Raises:
            UsageError: When called on the client's own loop thread (see :meth:`finalize`).
        """
        running = self._portal
        if running is not None and threading.get_ident() == running.thread_id:
            raise UsageError("client.close() cannot run on the client's own event loop")
        with self._lock:
            portal, self._portal = self._portal, None
            if portal is None:
                return

            async def shutdown() -> None:
                try:
                    for conn in [c for c in portal.connections if c.state in _LIVE]:
                        await conn.close(reason="client closed")
                finally:
                    await self.aclient.close()

            try:
                portal.call_closing(shutdown)
            finally:
                portal.stop()

    def finalize(self) -> None:
        """:meth:`close` for a client that was collected, or at interpreter exit.

        The collection may run on any thread. On one running an event loop (the client's
        own, when its last reference died there), a new thread closes the client: a thread
        cannot join itself, and another loop must not be blocked.
        """
        if not _in_event_loop():
            self.close()
            return
        closer = threading.Thread(target=self.close, name="cartesia-stt-sync-close", daemon=True)
        with contextlib.suppress(RuntimeError):  # no new threads at interpreter shutdown
            closer.start()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's loop thread, which did not come along.

        Nothing of it is touched (its sockets and selector are shared with the parent); its
        connections raise :class:`ConnectionStateError` from now on. The next call starts a
        new thread.
        """
        self._lock = threading.Lock()  # another thread of the parent may have held it
        portal, self._portal = self._portal, None
        if portal is not None:
            portal.forked = portal.stopped = True


_RUNTIMES: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for runtime in list(_RUNTIMES):
        runtime.after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SyncHandlers:
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

        async def run_in_caller(event: ServerEvent) -> None:
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


class SyncHandlerMethods:
    """``on``/``once``/``off`` for sync handlers: on the manager (moved to the connection on
    enter) and on the connection. Each handler runs in the thread that calls
    :meth:`SyncConnection.dispatch_events` (rule 2)."""

    _handlers: SyncHandlers

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
