"""Redaction: the one home of every rule about secrets in text we show.

A client knows credentials (the API key, access tokens in a header or the query string,
credentials in ``default_headers``, a proxy's user name and password) and must never show them:
not in an exception, a log record, a ``repr`` or a URL it prints. Everything that decides what is
a secret, and everything that removes one, lives here:

* :class:`Secrets`: the registry of one client (or session), built by :meth:`Secrets.for_client`
  from the client's settings, once, and extended per session (:func:`secrets_in`, proxies
  resolved per handshake: :func:`proxy_secrets`).
* :func:`redact` and :func:`redact_url`: text and URLs with every known secret, and the value of
  every credential-named query parameter (:func:`is_secret_name`), replaced by ``***``.
* :func:`shown_proxy`: a proxy URL as a message may show it (never its credentials: a short
  user name cannot be redacted as a substring, so messages name a proxy only through this).
* :class:`RedactingLogger`: the logger handed to websockets, which logs every handshake header
  and frame at DEBUG.

Messages built from a foreign exception go through ``_translate`` (the one boundary for foreign
exceptions), which redacts with a :class:`Secrets`.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

from websockets.frames import Frame, Opcode

from ._network import with_scheme

__all__ = [
    "RedactingLogger",
    "Secrets",
    "is_secret_name",
    "proxy_secrets",
    "redact",
    "redact_url",
    "secrets_in",
    "shown_proxy",
]


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each non-trivial secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


_SECRET_WORDS: Final = ("auth", "token", "key", "secret", "password", "cookie", "signature")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or header of this name carries a credential."""
    lower = name.lower()
    return any(word in lower for word in _SECRET_WORDS)


def secrets_in(
    query: Mapping[str, object] | Iterable[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """The credential values among query parameters and headers (see :func:`is_secret_name`).

    ``Bearer <token>`` values also yield the bare token.
    """
    found: list[str] = []
    pairs = query.items() if isinstance(query, Mapping) else (query or ())
    for key, value in (*pairs, *(headers or {}).items()):
        if not isinstance(key, str) or not is_secret_name(key):
            continue
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if isinstance(v, str) and v:
                found.append(v)
                if v[:7].lower() == "bearer ":
                    found.append(v[7:].strip())
    return found


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """``url`` with the values of credential query parameters (and ``secrets``) as ``***``."""
    parts = urlsplit(url)
    if parts.query:
        pairs = [
            (k, "***" if is_secret_name(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        url = urlunsplit(parts._replace(query=urlencode(pairs, quote_via=quote, safe="*")))
    return redact(url, secrets)


class Secrets:
    """The credentials a client or session knows, to redact from every text it shows."""

    __slots__ = ("_values",)

    def __init__(self, *values: str) -> None:
        self._values: set[str] = set()
        self.add(*values)

    def add(self, *values: str) -> None:
        """Remember more credentials (4 characters or more; shorter ones cannot be told apart
        from ordinary text)."""
        for value in values:
            if isinstance(value, str) and len(value) >= 4:
                # As given, and as a URL's query carries it (percent- or plus-encoded).
                self._values.update({value, quote(value, safe=""), quote_plus(value)})

    def __iter__(self) -> Iterator[str]:
        # Longest first: a token that contains another is replaced whole.
        return iter(sorted(self._values, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every known credential replaced by ``***``."""
        return redact(text, self)

    def optional(self, text: str | None) -> str | None:
        """:meth:`redact` for an optional server-provided field."""
        return None if text is None else redact(text, self)

    def url(self, url: str) -> str:
        """``url`` with credential query parameters and known credentials replaced."""
        return redact_url(url, self)

    def traceback(self, exc: BaseException) -> str:
        """``exc`` with its traceback and chain, as ``logging`` would print them, redacted:
        for logging an unexpected exception (``exc_info`` would print its text as it is)."""
        return self.redact("".join(traceback.format_exception(exc)))

    @classmethod
    def for_client(
        cls, api_key: str, default_headers: Mapping[str, str] | None, proxy: str | None
    ) -> Secrets:
        """The registry of a client's settings: its key, credentials among its default headers,
        and its proxy option's credentials. One rule for every part of the client (sessions
        and HTTP requests alike)."""
        found = cls(api_key)
        found.add(*secrets_in(None, default_headers))
        found.add(*proxy_secrets(proxy))
        return found

    def copy(self) -> Secrets:
        """A registry that starts with these secrets (for one session's additions)."""
        other = Secrets()
        other._values = set(self._values)
        return other


def proxy_secrets(proxy: str | None) -> list[str]:
    """The credentials in a proxy URL, in every form they may be shown: user name and password
    as written and decoded, ``user:password`` and its Basic-auth base64."""
    if not proxy:
        return []
    written, proxy = proxy, with_scheme(proxy)
    try:
        parts = urlsplit(proxy)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    found: list[str] = []
    for raw in (user, password):
        if raw:
            found.extend({raw, unquote(raw)})
    if user is not None and password is not None:
        for pair in {f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"}:
            found.append(pair)
            found.append(base64.b64encode(pair.encode()).decode())
    # Also whatever precedes the last "@", in case urlsplit reads the URL otherwise.
    userinfo = written.split("://", 1)[-1].rpartition("@")[0]
    if userinfo:
        found.append(userinfo)
        found.extend(userinfo.split(":", 1))
    return found


def shown_proxy(proxy: str) -> str:
    """The proxy URL as it may be shown: ``scheme://host:port``, credentials replaced."""
    try:
        parts = urlsplit(with_scheme(proxy))
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid proxy URL>"
    host = f"[{host}]" if ":" in host else host
    userinfo = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{userinfo}{host}" + (f":{port}" if port is not None else "")


def frame_summary(frame: Frame) -> str:
    """A frame as a log line shows it: its type and size, never its data (a text frame holds
    transcript text; a close reason, a ping or a binary message may hold anything a server
    echoed; and websockets' own dump cuts data mid-way, where redaction could not match)."""
    more = ", continued" if not frame.fin else ""
    if frame.opcode is Opcode.CLOSE and len(frame.data) >= 2:
        code = int.from_bytes(frame.data[:2], "big")
        return f"CLOSE {code} [{len(frame.data)} bytes{more}]"
    return f"{frame.opcode.name} [{len(frame.data)} bytes{more}]"


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """Hands websockets a logger that never prints a secret, nor transcript text.

    websockets logs every handshake header at DEBUG (``> Authorization: Bearer ...``) and every
    frame. The message is formatted here: frames as :func:`frame_summary` (no data), the
    Authorization and X-API-Key headers' values dropped, every known secret replaced, before it
    reaches any handler.
    """

    def __init__(
        self, base: logging.Logger, secrets: Secrets, fields: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(base, fields or {})
        self._secrets = secrets

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        if args:
            shown = tuple(frame_summary(a) if isinstance(a, Frame) else a for a in args)
            text = str(msg) % shown
        else:
            text = str(msg)
        lower = text.lower()
        if lower.startswith("> authorization:") or lower.startswith("> x-api-key:"):
            text = text.split(":", 1)[0] + ": [redacted]"
        kwargs["extra"] = self.extra  # the session's fields, not websockets' connection object
        self.logger.log(level, "%s", self._secrets.redact(text), **kwargs)
