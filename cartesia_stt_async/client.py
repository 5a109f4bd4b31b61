"""``AsyncCartesia`` and ``connect()``: configuration, the handshake, the compatible surface.

``client.stt.manual_finalize.websocket(...)`` mirrors the official SDK's async client, so code
written for it runs with one import changed. It returns a :class:`ConnectionManager`, used as
``async with ... as conn`` (or ``conn = await manager.enter()``). Foreign exceptions from
websockets are translated to this package's tree here, in one place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypedDict, TypeVar, Unpack, overload

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from ._http import status_error
from ._version import __version__
from .connection import (
    AsyncConnection,
    BufferPolicy,
    EventHandler,
    ReconnectingEvent,
    ReconnectPolicy,
    check_buffer_options,
)
from .errors import APIConnectionError, APITimeoutError, ConfigurationError
from .protocol.audio import DEFAULT_FRAME_MS
from .protocol.commands import (
    DEFAULT_BASE_URL,
    DEFAULT_CARTESIA_VERSION,
    ConnectParams,
    build_headers,
    build_ws_url,
    redact,
)
from .protocol.pacing import check_speed
from .protocol.session import Session
from .tts import TTS

__all__ = ["AsyncCartesia", "ConnectionManager", "connect"]

logger = logging.getLogger("cartesia_stt_async")

USER_AGENT = f"cartesia-stt-async/{__version__}"


_TEXT_FRAME = re.compile(r"^([<>] TEXT) '.*'(?= \[\d+ bytes\])", re.DOTALL)


_H = TypeVar("_H", bound=EventHandler)


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """Hands websockets a logger that never prints the API key, nor transcript text.

    websockets logs every handshake header at DEBUG (``> Authorization: Bearer ...``) and a
    dump of every frame. The message is formatted here, the Authorization header and every
    secret replaced, and text frame contents dropped, before it reaches any handler.
    """

    def __init__(self, base: logging.Logger, secrets: Sequence[str]) -> None:
        super().__init__(base, {})
        self._secrets = [s for s in secrets if s]

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        lower = text.lower()
        if lower.startswith("> authorization:") or lower.startswith("> x-api-key:"):
            text = text.split(":", 1)[0] + ": [redacted]"
        else:
            # Frame dumps carry transcript text: keep the size, drop the content.
            text = _TEXT_FRAME.sub(r"\1 [text omitted]", text)
        kwargs.pop("extra", None)
        self.logger.log(level, "%s", redact(text, self._secrets), **kwargs)


class ConnectionManager:
    """Opens a session on ``async with`` (or :meth:`enter`) and ends it on exit.

    Leaving the block normally sends ``close`` (unless already sent) and waits, bounded by
    ``close_timeout``, for ``done``, so no final transcript is lost. Leaving on an exception
    closes the socket promptly.
    """

    def __init__(
        self,
        *,
        params: ConnectParams,
        url: str,
        headers: dict[str, str],
        secrets: Sequence[str],
        speed: float | None,
        frame_ms: int,
        max_buffered_ms: int,
        open_timeout: float | None,
        close_timeout: float,
        late_final_grace: float,
        max_event_backlog: int,
        max_message_size: int | None,
        url_for: Callable[[ConnectParams], str],
        extra_headers: Mapping[str, str],
        reconnect: ReconnectPolicy,
        buffer_policy: BufferPolicy,
        keepalive: float | None,
        log_transcripts: bool,
    ) -> None:
        self._params = params
        self._url_for = url_for
        self._extra_headers = dict(extra_headers)
        self._reconnect = reconnect
        self._buffer_policy = buffer_policy
        self._keepalive = keepalive
        self._log_transcripts = log_transcripts
        self._url = url
        self._headers = headers
        self._secrets = list(secrets)
        self._speed = speed
        self._frame_ms = frame_ms
        self._max_buffered_ms = max_buffered_ms
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._late_final_grace = late_final_grace
        self._max_event_backlog = max_event_backlog
        self._max_message_size = max_message_size
        self._connection: AsyncConnection | None = None
        self._handlers: list[tuple[str, EventHandler, bool]] = []
        # Check what can be checked before any network I/O.
        self._session_args = (params.audio_format, frame_ms)
        params.audio_format.frame_bytes(frame_ms)

    @property
    def url(self) -> str:
        """The WebSocket URL this manager connects to, with any secret in it redacted."""
        return redact(self._url, self._secrets)

    def __repr__(self) -> str:
        return f"<ConnectionManager url={self.url!r}>"

    async def _reconnect_handshake(
        self, extra_query: Mapping[str, object], extra_headers: Mapping[str, str]
    ) -> ClientConnection:
        """A new socket for the same session, with ``on_reconnecting``'s replacements."""
        pairs = ConnectParams.build(
            model=self._params.model,
            encoding=self._params.encoding,
            sample_rate=self._params.sample_rate,
            extra_query=extra_query,
        ).extra_query
        url = self._url_for(dataclasses.replace(self._params, extra_query=pairs))
        headers = {**self._headers, **extra_headers}
        return await self._handshake(url, headers)

    async def _handshake(
        self, url: str | None = None, headers: Mapping[str, str] | None = None
    ) -> ClientConnection:
        try:
            return await ws_connect(
                url or self._url,
                additional_headers=dict(headers or self._headers),
                user_agent_header=None,  # our User-Agent is in the headers
                compression=None,  # PCM does not deflate; skip the CPU cost
                open_timeout=self._open_timeout,
                close_timeout=min(self._close_timeout, 5.0),
                max_size=self._max_message_size,
                logger=_RedactingLogger(logging.getLogger("cartesia_stt_async.ws"), self._secrets),
            )
        except InvalidStatus as exc:
            raise _status_error(exc, self._secrets) from None
        except InvalidURI as exc:
            msg = redact(str(exc), self._secrets)
            raise ConfigurationError(f"invalid WebSocket URL: {msg}") from None
        except TimeoutError:
            raise APITimeoutError(
                f"opening the WebSocket took longer than {self._open_timeout} s"
            ) from None
        except (InvalidHandshake, OSError) as exc:
            msg = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            raise APIConnectionError(f"could not connect to {self.url}: {msg}") from None

    @overload
    def on(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def on(self, event_type: str, handler: EventHandler) -> ConnectionManager: ...
    def on(
        self, event_type: str, handler: EventHandler | None = None
    ) -> ConnectionManager | Callable[[_H], _H]:
        """Register a handler before connecting; it moves to the connection on enter."""
        return self._register(event_type, handler, once=False)

    @overload
    def once(self, event_type: str) -> Callable[[_H], _H]: ...
    @overload
    def once(self, event_type: str, handler: EventHandler) -> ConnectionManager: ...
    def once(
        self, event_type: str, handler: EventHandler | None = None
    ) -> ConnectionManager | Callable[[_H], _H]:
        """Register a one-time handler before connecting."""
        return self._register(event_type, handler, once=True)

    def off(self, event_type: str, handler: EventHandler) -> ConnectionManager:
        """Remove a handler registered on this manager."""
        self._handlers = [
            (t, h, o) for t, h, o in self._handlers if not (t == event_type and h is handler)
        ]
        return self

    def _register(
        self, event_type: str, handler: EventHandler | None, *, once: bool
    ) -> ConnectionManager | Callable[[_H], _H]:
        if handler is not None:
            self._handlers.append((event_type, handler, once))
            return self

        def decorator(fn: _H) -> _H:
            self._handlers.append((event_type, fn, once))
            return fn

        return decorator

    async def enter(self) -> AsyncConnection:
        """Connect and return the live :class:`AsyncConnection` (close it yourself)."""
        fmt, frame_ms = self._session_args
        ws = await self._handshake()
        logger.debug("connected to %s", self.url)
        session = Session(
            fmt,
            frame_ms=frame_ms,
            late_final_grace=self._late_final_grace,
            max_replay_bytes=fmt.bytes_per_second * self._reconnect.max_replay_ms // 1000,
        )
        self._connection = AsyncConnection(
            ws,
            session,
            speed=self._speed,
            max_buffered_ms=self._max_buffered_ms,
            close_timeout=self._close_timeout,
            max_event_backlog=self._max_event_backlog,
            connector=self._reconnect_handshake,
            reconnect=self._reconnect,
            buffer_policy=self._buffer_policy,
            keepalive=self._keepalive,
            log_transcripts=self._log_transcripts,
            extra_query=dict(self._params.extra_query),
            extra_headers=self._extra_headers,
        )
        for event_type, handler, once in self._handlers:
            if once:
                self._connection.once(event_type, handler)
            else:
                self._connection.on(event_type, handler)
        return self._connection

    async def __aenter__(self) -> AsyncConnection:
        return await self.enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            conn, self._connection = self._connection, None
            await conn.__aexit__(exc_type, exc, tb)


def _status_error(exc: InvalidStatus, secrets: Sequence[str]) -> Exception:
    response = exc.response
    return status_error(
        response.status_code,
        response.reason_phrase,
        response.body,
        response.headers,
        secrets,
        what="handshake refused with ",
    )


class _Settings:
    """Resolved client configuration (the API key is kept out of every repr)."""

    __slots__ = ("api_key", "base_url", "cartesia_version", "default_headers", "websocket_base_url")

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        websocket_base_url: str | None,
        cartesia_version: str,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("CARTESIA_API_KEY")
        if not key:
            raise ConfigurationError(
                "no API key: pass api_key=... or set CARTESIA_API_KEY "
                "(for offline work, run the local twin: cartesia_stt_async.twin.serve())"
            )
        if not isinstance(key, str):
            raise ConfigurationError(f"api_key must be a string, got {type(key).__name__}")
        self.api_key = key
        self.base_url = base_url or os.environ.get("CARTESIA_BASE_URL") or DEFAULT_BASE_URL
        self.websocket_base_url = websocket_base_url
        self.cartesia_version = cartesia_version
        self.default_headers = dict(default_headers or {})
        # Fail early on a URL that cannot work.
        build_ws_url((), base_url=self.base_url, websocket_base_url=websocket_base_url)

    def manager(
        self,
        *,
        model: str,
        encoding: str,
        sample_rate: int,
        language: str | None = None,
        keyterm: Sequence[str] | None = None,
        min_volume: float | None = None,
        max_silence_duration_secs: float | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        speed: float | None = 1.0,
        frame_ms: int = DEFAULT_FRAME_MS,
        max_buffered_ms: int = 2000,
        open_timeout: float | None = 10.0,
        close_timeout: float = 10.0,
        late_final_grace: float = 0.25,
        max_event_backlog: int = 10_000,
        max_message_size: int | None = 1 << 20,
        max_retries: int = 5,
        initial_delay: float = 0.5,
        max_delay: float = 8.0,
        on_reconnecting: Callable[[ReconnectingEvent], object] | None = None,
        max_replay_ms: int = 120_000,
        buffer_policy: BufferPolicy = "block",
        keepalive: float | None = None,
        log_transcripts: bool = False,
    ) -> ConnectionManager:
        params = ConnectParams.build(
            model=model,
            encoding=encoding,
            sample_rate=sample_rate,
            language=language,
            keyterm=keyterm,
            min_volume=min_volume,
            max_silence_duration_secs=max_silence_duration_secs,
            extra_query=extra_query,
        )
        url = build_ws_url(
            params.query(), base_url=self.base_url, websocket_base_url=self.websocket_base_url
        )
        reconnect = ReconnectPolicy(
            max_retries=max_retries,
            initial_delay=initial_delay,
            max_delay=max_delay,
            on_reconnecting=on_reconnecting,
            max_replay_ms=max_replay_ms,
        )
        check_buffer_options(buffer_policy, keepalive)

        def url_for(p: ConnectParams) -> str:
            return build_ws_url(
                p.query(), base_url=self.base_url, websocket_base_url=self.websocket_base_url
            )

        headers = build_headers(
            api_key=self.api_key,
            cartesia_version=self.cartesia_version,
            user_agent=USER_AGENT,
            extra_headers={**self.default_headers, **(extra_headers or {})},
        )
        return ConnectionManager(
            params=params,
            url=url,
            headers=headers,
            secrets=[self.api_key],
            speed=check_speed(speed),
            frame_ms=frame_ms,
            max_buffered_ms=max_buffered_ms,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            late_final_grace=late_final_grace,
            max_event_backlog=max_event_backlog,
            max_message_size=max_message_size,
            url_for=url_for,
            extra_headers=dict(extra_headers or {}),
            reconnect=reconnect,
            buffer_policy=buffer_policy,
            keepalive=keepalive,
            log_transcripts=log_transcripts,
        )


class ManualFinalize:
    """``client.stt.manual_finalize``: realtime STT where you decide when a turn ends."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings

    def websocket(
        self,
        *,
        model: str,
        encoding: str,
        sample_rate: int,
        **options: Unpack[SessionOptions],
    ) -> ConnectionManager:
        """Prepare a manual-finalize session (no network I/O until ``async with``).

        Args:
            model: ``"ink-2"``, ``"ink-whisper"``, ...
            encoding: ``pcm_s16le``, ``pcm_s32le``, ``pcm_f16le``, ``pcm_f32le``,
                ``pcm_mulaw`` or ``pcm_alaw``.
            sample_rate: Hz, matching the audio.
            language: ISO-639-1 code (server default ``en``).
            keyterm: Terms to boost, sent as repeated ``keyterm=`` query values.
            min_volume: ink-whisper only.
            max_silence_duration_secs: ink-whisper only.
            extra_query: More query parameters.
            extra_headers: More handshake headers (override ours).
            speed: Default pacing of ``send_audio``: 1.0 real time, ``None`` unpaced.
            frame_ms: Frame length for ``send_audio`` (100 ms).
            max_buffered_ms: Audio the send queue holds before ``send_audio`` waits.
            open_timeout: Seconds for the handshake.
            close_timeout: Seconds to wait for ``done`` when leaving ``async with``.
            late_final_grace: Seconds an utterance with no text waits after its
                ``flush_done`` for late final chunks (protocol.md §10.1).
            max_event_backlog: Events kept for ``async for`` when nobody iterates.
            max_message_size: Largest server message accepted, in bytes.
            max_retries: Reconnect attempts in a row without progress before giving up
                (default 5; 0 turns reconnecting off). See docs/reliability.md.
            initial_delay: Backoff before the first reconnect attempt (0.5 s).
            max_delay: Backoff cap (8 s); each delay is jittered down by up to 25 %.
            on_reconnecting: Called with a :class:`ReconnectingEvent` before each attempt;
                may return ``{"abort": True}`` or new ``extra_query`` / ``extra_headers``.
            max_replay_ms: Unacknowledged audio kept for replay after a drop (120 s).
            buffer_policy: When ``max_buffered_ms`` is full: ``"block"`` (wait, default),
                ``"drop_oldest"`` (drop the oldest unsent audio) or ``"raise"``
                (:class:`BufferFullError`).
            keepalive: Seconds without sending after which one frame of silence is sent,
                so the server's idle timeout never fires (off by default: an idle close is
                repaired on the next send).
            log_transcripts: Log final transcript text at DEBUG (off: never logged).

        Returns:
            A :class:`ConnectionManager`.

        Raises:
            UsageError: For a parameter of the wrong type or range.
        """
        return self._settings.manager(
            model=model, encoding=encoding, sample_rate=sample_rate, **options
        )


class STT:
    """``client.stt``."""

    def __init__(self, settings: _Settings) -> None:
        self.manual_finalize = ManualFinalize(settings)


class AsyncCartesia:
    """The client: configure once, open sessions with ``client.stt.manual_finalize.websocket``.

    ``client.tts.generate(...)`` synthesizes speech over HTTP (``/tts/bytes``).

    Args:
        api_key: Defaults to ``CARTESIA_API_KEY``.
        base_url: Defaults to ``CARTESIA_BASE_URL``, else ``https://api.cartesia.ai``;
            ``http://`` maps to ``ws://``, anything else to ``wss://``.
        websocket_base_url: A ``ws(s)://`` base that wins over ``base_url``.
        cartesia_version: The ``cartesia-version`` header (default ``2025-11-04``).
        default_headers: Extra handshake headers for every session.

    Raises:
        ConfigurationError: Without an API key, or with an unusable URL.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        websocket_base_url: str | None = None,
        cartesia_version: str = DEFAULT_CARTESIA_VERSION,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = _Settings(
            api_key, base_url, websocket_base_url, cartesia_version, default_headers
        )
        self.stt = STT(self._settings)
        self.tts = TTS(
            api_key=self._settings.api_key,
            base_url=self._settings.base_url,
            cartesia_version=cartesia_version,
            default_headers=self._settings.default_headers,
        )

    @property
    def base_url(self) -> str:
        """The HTTP base URL in use."""
        return self._settings.base_url

    def __repr__(self) -> str:
        base = redact(self._settings.base_url, [self._settings.api_key])
        return f"AsyncCartesia(base_url={base!r}, api_key='***')"

    async def close(self) -> None:
        """Release client resources: the HTTP connection pool of ``client.tts``.

        WebSocket sessions close themselves when their ``async with`` ends.
        """
        await self.tts.aclose()

    async def __aenter__(self) -> AsyncCartesia:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SessionOptions(TypedDict, total=False):
    """The optional keyword arguments of ``websocket()`` and ``connect()``."""

    language: str | None
    keyterm: Sequence[str] | None
    min_volume: float | None
    max_silence_duration_secs: float | None
    extra_query: Mapping[str, object] | None
    extra_headers: Mapping[str, str] | None
    speed: float | None
    frame_ms: int
    max_buffered_ms: int
    open_timeout: float | None
    close_timeout: float
    late_final_grace: float
    max_event_backlog: int
    max_message_size: int | None
    max_retries: int
    initial_delay: float
    max_delay: float
    on_reconnecting: Callable[[ReconnectingEvent], object] | None
    max_replay_ms: int
    buffer_policy: BufferPolicy
    keepalive: float | None
    log_transcripts: bool


def connect(
    *,
    model: str,
    encoding: str,
    sample_rate: int,
    api_key: str | None = None,
    base_url: str | None = None,
    websocket_base_url: str | None = None,
    cartesia_version: str = DEFAULT_CARTESIA_VERSION,
    **options: Unpack[SessionOptions],
) -> ConnectionManager:
    """Shortcut: ``async with cartesia_stt_async.connect(model=..., ...) as conn``.

    Takes the arguments of ``client.stt.manual_finalize.websocket`` plus the client's
    ``api_key``, ``base_url``, ``websocket_base_url`` and ``cartesia_version``.
    """
    settings = _Settings(api_key, base_url, websocket_base_url, cartesia_version, None)
    return settings.manager(model=model, encoding=encoding, sample_rate=sample_rate, **options)
