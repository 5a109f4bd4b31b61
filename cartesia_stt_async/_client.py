"""``AsyncCartesia`` and ``connect()``: configuration, the handshake, the compatible surface.

``client.stt.manual_finalize.websocket(...)`` mirrors the official SDK's async client, so code
written for it runs with one import changed. It returns a :class:`ConnectionManager`, used as
``async with ... as conn`` (or ``conn = await manager.enter()``). Every option is checked when
the manager is made (:class:`~cartesia_stt_async._config.SessionConfig`), before any I/O.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, NoReturn, TypeVar, Unpack

from ._access_token import AccessTokenResource
from ._batch import FileTypes, TranscribeOptions, check_options, transcribe
from ._config import SessionConfig, SessionOptions, TurnSessionConfig, TurnSessionOptions
from ._connection import AsyncConnection, BaseConnection
from ._events import HandlerMethods, Handlers
from ._http import HTTPClient
from ._network import (
    ProxyOption,
    SSLOption,
    check_proxy,
    check_ssl,
    ssl_for,
    ws_proxy,
)
from ._redact import RedactingLogger, Secrets, proxy_secrets, secrets_in
from ._socket import Socket, ws_connect
from ._supervisor import first_socket
from ._telemetry import Hub, SessionTrace, check_observers
from ._translate import handshake_error
from ._tts import TTS
from ._turns import AsyncTurnConnection
from ._version import __version__
from .errors import ConfigurationError, UsageError
from .observe import Endpoint, Observer
from .protocol.batch import Transcription
from .protocol.commands import (
    DEFAULT_BASE_URL,
    DEFAULT_CARTESIA_VERSION,
    ConnectParams,
    build_headers,
    build_ws_url,
    check_header_value,
)
from .protocol.retry import RetryPolicy

__all__ = ["AsyncCartesia", "ConnectionManager", "TurnConnectionManager", "connect"]

logger = logging.getLogger("cartesia_stt_async")

USER_AGENT = f"cartesia-stt-async/{__version__}"


_C = TypeVar("_C", AsyncConnection, AsyncTurnConnection)


class _Manager(HandlerMethods, Generic[_C]):
    """What both endpoints' managers share: the URL, the handshake, entering and leaving the
    block. ``_FACTORY`` is the endpoint's connection class."""

    _FACTORY: ClassVar[type[Any]]
    _ENDPOINT: ClassVar[Endpoint] = "manual"

    def __init__(self, config: SessionConfig, settings: _Settings) -> None:
        self._config: SessionConfig = config
        self._settings: _Settings = settings
        # The client's registry, plus this session's own credentials.
        self._secrets = settings.secrets.copy()
        self._secrets.add(*secrets_in(config.params.extra_query, config.extra_headers))
        self._url = self._url_for(config.params)
        self._handlers = Handlers()
        self._connection: BaseConnection[Any] | None = None
        self._trace: SessionTrace | None = None

    def _url_for(self, params: ConnectParams) -> str:
        return build_ws_url(
            params.query(),
            base_url=self._settings.base_url,
            websocket_base_url=self._settings.websocket_base_url,
            path=params.path,
        )

    @property
    def url(self) -> str:
        """The WebSocket URL this manager connects to, with any credential in it redacted."""
        return self._secrets.url(self._url)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} url={self.url!r}>"

    async def _handshake(
        self,
        extra_query: Mapping[str, object],
        extra_headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> Socket:
        """Open a socket with these extra query parameters and headers, within ``timeout``
        seconds (default ``open_timeout``)."""
        config, settings = self._config, self._settings
        params = config.params.with_extra_query(extra_query)
        url = self._url_for(params)
        trace = self._trace
        if trace is not None:
            trace.handshakes += 1
        headers = build_headers(
            api_key=settings.api_key,
            cartesia_version=settings.cartesia_version,
            user_agent=USER_AGENT,
            extra_headers={**settings.default_headers, **extra_headers},
        )
        secrets = self._secrets
        # on_reconnecting may bring new ones
        secrets.add(*secrets_in(params.extra_query, extra_headers))
        if timeout is None:
            timeout = config.open_timeout
        proxy: str | None = None
        try:
            # Resolved on every handshake (reconnects included), so the error can name it.
            proxy = ws_proxy(url, settings.proxy)
            secrets.add(*proxy_secrets(proxy))
            # websockets refuses an ``ssl`` argument with a ws:// URL; without one, for
            # wss:// it makes ssl.create_default_context() (the system trust store).
            context = ssl_for(url, settings.ssl)
            tls: dict[str, Any] = {"ssl": context} if context is not None else {}
            ws = await ws_connect(
                url,
                create_connection=Socket,  # server messages handled inline (see _socket.py)
                additional_headers=headers,
                user_agent_header=None,  # our User-Agent is in the headers
                compression=None,  # PCM does not deflate; skip the CPU cost
                open_timeout=timeout,
                close_timeout=min(config.close_timeout, 5.0),
                max_size=config.max_message_size,
                logger=RedactingLogger(
                    logging.getLogger("cartesia_stt_async.ws"),
                    secrets,
                    trace.fields if trace is not None else {},
                ),
                # websockets >= 15: an HTTP CONNECT (or SOCKS) tunnel; None: direct.
                proxy=proxy,
                **tls,
            )
            assert isinstance(ws, Socket)
            return ws
        except Exception as exc:
            # A retry's timeout is what was left of open_timeout: the message names the whole.
            error = handshake_error(exc, secrets.url(url), secrets, config.open_timeout, proxy)
            if error is None:
                raise
        raise error  # outside the except block: the foreign exception is not kept

    async def _open(self, trace: SessionTrace) -> Socket:
        """The first handshake of :meth:`enter`."""
        config = self._config
        try:
            ws = await first_socket(
                lambda left: self._handshake(
                    config.extra_query or {}, config.extra_headers or {}, left
                ),
                self._settings.retry,
                config.open_timeout,
                trace.log,
            )
        except BaseException as exc:
            trace.closed("failed" if isinstance(exc, Exception) else "closed", exc)
            raise
        trace.log.debug("connected to %s", self.url)
        return ws

    async def enter(self) -> _C:
        """Connect and return the live connection (close it yourself).

        Raises:
            UsageError: If this manager's previous connection is still open (one manager, one
                live session: call ``websocket(...)`` again for a second one).
            APIStatusError, APIConnectionError: The handshake was refused or failed.
        """
        if self._connection is not None and self._connection.state in ("open", "closing"):
            raise UsageError(
                "this manager's connection is still open: leave its `async with` (or close "
                "it) first, or call websocket(...) again for a second session"
            )
        trace = self._trace = SessionTrace(
            self._settings.hub,
            endpoint=self._ENDPOINT,
            model=self._config.params.model,
            url=self.url,
            now=asyncio.get_running_loop().time,
        )
        ws = await self._open(trace)
        conn: _C = self._FACTORY(
            ws,
            self._config,
            connector=self._handshake,
            handlers=self._handlers,
            secrets=self._secrets,
            trace=trace,
        )
        self._connection = conn
        return conn

    async def __aenter__(self) -> _C:
        return await self.enter()

    def __enter__(self) -> NoReturn:
        raise UsageError(
            "a session of AsyncCartesia is opened with `async with "
            f"{self._RESOURCE}.websocket(...) as conn` (inside `async def`); for a "
            "plain `with`, use the sync client, cartesia_stt_async.Cartesia"
        )

    _RESOURCE = "client.stt.manual_finalize"

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            conn, self._connection = self._connection, None
            await conn.__aexit__(exc_type, exc, tb)


class ConnectionManager(_Manager[AsyncConnection]):
    """Opens a manual-finalize session on ``async with`` (or :meth:`enter`), ends it on exit.

    Leaving the block normally sends ``close`` (unless already sent) and waits, bounded by
    ``close_timeout``, for ``done``, so no final transcript is lost. Leaving on an exception
    closes the socket promptly. Handlers registered with ``on``/``once`` before connecting
    stay registered on the connection.
    """

    _FACTORY = AsyncConnection


class TurnConnectionManager(_Manager[AsyncTurnConnection]):
    """Opens a turn-detection session on ``async with`` (or :meth:`enter`), ends it on exit.

    Leaving the block normally sends ``{"type":"close"}`` (unless already sent) and waits,
    bounded by ``close_timeout``, for the server to flush (an open turn gets its ``turn.end``)
    and close the socket. Leaving on an exception closes the socket promptly.
    """

    _RESOURCE = "client.stt.auto_finalize"

    _FACTORY = AsyncTurnConnection
    _ENDPOINT = "turns"


class _Settings:
    """Resolved client configuration (the API key is kept out of every repr)."""

    __slots__ = (
        "api_key",
        "base_url",
        "cartesia_version",
        "default_headers",
        "hub",
        "proxy",
        "retry",
        "secrets",
        "ssl",
        "websocket_base_url",
    )

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        websocket_base_url: str | None,
        cartesia_version: str,
        default_headers: Mapping[str, str] | None,
        ssl: object = None,
        proxy: object = None,
        max_retries: object = 2,
        observers: object = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("CARTESIA_API_KEY")
        if not key:
            raise ConfigurationError(
                "no API key: pass api_key=... or set CARTESIA_API_KEY "
                "(for offline work, run the local twin: cartesia_stt_async.twin.serve())"
            )
        if not isinstance(key, str):
            raise ConfigurationError(f"api_key must be a string, got {type(key).__name__}")
        if any(c in key for c in "\r\n\0"):
            # It would inject a header into every handshake.
            raise ConfigurationError("api_key contains a line break or NUL character")
        for name, value in (default_headers or {}).items():
            check_header_value(f"default_headers[{name!r}]", name, value)
        self.api_key = key
        self.base_url = base_url or os.environ.get("CARTESIA_BASE_URL") or DEFAULT_BASE_URL
        self.websocket_base_url = websocket_base_url
        self.cartesia_version = cartesia_version
        self.default_headers = dict(default_headers or {})
        # Fail early on a URL that cannot work.
        ws_url = build_ws_url((), base_url=self.base_url, websocket_base_url=websocket_base_url)
        self.ssl: SSLOption = check_ssl(ssl, (ws_url, self.base_url))
        self.proxy: ProxyOption = check_proxy(proxy)
        self.retry = RetryPolicy.of(max_retries)
        # The one registry of the client's secrets (sessions copy it, HTTP requests share it).
        self.secrets = Secrets.for_client(key, self.default_headers, self.proxy or None)
        self.hub = Hub.of(check_observers(observers), self.secrets)

    def manager(
        self, model: str, encoding: str, sample_rate: int, options: Mapping[str, Any]
    ) -> ConnectionManager:
        """A manager for one session (options checked now, before any I/O)."""
        config = SessionConfig.build(model, encoding, sample_rate, **options)
        return ConnectionManager(config, self)

    def turn_manager(
        self, model: str, encoding: str, sample_rate: int, options: Mapping[str, Any]
    ) -> TurnConnectionManager:
        """A manager for one turn-detection session (options checked now, before any I/O)."""
        config = TurnSessionConfig.build(model, encoding, sample_rate, **options)
        return TurnConnectionManager(config, self)


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
            **options: Any of :class:`~cartesia_stt_async.SessionOptions` (the query
                parameters, pacing, buffering, timeouts, reconnecting, ``final_order``, ...),
                each documented there with its default.

        Returns:
            A :class:`ConnectionManager`.

        Raises:
            UsageError: For an unknown option, or a value of the wrong type or range (all are
                checked here, before any I/O).
            ConfigurationError: For a base URL that cannot work.
        """
        return self._settings.manager(model, encoding, sample_rate, options)


class AutoFinalize:
    """``client.stt.auto_finalize``: realtime STT where the server detects turns
    (``/stt/turns/websocket``)."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings

    def websocket(
        self,
        *,
        model: str,
        encoding: str,
        sample_rate: int,
        **options: Unpack[TurnSessionOptions],
    ) -> TurnConnectionManager:
        """Prepare a turn-detection session (no network I/O until ``async with``).

        Args:
            model: ``"ink-2"``.
            encoding: ``pcm_s16le``, ``pcm_s32le``, ``pcm_f16le``, ``pcm_f32le``,
                ``pcm_mulaw`` or ``pcm_alaw``.
            sample_rate: Hz, matching the audio (16000 recommended; 8000 for mu-law/A-law).
            **options: Any of :class:`~cartesia_stt_async.TurnSessionOptions`: ``keyterm``,
                the four ``turn_*`` settings, ``fill_silence``, and the I/O options of
                ``manual_finalize`` (pacing, buffering, timeouts, reconnecting, ...).

        Returns:
            A :class:`TurnConnectionManager`.

        Raises:
            TurnConfigError: For a turn setting out of its range or order.
            UsageError: For an unknown option, or a value of the wrong type or range.
            ConfigurationError: For a base URL that cannot work.
        """
        return self._settings.turn_manager(model, encoding, sample_rate, options)


class STT:
    """``client.stt``: realtime sessions (``manual_finalize``) and whole files
    (:meth:`transcribe`)."""

    def __init__(self, settings: _Settings, http: HTTPClient) -> None:
        self.manual_finalize = ManualFinalize(settings)
        self.auto_finalize = AutoFinalize(settings)
        self._http = http

    async def transcribe(
        self, *, file: FileTypes, model: str, **options: Unpack[TranscribeOptions]
    ) -> Transcription:
        """Transcribe a whole audio file in one request (``POST /stt``), streamed from disk.

        Args:
            file: A path, ``bytes``, a binary file object, or a ``(filename, content[,
                content_type])`` tuple. A container file (WAV, MP3, FLAC, ...) or raw PCM
                (then give ``encoding`` and ``sample_rate``).
            model: ``"ink-whisper"`` (or a dated ``ink-whisper-YYYY-MM-DD``).
            language: The ISO-639-1 code of the speech (default: the server's, ``en``).
            timestamp_granularities: ``["word"]`` for per-word start and end times.
            encoding: Raw PCM only: ``pcm_s16le``, ``pcm_s32le``, ``pcm_f16le``,
                ``pcm_f32le``, ``pcm_mulaw`` or ``pcm_alaw`` (sent in the query string).
            sample_rate: Raw PCM only: Hz, 8000 to 48000.
            extra_headers: More request headers.
            extra_query: More query parameters.
            extra_body: More form fields.
            timeout: Seconds for the whole call, retries included (default: 60).

        Returns:
            The :class:`~cartesia_stt_async.Transcription`: ``text``, ``words``,
            ``duration``, ``language``, ``request_id``.

        Raises:
            UsageError: A bad or unknown argument, or a file that does not exist or is not
                binary (checked before any I/O, naming the value).
            APIStatusError: The server refused (``BadRequestError``, ``RateLimitError``, ...),
                with its message, ``error_code`` and ``request_id``, after any retries.
            APIConnectionError: The server could not be reached (``APITimeoutError`` when
                ``timeout`` ran out).
            ProtocolError: The answer is not a transcript.
        """
        check_options(options)
        return await transcribe(self._http, file=file, model=model, **options)


class AsyncCartesia:
    """The client: configure once, open sessions with ``client.stt.manual_finalize.websocket``.

    ``client.tts.generate(...)`` synthesizes speech over HTTP (``/tts/bytes``);
    ``client.access_token.create(...)`` mints short-lived tokens for browsers.

    Args:
        api_key: Defaults to ``CARTESIA_API_KEY``.
        base_url: Defaults to ``CARTESIA_BASE_URL``, else ``https://api.cartesia.ai``;
            ``http``/``ws`` map to ``ws://``, ``https``/``wss`` to ``wss://``; other schemes
            are a :class:`ConfigurationError`.
        websocket_base_url: A ``ws(s)://`` base that wins over ``base_url``.
        cartesia_version: The ``cartesia-version`` header (default ``2026-08-14``).
        default_headers: Extra handshake headers for every session.
        ssl: TLS for ``wss://`` sessions and ``https://`` requests: an
            :class:`ssl.SSLContext` (for example one that trusts a private CA:
            ``ssl.create_default_context(cafile="ca.pem")``), or ``None`` (default: the
            system's trust store, full verification). ``False`` is accepted only when every
            URL is plain ``http://``/``ws://``; certificate verification is never turned off.
            Used by every handshake, reconnects included, and by ``tts``/``access_token``.
        proxy: ``None`` (default): the proxy from the environment (``HTTPS_PROXY``,
            ``HTTP_PROXY``, ``NO_PROXY``, ... as websockets and aiohttp read them); an
            ``http://[user:password@]host:port`` URL: that proxy (an HTTP CONNECT tunnel) for
            every session and request; ``False``: never a proxy. Its credentials are
            redacted from every error, log and repr.
        max_retries: Retries of a failed call (default 2), or a
            :class:`~cartesia_stt_async.RetryPolicy` (retries and backoff). One policy for
            every call: ``stt.transcribe``, ``tts.generate``, ``access_token.create`` and the
            first handshake of each session retry 429, 5xx and network failures with jittered
            backoff and the server's ``Retry-After``; never another 4xx. Reconnects after a
            session's socket drops follow the session's own ``max_retries``.
        observers: Objects told about every session and HTTP call (usage, latency,
            reconnects, failures): :class:`~cartesia_stt_async.observe.Observer` subclasses,
            such as :class:`~cartesia_stt_async.otel.OpenTelemetryObserver` (see
            ``docs/observability.md``). Default: none, and no record is built.

    Raises:
        ConfigurationError: Without an API key, with an unusable URL, ``ssl=False`` with an
            ``https://``/``wss://`` URL, or an ``ssl``/``proxy`` value of the wrong type or
            form.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        websocket_base_url: str | None = None,
        cartesia_version: str = DEFAULT_CARTESIA_VERSION,
        default_headers: Mapping[str, str] | None = None,
        ssl: SSLOption = None,
        proxy: ProxyOption = None,
        max_retries: int | RetryPolicy = 2,
        observers: Iterable[Observer] | None = None,
    ) -> None:
        self._settings = _Settings(
            api_key,
            base_url,
            websocket_base_url,
            cartesia_version,
            default_headers,
            ssl,
            proxy,
            max_retries,
            observers,
        )
        self._http = HTTPClient(
            api_key=self._settings.api_key,
            base_url=self._settings.base_url,
            cartesia_version=cartesia_version,
            default_headers=self._settings.default_headers,
            ssl=self._settings.ssl,
            proxy=self._settings.proxy,
            secrets=self._settings.secrets,
            retry=self._settings.retry,
            hub=self._settings.hub,
        )
        self._stt = STT(self._settings, self._http)
        self._tts = TTS(self._http)
        self._access_token = AccessTokenResource(self._http)

    @property
    def stt(self) -> STT:
        """Speech to text: ``client.stt.manual_finalize.websocket(...)`` opens a realtime
        session (see :class:`ConnectionManager`)."""
        return self._stt

    @property
    def tts(self) -> TTS:
        """Speech synthesis over HTTP: ``await client.tts.generate(...)`` (``/tts/bytes``)."""
        return self._tts

    @property
    def access_token(self) -> AccessTokenResource:
        """Short-lived tokens for browsers: ``await client.access_token.create(...)``."""
        return self._access_token

    @property
    def base_url(self) -> str:
        """The HTTP base URL in use."""
        return self._settings.base_url

    def __repr__(self) -> str:
        base = self._settings.secrets.url(self._settings.base_url)
        return f"AsyncCartesia(base_url={base!r}, api_key='***')"

    async def close(self) -> None:
        """Release client resources: the HTTP connection pool of ``client.tts`` and
        ``client.access_token`` on the running event loop (a pool of another loop closes when
        that loop shuts down). The client stays usable: a later request opens a new pool.

        WebSocket sessions close themselves when their ``async with`` ends.
        """
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCartesia:
        return self

    def __enter__(self) -> NoReturn:
        raise UsageError(
            "AsyncCartesia is entered with `async with AsyncCartesia(...) as client` (inside "
            "`async def`); for a plain `with`, use the sync client, cartesia_stt_async.Cartesia"
        )

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        return None

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def connect(
    *,
    model: str,
    encoding: str,
    sample_rate: int,
    api_key: str | None = None,
    base_url: str | None = None,
    websocket_base_url: str | None = None,
    cartesia_version: str = DEFAULT_CARTESIA_VERSION,
    ssl: SSLOption = None,
    proxy: ProxyOption = None,
    observers: Iterable[Observer] | None = None,
    **options: Unpack[SessionOptions],
) -> ConnectionManager:
    """Shortcut: ``async with cartesia_stt_async.connect(model=..., ...) as conn``.

    Takes the arguments of ``client.stt.manual_finalize.websocket`` plus the client's
    ``api_key``, ``base_url``, ``websocket_base_url``, ``cartesia_version``, ``ssl``,
    ``proxy`` and ``observers`` (see :class:`AsyncCartesia`).
    """
    settings = _Settings(
        api_key,
        base_url,
        websocket_base_url,
        cartesia_version,
        None,
        ssl,
        proxy,
        observers=observers,
    )
    return settings.manager(model, encoding, sample_rate, options)
