"""The local twin of Cartesia's realtime STT WebSocket API, on aiohttp.web.

``async with serve() as twin:`` (offline speech recognition with pocketsphinx, needs the
``twin`` extra) or ``serve(engine=ScriptedEngine([...]))`` (exact scripted answers), then point
a client at ``twin.base_url``. From the shell: ``cartesia-stt twin --port 8765``.

Besides ``/stt/websocket`` the twin serves ``/stt/turns/websocket`` (turn detection, its
turns decided from the audio's energy in audio time; script them with :class:`Turn`),
``POST /tts/bytes`` (an offline voice) and ``POST /access-token`` (short-lived tokens it
then enforces), with CORS for browser pages; a :class:`Faults` plan injects deterministic
faults.
"""

from typing import TYPE_CHECKING, Any

from ._detector import TurnSettings
from ._params import ParamError, validate_params
from ._server import SessionRecord, Twin, run_forever, serve
from ._thread import TwinServer, start_twin
from .engines import (
    Engine,
    RawTurn,
    RecognizerSession,
    Reply,
    ScriptedEngine,
    Segment,
    SessionParams,
    Turn,
)
from .faults import Fault, FaultAction, Faults

if TYPE_CHECKING:
    from .sphinx import SphinxEngine

__all__ = [
    "Engine",
    "Fault",
    "FaultAction",
    "Faults",
    "ParamError",
    "RawTurn",
    "RecognizerSession",
    "Reply",
    "ScriptedEngine",
    "Segment",
    "SessionParams",
    "SessionRecord",
    "SphinxEngine",
    "Turn",
    "TurnSettings",
    "Twin",
    "TwinServer",
    "run_forever",
    "serve",
    "start_twin",
    "validate_params",
]


def __getattr__(name: str) -> Any:
    # SphinxEngine needs the ``twin`` extra (pocketsphinx, numpy): import it on first use.
    if name == "SphinxEngine":
        from .sphinx import SphinxEngine

        return SphinxEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
