"""The one boundary where foreign exceptions become this package's errors.

websockets (the handshake and the socket), aiohttp (HTTP routes) and the OS raise their own
exception types; nothing else in the package catches them. Every translation raises ours
``from None`` (the foreign exception may carry a raw response holding secrets), builds text only
from status lines, server-provided fields and our own words, and redacts every secret it knows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import aiohttp
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    ConnectionClosedError,
    error_for_status,
)
from .protocol.commands import redact

__all__ = ["closed_error", "handshake_errors", "http_errors", "status_error"]


def status_error(
    status: int,
    reason: str,
    body: bytes | None,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    what: str = "",
) -> APIStatusError:
    """Build the :class:`APIStatusError` for an HTTP status, reading Cartesia's JSON body.

    The body's ``message``, ``title``, ``error_code`` and ``request_id`` are used when present;
    a plain-text body is quoted (truncated). ``Retry-After`` feeds ``RateLimitError.retry_after``.
    Secrets are redacted. ``what`` prefixes the fallback message (``"handshake refused with "``).
    """
    message = f"{what}HTTP {status} {reason}".rstrip()
    title = error_code = request_id = None
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        parsed = None
        text = (body or b"").decode("utf-8", "replace").strip()
        if text:
            message = f"{message}: {text[:200]}"
    if isinstance(parsed, dict):
        if isinstance(parsed.get("message"), str):
            message = parsed["message"]
        title = parsed.get("title") if isinstance(parsed.get("title"), str) else None
        code = parsed.get("error_code")
        error_code = code if isinstance(code, str) else None
        rid = parsed.get("request_id")
        request_id = rid if isinstance(rid, str) else None
    request_id = request_id or headers.get("X-Request-Id")
    retry_after: float | None = None
    raw_retry = headers.get("Retry-After")
    if raw_retry is not None:
        try:
            retry_after = float(raw_retry)
        except ValueError:
            retry_after = None
    return error_for_status(
        status,
        redact(message, secrets),
        title=title,
        error_code=error_code,
        request_id=request_id,
        retry_after=retry_after,
    )


@contextmanager
def handshake_errors(
    shown_url: str, secrets: Sequence[str], open_timeout: float | None
) -> Iterator[None]:
    """Translate what opening a WebSocket raises.

    Raises:
        APIStatusError: The server refused the upgrade with an HTTP status (typed by status).
        ConfigurationError: The URL cannot work.
        APITimeoutError: The handshake took longer than ``open_timeout``.
        APIConnectionError: The server could not be reached or broke the handshake.
    """
    try:
        yield
    except InvalidStatus as exc:
        response = exc.response
        raise status_error(
            response.status_code,
            response.reason_phrase,
            response.body,
            response.headers,
            secrets,
            what="handshake refused with ",
        ) from None
    except InvalidURI as exc:
        raise ConfigurationError(f"invalid WebSocket URL: {redact(str(exc), secrets)}") from None
    except TimeoutError:
        raise APITimeoutError(f"opening the WebSocket took longer than {open_timeout} s") from None
    except (InvalidHandshake, OSError) as exc:
        msg = redact(f"{type(exc).__name__}: {exc}", secrets)
        raise APIConnectionError(f"could not connect to {shown_url}: {msg}") from None


def closed_error(exc: ConnectionClosed) -> ConnectionClosedError:
    """The error for a socket that ended before ``done``."""
    if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1009:
        # websockets failed the connection itself: a server message over max_message_size.
        # Not a drop: it would happen again on a new socket.
        return ConnectionClosedError(
            f"the connection was closed by the client (code {exc.sent.code}, "
            f"reason {exc.sent.reason!r})",
            code=exc.sent.code,
            reason=exc.sent.reason,
        )
    if exc.rcvd is None:
        return ConnectionClosedError(
            "the connection dropped without a close frame (1006)", code=1006
        )
    reason = exc.rcvd.reason
    return ConnectionClosedError(
        f"server closed the connection (code {exc.rcvd.code}"
        + (f", reason {reason!r})" if reason else ")"),
        code=exc.rcvd.code,
        reason=reason,
    )


@contextmanager
def http_errors(shown_url: str, secrets: Sequence[str], timeout: float) -> Iterator[None]:
    """Translate what an HTTP request through aiohttp raises.

    Raises:
        APITimeoutError: The request took longer than ``timeout``.
        APIConnectionError: The server could not be reached.
    """
    try:
        yield
    except TimeoutError:
        raise APITimeoutError(f"{shown_url} took longer than {timeout} s") from None
    except aiohttp.ClientError as exc:
        msg = redact(f"{type(exc).__name__}: {exc}", secrets)
        raise APIConnectionError(f"could not reach {shown_url}: {msg}") from None
