"""The twin server: Cartesia's ``/stt/websocket`` (manual finalize) on aiohttp.web.

Behaviour follows protocol.md §11 (decisions for the twin):

* auth before the upgrade (``Authorization: Bearer``, ``X-API-Key``, ``?api_key=``,
  ``?access_token=``); missing or invalid key → HTTP 401; over ``max_sessions`` → HTTP 429
  with ``Retry-After``;
* bad parameters → the handshake succeeds, one ``error`` event (``status_code`` 400), close;
* binary frames are audio; ``finalize`` → final deltas then ``flush_done`` (or the reverse,
  per the engine's ``order``); ``close`` or legacy ``done`` → remaining finals, ``done``,
  close 1000; anything else → an ``error`` event, the session goes on;
* no message for ``idle_timeout`` seconds → close 1001 "Idle timeout";
* a :class:`~.faults.Faults` plan injects deterministic faults (drops, closes, refusals,
  stalls, malformed messages) for tests;
* one ``request_id`` (a UUID) per connection, also the ``X-Request-Id`` response header;
* ``POST /tts/bytes`` synthesizes speech offline (:mod:`._tts`), same auth as the socket.

The default engine is the offline pocketsphinx recognizer (:class:`~.sphinx.SphinxEngine`);
an engine may cap concurrent sessions with a ``max_sessions`` attribute (HTTP 429 over it).

Access logging is off: query strings may carry an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field

import msgspec
from aiohttp import WSMsgType, web

from ..protocol.audio import ENCODINGS
from ..protocol.commands import MAX_KEYTERM_CHARS, MAX_KEYTERMS
from ..protocol.events import (
    DoneEvent,
    ErrorEvent,
    FlushDoneEvent,
    TranscriptEvent,
    encode_event,
)
from ._tts import Synthesizer, TTSRequest, TTSRequestError
from .engines import Engine, RecognizerSession, Segment, SessionParams
from .faults import Fault, Faults

__all__ = ["SessionRecord", "Twin", "run_forever", "serve"]

log = logging.getLogger("cartesia_stt_async.twin")

MODELS = frozenset({"ink-2", "ink-whisper", "ink-whisper-2025-06-04"})
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000


@dataclass
class SessionRecord:
    """What the twin saw of one connection (for tests).

    Attributes:
        request_id: The connection's id.
        headers: Handshake request headers, lower-case names.
        query: Query pairs as received, in order (repeated keys kept).
        params: The validated parameters, or ``None`` when they were rejected.
        audio_bytes: Total binary bytes received.
        frames: ``(monotonic time, size)`` of every binary frame.
        commands: ``(monotonic time, text)`` of every text message.
        close_code: The WebSocket close code once the connection ended.
    """

    request_id: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    params: SessionParams | None = None
    audio_bytes: int = 0
    frames: list[tuple[float, int]] = field(default_factory=list)
    commands: list[tuple[float, str]] = field(default_factory=list)
    close_code: int | None = None


class _ParamError(Exception):
    def __init__(self, title: str, message: str, error_code: str) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.error_code = error_code


def _float_param(name: str, raw: str, low: float, high: float | None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _ParamError(
            "Invalid parameter", f"{name} must be a number, got {raw!r}", "invalid_parameter"
        ) from None
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _ParamError(
            "Invalid parameter", f"{name} must be {bound}, got {raw!r}", "invalid_parameter"
        )
    return value


def validate_params(query: Sequence[tuple[str, str]], version: str | None) -> SessionParams:
    """Check a connection's query parameters (protocol.md §1.3, §8, §11).

    Raises:
        _ParamError: Naming the first bad parameter.
    """
    single = {k: v for k, v in query}
    model = single.get("model")
    if not model:
        raise _ParamError("Missing parameter", "model is required", "invalid_parameter")
    if model not in MODELS:
        raise _ParamError(
            "Invalid model",
            f"The model {model!r} is not valid, make sure it is a valid model ID.",
            "model_not_found",
        )
    encoding = single.get("encoding")
    if not encoding:
        raise _ParamError("Missing parameter", "encoding is required", "invalid_parameter")
    if encoding not in ENCODINGS:
        raise _ParamError(
            "Invalid encoding",
            f"encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}",
            "invalid_parameter",
        )
    raw_rate = single.get("sample_rate")
    if not raw_rate:
        raise _ParamError("Missing parameter", "sample_rate is required", "invalid_parameter")
    if not raw_rate.isdigit() or not MIN_SAMPLE_RATE <= int(raw_rate) <= MAX_SAMPLE_RATE:
        raise _ParamError(
            "Invalid sample rate",
            f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}, "
            f"got {raw_rate!r}",
            "invalid_parameter",
        )
    language = single.get("language")
    if language is not None:
        if model == "ink-2" and language != "en":
            raise _ParamError(
                "Unsupported language",
                f"language {language!r} is not supported by ink-2 (English only)",
                "language_not_supported",
            )
        if not (language.isascii() and language.isalpha() and 2 <= len(language) <= 3):
            raise _ParamError(
                "Invalid language",
                f"language {language!r} is not an ISO-639 code",
                "invalid_parameter",
            )
    keyterms = tuple(v for k, v in query if k == "keyterm")
    if len(keyterms) > MAX_KEYTERMS:
        raise _ParamError(
            "Too many keyterms",
            f"at most {MAX_KEYTERMS} keyterms are allowed, got {len(keyterms)}",
            "invalid_parameter",
        )
    if sum(len(t) for t in keyterms) > MAX_KEYTERM_CHARS:
        raise _ParamError(
            "Keyterms too long",
            f"keyterms may total at most {MAX_KEYTERM_CHARS} characters",
            "invalid_parameter",
        )
    min_volume = single.get("min_volume")
    max_silence = single.get("max_silence_duration_secs")
    return SessionParams(
        model=model,
        encoding=encoding,
        sample_rate=int(raw_rate),
        language=language,
        keyterms=keyterms,
        min_volume=_float_param("min_volume", min_volume, 0.0, 1.0)
        if min_volume is not None
        else None,
        max_silence_duration_secs=_float_param("max_silence_duration_secs", max_silence, 0.0, None)
        if max_silence is not None
        else None,
        version=single.get("cartesia_version") or version,
    )


@dataclass
class _Options:
    engine: Engine
    api_keys: frozenset[str] | None
    idle_timeout: float
    max_sessions: int | None
    stop_reading_after: int | None
    refuse_status: int | None
    synthesizer: Synthesizer | None = None
    faults: Faults = field(default_factory=Faults)

    @property
    def session_limit(self) -> int | None:
        """The tighter of the server's and the engine's concurrent-session caps."""
        caps = [c for c in (self.max_sessions, getattr(self.engine, "max_sessions", None)) if c]
        return min(caps) if caps else None


class Twin:
    """A running twin server.

    Attributes:
        host: The bound address.
        port: The bound port.
        engine: The recognition engine.
        sessions: A :class:`SessionRecord` per accepted WebSocket connection, in order.
        handshakes: Upgrade requests received, refused ones included.
    """

    def __init__(self, host: str, port: int, engine: Engine) -> None:
        self.host = host
        self.port = port
        self.engine = engine
        self.sessions: list[SessionRecord] = []
        self.handshakes = 0
        self._active: set[web.WebSocketResponse] = set()
        self._stopping = asyncio.Event()

    @property
    def base_url(self) -> str:
        """``http://host:port``: pass it as ``base_url`` to a client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The full ``ws://host:port/stt/websocket`` URL."""
        return self.base_url.replace("http://", "ws://", 1) + "/stt/websocket"

    @property
    def active_sessions(self) -> int:
        """WebSocket connections open right now."""
        return len(self._active)

    def __repr__(self) -> str:
        return f"<Twin {self.base_url} sessions={len(self.sessions)}>"


_TWIN: web.AppKey[Twin] = web.AppKey("twin", Twin)
_OPTIONS: web.AppKey[_Options] = web.AppKey("options", _Options)


def _refusal(status: int, request_id: str, title: str, message: str, code: str) -> web.Response:
    body = {"error_code": code, "title": title, "message": message, "request_id": request_id}
    headers = {"X-Request-Id": request_id}
    if status == 429:
        headers["Retry-After"] = "1"
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _api_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return (
        request.headers.get("X-API-Key")
        or request.query.get("api_key")
        or request.query.get("access_token")
        or None
    )


def _transcript(seg: Segment, request_id: str) -> TranscriptEvent:
    words = None
    if seg.words is not None:
        words = msgspec.Raw(
            msgspec.json.encode([{"word": w, "start": s, "end": e} for w, s, e in seg.words])
        )
    event = TranscriptEvent(
        is_final=seg.is_final,
        text=seg.text,
        request_id=request_id,
        duration=seg.duration,
        language=seg.language,
    )
    if words is not None:
        event.words_raw = words
    return event


async def _handle(request: web.Request) -> web.StreamResponse:
    twin = request.app[_TWIN]
    opts = request.app[_OPTIONS]
    request_id = str(uuid.uuid4())
    attempt = twin.handshakes
    twin.handshakes += 1
    refuse = opts.faults.refuse.get(attempt, opts.refuse_status)
    if refuse is not None:
        return _refusal(refuse, request_id, "Refused", "refused by the twin", "refused")
    if not _authorized(request, opts):
        return _refusal(401, request_id, "Unauthorized", "Invalid API key", "unauthorized")
    limit = opts.session_limit
    if limit is not None and len(twin._active) >= limit:
        return _refusal(
            429,
            request_id,
            "Too many concurrent requests",
            f"at most {limit} concurrent sessions",
            "concurrency_limited",
        )
    ws = web.WebSocketResponse(max_msg_size=4 << 20, timeout=2.0, compress=False)
    ws.headers["X-Request-Id"] = request_id
    await ws.prepare(request)
    record = SessionRecord(
        request_id=request_id,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=list(request.query.items()),
    )
    wire = _Wire(ws, record, twin, opts.faults, len(twin.sessions), request)
    twin.sessions.append(record)
    twin._active.add(ws)
    try:
        await _session(wire, opts, request.headers.get("cartesia-version"))
    except (ConnectionError, asyncio.CancelledError, _EndSession):
        pass  # the client went away, the twin is shutting down, or a fault ended it
    finally:
        twin._active.discard(ws)
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutdown")
        record.close_code = ws.close_code
    return ws


def _authorized(request: web.Request, opts: _Options) -> bool:
    key = _api_key(request)
    return key is not None and (opts.api_keys is None or key in opts.api_keys)


async def _tts_bytes(request: web.Request) -> web.StreamResponse:
    opts = request.app[_OPTIONS]
    request_id = str(uuid.uuid4())
    if not _authorized(request, opts):
        return _refusal(401, request_id, "Unauthorized", "Invalid API key", "unauthorized")
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        return _refusal(400, request_id, "Invalid request", "body is not JSON", "invalid_request")
    try:
        tts_request = TTSRequest.from_json(body)
    except TTSRequestError as err:
        return _refusal(400, request_id, "Invalid request", str(err), "invalid_request")
    if opts.synthesizer is None:
        try:
            opts.synthesizer = Synthesizer()
        except ImportError:
            return _refusal(
                501,
                request_id,
                "Speech synthesis unavailable",
                "the twin's /tts/bytes needs py-nanotts: pip install 'cartesia-stt-async[twin]'",
                "not_implemented",
            )
    audio = await opts.synthesizer.generate(tts_request)
    content_type = "audio/wav" if tts_request.container == "wav" else "application/octet-stream"
    return web.Response(body=audio, content_type=content_type, headers={"X-Request-Id": request_id})


class _EndSession(Exception):
    """A fault ended the connection."""


class _Wire:
    """One connection's socket, counting frames and events and firing scheduled faults."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        record: SessionRecord,
        twin: Twin,
        faults: Faults,
        index: int,
        request: web.Request,
    ) -> None:
        self.ws = ws
        self.record = record
        self.twin = twin
        self.index = index
        self._faults = faults.for_connection(index)
        self._request = request
        self.frames = 0
        self.events = 0

    async def start(self) -> None:
        await self._fire(lambda f: f.after_frames is None and f.after_events is None)

    async def send(self, event: object) -> None:
        await self.ws.send_str(encode_event(event).decode())  # type: ignore[arg-type]
        self.events += 1
        await self._fire(lambda f: f.after_events == self.events)

    async def frame_received(self) -> None:
        self.frames += 1
        await self._fire(lambda f: f.after_frames == self.frames)

    async def _fire(self, due: Callable[[Fault], bool]) -> None:
        for fault in [f for f in self._faults if due(f)]:
            self._faults.remove(fault)
            await self._act(fault)

    async def _act(self, fault: Fault) -> None:
        ws, rid = self.ws, self.record.request_id
        if fault.action == "abort":
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            raise _EndSession
        if fault.action == "close":
            await ws.close(code=fault.code, message=fault.reason.encode())
            raise _EndSession
        if fault.action == "stop_reading":
            await self.twin._stopping.wait()
            raise _EndSession
        if fault.action == "malformed_json":
            await ws.send_str('{"type": "transcript", "text": ')
        elif fault.action == "unknown_event":
            await ws.send_str(json.dumps({"type": "twin_mystery", "request_id": rid, "n": 1}))
        elif fault.action == "binary":
            await ws.send_bytes(b"\x00\x01")
        elif fault.action == "error_event":
            await ws.send_str(
                encode_event(
                    ErrorEvent(
                        message="injected server error",
                        status_code=fault.code,
                        title="Injected",
                        error_code="injected",
                        request_id=rid,
                    )
                ).decode()
            )
            await ws.close(code=1011, message=b"injected error")
            raise _EndSession


async def _session(wire: _Wire, opts: _Options, version: str | None) -> None:
    ws, record = wire.ws, wire.record
    _send = wire.send
    rid = record.request_id
    try:
        params = validate_params(record.query, version)
    except _ParamError as err:
        await _send(
            ErrorEvent(
                message=err.message,
                status_code=400,
                title=err.title,
                error_code=err.error_code,
                request_id=rid,
            ),
        )
        await ws.close(code=1008, message=b"invalid parameters")
        return
    record.params = params
    await wire.start()
    engine = opts.engine
    try:
        rec: RecognizerSession = await engine.open(params)
    except Exception as exc:
        await _engine_failed(wire, exc)
        return
    try:
        await _serve_session(wire, opts, rec)
    except (ConnectionError, asyncio.CancelledError, _EndSession):
        raise
    except Exception as exc:
        await _engine_failed(wire, exc)
    finally:
        try:
            await rec.aclose()
        except Exception as exc:
            log.warning("twin: the engine failed to release a session: %s", exc)


async def _engine_failed(wire: _Wire, exc: Exception) -> None:
    """The recognizer failed: close 1011 (internal error), which clients may retry.

    No ``error`` event: an in-band error is final for a client, while this failure is the
    server's and passing (a dead worker restarts on the next call).
    """
    log.warning("twin: recognition failed on %s: %s", wire.record.request_id, exc)
    await wire.ws.close(code=1011, message=b"recognizer failed")


async def _serve_session(wire: _Wire, opts: _Options, rec: RecognizerSession) -> None:
    ws, record, twin = wire.ws, wire.record, wire.twin
    _send = wire.send
    faults = opts.faults
    rid = record.request_id
    engine = opts.engine
    loop = asyncio.get_running_loop()
    frames = 0
    while True:
        try:
            msg = await ws.receive(timeout=opts.idle_timeout)
        except TimeoutError:
            await ws.close(code=1001, message=b"Idle timeout")
            return
        if msg.type == WSMsgType.BINARY:
            data: bytes = msg.data
            record.frames.append((loop.time(), len(data)))
            record.audio_bytes += len(data)
            for seg in await rec.feed(data):
                await _send(_transcript(seg, rid))
            frames += 1
            await wire.frame_received()
            if opts.stop_reading_after is not None and frames >= opts.stop_reading_after:
                await twin._stopping.wait()  # stop reading: the client's sends back up
                return
        elif msg.type == WSMsgType.TEXT:
            text: str = msg.data
            record.commands.append((loop.time(), text))
            if text == "finalize":
                segs = await rec.finalize()
                if engine.order == "flush_first":
                    await _flush_done(wire, faults)
                for seg in segs:
                    await _send(_transcript(seg, rid))
                if engine.order != "flush_first":
                    await _flush_done(wire, faults)
            elif text in ("close", "done"):
                for seg in await rec.close():
                    await _send(_transcript(seg, rid))
                await _send(DoneEvent(request_id=rid))
                await ws.close(code=1000)
                return
            else:
                await _send(
                    ErrorEvent(
                        message=f"unknown command {text[:40]!r}: use 'finalize' or 'close'",
                        status_code=400,
                        title="Invalid command",
                        error_code="invalid_command",
                        request_id=rid,
                    ),
                )
        else:  # CLOSE, CLOSING, CLOSED, ERROR: the client is gone
            return


async def _flush_done(wire: _Wire, faults: Faults) -> None:
    if faults.withholds(wire.index):
        return
    if faults.flush_done_delay > 0:
        await asyncio.sleep(faults.flush_done_delay)
    await wire.send(FlushDoneEvent(request_id=wire.record.request_id))


async def _close_all(app: web.Application) -> None:
    twin = app[_TWIN]
    twin._stopping.set()
    for ws in list(twin._active):
        with contextlib.suppress(Exception):
            await ws.close(code=1001, message=b"server shutdown")


@contextlib.asynccontextmanager
async def serve(
    engine: Engine | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_keys: Collection[str] | None = None,
    idle_timeout: float = 180.0,
    max_sessions: int | None = None,
    stop_reading_after: int | None = None,
    refuse_status: int | None = None,
    faults: Faults | None = None,
) -> AsyncIterator[Twin]:
    """Run the twin for the duration of an ``async with`` block.

    Args:
        engine: The recognition engine (default: the offline pocketsphinx recognizer,
            :class:`~cartesia_stt_async.twin.SphinxEngine`, which needs the ``twin`` extra).
        host: Address to bind (loopback by default).
        port: Port to bind; 0 picks a free one (see ``twin.port``).
        api_keys: Valid keys; ``None`` accepts any non-empty key.
        idle_timeout: Seconds without any message before closing with 1001 "Idle timeout".
        max_sessions: Concurrent sessions allowed; more get HTTP 429.
        stop_reading_after: Test hook: stop reading a connection after this many audio frames.
        refuse_status: Test hook: refuse every handshake with this HTTP status.
        faults: Deterministic fault injection, see :mod:`cartesia_stt_async.twin.faults`.

    Yields:
        The running :class:`Twin`.
    """
    owned = engine is None
    if engine is None:
        from .sphinx import SphinxEngine

        engine = SphinxEngine()
    app = web.Application()
    twin = Twin(host, port, engine)
    app[_TWIN] = twin
    app[_OPTIONS] = _Options(
        engine=twin.engine,
        api_keys=frozenset(api_keys) if api_keys is not None else None,
        idle_timeout=idle_timeout,
        max_sessions=max_sessions,
        stop_reading_after=stop_reading_after,
        refuse_status=refuse_status,
        faults=faults or Faults(),
    )
    app.router.add_get("/stt/websocket", _handle)
    app.router.add_post("/tts/bytes", _tts_bytes)
    app.on_shutdown.append(_close_all)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        twin.port = server.sockets[0].getsockname()[1]
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
) -> None:
    """Serve until cancelled, printing ``twin listening on http://HOST:PORT`` once bound."""
    async with serve(engine, host=host, port=port, api_keys=api_keys) as twin:
        print(f"twin listening on {twin.base_url}", flush=True)
        await asyncio.Event().wait()
