"""Who may use the twin: API keys, access tokens, and the JSON refusals the routes send.

A request's credential is, in this order: the ``access_token`` query parameter (always
checked as a token), ``Authorization: Bearer``, ``X-API-Key``, the ``api_key`` query
parameter. A credential of a token's shape (``tok_...``) is checked as a token; anything else
is an API key, valid when ``api_keys`` is ``None`` (any non-empty key) or lists it.
Refusals are HTTP 401 with a JSON body saying why; the credential is never echoed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from aiohttp import web

from ..errors import UsageError
from ._state import OPTIONS, TWIN, Options
from ._tokens import AccessTokens, TokenRefused, check_expires_in

__all__ = ["Refusal", "access_token_route", "authorize", "refusal"]


def refusal(status: int, request_id: str, title: str, message: str, code: str) -> web.Response:
    """An error response in Cartesia's shape: ``error_code``, ``title``, ``message``, id."""
    body = {"error_code": code, "title": title, "message": message, "request_id": request_id}
    headers = {"X-Request-Id": request_id}
    if status == 429:
        headers["Retry-After"] = "1"
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


@dataclass(frozen=True)
class Refusal:
    """Why a request was not authorized (always HTTP 401)."""

    code: str
    message: str

    def response(self, request_id: str) -> web.Response:
        """The 401 response."""
        return refusal(401, request_id, "Unauthorized", self.message, self.code)


def _credential(request: web.Request) -> tuple[str, bool] | None:
    """The request's credential, and whether it came as ``?access_token=``."""
    token = request.query.get("access_token")
    if token:
        return token, True
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip(), False
    key = request.headers.get("X-API-Key") or request.query.get("api_key")
    return (key, False) if key else None


def authorize(
    request: web.Request, opts: Options, tokens: AccessTokens, grant: str | None
) -> Refusal | None:
    """Check a request's credential; ``None`` when it may go on.

    Args:
        request: The request.
        opts: The twin's options (``api_keys``).
        tokens: The twin's tokens.
        grant: The grant a token needs here (``stt``, ``tts``), or ``None`` where only an
            API key will do (minting tokens).
    """
    found = _credential(request)
    if found is None:
        return Refusal(
            "unauthorized",
            "Missing API key: send Authorization: Bearer <key>, X-API-Key, or ?access_token=",
        )
    credential, from_query = found
    if from_query or tokens.looks_like_token(credential):
        if grant is None:
            return Refusal(
                "token_not_allowed", "an access token cannot mint access tokens: use an API key"
            )
        try:
            tokens.check(credential, grant)
        except TokenRefused as refused:
            return Refusal(refused.error_code, refused.message)
        return None
    if opts.api_keys is not None and credential not in opts.api_keys:
        return Refusal("unauthorized", "Invalid API key")
    return None


async def access_token_route(request: web.Request) -> web.StreamResponse:
    """``POST /access-token``: ``{"grants": {...}, "expires_in": s}`` -> ``{"token": ...}``.

    Needs an API key. ``expires_in`` defaults to 60 and may be at most 3600 seconds.
    """
    twin, opts = request.app[TWIN], request.app[OPTIONS]
    request_id = str(uuid.uuid4())
    refused = authorize(request, opts, twin.tokens, None)
    if refused is not None:
        return refused.response(request_id)
    try:
        body = await request.json(loads=json.loads) if request.can_read_body else {}
    except ValueError:
        return refusal(400, request_id, "Invalid request", "body is not JSON", "invalid_request")
    if not isinstance(body, dict):
        return refusal(
            400, request_id, "Invalid request", "body must be a JSON object", "invalid_request"
        )
    try:
        lifetime = check_expires_in(body.get("expires_in"))
        token = twin.tokens.mint(body.get("grants"), lifetime)
    except UsageError as err:
        return refusal(400, request_id, "Invalid request", str(err), "invalid_request")
    return web.json_response(
        {"token": token, "expires_in": lifetime}, headers={"X-Request-Id": request_id}
    )
