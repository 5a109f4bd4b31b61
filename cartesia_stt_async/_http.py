"""Turn a refused HTTP exchange (handshake or REST) into this package's typed error."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from .errors import APIStatusError, error_for_status
from .protocol.commands import redact

__all__ = ["status_error"]


def status_error(
    status: int,
    reason: str,
    body: bytes | None,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    what: str = "",
) -> APIStatusError:
    """Build the :class:`APIStatusError` for an HTTP status, reading Cartesia's JSON body.

    The body's ``message``, ``title``, ``error_code`` and ``request_id`` are used when present
    (protocol.md §7); a plain-text body is quoted (truncated). ``Retry-After`` feeds
    ``RateLimitError.retry_after``. Secrets are redacted from the message. ``what`` prefixes
    the fallback message (``"handshake refused with "``).
    """
    message = f"{what}HTTP {status} {reason}".rstrip()
    title = error_code = request_id = None
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        parsed = None
        text = (body or b"").decode("utf-8", "replace").strip()
        if text:
            message = f"{message}: {text[:200]}"
    if isinstance(parsed, dict):
        if isinstance(parsed.get("message"), str):
            message = parsed["message"]
        title = parsed.get("title") if isinstance(parsed.get("title"), str) else None
        code = parsed.get("error_code")
        error_code = code if isinstance(code, str) else None
        rid = parsed.get("request_id")
        request_id = rid if isinstance(rid, str) else None
    request_id = request_id or headers.get("X-Request-Id")
    retry_after: float | None = None
    raw_retry = headers.get("Retry-After")
    if raw_retry is not None:
        try:
            retry_after = float(raw_retry)
        except ValueError:
            retry_after = None
    return error_for_status(
        status,
        redact(message, secrets),
        title=title,
        error_code=error_code,
        request_id=request_id,
        retry_after=retry_after,
    )
