"""A pytest plugin for your own test suites: a real twin on 127.0.0.1, port 0, per test.

Installing the package registers this module as a pytest plugin (the ``pytest11`` entry
point), so these fixtures are available in any test, with no ``conftest.py`` line:

* ``cartesia_twin``: a running twin (scripted engine; no text unless you script some), serving
  ``/stt/websocket`` and the turn-detection route ``/stt/turns/websocket``
  (``cartesia_twin.turns_url``; script its turns with the marker's ``turns=[Turn(...)]``);
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

    @pytest.mark.cartesia_twin(turns=[Turn(updates=["Hel", "Hello"], end="Hello world")])
    async def test_turns(cartesia_twin): ...  # connect to cartesia_twin.turns_url

Outside pytest, :func:`start_twin` gives the same background twin (``with start_twin() as
twin:``). Disable the plugin with ``-p no:cartesia_stt_async``.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any

import pytest

from ._client import AsyncCartesia
from .protocol.session import ServerOrder
from .twin import Engine, Faults, RawTurn, Reply, ScriptedEngine, Turn, TwinServer, start_twin

if TYPE_CHECKING:
    from .twin.sphinx import SphinxEngine

__all__ = [
    "MARKER_OPTIONS",
    "TEST_API_KEY",
    "TwinFactory",
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
    {"script", "order", "by_audio", "turns", "faults", "max_sessions", "api_keys", "idle_timeout"}
)
"""Keyword arguments the ``cartesia_twin`` marker accepts."""

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
        "cartesia_twin(script=None, *, order='finals_first', by_audio=None, turns=None, "
        "faults=None, max_sessions=None, api_keys=None, idle_timeout=180.0): configure this "
        "test's "
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
    by_audio=None, turns=None, faults=None, max_sessions=None, api_keys=None,
    idle_timeout=180.0)``:

    * ``script``: a ``ScriptedEngine`` script (the k-th finalize of each connection gets
      ``script[k]``: a list of final deltas, or a ``Reply``); ``order``, ``by_audio`` and
      ``turns`` (``Turn`` or ``RawTurn`` scripts for ``/stt/turns/websocket``) as
      ``ScriptedEngine`` takes them;
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
        order: ServerOrder = "finals_first",
        by_audio: ByAudio | None = None,
        turns: Sequence[Turn | RawTurn] | None = None,
        faults: Faults | None = None,
        max_sessions: int | None = None,
        api_keys: Collection[str] | None = None,
        idle_timeout: float = 180.0,
    ) -> TwinServer:
        scripted = (
            script is not None
            or by_audio is not None
            or turns is not None
            or order != "finals_first"
        )
        if sum((speech, engine is not None, scripted)) > 1:
            raise TypeError("give one of script (order, by_audio, turns), speech=True or engine")
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
            engine = ScriptedEngine(
                list(script or []), order=order, by_audio=by_audio, turns=list(turns or [])
            )
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
    scripted = sorted({"script", "order", "by_audio", "turns"} & set(options))
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
