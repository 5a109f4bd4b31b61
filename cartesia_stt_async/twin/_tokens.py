"""Short-lived access tokens: what ``POST /access-token`` mints and the other routes accept.

A token carries grants (``stt`` for ``/stt/websocket``, ``tts`` for ``/tts/bytes``; ``agent``
is accepted and unused) and an expiry on the twin's clock. Tokens live in memory only; every
token starts with ``tok_``, so a credential of that shape is always checked as a token (an
unknown one is refused, never mistaken for an API key). Nothing here logs or echoes a token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import UsageError

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "GRANTS",
    "MAX_EXPIRES_IN",
    "TOKEN_PREFIX",
    "AccessTokens",
    "TokenRefused",
]

GRANTS: Final = ("stt", "tts", "agent")
MAX_EXPIRES_IN: Final = 3600
DEFAULT_EXPIRES_IN: Final = 60
TOKEN_PREFIX: Final = "tok_"
# Expired tokens are remembered this long (so "expired" is told apart from "unknown").
_RETAIN_EXPIRED: Final = 3600.0
_PURGE_ABOVE: Final = 256


class TokenRefused(Exception):
    """A token that does not allow the request: ``error_code`` and ``message`` say why."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class _Token:
    grants: frozenset[str]
    expires_at: float


def check_grants(grants: object) -> frozenset[str]:
    """The granted names of a ``grants`` mapping (``None`` or ``false`` values grant nothing).

    Raises:
        UsageError: Not a mapping, an unknown name, or a value that is not a boolean.
    """
    if grants is None:
        return frozenset()
    if not isinstance(grants, Mapping):
        raise UsageError(f"grants must be an object like {{'stt': true}}, got {grants!r}")
    granted = set()
    for name, value in grants.items():
        if name not in GRANTS:
            raise UsageError(f"grants.{name} is not a known grant; use {', '.join(GRANTS)}")
        if value is not None and not isinstance(value, bool):
            raise UsageError(f"grants.{name} must be true or false, got {value!r}")
        if value:
            granted.add(name)
    return frozenset(granted)


def check_expires_in(expires_in: object) -> int:
    """A token lifetime in whole seconds, 1 to 3600 (``None``: the default, 60).

    Raises:
        UsageError: Not an integer, or out of range.
    """
    if expires_in is None:
        return DEFAULT_EXPIRES_IN
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise UsageError(f"expires_in must be an integer number of seconds, got {expires_in!r}")
    if not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise UsageError(f"expires_in must be from 1 to {MAX_EXPIRES_IN} seconds, got {expires_in}")
    return expires_in


class AccessTokens:
    """The tokens one twin minted, with their grants and expiry.

    Args:
        clock: Seconds, monotonic; expiry is measured on it (tests pass a clock they move).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[str, _Token] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"<AccessTokens {len(self._tokens)} minted>"

    def mint(self, grants: object, expires_in: object = None) -> str:
        """A new token with ``grants`` that expires ``expires_in`` seconds from now.

        Raises:
            UsageError: For bad grants or lifetime (see :func:`check_grants`).
        """
        granted = check_grants(grants)
        lifetime = check_expires_in(expires_in)
        now = self.clock()
        if len(self._tokens) > _PURGE_ABOVE:
            self._tokens = {
                t: v for t, v in self._tokens.items() if v.expires_at + _RETAIN_EXPIRED > now
            }
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        self._tokens[token] = _Token(granted, now + lifetime)
        return token

    @staticmethod
    def looks_like_token(credential: str) -> bool:
        """Whether a credential has the shape of a token this twin mints."""
        return credential.startswith(TOKEN_PREFIX)

    def check(self, token: str, grant: str) -> None:
        """Allow a request that needs ``grant`` with ``token``, or say why not.

        Raises:
            TokenRefused: ``invalid_token`` (not minted here), ``token_expired`` or
                ``missing_grant``.
        """
        entry = self._tokens.get(token)
        if entry is None:
            raise TokenRefused("invalid_token", "the access token is not valid on this server")
        late = self.clock() - entry.expires_at
        if late >= 0:
            raise TokenRefused(
                "token_expired", f"the access token expired {late:.0f} s ago: mint a new one"
            )
        if grant not in entry.grants:
            have = ", ".join(sorted(entry.grants)) or "none"
            raise TokenRefused(
                "missing_grant",
                f"the access token lacks the {grant!r} grant (it has: {have})",
            )
