"""The one aiohttp user: the client's HTTP routes (``/tts/bytes``, ``/access-token``).

One :class:`HTTPClient` per ``AsyncCartesia``: it opens its aiohttp session on first use,
sends the client's headers, and turns a refused request or a failed connection into this
package's typed errors (through :mod:`._translate`). ``client.close()`` closes it.

TLS and proxies (see :mod:`._transport`): the client's ``ssl`` context goes to each
``https://`` request (``ssl=`` of ``ClientSession.request``; aiohttp's default, ``True``,
verifies against the system trust store); the proxy is resolved per request and passed as
``proxy=``, its credentials as a ``Proxy-Authorization`` header (``proxy_headers=``, what
aiohttp 3.14 recommends over the deprecated ``proxy_auth=``).
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ._translate import Secrets, http_error, proxy_status_error, status_error
from ._transport import ProxyOption, SSLOption, http_proxy, proxy_authorization, proxy_secrets
from ._version import __version__
from .protocol.commands import build_headers, secrets_in

__all__ = ["HTTPClient"]


class HTTPClient:
    """POSTs JSON to the API's HTTP routes.

    Args:
        api_key: Sent as ``Authorization: Bearer``.
        base_url: The HTTP base URL.
        cartesia_version: The ``cartesia-version`` header.
        default_headers: Extra headers for every request.
        timeout: Seconds for a whole request.
        ssl: An :class:`ssl.SSLContext` for ``https://`` requests, or ``None``/``False``
            (aiohttp's default verification; ``False`` is only ever accepted for plain
            URLs, checked by the client).
        proxy: A proxy URL, ``None`` (from the environment) or ``False`` (none).
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        cartesia_version: str,
        default_headers: Mapping[str, str],
        timeout: float = 60.0,
        ssl: SSLOption = None,
        proxy: ProxyOption = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = build_headers(
            api_key=api_key,
            cartesia_version=cartesia_version,
            user_agent=f"cartesia-stt-async/{__version__}",
            extra_headers=dict(default_headers),
        )
        self.secrets = Secrets(api_key, *secrets_in(None, default_headers))
        self.timeout = timeout
        # ``True``: aiohttp's default (verify against the system trust store).
        self._ssl: ssl_module.SSLContext | bool = ssl if ssl is not None else True
        self._proxy = proxy
        self.secrets.add(*proxy_secrets(proxy or None))
        self._session: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        """The shown (redacted) URL of ``path``."""
        return self.secrets.url(self._base + path)

    async def post(
        self, path: str, body: Mapping[str, Any], *, accept: str
    ) -> tuple[bytes, CIMultiDictProxy[str]]:
        """POST ``body`` as JSON to ``path``; return the response body and headers.

        Raises:
            APIStatusError: The server answered with a status >= 400 (typed by status, with
                the server's message).
            APIConnectionError: The server could not be reached (``APITimeoutError`` after
                ``timeout``, ``TLSError`` when its certificate did not verify, ``ProxyError``
                when the proxy refused or could not be reached).
        """
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        headers = {**self._headers, "Accept": accept}
        url = self._base + path
        proxy = http_proxy(url, self._proxy)
        proxy_url, proxy_headers = self._proxy_args(proxy)
        if proxy_headers and not url.startswith("https:"):
            # A forwarding proxy (plain http://, no tunnel): aiohttp sends proxy_headers with
            # a CONNECT only, so the credentials go with the request itself.
            headers.update(proxy_headers)
        try:
            async with session.post(
                url,
                json=body,
                headers=headers,
                ssl=self._ssl,
                proxy=proxy_url,
                proxy_headers=proxy_headers,
            ) as response:
                content = await response.read()
        except Exception as exc:
            error = http_error(exc, self.url(path), self.secrets, self.timeout, proxy)
            if error is None:
                raise
        else:
            error = None
        if error is not None:
            raise error  # outside the except block: the foreign exception is not kept
        if response.status == 407 and proxy is not None and not url.startswith("https:"):
            # A forwarding proxy (plain http://, no tunnel) refuses in the response itself.
            raise proxy_status_error(proxy, response.status, response.reason or "", self.secrets)
        if response.status >= 400:
            raise status_error(
                response.status, response.reason or "", content, response.headers, self.secrets
            )
        return content, response.headers

    def _proxy_args(self, proxy: str | None) -> tuple[URL | None, dict[str, str] | None]:
        """``proxy=`` and ``proxy_headers=`` for aiohttp: the URL without its credentials,
        which go in a ``Proxy-Authorization`` header."""
        if proxy is None:
            return None, None
        self.secrets.add(*proxy_secrets(proxy))
        parsed = URL(proxy)
        auth = proxy_authorization(proxy)  # the rule the socket's tunnel follows too
        if auth is None:
            return parsed, None
        self.secrets.add(auth)
        return parsed.with_user(None), {"Proxy-Authorization": auth}

    async def aclose(self) -> None:
        """Close the connection pool (a later request opens a new one)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
