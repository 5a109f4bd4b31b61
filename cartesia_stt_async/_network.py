"""TLS and proxy settings, shared by the WebSocket handshake and the HTTP client.

Both options are checked once, when the client is made (:func:`check_ssl`,
:func:`check_proxy`), and then resolved per connection:

* ``ssl``: an :class:`ssl.SSLContext` (e.g. one that trusts a private CA), ``None`` (the
  default: the system's trust store, full verification) or ``False``, which only a plain
  ``http://``/``ws://`` setup accepts: verification is never turned off silently. A context is
  used for ``wss://`` and ``https://`` only (a plain URL has no TLS to configure).
* ``proxy``: ``None`` (the default: from the environment), a proxy URL ``http://[user:pass@]
  host:port``, or ``False`` (never a proxy). A URL written without its scheme
  (``host:3128``, ``user:pass@host:3128``) is an ``http://`` one, as curl, requests and
  urllib take it (:func:`with_scheme`), in the option and in the environment alike. The
  environment is read the way each library documents it, resolved here so that errors can
  name the proxy in use, and checked as the option is (a bad port is a
  :class:`ConfigurationError` naming the variable):

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

  A loopback target never goes through the environment's proxy (:func:`is_loopback`:
  ``localhost`` and ``*.localhost``, 127.0.0.0/8, ``::1`` and IPv4-mapped 127.x): a proxy
  elsewhere cannot reach this machine's loopback, so the twin, the pytest plugin's fixtures
  and anything else local keep working behind a corporate proxy. This is Go's rule
  (``net/http.ProxyFromEnvironment`` and ``httpproxy``, which skip ``localhost`` and loopback
  IPs whatever ``NO_PROXY`` says), with ``*.localhost`` added (RFC 6761: those names are
  loopback). An explicit ``proxy="http://..."`` is used for every host, loopback included:
  it is the way to send loopback traffic through a proxy.

  The answer is an :class:`EnvProxy`, a ``str`` that also says which variable it came from
  and for which host, so that an error (``_translate``) can name the variable and say how to
  bypass it (``NO_PROXY=host`` or ``proxy=False``).

A proxy URL's credentials are secrets: ``_redact.proxy_secrets`` lists them for redaction and
``_redact.shown_proxy`` is the URL as it may appear in errors and logs (messages never repeat a
proxy URL or any part of it but through it: a short user name cannot be redacted as a
substring). :func:`proxy_authorization` is the one rule for sending them (both
percent-decoded as UTF-8), for the socket's tunnel and for HTTP requests alike.
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
import os
import re
import ssl as ssl_module
import urllib.request
from collections.abc import Callable
from typing import Final, Literal, TypeAlias, cast
from urllib.parse import SplitResult, unquote, urlsplit

from websockets.uri import WebSocketURI, parse_uri

from .errors import ConfigurationError

__all__ = [
    "EnvProxy",
    "ProxyOption",
    "SSLOption",
    "check_proxy",
    "check_ssl",
    "http_proxy",
    "is_loopback",
    "proxy_authorization",
    "ssl_for",
    "with_scheme",
    "ws_proxy",
]

SSLOption: TypeAlias = ssl_module.SSLContext | Literal[False] | None
"""An :class:`ssl.SSLContext`, ``None`` (system verification) or ``False`` (plain URLs only)."""

ProxyOption: TypeAlias = str | Literal[False] | None
"""A proxy URL, ``None`` (from the environment) or ``False`` (never a proxy)."""


def _secure(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("https", "wss")


def ssl_for(url: str, option: SSLOption) -> ssl_module.SSLContext | None:
    """The context to hand websockets or aiohttp for ``url``: the option's context for a
    ``wss://``/``https://`` URL; ``None`` otherwise, where the library's default applies (full
    verification against the system's trust store; a plain URL has no TLS). The one rule for
    sessions and HTTP requests alike."""
    return option if isinstance(option, ssl_module.SSLContext) and _secure(url) else None


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


_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

# Proxy schemes websockets knows (parse_proxy); shown in a message only when one of these.
_PROXY_SCHEMES: Final = ("http", "https", "socks5h", "socks5", "socks4a", "socks4")


def with_scheme(proxy: str, default: str = "http") -> str:
    """``proxy`` with ``default://`` put in front when it has no scheme (``host:3128``,
    ``user:pass@host:3128``): what curl, requests and urllib do. Without it ``urlsplit``
    would take the host, or the user name, for the scheme."""
    return proxy if _SCHEME.match(proxy) else f"{default}://{proxy}"


def _split(proxy: str) -> SplitResult | str:
    """``urlsplit(proxy)``, its port checked; or what is wrong with it, in our words."""
    try:
        parts = urlsplit(proxy)
    except ValueError:  # an unclosed "[", a bracketed host that is no IP address
        return "its host is not valid"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "its port must be a number from 0 to 65535"
    return parts


def _checked(proxy: str, what: str, schemes: tuple[str, ...], hint: str = "") -> str:
    """``proxy`` (its scheme put in front) if it is ``scheme://[user:password@]host[:port]``
    with one of ``schemes``; else a :class:`ConfigurationError` that says what is wrong with
    ``what`` ("proxy", "the proxy in HTTPS_PROXY"), followed by ``hint``, and never repeats
    any part of the URL."""
    proxy = with_scheme(proxy)
    parts = _split(proxy)
    problem: str | None = None
    if isinstance(parts, str):  # raised here: no context (a ValueError repeats the URL)
        problem = f"{what} is not a valid URL: {parts}"
    elif (scheme := parts.scheme.lower()) not in schemes:
        shown = f"scheme {scheme!r}" if scheme in _PROXY_SCHEMES else "another scheme"
        wanted = "an http:// URL (a CONNECT proxy)" if schemes == ("http",) else "a proxy URL"
        problem = f"{what} must be {wanted}, got {shown}"
    elif not parts.hostname:
        problem = f"{what} URL has no host"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = f"{what} URL must be {scheme}://[user:password@]host[:port]"
    elif parts.username is not None and parts.password is None:
        problem = f"{what} URL has a user name but no password"
    if problem is not None:
        raise ConfigurationError(problem + hint)
    return proxy


def check_proxy(value: object) -> ProxyOption:
    """Check the ``proxy`` option.

    Returns:
        The option; a URL without a scheme with ``http://`` put in front.

    Raises:
        ConfigurationError: For a value that is not a string, ``None`` or ``False``, or a URL
            that is not ``http://[user:password@]host[:port]`` (the message never repeats the
            URL: it may hold a password).
    """
    if value is None or value is False:
        return value
    if not isinstance(value, str):
        raise ConfigurationError(
            f"proxy must be a URL string, None (from the environment) or False (no proxy), "
            f"got {type(value).__name__}"
        )
    # The one proxy scheme both websockets and aiohttp tunnel through.
    return _checked(value, "proxy", ("http",))


class EnvProxy(str):
    """A proxy URL taken from the environment (``proxy=None``), not given as the option.

    It is the URL (a ``str``, passed on to websockets and aiohttp as is) and also says where
    it came from, so that an error can name the variable and say how to go around it.

    Attributes:
        variable: The environment variable, as spelled there (``"HTTPS_PROXY"``,
            ``"https_proxy"``), or ``None`` for a proxy from the operating system's settings
            (``urllib.request.getproxies()`` on macOS and Windows).
        host: The host it was chosen for (the target of the session or request).
    """

    variable: str | None
    host: str

    def __new__(cls, url: str, variable: str | None, host: str) -> EnvProxy:
        made = super().__new__(cls, url)
        made.variable = variable
        made.host = host
        return made

    def __getnewargs__(self) -> tuple[str, str | None, str]:  # type: ignore[override]
        # copy and pickle rebuild it with its origin (str's own gives the URL alone).
        return str(self), self.variable, self.host

    def origin(self) -> str:
        """Where the proxy came from, for a message: ``from HTTPS_PROXY``."""
        if self.variable is None:
            return "from the system's proxy settings"
        return f"from {self.variable}"

    def bypass(self) -> str:
        """How to reach :attr:`host` without it, for a message."""
        return _bypass(self.variable, self.host)


def _bypass(variable: str | None, host: str) -> str:
    if variable is None:
        return (
            f"to connect to {host} directly, pass proxy=False or exempt it in the system's "
            "proxy settings"
        )
    return f"to connect to {host} directly, set NO_PROXY={host} or pass proxy=False"


def _variable(key: str) -> str | None:
    """The environment variable ``urllib.request.getproxies()[key]`` came from (its lower-case
    spelling wins, as there), or ``None`` for the operating system's settings."""
    for name in (f"{key}_proxy", f"{key.upper()}_PROXY"):
        if os.environ.get(name):
            return name
    return None


def _from_env(proxy: str, key: str, host: str, schemes: tuple[str, ...]) -> EnvProxy:
    """``proxy``, which ``getproxies()[key]`` gave for ``host``, checked and marked as the
    environment's (a :class:`ConfigurationError` names the variable and the way around it)."""
    variable = _variable(key)
    what = f"the proxy in {variable}" if variable else f"the system's {key} proxy"
    checked = _checked(proxy, what, schemes, f" ({_bypass(variable, host)})")
    return EnvProxy(checked, variable, host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a URL's host name, without brackets) is this machine's loopback:
    ``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1`` or IPv4-mapped 127.x. The
    environment's proxy is never used for it (Go's rule; see the module's docstring)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


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
    environment (websockets' ``get_proxy``, what ``connect(proxy=True)`` does), checked; never
    the environment's for a loopback host (:func:`is_loopback`).

    Returns:
        ``None`` (direct), the option, or an :class:`EnvProxy`.

    Raises:
        ConfigurationError: The environment's proxy is not a valid URL (the message names
            the variable and how to bypass it).
    """
    if option is False:
        return None
    if option is not None:
        return option
    uri = parse_uri(url)
    if is_loopback(uri.host):
        return None
    proxy = _get_proxy(uri)
    if proxy is None:
        return None
    # Which of the keys get_proxy tries (in its order) gave it: to name the variable.
    keys = ("wss", "socks", "https") if uri.secure else ("ws", "socks", "https", "http")
    found = urllib.request.getproxies()
    key = next((k for k in keys if found.get(k) == proxy), "socks")
    default = "socks5h" if key == "socks" else "http"
    return _from_env(with_scheme(proxy, default), key, uri.host, _PROXY_SCHEMES)


def http_proxy(url: str, option: ProxyOption) -> str | None:
    """The proxy for an HTTP URL: the option, or aiohttp's ``trust_env`` rule without netrc
    (``proxy_bypass(host)``, else ``getproxies()[scheme]`` for ``http``/``https``, used only
    when it is an ``http://`` proxy, as aiohttp's ``proxies_from_env`` does), checked; never
    the environment's for a loopback host (:func:`is_loopback`).

    Returns:
        ``None`` (direct), the option, or an :class:`EnvProxy`.

    Raises:
        ConfigurationError: The environment's proxy is not a valid URL (the message names
            the variable and how to bypass it).
    """
    if option is False:
        return None
    if option is not None:
        return option
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    if is_loopback(parts.hostname) or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxy = urllib.request.getproxies().get(scheme)
    if proxy is None:
        return None
    proxy = with_scheme(proxy)
    if proxy.split("://", 1)[0].lower() != "http":
        # aiohttp's proxies_from_env skips https:// proxies too; SOCKS it cannot use.
        return None
    return _from_env(proxy, scheme, parts.hostname, ("http",))


def proxy_authorization(proxy: str) -> str | None:
    """The ``Proxy-Authorization`` value for a proxy URL with credentials, ``None`` without:
    Basic (RFC 7617) over the user name and password percent-decoded as UTF-8 (a URL
    carries ``@``, ``:``, ``/``, ``%`` and non-ASCII characters encoded). The one rule for the
    socket's tunnel and for HTTP requests."""
    parts = urlsplit(with_scheme(proxy))
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()
