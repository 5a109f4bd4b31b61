"""The one boundary where foreign exceptions become this package's errors.

websockets (the handshake and the socket), aiohttp (HTTP routes) and the OS raise their own
exception types; nothing else in the package catches them. Each function here *returns* our
error for a foreign one; the caller raises it outside its ``except`` block, so neither
``__cause__`` nor ``__context__`` keeps the foreign exception (it may hold a raw response with
secrets). Text is built only from status lines, server-provided fields and our own words, and
every secret in :class:`Secrets` is redacted from all of it, server-provided strings included
(a server may echo a key back).
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Final

import aiohttp
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
)
from websockets.exceptions import ProxyError as WSProxyError

from ._network import EnvProxy
from ._redact import Secrets, shown_proxy
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CartesiaSTTError,
    ConfigurationError,
    ConnectionClosedError,
    ProtocolError,
    ProxyError,
    TLSError,
    UsageError,
    error_for_status,
)
from .protocol.retry import parse_retry_after as _parse_retry_after

__all__ = [
    "TRUST_HINT",
    "closed_error",
    "ended_error",
    "file_error",
    "handshake_error",
    "http_error",
    "io_error",
    "parse_retry_after",
    "proxy_status_error",
    "status_error",
    "tls_error",
]


def parse_retry_after(raw: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date; ``None`` for a
    missing, malformed, negative, NaN or infinite value (the rule:
    :func:`~.protocol.retry.parse_retry_after`, given the clock here)."""
    return _parse_retry_after(raw, time.time() if now is None else now)


def status_error(
    status: int,
    reason: str,
    body: bytes | None,
    headers: Mapping[str, str],
    secrets: Secrets,
    what: str = "",
) -> APIStatusError:
    """Build the :class:`APIStatusError` for an HTTP status, reading Cartesia's JSON body.

    The body's ``message``, ``title``, ``error_code`` and ``request_id`` are used when present;
    a plain-text body is quoted (truncated). ``Retry-After`` (seconds or an HTTP-date) feeds
    ``retry_after`` for every status. Every string is redacted. ``what`` prefixes the fallback
    message (``"handshake refused with "``).
    """
    message = f"{what}HTTP {status} {reason}".rstrip()
    title = error_code = request_id = None
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        parsed = None
        # Redacted before it is cut: a key across the cut would no longer match whole.
        text = secrets.redact((body or b"").decode("utf-8", "replace").strip())
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
    return error_for_status(
        status,
        secrets.redact(message),
        title=secrets.optional(title),
        error_code=secrets.optional(error_code),
        request_id=secrets.optional(request_id),
        retry_after=parse_retry_after(headers.get("Retry-After")),
    )


def handshake_error(
    exc: BaseException,
    shown_url: str,
    secrets: Secrets,
    open_timeout: float | None,
    proxy: str | None = None,
) -> CartesiaSTTError | None:
    """Our error for what opening a WebSocket raised, or ``None`` for an unexpected type.

    Args:
        exc: What ``websockets.asyncio.client.connect`` raised.
        shown_url: The URL, redacted.
        secrets: Credentials to redact.
        open_timeout: The handshake's limit, for the timeout message.
        proxy: The proxy the connection went through (its credentials must be in
            ``secrets``), or ``None``. For the environment's (an ``EnvProxy``) a message
            also names its variable and how to bypass it.

    Returns:
        An :class:`APIStatusError` (typed by status) for a refused upgrade, a
        :class:`ProxyError` when the proxy refused the tunnel (websockets'
        ``InvalidProxyStatus``: ``.status_code`` 407, 403, ...) or could not be reached, a
        :class:`TLSError` when the certificate did not verify or TLS failed, a
        :class:`ConfigurationError` for a URL (or proxy URL) that cannot work, an
        :class:`APITimeoutError` after ``open_timeout``, an :class:`APIConnectionError` when
        the server could not be reached or broke the handshake.
    """
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return status_error(
            response.status_code,
            response.reason_phrase,
            bytes(response.body or b""),
            response.headers,
            secrets,
            what="handshake refused with ",
        )
    via = f" through the proxy {_shown(proxy)}" if proxy else ""
    if isinstance(exc, InvalidProxyStatus):
        response = exc.response
        return _proxy_refused(proxy, response.status_code, response.reason_phrase, secrets)
    if isinstance(exc, WSProxyError):
        # A malformed answer from an HTTP proxy, or a SOCKS proxy that failed. The text is
        # websockets' own words; it never holds the proxy URL.
        msg = secrets.redact(f"{type(exc).__name__}: {exc}")
        return ProxyError(f"could not connect to {shown_url}{via}: {msg}{_hint(proxy)}")
    if isinstance(exc, InvalidProxy):
        # Its text repeats the proxy URL (a password): use the reason only.
        shown = shown_proxy(exc.proxy)
        return ConfigurationError(f"invalid proxy {shown}: {secrets.redact(exc.msg)}")
    if isinstance(exc, InvalidURI):
        return ConfigurationError(f"invalid WebSocket URL: {secrets.url(exc.uri)}")
    if isinstance(exc, TimeoutError):
        return APITimeoutError(
            f"opening the WebSocket{via} took longer than {open_timeout} s{_hint(proxy)}"
        )
    if isinstance(exc, ssl.SSLError):
        return tls_error(exc, shown_url)
    if proxy and isinstance(exc, ConnectionRefusedError | socket.gaierror):
        # With a proxy, the one TCP connection made goes to the proxy.
        msg = secrets.redact(f"{type(exc).__name__}: {exc}")
        return ProxyError(f"could not reach the proxy {_shown(proxy)}: {msg}{_hint(proxy)}")
    if isinstance(exc, InvalidHandshake | OSError):
        msg = secrets.redact(f"{type(exc).__name__}: {exc}")
        return APIConnectionError(f"could not connect to {shown_url}{via}: {msg}")
    if isinstance(exc, ImportError) and "python-socks" in str(exc):
        return ConfigurationError(
            f"the proxy {_shown(proxy or '')} is a SOCKS proxy, which needs python-socks "
            "(pip install python-socks); or set proxy=False or an http:// proxy"
        )
    return None


# How to trust a private CA, as a Python caller does it (the CLI says it its own way).
TRUST_HINT: Final = (
    "If the server uses a private CA or a self-signed certificate, trust it with "
    "ssl=ssl.create_default_context(cafile='ca.pem') on the client, or SSL_CERT_FILE=ca.pem "
    "in the environment (verification is never turned off)"
)


def tls_error(exc: ssl.SSLError, shown_url: str) -> TLSError:
    """The :class:`TLSError` for a failed TLS handshake with ``shown_url``.

    A certificate that did not verify says why (``verify_message``: self-signed, unknown
    issuer, host name mismatch) and how to trust it. The ``ssl`` module's texts hold no
    credentials.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return TLSError(f"certificate verification failed for {shown_url}: {why}. {TRUST_HINT}")
    why = exc.reason or str(exc)
    return TLSError(
        f"the TLS handshake with {shown_url} failed: {why} (is the server speaking TLS on "
        "this port? use http:// / ws:// for a plain server)"
    )


def _shown(proxy: str) -> str:
    """The proxy as a message shows it (:func:`shown_proxy`: no credentials) and, for the
    environment's, where it came from: ``http://proxy:3128 (from HTTPS_PROXY)``."""
    shown = shown_proxy(proxy)
    return f"{shown} ({proxy.origin()})" if isinstance(proxy, EnvProxy) else shown


def _hint(proxy: str | None) -> str:
    """For the environment's proxy, how to go around it (``NO_PROXY=host`` or
    ``proxy=False``), to end a message; nothing for the option's (the user asked for it)."""
    return f"; {proxy.bypass()}" if isinstance(proxy, EnvProxy) else ""


def _proxy_refused(proxy: str | None, status: int, reason: str, secrets: Secrets) -> ProxyError:
    shown = _shown(proxy) if proxy else "the proxy"
    hint = ""
    if status == 407:
        hint = ": check the user name and password in the proxy URL"
    elif status == 403:
        hint = ": the proxy does not allow this destination"
    text = secrets.redact(f"HTTP {status} {reason}".rstrip())
    return ProxyError(
        f"the proxy {shown} refused the tunnel with {text}{hint}{_hint(proxy)}", status_code=status
    )


# Close codes our side sends when the server broke the WebSocket protocol itself.
_PROTOCOL_FAILURES: Final = frozenset({1002, 1007})


def closed_error(exc: ConnectionClosed, secrets: Secrets) -> ConnectionClosedError | ProtocolError:
    """The error for a socket that ended before ``done``.

    A connection that websockets failed itself because the server broke the WebSocket protocol
    (a reserved opcode, invalid UTF-8: close 1002 or 1007 sent first) is a
    :class:`ProtocolError`: a new socket would not help.
    """
    sent, rcvd = exc.sent, exc.rcvd
    we_failed_it = sent is not None and (rcvd is None or not exc.rcvd_then_sent)
    if we_failed_it and sent is not None and sent.code in _PROTOCOL_FAILURES:
        return ProtocolError(
            f"the server broke the WebSocket protocol: {secrets.redact(sent.reason)} "
            f"(closed with {sent.code})"
        )
    if rcvd is None and sent is not None and sent.code == 1009:
        # websockets failed the connection itself: a server message over max_message_size.
        # Not a drop: it would happen again on a new socket.
        return ConnectionClosedError(
            f"the connection was closed by the client (code {sent.code}, reason {sent.reason!r})",
            code=sent.code,
            reason=sent.reason,
        )
    if rcvd is None:
        return ConnectionClosedError(
            "the connection dropped without a close frame (1006)", code=1006
        )
    return ended_error(rcvd.code, rcvd.reason, secrets)


def file_error(path: str, exc: OSError, verb: str = "read") -> UsageError:
    """Our error for a local audio file that could not be opened or read: its name and the
    OS's reason (``strerror``), never the ``OSError`` itself."""
    return UsageError(f"cannot {verb} audio file {path!r}: {exc.strerror or type(exc).__name__}")


def io_error(what: str, exc: BaseException, secrets: Secrets) -> APIConnectionError:
    """Our error for an unexpected exception while ``what`` ("sending", "receiving"): a failed
    write, or a bug in our own handling. Its type and its text, redacted; never its ``repr``
    (which may hold arguments, a URL or a header the text leaves out)."""
    text = secrets.redact(str(exc))
    return APIConnectionError(
        f"{what} failed: {type(exc).__name__}" + (f": {text}" if text else "")
    )


def ended_error(code: int | None, reason: str | None, secrets: Secrets) -> ConnectionClosedError:
    """The error for a close frame from the server (its reason redacted)."""
    reason = secrets.redact(reason or "")
    return ConnectionClosedError(
        f"server closed the connection (code {code}" + (f", reason {reason!r})" if reason else ")"),
        code=code,
        reason=reason,
    )


def http_error(
    exc: BaseException,
    shown_url: str,
    secrets: Secrets,
    timeout: float,
    proxy: str | None = None,
) -> CartesiaSTTError | None:
    """Our error for what an HTTP request through aiohttp raised, or ``None``.

    Args:
        exc: What aiohttp raised.
        shown_url: The URL, redacted.
        secrets: Credentials to redact.
        timeout: The request's limit, for the timeout message.
        proxy: The proxy the request went through (its credentials in ``secrets``), or
            ``None``. For the environment's (an ``EnvProxy``) a message also names its
            variable and how to bypass it.

    Returns:
        :class:`APITimeoutError` after ``timeout``; :class:`TLSError` when the certificate
        did not verify or TLS failed (``ClientSSLError``); :class:`ProxyError` when the
        proxy refused the tunnel (``ClientHttpProxyError``, with its status) or could not be
        reached
        (``ClientProxyConnectionError``); :class:`APIConnectionError` when the server could
        not be reached.
    """
    via = f" through the proxy {_shown(proxy)}" if proxy else ""
    if isinstance(exc, TimeoutError):
        return APITimeoutError(f"{shown_url}{via} took longer than {timeout} s{_hint(proxy)}")
    if isinstance(exc, aiohttp.ClientSSLError):
        # ClientConnectorCertificateError (a certificate that did not verify) and
        # ClientConnectorSSLError both keep the ssl module's error as ``os_error``.
        cause = exc.os_error
        if isinstance(cause, ssl.SSLError):
            return tls_error(cause, shown_url)
        return TLSError(f"the TLS handshake with {shown_url} failed")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # Its text repeats the proxy URL: build ours from the status only.
        return _proxy_refused(proxy, exc.status, exc.message or "", secrets)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        msg = secrets.redact(f"{type(exc.os_error).__name__}: {exc.os_error}")
        shown = _shown(proxy) if proxy else "the proxy"
        return ProxyError(f"could not reach the proxy {shown}: {msg}{_hint(proxy)}")
    if isinstance(exc, aiohttp.ClientError):
        msg = secrets.redact(f"{type(exc).__name__}: {exc}")
        return APIConnectionError(f"could not reach {shown_url}{via}: {msg}")
    return None


def proxy_status_error(proxy: str | None, status: int, reason: str, secrets: Secrets) -> ProxyError:
    """The :class:`ProxyError` for a ``407`` answer to a plain ``http://`` request sent through
    a forwarding proxy (no tunnel: the proxy's refusal arrives as the response)."""
    return _proxy_refused(proxy, status, reason, secrets)
