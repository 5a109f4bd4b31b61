"""Shared fixtures: a real twin server on 127.0.0.1:0 and a client pointed at it."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import selectors
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import pytest
import pytest_asyncio
import uvloop

import cartesia_stt_async as stt
from cartesia_stt_async.observe import Observer
from cartesia_stt_async.twin import ScriptedEngine, Twin, serve

# Loops that tests start themselves (threaded twins, subprocesses, asyncio.run in sync tests)
# run in asyncio debug mode. pytest-asyncio builds its own loops with debug off (its
# ``asyncio_debug`` setting is not enabled here); the no_asyncio_errors fixture below still
# fails any test during which asyncio logged an error.
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")

API_KEY = "sk_test_0123456789abcdefSECRET"

# Timing slack for loaded CI machines; every bounded wait in the tests is a multiple of it.
SLACK = float(os.environ.get("CARTESIA_TEST_SLACK", "1.0"))

TwinFactory = Callable[..., AbstractAsyncContextManager[Twin]]


def pcm(seconds: float, sample_rate: int = 16000, value: int = 0) -> bytes:
    """Mono pcm_s16le audio of a constant sample value (silence by default)."""
    return value.to_bytes(2, "little", signed=True) * int(seconds * sample_rate)


def client_for(twin: Twin, **kw: object) -> stt.AsyncCartesia:
    """An AsyncCartesia pointed at the twin."""
    return stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url, **kw)  # type: ignore[arg-type]


def ws(client: stt.AsyncCartesia, **options: Any) -> stt.ConnectionManager:
    """A session manager for 16 kHz ``pcm_s16le`` with test defaults: unpaced, and a fast
    reconnect backoff (1-5 ms). Any option can be overridden."""
    merged: dict[str, Any] = {
        "model": "ink-2",
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
        "speed": None,
        "initial_delay": 0.001,
        "max_delay": 0.005,
    }
    merged.update(options)
    return client.stt.manual_finalize.websocket(**merged)


def other_tasks() -> set[asyncio.Task[object]]:
    """Every task of the running loop except the current one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


_R = TypeVar("_R")


class RecordingObserver(Observer):
    """An observer that keeps every record it is given, in order (all six methods)."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def session_opened(self, record: Any) -> None:
        self.records.append(record)

    utterance_answered = turn_ended = reconnected = session_closed = session_opened
    request_finished = session_opened

    def of(self, kind: type[_R]) -> list[_R]:
        """The records of one kind, in order."""
        return [r for r in self.records if isinstance(r, kind)]


class KeepRecords(logging.Handler):
    """A log handler that keeps every record it is given (DEBUG and up)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _AsyncioErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# The event loops the connection suites run on: asyncio's own and uvloop (which uvicorn[standard]
# picks, so a FastAPI app runs the client on it). Each test of those suites runs once per loop,
# its id naming the loop (``test_x[uvloop]``); everything else runs on asyncio's loop only.
def asyncio_loop() -> asyncio.AbstractEventLoop:
    """A new loop of asyncio's default policy."""
    return asyncio.new_event_loop()


def uvloop_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop."""
    return uvloop.new_event_loop()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """asyncio's loop on a clock that jumps ahead when the loop is idle.

    When nothing is ready and the next timer is ``t`` seconds away, the loop waits
    ``IDLE_REAL`` seconds of real time for I/O (loopback data in flight) and, if none comes,
    moves its clock to the timer instead of sleeping the rest. Only for tests whose I/O is all
    in this loop (the scripted twin over loopback; no threads or processes) and which measure
    time with ``loop.time()``, as the SDK and the twin do.
    """

    IDLE_REAL = 0.003

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0  # seconds the clock jumped in all
        inner: selectors.BaseSelector = self.__dict__["_selector"]  # asyncio's own
        loop = self

        class Jumping:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def select(self, timeout: float | None = None) -> Any:
                events = inner.select(0)
                if events or timeout is None or timeout <= 0:
                    return events if events or timeout is not None else inner.select(None)
                events = inner.select(min(timeout, loop.IDLE_REAL))
                if not events and timeout > loop.IDLE_REAL:
                    loop.skipped += timeout - loop.IDLE_REAL
                return events

        self.__dict__["_selector"] = Jumping()

    def time(self) -> float:
        return super().time() + self.skipped


def virtual_time_loop() -> asyncio.AbstractEventLoop:
    """A new :class:`VirtualTimeLoop`."""
    return VirtualTimeLoop()


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio_loop,
    "uvloop": uvloop_loop,
    "virtual_time": virtual_time_loop,
}
# The loop class each name must give (checked in every test, so a misconfigured
# parametrization fails loudly instead of running twice on one loop).
LOOP_TYPES: dict[str, type[asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,  # the default loop on Linux and macOS
    "uvloop": uvloop.Loop,
    "virtual_time": VirtualTimeLoop,
}
# Seeds of the hostile property test on uvloop (of SEEDS on asyncio's loop).
UVLOOP_SEEDS = 100


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default, see pyproject.toml): two workers per CPU. Much of the suite
    waits on real-time pacing, timeouts and subprocesses, so a CPU runs two workers' tests
    side by side (on 2 CPUs, 4 workers: 2338 tests in 50 s against 87 s with 2)."""
    return 2 * (os.cpu_count() or 1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loops",
        default="asyncio,uvloop",
        help="event loops the connection suites run on, comma-separated (default: "
        "asyncio,uvloop; the other suites always run on asyncio's loop)",
    )


def selected_loops(config: pytest.Config) -> list[str]:
    """The loop names ``--loops`` asks for, checked."""
    names = [n.strip() for n in str(config.getoption("--loops")).split(",") if n.strip()]
    unknown = sorted(set(names) - {"asyncio", "uvloop"})
    if unknown or not names:
        raise pytest.UsageError(f"--loops: unknown or no loop names {unknown}; know {list(LOOPS)}")
    return names


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's hook: the loops an async test runs on (one test item per loop)."""
    both = item.get_closest_marker("both_loops") is not None
    names = selected_loops(config) if both else ["asyncio"]
    if item.get_closest_marker("virtual_time") is not None:
        # asyncio's loop on a jumping clock; uvloop's clock cannot jump, so on uvloop the
        # test runs in real time.
        names = ["virtual_time" if name == "asyncio" else name for name in names]
    return {name: LOOPS[name] for name in names}


def loop_name(item: pytest.Item) -> str | None:
    """The loop name an async test item was parametrized with, if any."""
    callspec = getattr(item, "callspec", None)
    factory = callspec.params.get("_asyncio_loop_factory") if callspec is not None else None
    return next((name for name, f in LOOPS.items() if f is factory), None)


@pytest_asyncio.fixture
async def _runs_on_its_loop(request: pytest.FixtureRequest) -> None:
    """Fail unless the test runs on the loop its id names."""
    name = loop_name(request.node)
    assert name is not None
    running = type(asyncio.get_running_loop())
    assert running is LOOP_TYPES[name], f"{request.node.nodeid} runs on {running}, not {name}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything alive after collection (imported modules, test tables) out of the
    collector's sight, so the ``gc.collect()`` after each test only walks what tests made."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check the loop of every loop-parametrized test; run fewer hostile seeds on uvloop."""
    deselected = []
    for item in items:
        if loop_name(item) is not None:
            item.fixturenames.append("_runs_on_its_loop")  # type: ignore[attr-defined]
            callspec = item.callspec  # type: ignore[attr-defined]
            start = callspec.params.get("start")
            if (
                loop_name(item) == "uvloop"
                and item.name.startswith("test_seeded_schedules_keep_the_transcript_exact")
                and isinstance(start, int)
                and start >= UVLOOP_SEEDS
            ):
                deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in set(deselected)]


@pytest.fixture(autouse=True)
def no_asyncio_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test during which asyncio logged an error, such as "Task exception was never
    retrieved" or an unclosed transport."""
    handler = _AsyncioErrors()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
        if request.node.get_closest_marker("asyncio"):
            gc.collect()  # never-retrieved exceptions are reported when a task is collected
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, handler.messages


# Recognizer use, recorded by the probe below: a test that opens a recognizer session (or
# prewarms one) must carry the ``speech`` marker, which the test itself states (a decorator, a
# module's ``pytestmark``, or a parameter's marks), so that ``-m "not speech"`` is a fast
# everyday run that no renamed file or fixture can silently slow down.
_RECOGNIZER_USED: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _recognizer_probe() -> Iterator[None]:
    """Record every use of the offline recognizer (SphinxEngine.open and .prewarm)."""
    try:
        from cartesia_stt_async.twin.sphinx import SphinxEngine
    except ImportError:  # pragma: no cover - the test extra installs the twin
        yield
        return
    originals = {name: getattr(SphinxEngine, name) for name in ("open", "prewarm")}

    def probe(name: str) -> Callable[..., Any]:
        original = originals[name]

        def recorded(self: SphinxEngine, *args: Any, **kwargs: Any) -> Any:
            _RECOGNIZER_USED.append(name)
            return original(self, *args, **kwargs)

        return recorded

    for name in originals:
        setattr(SphinxEngine, name, probe(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(SphinxEngine, name, original)


@pytest.fixture(autouse=True)
def _speech_is_marked(request: pytest.FixtureRequest, _recognizer_probe: None) -> Iterator[None]:
    """Fail a test that ran the recognizer without the ``speech`` marker."""
    _RECOGNIZER_USED.clear()
    yield
    if _RECOGNIZER_USED and request.node.get_closest_marker("speech") is None:
        pytest.fail(
            f"{request.node.nodeid} ran the offline recognizer "
            f"({', '.join(sorted(set(_RECOGNIZER_USED)))}) but is not marked speech: add "
            "@pytest.mark.speech (or the module's pytestmark) so -m 'not speech' leaves it out"
        )


@pytest.fixture
def twin_factory() -> TwinFactory:
    """Start a twin with custom options: ``async with twin_factory(engine=...) as twin``."""
    return serve


@pytest_asyncio.fixture
async def twin() -> AsyncIterator[Twin]:
    """A twin with an empty script (answers finalize with flush_done only)."""
    async with serve(engine=ScriptedEngine([])) as server:
        yield server
