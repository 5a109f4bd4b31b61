"""The twin server: Cartesia's ``/stt/websocket`` (manual finalize), ``/stt/turns/websocket``
(turn detection) and HTTP routes on aiohttp.web.

The pieces, each in its own module:

* :mod:`._params`: a connection's query parameters (a bad one: one ``error`` event, close);
* :mod:`._auth` and :mod:`._tokens`: API keys, access tokens (``POST /access-token``), the
  JSON refusals (HTTP 401, 429 with ``Retry-After``);
* :mod:`._wire` and :mod:`.faults`: the fault plan, applied to each connection's socket;
* :mod:`._session`: the session loop (audio, ``finalize``, ``close``, idle timeout);
* :mod:`._turns` and :mod:`._detector`: the turn-detection session loop and its detector;
* :mod:`._tts_route` and :mod:`._tts`: ``POST /tts/bytes``;
* :mod:`._cors`: CORS on the HTTP routes.

This module holds the handshake of both socket routes (planned refusals, auth, the session
cap, one ``request_id`` per connection, also the ``X-Request-Id`` header) and :func:`serve`.
Access logging is off: query strings may carry an API key or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl as ssl_module
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from aiohttp import web

from ._auth import access_token_route, authorize, refusal
from ._cors import CORS_ROUTES, allowed_origins, cors_middleware, preflight
from ._session import run_session
from ._state import OPTIONS, TURNS_PATH, TWIN, Options, SessionRecord, Twin
from ._tokens import AccessTokens
from ._tts_route import tts_bytes_route
from ._turns import run_turns_session
from ._wire import EndSession, Wire
from .engines import Engine
from .faults import Faults

__all__ = ["SessionRecord", "Twin", "run_forever", "serve"]

# A socket route's session loop: (wire, options, cartesia-version header) -> None.
SessionRunner = Callable[[Wire, Options, str | None], Awaitable[None]]


async def _websocket_route(
    request: web.Request, run: SessionRunner = run_session
) -> web.StreamResponse:
    twin, opts = request.app[TWIN], request.app[OPTIONS]
    request_id = str(uuid.uuid4())
    attempt = twin.handshakes
    twin.handshakes += 1
    planned = opts.faults.refuse.get(attempt)
    if planned is not None:
        return refusal(planned, request_id, "Refused", "refused by the twin", "refused")
    refused = authorize(request, opts, twin.tokens, "stt")
    if refused is not None:
        return refused.response(request_id)
    limit = opts.session_limit
    if limit is not None and twin.active_sessions >= limit:
        return refusal(
            429,
            request_id,
            "Too many concurrent requests",
            f"at most {limit} concurrent sessions",
            "concurrency_limited",
        )
    ws = web.WebSocketResponse(max_msg_size=4 << 20, timeout=2.0, compress=False)
    ws.headers["X-Request-Id"] = request_id
    # Active from before the 101 goes out: a client that has its socket open is always
    # counted (idle() and the session limit see it, even before this task resumes).
    twin._active.add(ws)
    try:
        await ws.prepare(request)
    except BaseException:
        twin._active.discard(ws)
        raise
    record = SessionRecord(
        request_id=request_id,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=list(request.query.items()),
    )
    wire = Wire(ws, record, twin, opts.faults, len(twin.sessions), request)
    twin.sessions.append(record)
    try:
        await run(wire, opts, request.headers.get("cartesia-version"))
    except (ConnectionError, asyncio.CancelledError, EndSession):
        pass  # the client went away, the twin is shutting down, or a fault ended it
    finally:
        twin._active.discard(ws)
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutdown")
        record.close_code = ws.close_code
    return ws


async def _close_all(app: web.Application) -> None:
    twin = app[TWIN]
    twin._stopping.set()
    for ws in list(twin._active):
        with contextlib.suppress(Exception):
            await ws.close(code=1001, message=b"server shutdown")


def _app(twin: Twin, opts: Options) -> web.Application:
    app = web.Application(middlewares=[cors_middleware])
    app[TWIN] = twin
    app[OPTIONS] = opts
    app.router.add_get("/stt/websocket", _websocket_route)
    app.router.add_get(TURNS_PATH, functools.partial(_websocket_route, run=run_turns_session))
    app.router.add_post("/tts/bytes", tts_bytes_route)
    app.router.add_post("/access-token", access_token_route)
    for path in CORS_ROUTES:
        app.router.add_route("OPTIONS", path, preflight)
    app.on_shutdown.append(_close_all)
    return app


@contextlib.asynccontextmanager
async def serve(
    engine: Engine | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_keys: Collection[str] | None = None,
    idle_timeout: float = 180.0,
    max_sessions: int | None = None,
    faults: Faults | None = None,
    cors_origins: str | Collection[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    ssl: ssl_module.SSLContext | None = None,
) -> AsyncIterator[Twin]:
    """Run the twin for the duration of an ``async with`` block.

    Args:
        engine: The recognition engine (default: the offline pocketsphinx recognizer,
            :class:`~cartesia_stt_async.twin.SphinxEngine`, which needs the ``twin`` extra).
        host: Address to bind (loopback by default).
        port: Port to bind; 0 picks a free one (see ``twin.port``).
        api_keys: Valid API keys; ``None`` accepts any non-empty key. Access tokens minted
            by this twin (``POST /access-token``) are accepted as well, within their grants.
        idle_timeout: Seconds without any message before closing with 1001 "Idle timeout".
        max_sessions: Concurrent sessions allowed; more get HTTP 429.
        faults: Deterministic fault injection, see :mod:`cartesia_stt_async.twin.faults`.
        cors_origins: Origins a browser page may call the HTTP routes from (exact
            ``scheme://host[:port]`` strings, ``"*"`` for any); ``None``: any loopback origin.
        clock: Monotonic seconds for access-token expiry (tests pass a clock they move).
        ssl: A server-side :class:`ssl.SSLContext` (its certificate chain loaded) to serve
            TLS: ``twin.base_url`` is then ``https://...`` and sessions are ``wss://``.
            Clients must trust the certificate (``AsyncCartesia(ssl=context)``).

    Yields:
        The running :class:`Twin`.

    Raises:
        TypeError: If ``ssl`` is not an :class:`ssl.SSLContext` or ``None``.
    """
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext or None, got {type(ssl).__name__}")
    owned = engine is None
    if engine is None:
        from .sphinx import SphinxEngine

        engine = SphinxEngine()
    twin = Twin(host, port, engine, AccessTokens(clock), tls=ssl is not None)
    opts = Options(
        engine=engine,
        api_keys=frozenset(api_keys) if api_keys is not None else None,
        idle_timeout=idle_timeout,
        max_sessions=max_sessions,
        cors_origins=allowed_origins(cors_origins),
        faults=faults or Faults(),
    )
    runner = web.AppRunner(_app(twin, opts), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl)
        await site.start()
        # The bound port, through aiohttp's public ``AppRunner.addresses`` (``site._server`` is
        # a uvloop Server, not an asyncio.Server, under uvicorn with uvloop).
        twin.port = runner.addresses[0][1]
        yield twin
    finally:
        await runner.cleanup()
        closer = getattr(engine, "aclose", None)
        if owned and closer is not None:
            await closer()


async def run_forever(
    host: str,
    port: int,
    engine: Engine | None = None,
    api_keys: Collection[str] | None = None,
    ssl: ssl_module.SSLContext | None = None,
    prewarm: int = 0,
) -> None:
    """Serve until cancelled, printing ``twin listening on http(s)://HOST:PORT`` once bound
    (and ``prewarm`` recognizer sessions made ready), and the ``ws(s)://HOST:PORT`` form that
    clients taking a WebSocket base URL want. A port in use fails before anything is warmed."""
    async with serve(engine, host=host, port=port, api_keys=api_keys, ssl=ssl) as twin:
        warm = getattr(twin.engine, "prewarm", None)
        if prewarm and warm is not None:
            await warm(prewarm)  # the first session need not wait for a decoder
        print(f"twin listening on {twin.base_url}", flush=True)
        print(
            f"  as a WebSocket base URL (pipecat's CartesiaSTTService url=): {twin.ws_base_url}",
            flush=True,
        )
        print(f"  turn detection (/stt/turns/websocket): {twin.turns_url}", flush=True)
        await asyncio.Event().wait()
