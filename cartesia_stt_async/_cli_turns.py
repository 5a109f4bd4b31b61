"""Turn detection on the command line: ``transcribe --realtime --turns`` and ``mic --turns``.

Both open ``client.stt.auto_finalize.websocket(...)`` (``/stt/turns/websocket``): the server
decides when a turn starts and ends, so neither sends ``finalize``. What they print (stdout):

* ``turn N | TEXT`` when turn ``N`` ends: its ``turn.end`` transcript, verbatim (a later turn
  may begin with a space, as Cartesia sends it);
* ``barge-in | turn N`` (``mic --turns`` only) the moment turn ``N`` starts: where a voice
  agent would stop talking.

The session's transcript is the ``turn.end`` texts joined verbatim, never stripped or
separated (``conn.transcript.text``). ``mic --turns`` also says on stderr when a turn may be
over (``turn.eager_end``) and when that was withdrawn (``turn.resume``).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, TextIO

from .errors import UsageError
from .protocol.events import UnknownEvent, encode_event

if TYPE_CHECKING:
    from ._client import AsyncCartesia
    from .audio import WavAudio
    from .protocol.events import Event, TurnEvent
    from .protocol.turns import TurnSignal

__all__ = [
    "check_turn_options",
    "json_line",
    "show_signal",
    "stream_turns",
]


def check_turn_options(**given: object) -> None:
    """Refuse options that have no meaning on the turn endpoint.

    Args:
        **given: Option name (as typed, ``--vad``) to its value; ``None`` or ``False`` is
            "not given".

    Raises:
        UsageError: Naming the options given and why they do not apply.
    """
    names = [name for name, value in given.items() if value not in (None, False)]
    if names:
        raise UsageError(
            f"{', '.join(names)}: not with --turns, where the server decides when each turn "
            "ends (no finalize) and recognizes English only (no language parameter)"
        )


def json_line(event: Event | TurnEvent) -> str:
    """One server event as the JSON line ``--json`` prints (an unknown one as received)."""
    if isinstance(event, UnknownEvent):
        return json.dumps(event.data)
    return encode_event(event).decode()


async def stream_turns(
    client: AsyncCartesia,
    audio: WavAudio,
    *,
    model: str,
    speed: float | None,
    as_json: bool,
    out: TextIO,
) -> str:
    """Stream one WAV file through a turn-detection session; print each turn as it ends.

    Args:
        client: The client to open the session with.
        audio: The file's audio (an encoding and rate the API takes).
        model: The model (``ink-2``).
        speed: Pacing, 1.0 real time; ``None`` unpaced.
        as_json: Print every event as a JSON line instead of the turns.
        out: Where the turns (or events) go.

    Returns:
        The transcript: the ``turn.end`` texts joined verbatim.

    Raises:
        CartesiaSTTError: If the session fails.
    """
    async with client.stt.auto_finalize.websocket(
        model=model, encoding=audio.encoding, sample_rate=audio.sample_rate, speed=speed
    ) as conn:

        async def send_audio() -> None:
            await conn.send_audio(audio.data)
            await conn.send("close")  # every open turn gets its turn.end, then the close

        async def show() -> None:
            if as_json:
                async for event in conn:
                    out.write(json_line(event) + "\n")
                    out.flush()
                return
            # turns() ends by raising a server error event that ended the session.
            async for turn in conn.turns():
                print(f"turn {turn.index} | {turn.text}", file=out, flush=True)

        sender = asyncio.create_task(send_audio())
        try:
            await show()
        except BaseException:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            raise
        await sender
    return conn.transcript.text


def show_signal(signal: TurnSignal, out: TextIO, note: TextIO) -> None:
    """Print what a hands-free listener shows for one turn signal.

    ``start``: the barge-in marker (stdout); ``end``: the turn's text (stdout); ``eager`` and
    ``resume``: a status line (stderr).
    """
    index = signal.turn.index
    if signal.kind == "start":
        print(f"barge-in | turn {index}", file=out, flush=True)
    elif signal.kind == "end":
        print(f"turn {index} | {signal.text}", file=out, flush=True)
    elif signal.kind == "eager":
        print(f"turn {index} may be over: {signal.text!r}", file=note, flush=True)
    else:
        print(f"turn {index} goes on (eager end withdrawn)", file=note, flush=True)
