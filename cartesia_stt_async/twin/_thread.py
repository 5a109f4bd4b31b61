"""A twin on its own event loop in a background thread: for sync code, sync tests, scripts and
web frameworks that run their own loop (FastAPI's ``TestClient``). No pytest needed.

    from cartesia_stt_async.twin import start_twin

    with start_twin() as twin:
        ...  # point any client, sync or async, at twin.base_url
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import threading
import time
from collections.abc import Collection, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from ._server import SessionRecord, Twin, serve
from .engines import Engine, ScriptedEngine
from .faults import Faults

__all__ = ["TwinServer", "start_twin"]

_T = TypeVar("_T")

# How long starting or stopping a twin may take before the fixture gives up (seconds).
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0


class TwinServer:
    """A twin running on its own event loop in a background thread.

    Reads of its records are safe from any thread. Stop it with :meth:`stop` (or ``with``);
    the fixtures stop theirs after each test.

    Attributes:
        twin: The underlying :class:`~cartesia_stt_async.twin.Twin`.
    """

    def __init__(
        self,
        twin: Twin,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        self.twin = twin
        self._loop = loop
        self._thread = thread
        self._stack = stack
        self._stopped = False

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` over TLS): pass it as ``base_url`` (or
        ``CARTESIA_BASE_URL``)."""
        return self.twin.base_url

    @property
    def ws_base_url(self) -> str:
        """``ws://127.0.0.1:PORT`` (``wss://`` over TLS): the base URL for clients that take
        a WebSocket one, such as pipecat's Cartesia STT service."""
        return self.twin.ws_base_url

    @property
    def ws_url(self) -> str:
        """The full ``ws://127.0.0.1:PORT/stt/websocket`` URL (``wss://`` over TLS)."""
        return self.twin.ws_url

    @property
    def turns_url(self) -> str:
        """The full ``ws://127.0.0.1:PORT/stt/turns/websocket`` URL (turn detection)."""
        return self.twin.turns_url

    @property
    def sessions(self) -> list[SessionRecord]:
        """What the twin saw of each accepted WebSocket connection, in order."""
        return self.twin.sessions

    @property
    def handshakes(self) -> int:
        """Upgrade requests received, refused ones included."""
        return self.twin.handshakes

    @property
    def active_sessions(self) -> int:
        """WebSocket sessions open right now."""
        return self.twin.active_sessions

    @property
    def engine(self) -> Engine:
        """The recognition engine (a ``ScriptedEngine`` records ``utterance_bytes``)."""
        return self.twin.engine

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<TwinServer {self.base_url} {state} sessions={len(self.sessions)}>"

    def _idle_error(self, timeout: float) -> TimeoutError:
        return TimeoutError(
            f"{self.active_sessions} twin session(s) still open after {timeout} s "
            "(a client that never left its `async with`?)"
        )

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no session is open (the server has seen every client leave).

        A client's ``async with`` ends when the close handshake does; the twin records the
        close code a moment later, on its own thread. Call this before asserting on
        ``sessions[i].close_code`` or ``active_sessions`` from a sync test.

        Raises:
            TimeoutError: If sessions are still open after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self.active_sessions:
            if time.monotonic() > deadline:
                raise self._idle_error(timeout)
            time.sleep(0.005)

    async def idle(self, timeout: float = 10.0) -> None:
        """:meth:`wait_idle` for async tests: waits without blocking the test's loop.

        Raises:
            TimeoutError: If sessions are still open after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.active_sessions:
            if loop.time() > deadline:
                raise self._idle_error(timeout)
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        """Stop the server (open sessions get close 1001) and its thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _run_on(self._loop, self._stack.aclose(), _STOP_TIMEOUT)
        finally:
            _stop_loop(self._loop, self._thread)

    def __enter__(self) -> TwinServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _cancel_leftovers() -> None:
    """Cancel and await what is still running on this loop, as ``asyncio.run`` does."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Finish the loop's leftover tasks, stop it, join its thread and close it."""
    try:
        _run_on(loop, _cancel_leftovers(), _STOP_TIMEOUT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()


def _run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


def start_twin(
    engine: Engine | None = None,
    *,
    faults: Faults | None = None,
    max_sessions: int | None = None,
    api_keys: Collection[str] | None = None,
    idle_timeout: float = 180.0,
    host: str = "127.0.0.1",
    ssl: ssl_module.SSLContext | None = None,
) -> TwinServer:
    """Start a twin on a new background thread and return once it listens.

    Args:
        engine: The recognition engine; default: a ``ScriptedEngine`` with an empty script
            (every finalize is answered with ``flush_done`` and no text).
        faults: A :class:`~cartesia_stt_async.twin.Faults` plan.
        max_sessions: Concurrent sessions allowed; more get HTTP 429.
        api_keys: Valid keys; ``None`` accepts any non-empty key.
        idle_timeout: Seconds without a message before the twin closes a session (1001).
        host: Address to bind; the port is always a free one.
        ssl: A server-side context to serve TLS (``base_url`` is then ``https://``).

    Returns:
        The running :class:`TwinServer`; call ``stop()`` (or use ``with``) when done.

    Raises:
        TimeoutError: If the server did not start within 30 seconds.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="cartesia-twin", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def enter() -> Twin:
        return await stack.enter_async_context(
            serve(
                engine if engine is not None else ScriptedEngine([]),
                host=host,
                port=0,
                api_keys=api_keys,
                idle_timeout=idle_timeout,
                max_sessions=max_sessions,
                faults=faults,
                ssl=ssl,
            )
        )

    try:
        twin = _run_on(loop, enter(), _START_TIMEOUT)
    except BaseException:
        _stop_loop(loop, thread)
        raise
    return TwinServer(twin, loop, thread, stack)
