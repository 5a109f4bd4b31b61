"""The one exception tree of ``cartesia_stt_async``.

Every exception this package raises on purpose derives from :class:`CartesiaSTTError`::

    CartesiaSTTError
    ├── ConfigurationError            the client was configured wrongly (no API key, bad URL)
    ├── UsageError                    you called the SDK wrongly ("local" errors)
    │   ├── InvalidAudioError         bytes that cannot be audio of the session's encoding,
    │   │                             or a WAV file whose header does not match the session
    │   ├── InvalidCommandError       a text command other than ``finalize`` / ``close``
    │   │                             (or, on the turn endpoint, ``close`` / ``config``)
    │   ├── TurnConfigError           a turn-detection threshold out of its range or order
    │   │                             (``.name``, ``.value``)
    │   └── ConnectionStateError      sending after ``close``, using a connection not yet open
    ├── APIConnectionError            the network failed us (could not connect, dropped)
    │   ├── ConnectionClosedError     the socket closed before the session ended cleanly
    │   │   └── ReconnectError        ... and reconnecting gave up (``.attempts``)
    │   ├── APITimeoutError           a bounded wait ran out (also a builtin TimeoutError)
    │   ├── TLSError                  the server's certificate failed verification, or the TLS
    │   │                             handshake failed (never retried: pass ``ssl=context``)
    │   └── ProxyError                the proxy refused the tunnel (``.status_code``: 407, 403)
    │                                 or could not be reached
    ├── BufferFullError               the send queue is full (``buffer_policy="raise"``)
    ├── ProtocolError                 the server broke the wire contract (malformed JSON,
    │                                 binary frames) ("remote" errors)
    └── APIError                      the server reported an error (status, title, message)
        └── APIStatusError            ... with an HTTP status (a refused handshake or HTTP call)
            ├── BadRequestError           400
            ├── AuthenticationError       401
            ├── PermissionDeniedError     403
            ├── NotFoundError             404
            ├── ConflictError             409
            ├── UnprocessableEntityError  422 (for example, audio the server cannot decode)
            ├── RateLimitError            429 (every status error has ``retry_after``)
            └── ServerError               5xx

A server ``error`` event is an :class:`APIError` when raised by ``finalize()`` or ``stream()``; the
``async for event in conn`` iterator yields it as an event instead, as the official SDK does.

Any other exception escaping this package is a bug. No exception text or attribute ever contains
a credential the client knows (the API key, an access token in a header or the query string):
messages are built from status lines, server-provided fields and our own words, all redacted,
and a translated foreign exception is never kept as ``__cause__`` or ``__context__``.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BufferFullError",
    "CartesiaSTTError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionClosedError",
    "ConnectionStateError",
    "InvalidAudioError",
    "InvalidCommandError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProxyError",
    "RateLimitError",
    "ReconnectError",
    "ServerError",
    "TLSError",
    "TurnConfigError",
    "UnprocessableEntityError",
    "UsageError",
    "error_for_status",
]


class CartesiaSTTError(Exception):
    """Root of every error raised by ``cartesia_stt_async``."""


class ConfigurationError(CartesiaSTTError):
    """The client was configured wrongly, e.g. no API key or an unusable base URL."""


class UsageError(CartesiaSTTError):
    """The SDK was called wrongly: wrong types, wrong order, impossible values."""


class TurnConfigError(UsageError):
    """A turn-detection setting is out of its documented range, or the thresholds are not
    ordered start > eager end > end.

    Attributes:
        name: The setting at fault (``"turn_end_threshold"``, ...).
        value: The value given.
    """

    def __init__(self, message: str, *, name: str, value: object) -> None:
        super().__init__(message)
        self.name = name
        self.value = value


class InvalidAudioError(UsageError):
    """Audio that cannot belong to this session: misaligned byte counts or a mismatched WAV."""


class InvalidCommandError(UsageError):
    """A text command the protocol does not know (only ``finalize`` and ``close`` exist)."""


class ConnectionStateError(UsageError):
    """The connection is not in a state that allows this call (e.g. audio after ``close``)."""


class APIConnectionError(CartesiaSTTError):
    """The network failed: the server could not be reached or the connection dropped."""


class ConnectionClosedError(APIConnectionError):
    """The WebSocket closed before the session ended cleanly.

    Attributes:
        code: The close code received from the server, or 1006 when the connection dropped
            without a close frame.
        reason: The close reason sent by the server ("" when none).
        unanswered: The turns (utterance indices, oldest first) whose text the server still
            owed when the session ended: finalized turns without their answer, then the open
            turn if audio was sent for it. Empty when nothing was lost. A close with any code,
            1000 included, is a failure when this is not empty.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        reason: str = "",
        unanswered: tuple[int, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.unanswered = unanswered


class ReconnectError(ConnectionClosedError):
    """The socket dropped and reconnecting gave up: the retry budget ran out without progress
    (a connection that dies right after every handshake), or ``on_reconnecting`` aborted.

    The cause (``__cause__``) is the last failure: a close, or a refused handshake.

    Attributes:
        attempts: Reconnect attempts made in a row without progress.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        reason: str = "",
        attempts: int = 0,
        unanswered: tuple[int, ...] = (),
    ) -> None:
        super().__init__(message, code=code, reason=reason, unanswered=unanswered)
        self.attempts = attempts


class BufferFullError(CartesiaSTTError):
    """``send_audio`` found ``max_buffered_ms`` of audio already waiting, with
    ``buffer_policy="raise"``. Nothing of the rejected chunk was queued."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """A bounded wait (connect, finalize, close) ran out of time."""


class TLSError(APIConnectionError):
    """TLS failed: the server's certificate did not verify (self-signed, a private CA the
    client does not trust, a wrong host name), or the TLS handshake itself failed.

    Not transient: the reconnect supervisor never retries it. To trust a private CA, pass
    ``ssl=ssl.create_default_context(cafile=...)`` to the client.
    """


class ProxyError(APIConnectionError):
    """The proxy in use refused to open a tunnel, or could not be reached.

    The message names the proxy, with any credentials in its URL redacted.

    Attributes:
        status_code: The proxy's HTTP status (407: proxy authentication required, 403:
            forbidden), or ``None`` when the proxy could not be reached or did not answer in
            HTTP. A 403 or 407 is never retried by the reconnect supervisor.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ProtocolError(CartesiaSTTError):
    """The server sent something the wire contract does not allow (malformed JSON, binary data)."""


class APIError(CartesiaSTTError):
    """The server reported an error.

    Attributes:
        status_code: HTTP-like status (400, 401, 429, 500, ...) or ``None`` when not given.
        title: Short title from the server ("Invalid model"), or ``None``.
        message: Human-readable message from the server.
        error_code: Machine-readable code ("model_not_found"), or ``None``.
        request_id: The session's request id, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        title: str | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        parts = [p for p in (str(status_code) if status_code is not None else None, title) if p]
        head = " ".join(parts)
        super().__init__(f"{head}: {message}" if head else message)
        self.status_code = status_code
        self.title = title
        self.message = message
        self.error_code = error_code
        self.request_id = request_id


class APIStatusError(APIError):
    """The server refused a request (the WebSocket handshake, or an HTTP call) with a status.

    Attributes:
        retry_after: Seconds the server asked us to wait (``Retry-After``, as seconds or an
            HTTP-date), or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        title: str | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            title=title,
            error_code=error_code,
            request_id=request_id,
        )
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """HTTP 400: the request parameters were rejected."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing or invalid."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the key is valid but not allowed to use this endpoint."""


class NotFoundError(APIStatusError):
    """HTTP 404: no such endpoint (check ``base_url``)."""


class ConflictError(APIStatusError):
    """HTTP 409: the request conflicts with the server's state (the official SDK's name)."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422: the request was understood but cannot be processed, for example a file whose
    audio cannot be decoded."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many concurrent sessions (``retry_after`` says when to try again)."""


class ServerError(APIStatusError):
    """HTTP 5xx: the server failed."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_for_status(
    status_code: int,
    message: str,
    *,
    title: str | None = None,
    error_code: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass that matches an HTTP status code.

    Args:
        status_code: The HTTP status of the refused handshake.
        message: What went wrong, in words (never containing credentials).
        title: Optional short title.
        error_code: Optional machine-readable code.
        request_id: Optional request id.
        retry_after: Seconds the server asked to wait (``Retry-After``).

    Returns:
        An exception instance, not raised.
    """
    cls: type[APIStatusError]
    cls = ServerError if status_code >= 500 else _STATUS_CLASSES.get(status_code, APIStatusError)
    return cls(
        message,
        status_code=status_code,
        title=title,
        error_code=error_code,
        request_id=request_id,
        retry_after=retry_after,
    )
