"""The session loop of one accepted ``/stt/websocket`` connection.

* Parameters are checked first: a bad one gets one ``error`` event (``status_code`` 400), then
  close 1008.
* Binary frames are audio, fed to the engine's recognizer as they arrive; its interim segments
  go out at once.
* ``finalize`` sends the utterance's final deltas then ``flush_done`` (or the reverse, per the
  engine's ``order``); ``close`` or the legacy ``done`` sends the remaining finals, ``done``,
  and closes 1000 (after ``Faults.close_delay``); any other text gets an ``error`` event and
  the session goes on.
* No message for ``idle_timeout`` seconds closes 1001 "Idle timeout".
* The recognizer failing closes 1011 (a passing server fault, which clients may retry).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from ..protocol.events import DoneEvent, TranscriptEvent
from ._params import ParamError, validate_params
from ._state import Options
from ._wire import EndSession, Wire
from .engines import RecognizerSession, Segment, SessionParams

__all__ = ["refuse_params", "run_session", "serve_engine"]

log = logging.getLogger("cartesia_stt_async.twin")


def _transcript(seg: Segment, request_id: str) -> TranscriptEvent:
    event = TranscriptEvent(
        is_final=seg.is_final,
        text=seg.text,
        request_id=request_id,
        duration=seg.duration,
        language=seg.language,
    )
    if seg.words is not None:
        event.words_raw = msgspec.Raw(
            msgspec.json.encode([{"word": w, "start": s, "end": e} for w, s, e in seg.words])
        )
    return event


async def run_session(wire: Wire, opts: Options, version: str | None) -> None:
    """Serve one connection from its handshake to its end.

    Args:
        wire: The connection.
        opts: The twin's options (engine, idle timeout).
        version: The ``cartesia-version`` header, if any.
    """
    try:
        params = validate_params(wire.record.query, version)
    except ParamError as err:
        await refuse_params(wire, err)
        return
    await serve_engine(wire, opts, params, functools.partial(_serve, wire, opts))


async def refuse_params(wire: Wire, err: ParamError) -> None:
    """A bad query parameter: one ``error`` event (``status_code`` 400), then close 1008."""
    await wire.send(wire.error(err.message, 400, err.title, err.error_code))
    await wire.ws.close(code=1008, message=b"invalid parameters")


async def serve_engine(
    wire: Wire,
    opts: Options,
    params: SessionParams,
    serve: Callable[[RecognizerSession], Awaitable[None]],
) -> None:
    """Record ``params``, fire the handshake faults, open the engine's recognizer and run
    ``serve`` with it; a recognizer failure closes 1011. Both socket routes use this.

    Raises:
        ConnectionError, asyncio.CancelledError, EndSession: The connection ended.
    """
    wire.record.params = params
    await wire.start()
    try:
        rec = await opts.engine.open(params)
    except Exception as exc:
        await _engine_failed(wire, exc)
        return
    try:
        await serve(rec)
    except (ConnectionError, asyncio.CancelledError, EndSession):
        raise
    except Exception as exc:
        await _engine_failed(wire, exc)
    finally:
        try:
            await rec.aclose()
        except Exception as exc:
            log.warning("twin: the engine failed to release a session: %s", exc)


async def _engine_failed(wire: Wire, exc: Exception) -> None:
    """The recognizer failed: close 1011 (internal error), which clients may retry.

    No ``error`` event: an in-band error is final for a client, while this failure is the
    server's and passing (a dead worker restarts on the next call).
    """
    log.warning("twin: recognition failed on %s: %s", wire.request_id, exc)
    await wire.ws.close(code=1011, message=b"recognizer failed")


async def _send_segments(wire: Wire, segments: Sequence[Segment]) -> None:
    for seg in segments:
        await wire.send(_transcript(seg, wire.request_id))


async def _serve(wire: Wire, opts: Options, rec: RecognizerSession) -> None:
    flush_first = opts.engine.order == "flush_first"
    while (message := await wire.receive(opts.idle_timeout)) is not None:
        if isinstance(message, bytes):
            await _send_segments(wire, await rec.feed(message))
            await wire.frame_received()
        elif message == "finalize":
            segments = await rec.finalize()
            if flush_first:
                await wire.send_flush_done()
            await _send_segments(wire, segments)
            if not flush_first:
                await wire.send_flush_done()
        elif message in ("close", "done"):
            await _send_segments(wire, await rec.close())
            await wire.send(DoneEvent(request_id=wire.request_id))
            await wire.close_normally()
            return
        else:
            command = f"unknown command {message[:40]!r}: use 'finalize' or 'close'"
            # The session goes on after it ("done": false).
            error = wire.error(command, 400, "Invalid command", "invalid_command", done=False)
            await wire.send(error)
