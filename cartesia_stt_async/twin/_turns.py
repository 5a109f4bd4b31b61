"""The session loop of one accepted ``/stt/turns/websocket`` connection (turn detection).

* Parameters are checked first (:func:`._params.validate_turn_params`): a bad one gets one
  ``error`` event (``status_code`` 400, ``done: true``), then close 1008.
* ``connected`` is the first event. Binary frames are audio: each goes to the detector
  (:mod:`._detector`, audio time) and to the engine's recognizer, cut at the detector's
  decisions, so a turn's recognizer utterance is exactly the audio up to its end.
* Text frames are JSON commands. ``config`` changes the turn settings for later decisions
  (a bad value: an ``error`` event with ``done: false``, settings unchanged); ``close`` ends
  an open turn with ``turn.end``, then closes 1000. Anything else gets an ``error`` event
  (``invalid_command``, ``done: false``) and the session goes on.
* Nothing is read after ``close``: audio sent after it is dropped. The idle timeout and a
  recognizer failure behave as on ``/stt/websocket`` (1001, 1011).

The text of a turn comes from a script (:class:`~.engines.Turn`, :class:`~.engines.RawTurn`)
or from the recognizer: ``turn.update`` carries its partial hypothesis minus the last word (the
one most often revised), only when it extends the text already sent; ``turn.eager_end`` the
whole partial, if it extends; ``turn.end`` the utterance's final text, where a word already
sent and since revised keeps its sent form, so text sent is never revised.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import WSMsgType

from ._detector import Decision, LevelMeter, TurnDetector, TurnSettings, TurnState
from ._params import ParamError, turn_settings, validate_turn_params
from ._session import refuse_params, serve_engine
from ._state import Options
from ._wire import Wire
from .engines import RawTurn, RecognizerSession, ScriptsTurns, Segment, Turn

__all__ = ["extend_text", "run_turns_session", "settle_text"]


def extend_text(sent: str, candidate: str) -> str | None:
    """``candidate`` if it appends to ``sent`` (and is longer), else ``None``."""
    if len(candidate) > len(sent) and candidate.startswith(sent):
        return candidate
    return None


def settle_text(sent: str, final: str) -> str:
    """The definitive text of a turn whose text so far was ``sent``: ``final`` if it appends
    to it, else ``sent`` followed by the words of ``final`` past the number already sent."""
    if final.startswith(sent):
        return final
    words = final.split()
    return sent + "".join(" " + w for w in words[len(sent.split()) :])


def _finals(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments if s.is_final)


class _Turns:
    """One connection's turns: detector decisions in, events out, text from the recognizer
    or from the engine's script."""

    def __init__(
        self, wire: Wire, rec: RecognizerSession, settings: TurnSettings, rate: int, enc: str
    ) -> None:
        self.wire = wire
        self.rec = rec
        self.detector = TurnDetector(settings, rate)
        self.meter = LevelMeter(enc, self.detector.windows.samples)
        self.script: Turn | RawTurn | None = None
        self.pending: list[str] = []  # scripted updates not sent yet
        self.resumed = False
        self.sent = ""  # the turn's text sent so far
        self.partial = ""  # the recognizer's latest partial hypothesis of the utterance

    async def _emit(self, kind: str, transcript: str | None = None) -> None:
        event: dict[str, Any] = {"type": kind}
        if transcript is not None:
            event["transcript"] = transcript
            self.sent = transcript
        await self.wire.send_json(event)

    async def _raw(self, events: Sequence[Mapping[str, Any]]) -> None:
        for event in events:
            await self.wire.send_json(event)

    async def _flush_updates(self) -> None:
        while self.pending:
            await self._emit("turn.update", self.pending.pop(0))

    async def feed(self, audio: bytes) -> None:
        """Give ``audio`` to the recognizer; send an update if the turn's text grew."""
        if not audio:
            return
        for seg in await self.rec.feed(audio):
            if not seg.is_final:
                self.partial = seg.text
        if self.detector.state is not TurnState.SPEAKING:
            return
        if isinstance(self.script, Turn):
            if self.pending:
                await self._emit("turn.update", self.pending.pop(0))
        elif self.script is None:
            stable = self.partial.rstrip()
            stable = stable[: max(stable.rfind(" "), 0)]
            if extend_text(self.sent, stable) is not None:
                await self._emit("turn.update", stable)

    async def frame(self, data: bytes) -> None:
        """One binary frame: detector decisions and recognizer text, in audio order."""
        fed = 0
        for end, speech in self.meter.windows(data):
            decision = self.detector.push(speech)
            if decision is not None:
                await self.feed(data[fed:end])
                fed = end
                await self.decide(decision)
        await self.feed(data[fed:])

    async def decide(self, decision: Decision) -> None:
        """Send what ``decision`` means for the turn."""
        script = self.script
        if decision is Decision.START:
            self.sent, self.resumed = "", False
            self.script = script = (
                self.rec.next_turn() if isinstance(self.rec, ScriptsTurns) else None
            )
            self.pending = list(script.updates) if isinstance(script, Turn) else []
            if isinstance(script, RawTurn):
                await self._raw(script.start)
            else:
                await self._emit("turn.start")
        elif decision is Decision.EAGER_END:
            if isinstance(script, RawTurn):
                await self._raw(script.eager_end)
                return
            await self._flush_updates()
            if isinstance(script, Turn):
                text = script.eager_end if script.eager_end is not None else self.sent
            else:
                text = extend_text(self.sent, self.partial) or self.sent
            await self._emit("turn.eager_end", text)
        elif decision is Decision.RESUME:
            if isinstance(script, RawTurn):
                await self._raw(script.resume)
                return
            if isinstance(script, Turn) and not self.resumed:
                self.pending += script.resumed
            self.resumed = True
            await self._emit("turn.resume")
        else:
            final = _finals(await self.rec.finalize())
            self.partial = ""
            if isinstance(script, RawTurn):
                await self._raw(script.end)
                return
            await self._flush_updates()
            if isinstance(script, Turn):
                text = script.end if script.end is not None else self.sent
            else:
                text = settle_text(self.sent, final)
            await self._emit("turn.end", text)


async def run_turns_session(wire: Wire, opts: Options, version: str | None) -> None:
    """Serve one ``/stt/turns/websocket`` connection from its handshake to its end.

    Args:
        wire: The connection.
        opts: The twin's options (engine, idle timeout).
        version: The ``cartesia-version`` header, if any.
    """
    try:
        params, settings = validate_turn_params(wire.record.query, version)
    except ParamError as err:
        await refuse_params(wire, err)
        return
    wire.record.turn_settings = settings
    await serve_engine(
        wire, opts, params, functools.partial(_serve, wire, opts, settings, params.encoding)
    )


def _command(text: str) -> dict[str, Any] | None:
    try:
        command = json.loads(text)
    except ValueError:
        return None
    return command if isinstance(command, dict) else None


async def _serve(
    wire: Wire, opts: Options, settings: TurnSettings, encoding: str, rec: RecognizerSession
) -> None:
    ws, record = wire.ws, wire.record
    assert record.params is not None
    turns = _Turns(wire, rec, settings, record.params.sample_rate, encoding)
    await wire.send_json({"type": "connected"})
    loop = asyncio.get_running_loop()
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
            await turns.frame(data)
            await wire.frame_received()
        elif msg.type == WSMsgType.TEXT:
            text: str = msg.data
            record.commands.append((loop.time(), text))
            command = _command(text)
            kind = command.get("type") if command is not None else None
            if command is not None and kind == "close":
                decision = turns.detector.close()
                if decision is not None:
                    await turns.decide(decision)
                await wire.close_normally()
                return
            if command is not None and kind == "config":
                await _configure(wire, turns, command.get("turn"))
            else:
                message = (
                    f"unknown command {text[:40]!r}: send JSON "
                    '{"type": "config", "turn": {...}} or {"type": "close"}'
                )
                error = wire.error(message, 400, "Invalid command", "invalid_command", done=False)
                await wire.send(error)
        else:  # CLOSE, CLOSING, CLOSED, ERROR: the client is gone
            return


async def _configure(wire: Wire, turns: _Turns, turn: object) -> None:
    """Apply a ``config`` command's ``turn`` object; a bad one gets an ``error`` event."""
    if turn is None:
        return
    try:
        if not isinstance(turn, dict):
            raise ParamError("Invalid config", "config's turn must be a JSON object")
        settings = turn_settings(turn, turns.detector.settings, prefix="")
    except ParamError as err:
        error = wire.error(err.message, 400, err.title, "invalid_config", done=False)
        await wire.send(error)
        return
    turns.detector.configure(settings)
    wire.record.turn_settings = settings
