"""The local twin of Cartesia's realtime STT WebSocket API, on aiohttp.web.

``async with serve(engine=ScriptedEngine([...])) as twin:`` then point a client at
``twin.base_url``. From the shell: ``cartesia-stt twin --port 8765``.
"""

from ._server import SessionRecord, Twin, run_forever, serve, validate_params
from .engines import Engine, RecognizerSession, Reply, ScriptedEngine, Segment, SessionParams

__all__ = [
    "Engine",
    "RecognizerSession",
    "Reply",
    "ScriptedEngine",
    "Segment",
    "SessionParams",
    "SessionRecord",
    "Twin",
    "run_forever",
    "serve",
    "validate_params",
]
