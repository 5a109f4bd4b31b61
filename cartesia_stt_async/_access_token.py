"""``client.access_token``: short-lived access tokens for browsers (``POST /access-token``).

Shaped like the official SDK's ``client.access_token.create(grants=..., expires_in=...)``. A
server that holds the API key mints a token and hands it to a page, which then talks to
Cartesia directly: ``?access_token=<token>`` on the STT WebSocket (a browser cannot set
headers there) or ``Authorization: Bearer <token>`` on HTTP. An access token cannot mint
tokens. The token is a secret: it never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final

from ._http import HTTPClient
from .errors import ProtocolError, UsageError
from .protocol.checks import check_int

__all__ = ["GRANTS", "MAX_EXPIRES_IN", "AccessToken", "AccessTokenResource"]

GRANTS: Final = ("stt", "tts", "agent")
"""Grant names: ``stt`` (STT endpoints), ``tts`` (TTS endpoints), ``agent`` (agent calls)."""

MAX_EXPIRES_IN: Final = 3600
"""The longest lifetime a token may have, in seconds."""


class AccessToken:
    """A minted access token.

    Attributes:
        token: The token (a secret: pass it to the page that needs it, never log it).
        expires_in: Its lifetime in seconds: the server's answer when it gives one, else the
            ``expires_in`` you asked for, else ``None`` (the server's default applies).
        expires_at: ``time.time()`` when it expires, when ``expires_in`` is known.
        grants: The grants asked for.
    """

    __slots__ = ("expires_at", "expires_in", "grants", "token")

    def __init__(
        self,
        token: str,
        *,
        expires_in: int | None,
        issued_at: float,
        grants: Mapping[str, bool],
    ) -> None:
        self.token = token
        self.expires_in = expires_in
        self.expires_at = issued_at + expires_in if expires_in is not None else None
        self.grants = dict(grants)

    def __repr__(self) -> str:
        return f"<AccessToken token='***' expires_in={self.expires_in} grants={self.grants}>"


def _check_grants(grants: object) -> dict[str, bool] | None:
    if grants is None:
        return None
    if not isinstance(grants, Mapping):
        raise UsageError(
            f"grants must be a mapping like {{'stt': True}}, got {type(grants).__name__}"
        )
    checked: dict[str, bool] = {}
    for name, value in grants.items():
        if name not in GRANTS:
            raise UsageError(f"unknown grant {name!r}; grants are {', '.join(GRANTS)}")
        if not isinstance(value, bool):
            raise UsageError(f"grant {name!r} must be True or False, got {value!r}")
        checked[name] = value
    return checked


def _check_expires_in(expires_in: object) -> int | None:
    return check_int(
        "expires_in",
        expires_in,
        low=1,
        high=MAX_EXPIRES_IN,
        none=True,
        wanted=f"an integer from 1 to {MAX_EXPIRES_IN} seconds",
    )


class AccessTokenResource:
    """``client.access_token``: ``await client.access_token.create(grants=..., expires_in=...)``.

    Args:
        http: The client's HTTP transport (closed by the client's ``close()``).
    """

    def __init__(self, http: HTTPClient) -> None:
        self._http = http

    def __repr__(self) -> str:
        return f"<AccessTokenResource url={self._http.url('/access-token')!r}>"

    async def create(
        self,
        *,
        grants: Mapping[str, bool] | None = None,
        expires_in: int | None = None,
    ) -> AccessToken:
        """Mint a short-lived access token.

        Args:
            grants: What the token allows, e.g. ``{"stt": True}``; names are ``stt``,
                ``tts`` and ``agent``. Omitted: the server's default.
            expires_in: Lifetime in seconds, 1 to 3600. Omitted: the server's default.

        Returns:
            The token, with its lifetime when known.

        Raises:
            UsageError: Bad ``grants`` or ``expires_in`` (checked before any I/O).
            APIStatusError: The server refused (``AuthenticationError`` for a bad API key or
                when an access token was used to mint, ``BadRequestError``, ...).
            APIConnectionError: The server could not be reached (``APITimeoutError`` on
                timeout).
            ProtocolError: The server's answer has no token.
        """
        checked_grants = _check_grants(grants)
        checked_expires = _check_expires_in(expires_in)
        body: dict[str, Any] = {}
        if checked_grants is not None:
            body["grants"] = checked_grants
        if checked_expires is not None:
            body["expires_in"] = checked_expires
        issued_at = time.time()
        reply = await self._post(body)
        token = reply.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError("the /access-token answer has no token")
        lifetime = reply.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            lifetime = checked_expires
        return AccessToken(
            token, expires_in=lifetime, issued_at=issued_at, grants=checked_grants or {}
        )

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        content, _ = await self._http.post("/access-token", body, accept="application/json")
        try:
            reply = json.loads(content)
        except ValueError:
            reply = None  # raised below, outside the except block: the answer may echo the key
            parsed = False
        else:
            parsed = True
        if not parsed:
            raise ProtocolError("the /access-token answer is not JSON")
        if not isinstance(reply, dict):
            raise ProtocolError("the /access-token answer is not a JSON object")
        return reply
