"""What a running twin holds: its options, its records of sessions, and its access tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from ._detector import TurnSettings
from ._tokens import AccessTokens
from ._tts import Synthesizer
from .engines import Engine, SessionParams
from .faults import Faults

__all__ = ["OPTIONS", "TURNS_PATH", "TWIN", "Options", "SessionRecord", "Twin"]

TURNS_PATH = "/stt/turns/websocket"


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
        turn_settings: On ``/stt/turns/websocket``, the turn settings in force (after the
            last ``config``); ``None`` on other routes or when the parameters were rejected.
    """

    request_id: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    params: SessionParams | None = None
    audio_bytes: int = 0
    frames: list[tuple[float, int]] = field(default_factory=list)
    commands: list[tuple[float, str]] = field(default_factory=list)
    close_code: int | None = None
    turn_settings: TurnSettings | None = None


@dataclass
class Options:
    """How one twin behaves (set by :func:`~cartesia_stt_async.twin.serve`)."""

    engine: Engine
    api_keys: frozenset[str] | None
    idle_timeout: float
    max_sessions: int | None
    cors_origins: frozenset[str] | None
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
        tokens: The access tokens this twin minted (``POST /access-token``).
        tls: Whether it serves TLS (``serve(ssl=...)``): ``https://`` and ``wss://`` URLs.
    """

    def __init__(
        self, host: str, port: int, engine: Engine, tokens: AccessTokens, tls: bool = False
    ) -> None:
        self.host = host
        self.tls = tls
        self.port = port
        self.engine = engine
        self.tokens = tokens
        self.sessions: list[SessionRecord] = []
        self.handshakes = 0
        self._active: set[web.WebSocketResponse] = set()
        self._stopping = asyncio.Event()

    @property
    def base_url(self) -> str:
        """``http://host:port`` (``https://`` when serving TLS): pass it as ``base_url`` to a
        client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        """``ws://host:port`` (``wss://`` when serving TLS): the base URL for clients that take
        a WebSocket URL, such as pipecat's Cartesia STT service."""
        return self.base_url.replace("http", "ws", 1)

    @property
    def ws_url(self) -> str:
        """The full ``ws://host:port/stt/websocket`` URL (``wss://`` when serving TLS)."""
        return self.ws_base_url + "/stt/websocket"

    @property
    def turns_url(self) -> str:
        """The full ``ws://host:port/stt/turns/websocket`` URL (turn detection)."""
        return self.ws_base_url + TURNS_PATH

    @property
    def active_sessions(self) -> int:
        """WebSocket connections open right now."""
        return len(self._active)

    def mint_token(self, grants: Mapping[str, bool], expires_in: int = 60) -> str:
        """Mint an access token directly, as ``POST /access-token`` would.

        Args:
            grants: For example ``{"stt": True}``; names are ``stt``, ``tts`` and ``agent``.
            expires_in: Lifetime in seconds, 1 to 3600.

        Returns:
            The token.

        Raises:
            UsageError: For an unknown grant name or a lifetime out of range.
        """
        return self.tokens.mint(grants, expires_in)

    async def stopping(self) -> None:
        """Wait until the twin starts shutting down."""
        await self._stopping.wait()

    def __repr__(self) -> str:
        return f"<Twin {self.base_url} sessions={len(self.sessions)}>"


TWIN: web.AppKey[Twin] = web.AppKey("twin", Twin)
OPTIONS: web.AppKey[Options] = web.AppKey("options", Options)
