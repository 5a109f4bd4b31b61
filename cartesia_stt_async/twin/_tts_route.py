"""``POST /tts/bytes``: offline speech synthesis (the Pico voice, see :mod:`._tts`).

Authorized like the socket: an API key, or an access token with the ``tts`` grant. A bad field
is HTTP 400 naming it; without py-nanotts the route answers 501 saying what to install.
"""

from __future__ import annotations

import json
import uuid

from aiohttp import web

from .._install import install_hint
from ._auth import authorize, refusal
from ._state import OPTIONS, TWIN
from ._tts import Synthesizer, TTSRequest, TTSRequestError

__all__ = ["tts_bytes_route"]


async def tts_bytes_route(request: web.Request) -> web.StreamResponse:
    """Synthesize the request's transcript; the body is the audio (raw or WAV)."""
    twin, opts = request.app[TWIN], request.app[OPTIONS]
    request_id = str(uuid.uuid4())
    refused = authorize(request, opts, twin.tokens, "tts")
    if refused is not None:
        return refused.response(request_id)
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        return refusal(400, request_id, "Invalid request", "body is not JSON", "invalid_request")
    try:
        tts_request = TTSRequest.from_json(body)
    except TTSRequestError as err:
        return refusal(400, request_id, "Invalid request", str(err), "invalid_request")
    if opts.synthesizer is None:
        try:
            opts.synthesizer = Synthesizer()
        except ImportError:
            return refusal(
                501,
                request_id,
                "Speech synthesis unavailable",
                f"the twin's /tts/bytes needs py-nanotts: {install_hint('twin')}",
                "not_implemented",
            )
    audio = await opts.synthesizer.generate(tts_request)
    content_type = "audio/wav" if tts_request.container == "wav" else "application/octet-stream"
    return web.Response(body=audio, content_type=content_type, headers={"X-Request-Id": request_id})
