"""``Cartesia``: the synchronous client, the official SDK's sync surface on the async one.

Theory of operation. A :class:`Cartesia` client owns one background thread running an event
loop, reached through anyio's blocking portal (:class:`anyio.from_thread.BlockingPortal`).
Every blocking method here submits one coroutine of the async implementation
(:class:`~cartesia_stt_async.AsyncCartesia`, :class:`~cartesia_stt_async.AsyncConnection`)
to that loop and waits for its result in the calling thread, so the protocol, pacing,
reconnecting and error handling exist once, in the async code. All the connections of a client
share its thread. Exceptions cross the thread unchanged: the same classes as the async client.

Rules:

1. Ctrl-C (or any ``BaseException``) in the calling thread while it waits for a portal call
   cancels that call on the loop, waits (bounded) for the cancellation to finish, then
   propagates; leaving a ``with`` block on it closes the socket promptly (the async manager's
   exception path).
2. Event handlers registered with ``on``/``once`` run in the thread that called
   :meth:`SyncConnection.dispatch_events`, never on the loop thread, so a handler may call the
   connection's blocking methods (``connection.send("close")``). The async dispatcher keeps its
   rules (type handlers, then ``"event"`` handlers; an unhandled ``error`` event raises).
3. ``client.close()`` closes the client's open connections (at once, like
   :meth:`SyncConnection.close`), its HTTP pool, and stops its thread. Using the client again
   starts a new thread; connections of the closed thread raise :class:`ConnectionStateError`.
   A client that is never closed is closed, its open connections included, when it is
   garbage-collected (from another thread when that happens on a thread running an event
   loop, its own included) or at interpreter exit (the thread is a daemon thread, so it never
   holds up the exit). In a process forked from one that used the client, the client starts
   a new thread on its next call; connections opened before the fork raise
   :class:`ConnectionStateError` there (see :mod:`cartesia_stt_async._portal`).
4. Code running on the loop thread (an ``on_reconnecting`` callback, an ``async def`` handler)
   must not call the blocking methods: that would wait on itself; it raises :class:`UsageError`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, Unpack

from ._access_token import AccessToken
from ._batch import FileTypes, TranscribeOptions
from ._client import AsyncCartesia, ConnectionManager, TurnConnectionManager
from ._config import DEFAULT, Default, SessionOptions, TurnSessionOptions
from ._connection import AsyncConnection, BaseConnection
from ._network import ProxyOption, SSLOption
from ._portal import Portal, Runtime, SyncHandlerMethods, SyncHandlers
from ._tts import SpeechResponse
from ._turns import AsyncTurnConnection
from .errors import CartesiaSTTError, UsageError
from .observe import Observer
from .protocol.batch import Transcription
from .protocol.commands import DEFAULT_CARTESIA_VERSION
from .protocol.events import Event, TurnEvent, parse_event, parse_turn_event
from .protocol.outbox import ConnectionStats
from .protocol.retry import RetryPolicy
from .protocol.transcript import Transcript, Utterance
from .protocol.turns import Turn, TurnSettings, TurnTranscript

__all__ = [
    "Cartesia",
    "SyncAccessToken",
    "SyncConnection",
    "SyncConnectionManager",
    "SyncSpeechResponse",
    "SyncTurnConnection",
    "SyncTurnConnectionManager",
]

_A = TypeVar("_A", AsyncConnection, AsyncTurnConnection)
_Ev = TypeVar("_Ev", Event, TurnEvent)
_I = TypeVar("_I")


class SyncBaseConnection(SyncHandlerMethods, Generic[_A, _Ev]):
    """What both endpoints' sync connections share; every method blocks, running the async
    connection's method of the same name on the client's thread (same arguments, results and
    exceptions).

    Attributes:
        stats: Counters, see :class:`~cartesia_stt_async.ConnectionStats`.
    """

    def __init__(
        self,
        client: Cartesia,
        portal: Portal,
        aconn: _A,
        handlers: SyncHandlers,
    ) -> None:
        self._client = client  # keeps the client, and so its thread, alive
        self._portal = portal
        self._aconn: _A = aconn
        self._handlers = handlers
        self.stats: ConnectionStats = aconn.stats

    # -- introspection (read directly: plain attributes, safe from any thread) ---------------

    @property
    def state(self) -> Literal["open", "closing", "done", "failed", "closed"]:
        """``open``, ``closing`` (``close`` queued), ``done``, ``failed`` or ``closed``."""
        return self._aconn.state

    @property
    def request_id(self) -> str:
        """The current socket's session id; it changes when the connection reconnects."""
        return self._aconn.request_id

    @property
    def lag(self) -> float:
        """Seconds of audio queued but not yet written."""
        return self._aconn.lag

    @property
    def reconnecting(self) -> bool:
        """True while the socket is down and a new one is being opened."""
        return self._aconn.reconnecting

    @property
    def speed(self) -> float | None:
        """Default pacing of :meth:`send_audio`: 1.0 real time, ``None`` unpaced."""
        return self._aconn.speed

    @speed.setter
    def speed(self, value: float | None) -> None:
        async def set_speed() -> None:
            self._aconn.speed = value

        self._portal.call(set_speed)

    def __repr__(self) -> str:
        return repr(self._aconn).replace("<Async", "<Sync", 1)

    # -- sending ---------------------------------------------------------------------------

    def send_raw(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send one message as-is, like the official SDK: bytes as a binary frame, unpaced.

        A ``str`` is treated as a command (see :meth:`send`).

        Raises:
            InvalidAudioError: If the bytes are not a whole number of samples.
            InvalidCommandError: If a ``str`` is not a known command.
            ConnectionStateError: After ``close``, or once the client is closed.
        """
        self._portal.call(self._aconn.send_raw, data)

    def send(self, command: Any) -> None:
        """Send a command of the endpoint (see the async connection's ``send``).

        Raises:
            InvalidCommandError: For a command the endpoint does not have.
            ConnectionStateError: After ``close``.
        """
        self._portal.call(self._aconn.send, command)

    def send_audio(
        self, chunk: bytes | bytearray | memoryview, *, speed: float | Default | None = DEFAULT
    ) -> None:
        """Queue audio of any size; it goes out in exact frames, paced to real time.

        Returns once the audio is queued (waiting while ``max_buffered_ms`` of audio is
        already queued, with the default ``buffer_policy="block"``).

        Args:
            chunk: Raw audio in the session's encoding, any length.
            speed: Pacing for this audio: 1.0 real time, ``None`` unpaced. Defaults to the
                connection's ``speed``.

        Raises:
            InvalidAudioError: If ``chunk`` is not bytes-like.
            BufferFullError: With ``buffer_policy="raise"``, when the queue is full.
            ConnectionStateError: After ``close``.
            APIError, ConnectionClosedError: If the session has failed.
        """
        if isinstance(speed, Default):
            self._portal.call(self._aconn.send_audio, chunk)
        else:
            self._portal.call(self._aconn.send_audio, chunk, speed=speed)

    # -- receiving -------------------------------------------------------------------------

    def recv(self) -> _Ev:
        """Return the next server event, waiting for it.

        Raises:
            ConnectionClosedError: If the session is over and no event is left.
        """
        return self._portal.call(self._aconn.recv)  # type: ignore[return-value]

    def __iter__(self) -> Iterator[_Ev]:
        """Yield every server event until the session ends (on the manual endpoint, after
        ``done``).

        Raises:
            ConnectionClosedError: If the socket ended early with an error.
            ReconnectError: If reconnecting gave up.
        """
        return self._iterate(aiter(self._aconn))  # type: ignore[arg-type]

    def _iterate(self, items: AsyncIterator[_I]) -> Iterator[_I]:
        """Run an async iterator of the connection on the client's thread, item by item."""

        async def next_item() -> tuple[bool, _I | None]:
            try:
                return True, await anext(items)
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, item = self._portal.call(next_item)
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            # Finish the async iterator too when the loop is left early (break, Ctrl-C).
            closer = getattr(items, "aclose", None)
            if closer is not None:
                with contextlib.suppress(CartesiaSTTError, RuntimeError):
                    self._portal.call(closer)

    # -- handlers --------------------------------------------------------------------------

    def _apply(self, change: Callable[[Any], object]) -> None:
        async def run() -> None:
            change(self._aconn)

        self._portal.call(run)

    def dispatch_events(self) -> None:
        """Read events until the session ends, calling the registered handlers in this thread.

        Handlers for the event's type run first, then ``"event"`` handlers. An exception in a
        handler stops the dispatch and propagates here.

        Raises:
            APIError: For an ``error`` event with no handler for ``"error"`` or ``"event"``.
            ConnectionClosedError: If the socket ended before ``done`` with an error.
        """
        if self._handlers.dispatching:
            raise UsageError("dispatch_events() is already running for this connection")
        self._handlers.dispatching = True
        try:
            future, finished = self._portal.submit(self._aconn.dispatch_events)
            self._portal.wait(future, finished, lambda: self._handlers.pump(future))
        finally:
            self._handlers.dispatching = False

    # -- closing ---------------------------------------------------------------------------

    def finish(self, timeout: float | None = None) -> None:
        """End the session gracefully: send ``close`` (unless sent) and wait for ``done``.

        The sync form of :meth:`AsyncConnection.aclose <cartesia_stt_async.AsyncConnection.aclose>`
        (what leaving ``with`` normally does): every final transcript arrives first.

        Args:
            timeout: Seconds to wait for ``done`` (default: the connection's
                ``close_timeout``).

        Raises:
            APITimeoutError: If ``done`` did not arrive in time (the socket is then closed).
            CartesiaSTTError: The reason the session failed earlier, if not yet reported.
        """
        self._portal.call(self._aconn.aclose, timeout)

    def close(self, *, code: int = 1000, reason: str = "") -> None:
        """Close the socket now, like the official SDK (no ``close`` command, no draining).

        Use :meth:`finish` (or leave ``with`` normally) to keep every final transcript.
        """
        if self._portal.stopped:
            return  # the client's close already closed it
        self._portal.call(self._aconn.close, code=code, reason=reason)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._portal.stopped:  # else the client's close already closed it
            self._portal.call(self._aconn.__aexit__, exc_type, exc, tb)


class SyncConnection(SyncBaseConnection[AsyncConnection, Event]):
    """A live manual-finalize session of the sync client; every method blocks.

    The official SDK's sync surface: ``send_raw``, ``send("finalize" | "close")``, ``recv``,
    ``for event in connection``, ``close``, ``on``/``once``/``off``/``dispatch_events``.
    The idiomatic surface: ``send_audio``, ``finalize``, ``transcript``. Each method runs the
    :class:`~cartesia_stt_async.AsyncConnection` method of the same name on the client's
    thread, with the same arguments, results and exceptions.

    Attributes:
        stats: Counters, see :class:`~cartesia_stt_async.ConnectionStats`.
    """

    @property
    def transcript(self) -> Transcript:
        """The accumulator: ``.text`` (final deltas, verbatim), ``.interim``, ``.utterances``."""
        return self._aconn.transcript

    def send(self, command: str) -> None:
        """Send ``"finalize"`` or ``"close"`` (the legacy ``"done"`` also works).

        ``finalize`` here does not wait for its ``flush_done``; :meth:`finalize` does.

        Raises:
            InvalidCommandError: For any other string.
            ConnectionStateError: After ``close``.
        """
        self._portal.call(self._aconn.send, command)

    def finalize(self, timeout: float | None = 30.0) -> Utterance:
        """Send any held-back audio and ``finalize``; wait for the matching ``flush_done``.

        Args:
            timeout: Seconds to wait for the answer; ``None`` waits forever.

        Returns:
            The :class:`~cartesia_stt_async.Utterance`: its final text, words and latency.

        Raises:
            APIError: If the server reports an error.
            APITimeoutError: If no answer came in time.
            ConnectionClosedError: If the socket closed first.
            ConnectionStateError: After ``close``.
        """
        return self._portal.call(self._aconn.finalize, timeout)

    @staticmethod
    def parse_event(data: bytes | str) -> Event:
        """Decode one server message (the same as :func:`cartesia_stt_async.parse_event`).

        Raises:
            ProtocolError: If ``data`` is not a well-formed server event.
        """
        return parse_event(data)


class SyncTurnConnection(SyncBaseConnection[AsyncTurnConnection, TurnEvent]):
    """A live turn-detection session of the sync client; every method blocks.

    The official SDK's sync surface: ``send_raw``, ``send({"type": "close"})``,
    ``send({"type": "config", "turn": {...}})``, ``recv``, ``for event in connection``,
    ``close``, ``on``/``once``/``off``/``dispatch_events``. The idiomatic surface:
    ``send_audio``, ``configure``, ``turns``, ``transcript``. Each method runs the
    :class:`~cartesia_stt_async.AsyncTurnConnection` method of the same name on the client's
    thread.

    Attributes:
        stats: Counters, see :class:`~cartesia_stt_async.ConnectionStats`.
    """

    @property
    def transcript(self) -> TurnTranscript:
        """The ended turns and their ``turn.end`` texts joined verbatim."""
        return self._aconn.transcript

    @property
    def settings(self) -> TurnSettings:
        """The turn settings in effect."""
        return self._aconn.settings

    def configure(
        self,
        *,
        start_threshold: float | None = None,
        eager_end_threshold: float | None = None,
        end_threshold: float | None = None,
        end_timeout_ms: float | None = None,
    ) -> TurnSettings:
        """Check new turn settings and send ``config`` (see
        :meth:`AsyncTurnConnection.configure <cartesia_stt_async.AsyncTurnConnection.configure>`).

        Raises:
            TurnConfigError: Naming the bad value.
            ConnectionStateError: After ``close``.
        """
        return self._portal.call(
            lambda: self._aconn.configure(
                start_threshold=start_threshold,
                eager_end_threshold=eager_end_threshold,
                end_threshold=end_threshold,
                end_timeout_ms=end_timeout_ms,
            )
        )

    def turns(self) -> Iterator[Turn]:
        """Yield every ended turn once, in order, until the session ends (see
        :meth:`AsyncTurnConnection.turns <cartesia_stt_async.AsyncTurnConnection.turns>`)."""
        return self._iterate(self._aconn.turns())

    @staticmethod
    def parse_event(data: bytes | str) -> TurnEvent:
        """Decode one server message of this endpoint.

        Raises:
            ProtocolError: If ``data`` is not a well-formed server event.
        """
        return parse_turn_event(data)


_S = TypeVar("_S", "SyncConnection", "SyncTurnConnection")


class _SyncManager(SyncHandlerMethods, Generic[_S]):
    """What both endpoints' sync managers share: the URL, entering and leaving the block.
    ``_FACTORY`` is the endpoint's sync connection class."""

    _FACTORY: ClassVar[type[Any]]

    def __init__(self, client: Cartesia, manager: ConnectionManager | TurnConnectionManager):
        self._client = client
        self._manager = manager
        self._handlers = SyncHandlers()
        self._entered: Portal | None = None

    @property
    def url(self) -> str:
        """The WebSocket URL this manager connects to, with any secret in it redacted."""
        return self._manager.url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} url={self.url!r}>"

    def _apply(self, change: Callable[[Any], object]) -> None:
        change(self._manager)

    def enter(self) -> _S:
        """Connect and return the live connection (close it yourself).

        Raises:
            AuthenticationError, RateLimitError, ...: The handshake was refused.
            APIConnectionError: The server could not be reached.
        """
        portal = self._client._runtime.portal()
        manager = self._manager

        async def enter() -> BaseConnection[Any]:
            aconn = await manager.enter()
            portal.track(aconn)  # the client's close (or collection) closes it
            return aconn

        conn: _S = self._FACTORY(self._client, portal, portal.call(enter), self._handlers)
        self._entered = portal
        return conn

    def __enter__(self) -> _S:
        return self.enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._entered is None:
            return
        portal, self._entered = self._entered, None
        if portal.stopped:
            return  # the client was closed inside the block: the socket is already closed
        portal.call(self._manager.__aexit__, exc_type, exc, tb)


class SyncConnectionManager(_SyncManager["SyncConnection"]):
    """Opens a session on ``with`` (or :meth:`enter`) and ends it on exit.

    Leaving the block normally sends ``close`` (unless already sent) and waits, bounded by
    ``close_timeout``, for ``done``, so no final transcript is lost. Leaving on an exception
    (Ctrl-C included) closes the socket promptly.
    """

    _FACTORY = SyncConnection


class SyncTurnConnectionManager(_SyncManager["SyncTurnConnection"]):
    """Opens a turn-detection session on ``with`` (or :meth:`enter`) and ends it on exit.

    Leaving the block normally sends ``{"type":"close"}`` and waits, bounded by
    ``close_timeout``, for the server to flush and close. Leaving on an exception closes the
    socket promptly.
    """

    _FACTORY = SyncTurnConnection


class SyncSpeechResponse:
    """The audio of one ``client.tts.generate(...)`` call (already received in full).

    Attributes:
        headers: The HTTP response headers (case-insensitive names).
        request_id: The ``X-Request-Id`` response header, if any.
        content_type: The response's content type.
    """

    def __init__(self, client: Cartesia, response: SpeechResponse, content: bytes) -> None:
        self._client = client
        self._response = response
        self._content = content
        self.headers = response.headers
        self.request_id = response.request_id
        self.content_type = response.content_type

    def __repr__(self) -> str:
        return repr(self._response).replace("<SpeechResponse", "<SyncSpeechResponse", 1)

    def read(self) -> bytes:
        """The audio bytes: raw PCM, or a whole WAV file for ``container: "wav"``."""
        return self._content

    def iter_bytes(self, chunk_size: int = 4096) -> Iterator[bytes]:
        """The audio in chunks of ``chunk_size`` bytes.

        Raises:
            UsageError: If ``chunk_size`` is not positive.
        """
        chunks = self._response.iter_bytes(chunk_size)

        async def collect() -> list[bytes]:
            return [chunk async for chunk in chunks]

        yield from self._client._runtime.portal().call(collect)

    def write_to_file(self, path: str | Path) -> None:
        """Write the audio to ``path``."""
        self._client._runtime.portal().call(self._response.write_to_file, path)


class SyncTTS:
    """``client.tts`` of the sync client: ``client.tts.generate(...).read()``."""

    def __init__(self, client: Cartesia) -> None:
        self._client = client

    def generate(
        self,
        *,
        model_id: str,
        transcript: str,
        voice: str | Mapping[str, Any],
        output_format: Mapping[str, Any],
        language: str | None = None,
        **extra_body: Any,
    ) -> SyncSpeechResponse:
        """Synthesize ``transcript`` over HTTP (``POST /tts/bytes``); ``.read()`` is the audio.

        Args:
            model_id: For example ``"sonic-latest"``.
            transcript: The text to speak.
            voice: A voice id, or ``{"mode": "id", "id": ...}``.
            output_format: ``{"container": "raw" | "wav", "encoding": ..., "sample_rate": ...}``.
            language: Language code (for example ``"en"``).
            **extra_body: More request fields, sent as is.

        Returns:
            A :class:`SyncSpeechResponse`.

        Raises:
            UsageError: For an empty transcript or a malformed ``output_format``.
            APIStatusError: The server refused (``BadRequestError``, ``AuthenticationError``, ...).
            APIConnectionError: The server could not be reached.
        """
        atts = self._client._runtime.aclient.tts

        async def generate() -> tuple[SpeechResponse, bytes]:
            response = await atts.generate(
                model_id=model_id,
                transcript=transcript,
                voice=voice,
                output_format=output_format,
                language=language,
                **extra_body,
            )
            return response, await response.read()

        response, content = self._client._runtime.portal().call(generate)
        return SyncSpeechResponse(self._client, response, content)


class SyncAccessToken:
    """``client.access_token`` of the sync client: ``client.access_token.create(...)``."""

    def __init__(self, client: Cartesia) -> None:
        self._client = client

    def create(
        self, *, grants: Mapping[str, bool] | None = None, expires_in: int | None = None
    ) -> AccessToken:
        """Mint a short-lived access token (see ``AsyncCartesia().access_token.create``).

        Raises:
            UsageError: Bad ``grants`` or ``expires_in`` (checked before any I/O).
            APIStatusError: The server refused.
            APIConnectionError: The server could not be reached.
        """
        resource = self._client._runtime.aclient.access_token
        return self._client._runtime.portal().call(
            resource.create, grants=grants, expires_in=expires_in
        )


class SyncManualFinalize:
    """``client.stt.manual_finalize`` of the sync client."""

    def __init__(self, client: Cartesia) -> None:
        self._client = client

    def websocket(
        self,
        *,
        model: str,
        encoding: str,
        sample_rate: int,
        **options: Unpack[SessionOptions],
    ) -> SyncConnectionManager:
        """Prepare a manual-finalize session (no network I/O until ``with``).

        Takes the arguments of ``AsyncCartesia().stt.manual_finalize.websocket(...)``
        (:class:`~cartesia_stt_async.SessionOptions`). An ``on_reconnecting`` callback runs on
        the client's thread.

        Returns:
            A :class:`SyncConnectionManager`.

        Raises:
            UsageError: For a parameter of the wrong type or range.
        """
        manager = self._client._runtime.aclient.stt.manual_finalize.websocket(
            model=model, encoding=encoding, sample_rate=sample_rate, **options
        )
        return SyncConnectionManager(self._client, manager)


class SyncAutoFinalize:
    """``client.stt.auto_finalize`` of the sync client."""

    def __init__(self, client: Cartesia) -> None:
        self._client = client

    def websocket(
        self,
        *,
        model: str,
        encoding: str,
        sample_rate: int,
        **options: Unpack[TurnSessionOptions],
    ) -> SyncTurnConnectionManager:
        """Prepare a turn-detection session (no network I/O until ``with``).

        Takes the arguments of ``AsyncCartesia().stt.auto_finalize.websocket(...)``
        (:class:`~cartesia_stt_async.TurnSessionOptions`).

        Returns:
            A :class:`SyncTurnConnectionManager`.

        Raises:
            TurnConfigError: For a turn setting out of its range or order.
            UsageError: For a parameter of the wrong type or range.
        """
        manager = self._client._runtime.aclient.stt.auto_finalize.websocket(
            model=model, encoding=encoding, sample_rate=sample_rate, **options
        )
        return SyncTurnConnectionManager(self._client, manager)


class SyncSTT:
    """``client.stt`` of the sync client."""

    def __init__(self, client: Cartesia) -> None:
        self.manual_finalize = SyncManualFinalize(client)
        self.auto_finalize = SyncAutoFinalize(client)
        self._client = client

    def transcribe(
        self, *, file: FileTypes, model: str, **options: Unpack[TranscribeOptions]
    ) -> Transcription:
        """Transcribe a whole audio file in one request (see
        ``AsyncCartesia().stt.transcribe``, whose arguments, result and errors these are).
        """
        stt = self._client._runtime.aclient.stt
        return self._client._runtime.portal().call(
            stt.transcribe, file=file, model=model, **options
        )


class Cartesia:
    """The synchronous client, with the official SDK's sync surface.

    ``client.stt.manual_finalize.websocket(...)`` opens sessions (``with ... as connection``),
    ``client.stt.transcribe(...)`` transcribes a whole file,
    ``client.tts.generate(...).read()`` synthesizes speech, ``client.access_token.create(...)``
    mints browser tokens. Calls run the async client on one
    background thread per client (started on first use); ``client.close()`` or
    ``with Cartesia(...) as client:`` stops it.

    Args:
        api_key: Defaults to ``CARTESIA_API_KEY``.
        base_url: Defaults to ``CARTESIA_BASE_URL``, else ``https://api.cartesia.ai``.
        websocket_base_url: A ``ws(s)://`` base that wins over ``base_url``.
        cartesia_version: The ``cartesia-version`` header.
        default_headers: Extra headers for every session and request.
        ssl: An :class:`ssl.SSLContext` for ``wss://``/``https://`` (e.g. trusting a private
            CA), ``None`` (default: system verification), or ``False`` for plain URLs only
            (see :class:`AsyncCartesia`).
        proxy: A proxy URL, ``None`` (default: from the environment) or ``False`` (never).
        max_retries: Retries of a failed call, or a :class:`RetryPolicy` (see
            :class:`AsyncCartesia`).
        observers: Objects told about every session and HTTP call (see
            :class:`AsyncCartesia`); they run on the client's loop thread.

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
        aclient = AsyncCartesia(
            api_key=api_key,
            base_url=base_url,
            websocket_base_url=websocket_base_url,
            cartesia_version=cartesia_version,
            default_headers=default_headers,
            ssl=ssl,
            proxy=proxy,
            max_retries=max_retries,
            observers=observers,
        )
        self._runtime = Runtime(aclient)
        self._finalizer = weakref.finalize(self, self._runtime.finalize)
        self._stt = SyncSTT(self)
        self._tts = SyncTTS(self)
        self._access_token = SyncAccessToken(self)

    @property
    def stt(self) -> SyncSTT:
        """Speech to text: ``client.stt.manual_finalize.websocket(...)`` opens a realtime
        session (``with ... as connection``)."""
        return self._stt

    @property
    def tts(self) -> SyncTTS:
        """Speech synthesis over HTTP: ``client.tts.generate(...).read()``."""
        return self._tts

    @property
    def access_token(self) -> SyncAccessToken:
        """Short-lived tokens for browsers: ``client.access_token.create(...)``."""
        return self._access_token

    @property
    def base_url(self) -> str:
        """The HTTP base URL in use."""
        return self._runtime.aclient.base_url

    def __repr__(self) -> str:
        return repr(self._runtime.aclient).replace("AsyncCartesia(", "Cartesia(", 1)

    def close(self) -> None:
        """Close open connections at once, the HTTP pool, and stop the client's thread.

        Raises:
            UsageError: When called on the client's own thread (from an async handler).
        """
        self._runtime.close()

    def __enter__(self) -> Cartesia:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
