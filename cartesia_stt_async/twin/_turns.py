"""The session loop of one accepted ``/stt/turns/websocket`` connection (turn detection).

* Parameters are checked first (:func:`._params.validate_turn_params`): a bad one gets one
  ``error`` event (``status_code`` 400, ``done: true``), then close 1008.
* ``connected`` is the first event. Binary frames are audio: each goes to the detector
  (:mod:`._detector`, audio time) and to the engine's recognizer, cut at the detector's
  decisions, so a recognizer utterance ends exactly at the window that ended it.
* Text frames are JSON commands. ``config`` changes the turn settings for later decisions
  (a bad value: an ``error`` event with ``done: false``, settings unchanged); ``close`` ends
  an open turn with ``turn.end``, then closes 1000. Anything else gets an ``error`` event
  (``invalid_command``, ``done: false``) and the session goes on.
* Nothing is read after ``close``: audio sent after it is dropped. The idle timeout and a
  recognizer failure behave as on ``/stt/websocket`` (1001, 1011).

The text of a turn comes from a script (:class:`~.engines.Turn`, :class:`~.engines.RawTurn`)
or from the recognizer. The recognizer's partial hypotheses are not sent: pocketsphinx revises
them, often into words its final pass does not keep, and a turn's text may only grow. Instead
the recognizer's utterance ends (``finalize``) at each phrase pause (the detector's
``PHRASE``: :data:`._detector.PHRASE_MS` of silence inside a turn), eager end and end where
speech was heard since the utterance began, in turns with no script (so a scripted engine's
``replies`` answer one phrase each); the turn's text is its utterances' final
texts joined verbatim, sent as ``turn.update`` at each phrase pause and as the transcript of
``turn.eager_end`` and ``turn.end``. Should a final ever not extend the text sent,
:func:`settle_text` keeps the words sent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

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
    or from the engine's script.

    The recognizer's utterance ends (``finalize``) at a phrase pause, an eager end or an
    end, when speech was heard since the last one ended; a turn's text is its utterances'
    finals, joined verbatim.
    """

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
        self.committed = ""  # the turn's text from its finished utterances
        self.heard = False  # a speech window since the recognizer's utterance began

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

    async def _end_utterance(self) -> None:
        """Finalize the recognizer's utterance; its words join the turn's text."""
        final = _finals(await self.rec.finalize())
        self.committed = settle_text(self.sent, self.committed + final)
        self.heard = False

    async def feed(self, audio: bytes, speaking: bool) -> None:
        """Give ``audio`` to the recognizer; while ``speaking``, a scripted turn's next update
        goes out."""
        if not audio:
            return
        await self.rec.feed(audio)  # partial hypotheses are not sent: see the module doc
        if speaking and isinstance(self.script, Turn) and self.pending:
            await self._emit("turn.update", self.pending.pop(0))

    async def frame(self, data: bytes) -> None:
        """One binary frame: detector decisions and recognizer text, in audio order."""
        fed = 0
        for end, speech in self.meter.windows(data):
            self.heard = self.heard or speech
            speaking = self.detector.state is TurnState.SPEAKING  # up to this window
            decision = self.detector.push(speech)
            if decision is not None:
                await self.feed(data[fed:end], speaking)
                fed = end
                await self.decide(decision)
        await self.feed(data[fed:], self.detector.state is TurnState.SPEAKING)

    async def decide(self, decision: Decision) -> None:
        """Send what ``decision`` means for the turn."""
        if decision is Decision.START:
            await self._start()
            return
        if decision is Decision.PHRASE:
            if self.script is None:  # a scripted turn's updates go out frame by frame
                await self._end_utterance()
                if extend_text(self.sent, self.committed) is not None:
                    await self._emit("turn.update", self.committed)
            return
        script = self.script
        if decision is Decision.RESUME:
            if isinstance(script, RawTurn):
                await self._raw(script.resume)
                return
            if isinstance(script, Turn) and not self.resumed:
                self.pending += script.resumed
            self.resumed = True
            await self._emit("turn.resume")
            return
        eager = decision is Decision.EAGER_END
        if self.heard and script is None:
            await self._end_utterance()
        if isinstance(script, RawTurn):
            await self._raw(script.eager_end if eager else script.end)
            return
        await self._flush_updates()
        text = self.committed
        if isinstance(script, Turn):
            scripted = script.eager_end if eager else script.end
            text = scripted if scripted is not None else self.sent
        await self._emit(decision.value, text)

    async def _start(self) -> None:
        self.sent = self.committed = ""
        self.resumed = False
        self.script = script = self.rec.next_turn() if isinstance(self.rec, ScriptsTurns) else None
        self.pending = list(script.updates) if isinstance(script, Turn) else []
        if isinstance(script, RawTurn):
            await self._raw(script.start)
        else:
            await self._emit("turn.start")


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
    assert wire.record.params is not None
    turns = _Turns(wire, rec, settings, wire.record.params.sample_rate, encoding)
    await wire.send_json({"type": "connected"})
    while (message := await wire.receive(opts.idle_timeout)) is not None:
        if isinstance(message, bytes):
            await turns.frame(message)
            await wire.frame_received()
            continue
        command = _command(message)
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
            text = (
                f"unknown command {message[:40]!r}: send JSON "
                '{"type": "config", "turn": {...}} or {"type": "close"}'
            )
            error = wire.error(text, 400, "Invalid command", "invalid_command", done=False)
            await wire.send(error)


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
