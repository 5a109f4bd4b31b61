"""A FastAPI app in front of Cartesia's realtime STT: relays, access tokens, uploads, pages.

Routes:

* ``GET /``: a push-to-talk page (hold the button, speak, release: the text appears).
* ``GET /hands-free``: a hands-free page (no button: speak, pause, and the turn appears).
* ``WS /ws/transcribe``: the relay. The browser sends 16 kHz mono ``pcm_s16le`` audio as
  binary messages and the text commands ``finalize`` (end of a turn) and ``close`` (end of
  the session); the app forwards them through one Cartesia session and sends back JSON:
  ``{"type": "ready"}``, then ``{"type": "final", "text": delta}`` for each final delta
  (exactly once, in order, even across a reconnect), ``{"type": "turn", "index": i}`` once
  turn ``i``'s text has been sent, ``{"type": "error", "message": ..., "fatal": bool}``, and
  after ``close`` ``{"type": "done", "transcript": ...}``. The API key stays on the server.
  A session takes at most ``Settings.max_turns`` turns: one more is a fatal error, and the
  socket closes with 1008.
* ``WS /ws/turns``: the hands-free relay, through one turn-detection session
  (``client.stt.auto_finalize``): the browser sends audio and, at the end, ``close``; the app
  sends ``{"type": "ready"}``, then for turn ``i`` ``{"type": "turn.start", "index": i}`` (the
  barge-in moment), ``{"type": "turn.eager_end", "index": i, "text": ...}`` (the user may be
  done), ``{"type": "turn.resume", "index": i}`` (that eager end is withdrawn) and
  ``{"type": "turn.end", "index": i, "text": ...}`` (the final text), each once (also across
  a reconnect), then ``error`` and ``done`` as above. Turn ``max_turns`` + 1 is a fatal
  error (1008).
* ``POST /api/token``: a short-lived access token, for browsers that talk to Cartesia directly.
* ``POST /api/transcribe``: transcribe an uploaded WAV file (form field ``file``).
* ``GET /metrics``: the SDK's metrics in Prometheus's text format (audio seconds, answers,
  finalize and turn latency, reconnects, errors, active sessions, HTTP calls), kept by a
  :class:`~cartesia_stt_async.prometheus.PrometheusObserver` on the app's own registry.

Run it with ``python -m examples.fastapi_app`` (without ``CARTESIA_API_KEY`` it serves a
local twin with the offline recognizer instead of the real API).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Mapping,
    MutableMapping,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, File, HTTPException, Request, UploadFile, WebSocket
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

import cartesia_stt_async as stt
from cartesia_stt_async.audio import load_wav
from cartesia_stt_async.prometheus import PrometheusObserver

__all__ = ["Settings", "app", "create_app"]

log = logging.getLogger("examples.fastapi_app")

STATIC = Path(__file__).resolve().parent / "static"

SAMPLE_RATE = 16000  # what the page sends: 16 kHz mono pcm_s16le
SAMPLE_WIDTH = 2
MAX_AUDIO_MESSAGE = SAMPLE_RATE * SAMPLE_WIDTH  # one second of audio per message at most


@dataclass(frozen=True)
class Settings:
    """How the app talks to Cartesia.

    Attributes:
        api_key: Defaults to ``CARTESIA_API_KEY``.
        base_url: Defaults to ``CARTESIA_BASE_URL``, else the real API.
        model: The STT model.
        session_options: ``websocket()`` options: ``speed`` (pacing, 1.0 real time by
            default; ``None`` unpaced, for tests), reconnect delays, timeouts, ...
        turn_options: ``auto_finalize.websocket()`` options (the hands-free relay): the
            same I/O options, and the turn thresholds (``turn_end_threshold``, ...).
        local_twin: Serve a local twin with the offline recognizer and use it (no API key).
        token_ttl: Lifetime in seconds of the access tokens ``/api/token`` hands out.
        max_upload_bytes: Largest file ``/api/transcribe`` accepts.
        max_turns: Most turns one relay session takes (``finalize`` commands; on the
            hands-free relay, turns started); one more gets a fatal error and the socket
            closes with 1008 (a browser flooding ``finalize``, or streaming noise that
            starts turn after turn, cannot keep Cartesia and this process busy).
    """

    api_key: str | None = None
    base_url: str | None = None
    model: str = "ink-2"
    session_options: stt.SessionOptions = field(
        default_factory=lambda: stt.SessionOptions(speed=1.0)
    )
    turn_options: stt.TurnSessionOptions = field(
        default_factory=lambda: stt.TurnSessionOptions(speed=1.0)
    )
    local_twin: bool = False
    token_ttl: int = 60
    max_upload_bytes: int = 50 * 1024 * 1024
    max_turns: int = 1000


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. One :class:`~cartesia_stt_async.AsyncCartesia` lives in its lifespan.

    Args:
        settings: See :class:`Settings`; the defaults read the environment.

    Returns:
        The FastAPI application.
    """
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            api_key, base_url = settings.api_key, settings.base_url
            if settings.local_twin:
                from cartesia_stt_async.twin import serve

                twin = await stack.enter_async_context(serve())  # offline recognizer
                api_key, base_url = "local-twin", twin.base_url
                log.warning("no CARTESIA_API_KEY: using the local twin at %s", base_url)
            client = stt.AsyncCartesia(
                api_key=api_key, base_url=base_url, observers=[app.state.metrics]
            )
            app.state.cartesia = await stack.enter_async_context(client)
            yield

    app = FastAPI(title="Cartesia STT relay", lifespan=lifespan)
    app.state.settings = settings
    # Metrics on the app's own registry, not prometheus-client's global one: each app (tests
    # build many) counts its own sessions, and one observer serves every client it makes.
    app.state.metrics = PrometheusObserver(CollectorRegistry())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/", page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/hands-free", hands_free_page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/api/token", token, methods=["POST"])
    app.add_api_route("/api/transcribe", transcribe_file, methods=["POST"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    app.add_api_websocket_route("/ws/transcribe", relay)
    app.add_api_websocket_route("/ws/turns", turns_relay)
    return app


async def page() -> HTMLResponse:
    """The push-to-talk page."""
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))


async def hands_free_page() -> HTMLResponse:
    """The hands-free page."""
    return HTMLResponse((STATIC / "hands-free.html").read_text(encoding="utf-8"))


async def token(request: Request) -> dict[str, object]:
    """A short-lived token that lets a browser open ``/stt/websocket`` itself.

    Put this route behind your own user authentication: whoever can call it can transcribe
    on your account until the token expires.
    """
    client: stt.AsyncCartesia = request.app.state.cartesia
    settings: Settings = request.app.state.settings
    created = await client.access_token.create(grants={"stt": True}, expires_in=settings.token_ttl)
    return {"token": created.token, "expires_in": settings.token_ttl}


async def transcribe_file(request: Request, file: UploadFile = File()) -> dict[str, object]:  # noqa: B008
    """Transcribe an uploaded WAV file (any common format: it is converted as needed)."""
    client: stt.AsyncCartesia = request.app.state.cartesia
    settings: Settings = request.app.state.settings
    # The form parser keeps the upload in a temporary file; at most the limit is read.
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(
            413,
            f"the file is larger than {settings.max_upload_bytes} bytes, the most this "
            "server takes",
        )
    try:
        # Mono, in an encoding the protocol carries, at the file's own rate (CPU work: a
        # thread). It converts a block at a time: memory is the result plus a few MB.
        wav = await asyncio.to_thread(load_wav, data)
        async with client.stt.manual_finalize.websocket(
            model=settings.model,
            encoding=wav.encoding,
            sample_rate=wav.sample_rate,
            **settings.session_options,
        ) as conn:
            transcript = await conn.stream([wav.data], speed=conn.speed)
    except stt.UsageError as exc:  # not a WAV file, or one it cannot read
        raise HTTPException(422, str(exc)) from None
    except stt.CartesiaSTTError as exc:
        log.warning("transcription failed: %s", exc)
        raise HTTPException(502, f"transcription failed: {exc}") from None
    return {"text": transcript.text, "seconds": round(wav.duration, 3)}


async def metrics(request: Request) -> Response:
    """The SDK's metrics, in Prometheus's text format, for your Prometheus to scrape.

    Like ``/api/token``, keep it off the public internet (your network, or your auth).
    """
    observer: PrometheusObserver = request.app.state.metrics
    return Response(generate_latest(observer.registry), media_type=CONTENT_TYPE_LATEST)


# -- the relay ------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The browser disconnected."""


class _TooManyTurns(Exception):
    """More turns than ``Settings.max_turns``: ``finalize`` commands, or turns started."""

    def __init__(self, limit: int, what: str = "finalize commands") -> None:
        super().__init__(
            f"too many turns: a session takes at most {limit} {what}; this one is closed "
            "(1008), open a new one to go on"
        )


class _Browser:
    """The browser's socket: one sender at a time; a vanished client becomes _ClientGone."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, message: Mapping[str, object]) -> None:
        async with self._lock:
            try:
                await self.ws.send_json(message)
            except Exception as exc:  # WebSocketDisconnect, or the server's own error for it
                raise _ClientGone from exc

    async def receive(self) -> MutableMapping[str, Any]:
        try:
            message = await self.ws.receive()
        except Exception as exc:
            raise _ClientGone from exc
        if message["type"] == "websocket.disconnect":
            raise _ClientGone
        return message

    async def error(self, message: str, *, fatal: bool) -> None:
        await self.send({"type": "error", "message": message, "fatal": fatal})

    async def close(self, code: int) -> None:
        with contextlib.suppress(Exception):  # it may be gone already
            await self.ws.close(code)


TurnQueue = asyncio.Queue[asyncio.Future[stt.Utterance] | None]
Conn = TypeVar("Conn", stt.AsyncConnection, stt.AsyncTurnConnection)


async def relay(ws: WebSocket) -> None:
    """Relay one browser's audio through one Cartesia session; send exact final text back."""
    settings: Settings = ws.app.state.settings
    turns: TurnQueue = asyncio.Queue()  # finalize futures, from one task to the other
    await _relay(
        ws,
        lambda client: client.stt.manual_finalize.websocket(
            model=settings.model,
            encoding="pcm_s16le",
            sample_rate=SAMPLE_RATE,
            **settings.session_options,
        ),
        lambda browser, conn: _from_browser(browser, conn, turns, settings.max_turns),
        lambda browser, conn: _to_browser(browser, conn, turns),
    )


async def _relay(
    ws: WebSocket,
    session: Callable[[stt.AsyncCartesia], AbstractAsyncContextManager[Conn]],
    *tasks: Callable[[_Browser, Conn], Coroutine[Any, Any, None]],
) -> None:
    """Open one Cartesia ``session`` for one browser and run ``tasks`` on both until they end.

    Then the whole transcript goes to the browser (``done``) and its socket closes (1000).
    A vanished browser closes the Cartesia session at once; too many turns and Cartesia
    failures are told to the browser as fatal errors (1008, 1011).
    """
    client: stt.AsyncCartesia = ws.app.state.cartesia
    await ws.accept()
    browser = _Browser(ws)
    try:
        async with session(client) as conn:
            await browser.send({"type": "ready"})
            # anyio's task group rather than asyncio.TaskGroup, which on Python 3.11 can leave
            # a cancellation request on this task when a task fails after the body ended.
            async with anyio.create_task_group() as group:
                for task in tasks:
                    group.start_soon(task, browser, conn)
        # Leaving `async with` waited for the session's clean end: the transcript is complete.
        await browser.send({"type": "done", "transcript": conn.transcript.text})
        await browser.close(1000)
    except* _ClientGone:
        # Leaving `async with` on an exception closed the Cartesia socket at once.
        log.info("the browser left; its Cartesia session is closed")
    except* _TooManyTurns as group:
        log.warning("relay closed: %s", group.exceptions[0])
        with contextlib.suppress(_ClientGone):
            await browser.error(str(group.exceptions[0]), fatal=True)
        await browser.close(1008)  # policy violation
    except* stt.CartesiaSTTError as group:
        error = group.exceptions[0]
        log.warning("relay failed: %s", error)
        with contextlib.suppress(_ClientGone):
            await browser.error(f"transcription failed: {error}", fatal=True)
        await browser.close(1011)


async def _forward_audio(
    browser: _Browser,
    conn: stt.AsyncConnection | stt.AsyncTurnConnection,
    commands: Collection[str],
) -> str:
    """Send the browser's audio to Cartesia until it sends one of ``commands``; return it.

    Mistakes (a broken audio message, an unknown command) are reported, not fatal.
    """
    while True:
        message = await browser.receive()
        audio: bytes | None = message.get("bytes")
        text: str | None = message.get("text")
        if audio is not None:
            if len(audio) % SAMPLE_WIDTH:
                await browser.error(
                    f"audio messages must hold whole 16-bit samples; got {len(audio)} bytes "
                    "(dropped)",
                    fatal=False,
                )
            elif len(audio) > MAX_AUDIO_MESSAGE:
                await browser.error(
                    f"audio messages may hold at most 1 s ({MAX_AUDIO_MESSAGE} bytes); got "
                    f"{len(audio)} bytes (dropped)",
                    fatal=False,
                )
            else:
                await conn.send_audio(audio)
        elif text is not None and text in commands:
            return text
        else:
            shown = repr(text[:40]) if text is not None else "an empty message"
            names = " or ".join(repr(c) for c in commands)
            await browser.error(
                f"unknown command {shown}: send {names} as text, audio as binary", fatal=False
            )


async def _from_browser(
    browser: _Browser, conn: stt.AsyncConnection, turns: TurnQueue, max_turns: int
) -> None:
    """Audio and commands from the browser to Cartesia: ``finalize`` ends a turn."""
    count = 0
    while await _forward_audio(browser, conn, ("finalize", "close")) == "finalize":
        count += 1
        if count > max_turns:
            raise _TooManyTurns(max_turns)  # fatal: the relay closes the socket (1008)
        # Queued now, after the audio before it; its answer is awaited by _to_browser.
        turns.put_nowait(conn.finalize_nowait())
    await conn.send("close")
    turns.put_nowait(None)


async def _to_browser(browser: _Browser, conn: stt.AsyncConnection, turns: TurnQueue) -> None:
    """Committed final deltas to the browser, each once, in order; a ``turn`` after each turn."""
    sent = through = counted = 0
    # Completed utterances, in order; their final_chunks no longer change.
    done = conn.transcript.utterances
    # finals() is an async generator: aclosing() ends it if this task is cancelled.
    async with contextlib.aclosing(conn.finals()) as finals:
        while (turn := await turns.get()) is not None:
            utterance = await turn
            # Deltas up to the end of this turn (committed when its answer was complete):
            # add those of the utterances completed since the last turn, each counted once.
            while counted < len(done) and done[counted].index <= utterance.index:
                through += done[counted].final_chunks
                counted += 1
            while sent < through:
                await browser.send({"type": "final", "text": await anext(finals)})
                sent += 1
            await browser.send({"type": "turn", "index": utterance.index})
        async for delta in finals:  # text answered at close, then the iterator ends at done
            await browser.send({"type": "final", "text": delta})


# -- the hands-free relay: Cartesia decides the turns ----------------------------------------


async def turns_relay(ws: WebSocket) -> None:
    """Relay one browser's audio through one turn-detection session; send its turns back."""
    settings: Settings = ws.app.state.settings
    await _relay(
        ws,
        lambda client: client.stt.auto_finalize.websocket(
            model=settings.model,
            encoding="pcm_s16le",
            sample_rate=SAMPLE_RATE,
            **settings.turn_options,
        ),
        # First: it listens before the other task can send the audio that starts a turn.
        lambda browser, conn: _turns_to_browser(browser, conn, settings.max_turns),
        _audio_from_browser,
    )


async def _audio_from_browser(browser: _Browser, conn: stt.AsyncTurnConnection) -> None:
    """The browser's audio to Cartesia until ``close`` (no ``finalize``: Cartesia decides)."""
    await _forward_audio(browser, conn, ("close",))
    await conn.send("close")  # the open turn gets its turn.end, then the session ends


async def _turns_to_browser(
    browser: _Browser, conn: stt.AsyncTurnConnection, max_turns: int
) -> None:
    """Each turn's moments to the browser: start (barge-in), eager end, resume, end.

    ``conn.signals()`` yields each once, in order, also across a reconnect (whose replay
    repeats ``turn.start`` and updates on the wire); it ends with the session, raising a
    server error event that ended it (the relay reports it, 1011).
    """
    async with contextlib.aclosing(conn.signals()) as signals:
        async for signal in signals:
            index = signal.turn.index
            if signal.kind == "start":
                if index >= max_turns:
                    raise _TooManyTurns(max_turns, "turns")  # fatal: closed with 1008
                await browser.send({"type": "turn.start", "index": index})
            elif signal.kind == "eager":
                await browser.send({"type": "turn.eager_end", "index": index, "text": signal.text})
            elif signal.kind == "resume":
                await browser.send({"type": "turn.resume", "index": index})
            else:  # the final text, verbatim: the page joins turns with nothing added
                await browser.send({"type": "turn.end", "index": index, "text": signal.text})


app = create_app(Settings(local_twin=not os.environ.get("CARTESIA_API_KEY")))
"""The app for ``uvicorn examples.fastapi_app.app:app``."""
