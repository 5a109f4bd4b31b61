"""CORS for the twin's HTTP routes, so a page in a browser can call them directly.

The HTTP routes (``/tts/bytes``, ``/access-token``, ``/stt``) answer a preflight ``OPTIONS`` and add
``Access-Control-Allow-Origin`` (the request's origin, when allowed) to every response, errors
included, so a page can read an error's JSON body. By default any loopback origin is allowed
(``http(s)://127.0.0.1``, ``localhost`` or ``[::1]``, any port); ``serve(cors_origins=[...])``
names the allowed origins instead, ``"*"`` among them allowing any. The WebSocket route has no
CORS: browsers do not preflight WebSocket handshakes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Final

from aiohttp import web

from ..errors import UsageError
from ._state import OPTIONS

__all__ = [
    "CORS_ROUTES",
    "allowed_origins",
    "cors_middleware",
    "origin_allowed",
    "preflight",
]

# Routes with CORS, and their methods.
CORS_ROUTES: Final = {"/tts/bytes": "POST", "/access-token": "POST", "/stt": "POST"}

_LOOPBACK: Final = re.compile(r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$")
# What the official JS SDK and ours send (and what a page may add).
_ALLOWED_HEADERS: Final = frozenset(
    {
        "accept",
        "authorization",
        "cartesia-version",
        "content-type",
        "user-agent",
        "x-api-key",
        "x-cartesia-client",
        "x-request-id",
    }
)
_ALLOWED_PREFIXES: Final = ("x-stainless-",)
_EXPOSED: Final = "X-Request-Id, Retry-After"
_MAX_AGE: Final = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def allowed_origins(value: str | Collection[str] | None) -> frozenset[str] | None:
    """``serve(cors_origins=...)`` as a set of origins (one string is one origin).

    Raises:
        UsageError: For an origin that is not a string.
    """
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise UsageError(f"cors_origins must be origin strings or '*', got {item!r}")
    return frozenset(item.rstrip("/") for item in items)


def origin_allowed(origin: str, allowed: Collection[str] | None) -> bool:
    """Whether ``origin`` may call the twin from a page (``None``: any loopback origin)."""
    if allowed is None:
        return bool(_LOOPBACK.match(origin))
    return "*" in allowed or origin in allowed


def _header_allowed(name: str) -> bool:
    return name in _ALLOWED_HEADERS or name.startswith(_ALLOWED_PREFIXES)


def _forbidden(message: str, code: str) -> web.Response:
    body = {"error_code": code, "title": "CORS preflight refused", "message": message}
    return web.Response(status=403, text=json.dumps(body), content_type="application/json")


async def preflight(request: web.Request) -> web.StreamResponse:
    """Answer ``OPTIONS`` on a CORS route: the allowed origin, method and headers."""
    method = CORS_ROUTES[request.path]
    origin = request.headers.get("Origin")
    wanted = request.headers.get("Access-Control-Request-Method")
    if origin is None or wanted is None:  # not a preflight: say what the route takes
        return web.Response(status=204, headers={"Allow": f"{method}, OPTIONS"})
    if not origin_allowed(origin, request.app[OPTIONS].cors_origins):
        return _forbidden(
            f"origin {origin!r} is not allowed; start the twin with serve(cors_origins=[...])",
            "origin_not_allowed",
        )
    if wanted.upper() != method:
        return _forbidden(f"{request.path} takes {method}, not {wanted}", "method_not_allowed")
    raw = request.headers.get("Access-Control-Request-Headers", "")
    names = [h.strip().lower() for h in raw.split(",") if h.strip()]
    refused = [n for n in names if not _header_allowed(n)]
    if refused:
        return _forbidden(f"header(s) not allowed: {', '.join(refused)}", "header_not_allowed")
    headers = {
        "Access-Control-Allow-Methods": f"{method}, OPTIONS",
        "Access-Control-Max-Age": _MAX_AGE,
    }
    if names:
        headers["Access-Control-Allow-Headers"] = ", ".join(names)
    if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return web.Response(status=204, headers=headers)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add the CORS response headers on the CORS routes, for allowed origins."""
    response = await handler(request)
    origin = request.headers.get("Origin")
    if request.path in CORS_ROUTES and origin is not None:
        response.headers.add("Vary", "Origin")
        if origin_allowed(origin, request.app[OPTIONS].cors_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = _EXPOSED
    return response
