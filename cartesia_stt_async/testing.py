"""A pytest plugin for your own test suites: a real twin on 127.0.0.1, port 0, per test.

Installing the package registers this module as a pytest plugin (the ``pytest11`` entry
point), so these fixtures are available in any test, with no ``conftest.py`` line:

* ``cartesia_twin``: a running twin (scripted engine; no text unless you script some);
* ``cartesia_client``: an :class:`~cartesia_stt_async.AsyncCartesia` pointed at it, closed
  after the test (needs ``pytest-asyncio``);
* ``cartesia_speech_twin``: a twin that recognizes real speech and synthesizes it on
  ``/tts/bytes`` (needs the ``twin`` extra), backed by ``cartesia_recognizer``, one offline
  recognizer for the whole test run;
* ``cartesia_twin_factory``: start more twins, each with its own script, faults and limits.

Each twin runs on its own event loop in a background thread, so the fixtures work the same
from async tests (pytest-asyncio), plain sync tests, and a web framework's test client that
runs your app on a loop of its own (Starlette/FastAPI ``TestClient``).

Configure a test's twin with the ``cartesia_twin`` marker::

    @pytest.mark.cartesia_twin(script=[["Hello", " world."]], max_sessions=1)
    async def test_greeting(cartesia_client): ...

Outside pytest, :func:`start_twin` gives the same background twin (``with start_twin() as
twin:``). Disable the plugin with ``-p no:cartesia_stt_async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ._client import AsyncCartesia
from .twin import Engine, Faults, Reply, ScriptedEngine, SessionRecord, Twin, serve
from .twin.engines import FinalOrder

if TYPE_CHECKING:
    from .twin.sphinx import SphinxEngine

__all__ = [
    "MARKER_OPTIONS",
    "TEST_API_KEY",
    "TwinServer",
    "cartesia_client",
    "cartesia_recognizer",
    "cartesia_speech_twin",
    "cartesia_twin",
    "cartesia_twin_factory",
    "start_twin",
]

TEST_API_KEY = "cartesia-stt-async-test-key"
"""The API key ``cartesia_client`` sends (the twin accepts any key unless told otherwise)."""

MARKER_OPTIONS = frozenset(
    {"script", "order", "by_audio", "faults", "max_sessions", "api_keys", "idle_timeout"}
)
"""Keyword arguments the ``cartesia_twin`` marker accepts."""

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
        """``http://127.0.0.1:PORT``: pass it as ``base_url`` (or ``CARTESIA_BASE_URL``)."""
        return self.twin.base_url

    @property
    def ws_url(self) -> str:
        """The full ``ws://127.0.0.1:PORT/stt/websocket`` URL."""
        return self.twin.ws_url

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
            )
        )

    try:
        twin = _run_on(loop, enter(), _START_TIMEOUT)
    except BaseException:
        _stop_loop(loop, thread)
        raise
    return TwinServer(twin, loop, thread, stack)


# -- pytest hooks ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "cartesia_recognizer_sessions",
        "Concurrent sessions of the offline recognizer behind cartesia_speech_twin "
        "(one decoder each, ~100 MiB apiece; default 4)",
        default="4",
    )
    parser.addini(
        "cartesia_recognizer_workers",
        "Recognizer processes behind cartesia_speech_twin (default 1)",
        default="1",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cartesia_twin(script=None, *, order='finals_first', by_audio=None, faults=None, "
        "max_sessions=None, api_keys=None, idle_timeout=180.0): configure this test's "
        "cartesia_twin / cartesia_speech_twin (cartesia_stt_async.testing)",
    )


# -- fixtures -------------------------------------------------------------------------------


ByAudio = Mapping[bytes, Sequence[str] | Reply] | Callable[[bytes], Sequence[str] | Reply | None]
"""``ScriptedEngine(by_audio=...)``: replies keyed by each utterance's exact audio."""

TwinFactory = Callable[..., TwinServer]
"""The type of ``cartesia_twin_factory``."""


def _ini_int(config: pytest.Config, name: str) -> int:
    raw = str(config.getini(name)).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("cartesia_twin")
    if marker is None:
        return {}
    if len(marker.args) > 1:
        pytest.fail(
            "@pytest.mark.cartesia_twin takes one positional argument, the script",
            pytrace=False,
        )
    options = dict(marker.kwargs)
    if marker.args:
        if "script" in options:
            pytest.fail("@pytest.mark.cartesia_twin: script given twice", pytrace=False)
        options["script"] = marker.args[0]
    unknown = sorted(set(options) - MARKER_OPTIONS)
    if unknown:
        pytest.fail(
            f"@pytest.mark.cartesia_twin: unknown option(s) {', '.join(unknown)}; "
            f"use {', '.join(sorted(MARKER_OPTIONS))}",
            pytrace=False,
        )
    return options


@pytest.fixture
def cartesia_twin_factory(request: pytest.FixtureRequest) -> Iterator[TwinFactory]:
    """Start twins for this test; each is stopped when the test ends.

    Call it as ``factory(script=None, *, speech=False, engine=None, order="finals_first",
    by_audio=None, faults=None, max_sessions=None, api_keys=None, idle_timeout=180.0)``:

    * ``script``: a ``ScriptedEngine`` script (the k-th finalize of each connection gets
      ``script[k]``: a list of final deltas, or a ``Reply``); ``order`` and ``by_audio``
      as ``ScriptedEngine`` takes them;
    * ``speech=True``: the offline recognizer (``cartesia_recognizer``) instead;
    * ``engine``: any other engine;
    * ``faults``, ``max_sessions``, ``api_keys``, ``idle_timeout``: as ``serve()`` takes them.

    Returns a :class:`TwinServer`. Works from sync and async tests alike.
    """
    started: list[TwinServer] = []

    def factory(
        script: Sequence[Sequence[str] | Reply] | None = None,
        *,
        speech: bool = False,
        engine: Engine | None = None,
        order: FinalOrder = "finals_first",
        by_audio: ByAudio | None = None,
        faults: Faults | None = None,
        max_sessions: int | None = None,
        api_keys: Collection[str] | None = None,
        idle_timeout: float = 180.0,
    ) -> TwinServer:
        scripted = script is not None or by_audio is not None or order != "finals_first"
        if sum((speech, engine is not None, scripted)) > 1:
            raise TypeError("give one of script (order, by_audio), speech=True or engine")
        if speech:
            recognizer: SphinxEngine = request.getfixturevalue("cartesia_recognizer")
            if max_sessions is not None and max_sessions > recognizer.max_sessions:
                raise pytest.UsageError(
                    f"max_sessions={max_sessions} exceeds the test run's recognizer, sized "
                    f"for {recognizer.max_sessions} sessions: raise cartesia_recognizer_sessions "
                    "in your pytest configuration"
                )
            engine = recognizer
        elif engine is None:
            engine = ScriptedEngine(list(script or []), order=order, by_audio=by_audio)
        server = start_twin(
            engine,
            faults=faults,
            max_sessions=max_sessions,
            api_keys=api_keys,
            idle_timeout=idle_timeout,
        )
        started.append(server)
        return server

    yield factory
    errors: list[BaseException] = []
    for server in reversed(started):
        try:
            server.stop()
        except Exception as exc:  # stop the others anyway, then report
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def cartesia_twin(request: pytest.FixtureRequest, cartesia_twin_factory: TwinFactory) -> TwinServer:
    """A running twin with a scripted engine, configured by the ``cartesia_twin`` marker.

    Without a marker every finalize is answered with ``flush_done`` and no text.
    """
    return cartesia_twin_factory(**_marker_options(request))


@pytest.fixture(scope="session")
def cartesia_recognizer(pytestconfig: pytest.Config) -> Iterator[SphinxEngine]:
    """One offline recognizer for the whole test run, shared by every speech twin.

    A decoder costs ~0.3 s to create and ~100 MiB while a session uses it; decoders are
    pooled, so only the first sessions pay. Size it with the ini options
    ``cartesia_recognizer_sessions`` (concurrent sessions, default 4) and
    ``cartesia_recognizer_workers`` (processes, default 1).
    """
    from .twin.sphinx import SphinxEngine

    engine = SphinxEngine(
        max_sessions=_ini_int(pytestconfig, "cartesia_recognizer_sessions"),
        workers=_ini_int(pytestconfig, "cartesia_recognizer_workers"),
    )
    yield engine
    asyncio.run(engine.aclose())


@pytest.fixture
def cartesia_speech_twin(
    request: pytest.FixtureRequest, cartesia_twin_factory: TwinFactory
) -> TwinServer:
    """A running twin that recognizes real speech (``cartesia_recognizer``) and synthesizes
    it on ``/tts/bytes``; the ``cartesia_twin`` marker's faults and limits apply."""
    options = _marker_options(request)
    scripted = sorted({"script", "order", "by_audio"} & set(options))
    if scripted:
        pytest.fail(
            f"@pytest.mark.cartesia_twin: {', '.join(scripted)} do not apply to "
            "cartesia_speech_twin (it recognizes the audio)",
            pytrace=False,
        )
    return cartesia_twin_factory(speech=True, **options)


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixture below says what is missing

    @pytest.fixture(name="cartesia_client")
    def _cartesia_client_unavailable(cartesia_twin: TwinServer) -> AsyncCartesia:
        """Stands in for ``cartesia_client`` without pytest-asyncio, and says so."""
        pytest.fail(
            "cartesia_client needs pytest-asyncio (pip install pytest-asyncio): it is "
            "opened and closed on the test's event loop",
            pytrace=False,
        )

else:

    @pytest_asyncio.fixture(loop_scope="function")
    async def cartesia_client(cartesia_twin: TwinServer) -> AsyncIterator[AsyncCartesia]:
        """An :class:`AsyncCartesia` pointed at ``cartesia_twin``, closed after the test.

        It lives on the test's event loop (function scope): use it from async tests.
        """
        async with AsyncCartesia(api_key=TEST_API_KEY, base_url=cartesia_twin.base_url) as client:
            yield client
