"""cartesia_stt_async: an asyncio-native client for Cartesia's realtime STT (manual finalize,
and turn detection: ``client.stt.auto_finalize``).

Quick start (against the local twin, no API key needed)::

    import asyncio, cartesia_stt_async as stt
    from cartesia_stt_async.twin import serve, ScriptedEngine

    async def main() -> None:
        async with serve(engine=ScriptedEngine([["Hello", " world."]])) as twin:
            client = stt.AsyncCartesia(api_key="local", base_url=twin.base_url)
            async with client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000
            ) as conn:
                await conn.send_audio(bytes(32000))
                print((await conn.finalize()).text)

    asyncio.run(main())
"""

from ._access_token import AccessToken
from ._client import AsyncCartesia, ConnectionManager, TurnConnectionManager, connect
from ._config import BufferPolicy, ReconnectingEvent, SessionOptions, TurnSessionOptions
from ._connection import AsyncConnection
from ._events import EventHandler
from ._sources import AudioSource
from ._sync import (
    Cartesia,
    SyncConnection,
    SyncConnectionManager,
    SyncSpeechResponse,
    SyncTurnConnection,
    SyncTurnConnectionManager,
)
from ._tts import SpeechResponse
from ._turns import AsyncTurnConnection, Preflight
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BufferFullError,
    CartesiaSTTError,
    ConfigurationError,
    ConflictError,
    ConnectionClosedError,
    ConnectionStateError,
    InvalidAudioError,
    InvalidCommandError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ProxyError,
    RateLimitError,
    ReconnectError,
    ServerError,
    TLSError,
    TurnConfigError,
    UnprocessableEntityError,
    UsageError,
)
from .protocol.audio import ENCODINGS, AudioFormat, Encoding
from .protocol.batch import Transcription
from .protocol.events import (
    ConnectedEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    FlushDoneEvent,
    TranscriptEvent,
    TurnEagerEndEvent,
    TurnEndEvent,
    TurnEvent,
    TurnResumeEvent,
    TurnStartEvent,
    TurnUpdateEvent,
    UnknownEvent,
    Word,
    parse_event,
    parse_turn_event,
)
from .protocol.outbox import ConnectionStats
from .protocol.retry import RetryPolicy
from .protocol.transcript import Transcript, Utterance
from .protocol.turns import Turn, TurnSettings, TurnSignal, TurnTranscript
from .subtitles import Cue, TimedWord, cues, to_srt, to_vtt

__all__ = [
    "ENCODINGS",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AccessToken",
    "AsyncCartesia",
    "AsyncConnection",
    "AsyncTurnConnection",
    "AudioFormat",
    "AudioSource",
    "AuthenticationError",
    "BadRequestError",
    "BufferFullError",
    "BufferPolicy",
    "Cartesia",
    "CartesiaSTTError",
    "ConfigurationError",
    "ConflictError",
    "ConnectedEvent",
    "ConnectionClosedError",
    "ConnectionManager",
    "ConnectionStateError",
    "ConnectionStats",
    "Cue",
    "DoneEvent",
    "Encoding",
    "ErrorEvent",
    "Event",
    "EventHandler",
    "FlushDoneEvent",
    "InvalidAudioError",
    "InvalidCommandError",
    "NotFoundError",
    "PermissionDeniedError",
    "Preflight",
    "ProtocolError",
    "ProxyError",
    "RateLimitError",
    "ReconnectError",
    "ReconnectingEvent",
    "RetryPolicy",
    "ServerError",
    "SessionOptions",
    "SpeechResponse",
    "SyncConnection",
    "SyncConnectionManager",
    "SyncSpeechResponse",
    "SyncTurnConnection",
    "SyncTurnConnectionManager",
    "TLSError",
    "TimedWord",
    "Transcript",
    "TranscriptEvent",
    "Transcription",
    "Turn",
    "TurnConfigError",
    "TurnConnectionManager",
    "TurnEagerEndEvent",
    "TurnEndEvent",
    "TurnEvent",
    "TurnResumeEvent",
    "TurnSessionOptions",
    "TurnSettings",
    "TurnSignal",
    "TurnStartEvent",
    "TurnTranscript",
    "TurnUpdateEvent",
    "UnknownEvent",
    "UnprocessableEntityError",
    "UsageError",
    "Utterance",
    "Word",
    "__version__",
    "connect",
    "cues",
    "parse_event",
    "parse_turn_event",
    "to_srt",
    "to_vtt",
]
