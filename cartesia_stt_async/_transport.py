"""TLS and proxy settings, shared by the WebSocket handshake and the HTTP client.

Both options are checked once, when the client is made (:func:`check_ssl`,
:func:`check_proxy`), and then resolved per connection:

* ``ssl``: an :class:`ssl.SSLContext` (e.g. one that trusts a private CA), ``None`` (the
  default: the system's trust store, full verification) or ``False``, which only a plain
  ``http://``/``ws://`` setup accepts: verification is never turned off silently. A context is
  used for ``wss://`` and ``https://`` only (a plain URL has no TLS to configure).
* ``proxy``: ``None`` (the default: from the environment), a proxy URL ``http://[user:pass@]
  host:port``, or ``False`` (never a proxy). The environment is read the way each library
  documents it, resolved here so that errors can name the proxy in use:

  - the socket: websockets' ``connect(proxy=True)`` calls ``get_proxy`` (``websockets.uri``
    in 15, ``websockets.proxy`` from 16)
    (``no_proxy`` first, then ``wss_proxy``/``ws_proxy``, a SOCKS proxy, ``https_proxy`` for
    both schemes, ``http_proxy`` for ``ws://`` only; see websockets' "Proxies" topic). We call
    that same function and pass its answer as ``proxy=``.
  - HTTP: aiohttp 3.14's ``trust_env=True`` takes ``urllib.request.getproxies()[scheme]``
    unless ``proxy_bypass(host)`` (``helpers.get_env_proxy_for_url``). We apply the same rule
    and pass ``proxy=`` per request instead of ``trust_env``, because ``trust_env`` also reads
    ``~/.netrc`` for the *target* host, and a netrc entry for the API host would clash with
    our ``Authorization`` header (aiohttp raises ``ValueError`` on that combination).

  Neither library reads ``ALL_PROXY`` for these schemes; ``NO_PROXY`` is honoured by both.

A proxy URL's credentials are secrets: :func:`proxy_secrets` lists them for redaction and
:func:`shown_proxy` is the URL as it may appear in errors and logs.
"""

from __future__ import annotations

import base64
import importlib
import ssl as ssl_module
import urllib.request
from collections.abc import Callable
from typing import Final, Literal, TypeAlias, cast
from urllib.parse import unquote, urlsplit

from websockets.uri import WebSocketURI, parse_uri

from .errors import ConfigurationError

__all__ = [
    "ProxyOption",
    "SSLOption",
    "check_proxy",
    "check_ssl",
    "http_proxy",
    "proxy_secrets",
    "shown_proxy",
    "ws_proxy",
]

SSLOption: TypeAlias = ssl_module.SSLContext | Literal[False] | None
"""An :class:`ssl.SSLContext`, ``None`` (system verification) or ``False`` (plain URLs only)."""

ProxyOption: TypeAlias = str | Literal[False] | None
"""A proxy URL, ``None`` (from the environment) or ``False`` (never a proxy)."""


def _secure(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("https", "wss")


def check_ssl(value: object, urls: tuple[str, ...]) -> SSLOption:
    """Check the ``ssl`` option against the URLs the client will use.

    Args:
        value: What the caller passed (``True`` is taken as ``None``, the default, as
            websockets and aiohttp take it).
        urls: The WebSocket and HTTP URLs.

    Returns:
        The option: a context, ``None`` or ``False``.

    Raises:
        ConfigurationError: For a value of another type, or ``False`` while a URL is
            ``https://``/``wss://`` (certificate verification is never turned off silently: to
            trust a private CA or a self-signed server, pass a context that trusts it).
    """
    if value is None or value is True:
        return None
    if isinstance(value, ssl_module.SSLContext):
        return value
    if value is False:
        secure = [url for url in urls if _secure(url)]
        if secure:
            scheme = urlsplit(secure[0]).scheme.lower()
            raise ConfigurationError(
                f"ssl=False with a {scheme}:// URL would turn certificate verification off; "
                "it is only allowed with plain http:// / ws:// URLs. To trust a private CA or "
                "a self-signed server, pass ssl=ssl.create_default_context(cafile=...)"
            )
        return False
    raise ConfigurationError(
        f"ssl must be an ssl.SSLContext, None or False, got {type(value).__name__}"
    )


def check_proxy(value: object) -> ProxyOption:
    """Check the ``proxy`` option.

    Returns:
        The option unchanged.

    Raises:
        ConfigurationError: For a value that is not a string, ``None`` or ``False``, or a URL
            that is not ``http://host[:port]`` (the message never repeats the URL: it may hold
            a password).
    """
    if value is None or value is False:
        return value
    if not isinstance(value, str):
        raise ConfigurationError(
            f"proxy must be a URL string, None (from the environment) or False (no proxy), "
            f"got {type(value).__name__}"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise ConfigurationError("proxy is not a valid URL") from None
    if parts.scheme.lower() != "http":
        # The one proxy scheme both websockets and aiohttp tunnel through.
        raise ConfigurationError(
            f"proxy must be an http:// URL (a CONNECT proxy), got scheme {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ConfigurationError("proxy URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError("proxy URL must be http://[user:password@]host[:port]")
    if parts.username is not None and parts.password is None:
        raise ConfigurationError("proxy URL has a user name but no password")
    return value


def _websockets_get_proxy() -> Callable[[WebSocketURI], str | None]:
    """websockets' ``get_proxy``: in ``websockets.proxy`` from 16, ``websockets.uri`` in 15."""
    for module in ("websockets.proxy", "websockets.uri"):
        try:
            found = getattr(importlib.import_module(module), "get_proxy", None)
        except ImportError:
            continue
        if callable(found):
            return cast(Callable[[WebSocketURI], "str | None"], found)
    raise ImportError("websockets >= 15 is required: it has no get_proxy")  # pragma: no cover


_get_proxy: Final = _websockets_get_proxy()


def ws_proxy(url: str, option: ProxyOption) -> str | None:
    """The proxy for a WebSocket URL: the option, or websockets' own choice from the
    environment (websockets' ``get_proxy``, what ``connect(proxy=True)`` does)."""
    if option is False:
        return None
    if option is not None:
        return option
    return _get_proxy(parse_uri(url))


def http_proxy(url: str, option: ProxyOption) -> str | None:
    """The proxy for an HTTP URL: the option, or aiohttp's ``trust_env`` rule without netrc
    (``proxy_bypass(host)``, else ``getproxies()[scheme]`` for ``http``/``https``, used only
    when it is an ``http://`` proxy, as aiohttp's ``proxies_from_env`` does)."""
    if option is False:
        return None
    if option is not None:
        return option
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    if urllib.request.proxy_bypass(parts.hostname):
        return None
    proxy = urllib.request.getproxies().get(scheme)
    if proxy is None or urlsplit(proxy).scheme.lower() != "http":
        # aiohttp's proxies_from_env skips https:// proxies too; SOCKS it cannot use.
        return None
    return proxy


def proxy_secrets(proxy: str | None) -> list[str]:
    """The credentials in a proxy URL, in every form they may be shown: user name and password
    as written and decoded, ``user:password`` and its Basic-auth base64."""
    if not proxy:
        return []
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
    # Also a URL written without its scheme (``user:pass@host:3128``), which urlsplit misreads.
    userinfo = proxy.split("://", 1)[-1].rpartition("@")[0]
    if userinfo:
        found.append(userinfo)
        found.extend(userinfo.split(":", 1))
    return found


def shown_proxy(proxy: str) -> str:
    """The proxy URL as it may be shown: ``scheme://host:port``, credentials replaced."""
    try:
        parts = urlsplit(proxy)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid proxy URL>"
    host = f"[{host}]" if ":" in host else host
    userinfo = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{userinfo}{host}" + (f":{port}" if port is not None else "")
