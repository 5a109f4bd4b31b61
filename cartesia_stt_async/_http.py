"""The one aiohttp user: the client's HTTP routes (``/tts/bytes``, ``/access-token``).

One :class:`HTTPClient` per ``AsyncCartesia``: it opens its aiohttp session on first use,
sends the client's headers, and turns a refused request or a failed connection into this
package's typed errors (through :mod:`._translate`). ``client.close()`` closes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from ._translate import Secrets, http_error, status_error
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
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        cartesia_version: str,
        default_headers: Mapping[str, str],
        timeout: float = 60.0,
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
                ``timeout``).
        """
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        headers = {**self._headers, "Accept": accept}
        try:
            async with session.post(self._base + path, json=body, headers=headers) as response:
                content = await response.read()
        except Exception as exc:
            error = http_error(exc, self.url(path), self.secrets, self.timeout)
            if error is None:
                raise
        else:
            error = None
        if error is not None:
            raise error  # outside the except block: the foreign exception is not kept
        if response.status >= 400:
            raise status_error(
                response.status, response.reason or "", content, response.headers, self.secrets
            )
        return content, response.headers

    async def aclose(self) -> None:
        """Close the connection pool (a later request opens a new one)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
