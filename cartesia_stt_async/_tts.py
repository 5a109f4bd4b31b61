"""``client.tts``: speech synthesis over HTTP (``POST /tts/bytes``, protocol.md §7), on aiohttp.

Shaped like the official SDK's async ``client.tts.generate(...)``, so the seed example's
``audio = await (await client.tts.generate(...)).read()`` runs unchanged. Against the local
twin the voice is an offline one (SVOX Pico); against the real API it is the voice you name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from ._translate import Secrets, http_error, status_error
from ._version import __version__
from .errors import UsageError
from .protocol.commands import build_headers, secrets_in

__all__ = ["TTS", "SpeechResponse"]


class SpeechResponse:
    """The audio of one ``generate`` call (already received in full).

    Attributes:
        headers: The HTTP response headers (case-insensitive names).
        request_id: The ``X-Request-Id`` response header, if any.
        content_type: The response's content type (``audio/wav`` for the WAV container).
    """

    def __init__(self, content: bytes, headers: Mapping[str, str]) -> None:
        self._content = content
        self.headers: CIMultiDict[str] = CIMultiDict(headers)
        self.request_id = self.headers.get("X-Request-Id")
        self.content_type = self.headers.get("Content-Type", "")

    def __repr__(self) -> str:
        return f"<SpeechResponse {len(self._content)} bytes {self.content_type!r}>"

    async def read(self) -> bytes:
        """The audio bytes: raw PCM, or a whole WAV file for ``container: "wav"``."""
        return self._content

    async def iter_bytes(self, chunk_size: int = 4096) -> AsyncIterator[bytes]:
        """The audio in chunks of ``chunk_size`` bytes."""
        if chunk_size <= 0:
            raise UsageError(f"chunk_size must be positive, got {chunk_size}")
        for i in range(0, len(self._content), chunk_size):
            yield self._content[i : i + chunk_size]

    async def write_to_file(self, path: str | Path) -> None:
        """Write the audio to ``path``."""
        await asyncio.to_thread(Path(path).write_bytes, self._content)


class TTS:
    """``client.tts``: ``await client.tts.generate(...)``.

    One aiohttp session per client, opened on first use and closed by ``client.close()``
    (or ``async with AsyncCartesia(...)``).
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
        self._url = base_url.rstrip("/") + "/tts/bytes"
        self._headers = build_headers(
            api_key=api_key,
            cartesia_version=cartesia_version,
            user_agent=f"cartesia-stt-async/{__version__}",
            extra_headers=dict(default_headers),
        )
        self._headers.setdefault("Accept", "audio/wav")
        self._secrets = Secrets(api_key, *secrets_in(None, default_headers))
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<TTS url={self._secrets.url(self._url)!r}>"

    async def generate(
        self,
        *,
        model_id: str,
        transcript: str,
        voice: str | Mapping[str, Any],
        output_format: Mapping[str, Any],
        language: str | None = None,
        **extra_body: Any,
    ) -> SpeechResponse:
        """Synthesize ``transcript``; return the response, whose ``await .read()`` is the audio.

        Args:
            model_id: For example ``"sonic-latest"``.
            transcript: The text to speak.
            voice: A voice id, or ``{"mode": "id", "id": ...}`` / ``{"id": ...}``.
            output_format: ``{"container": "raw" | "wav", "encoding": ..., "sample_rate": ...}``.
            language: Language code (for example ``"en"``).
            **extra_body: More request fields (``speed``, ``generation_config``, ...), sent as is.

        Raises:
            UsageError: For an empty transcript or a malformed ``output_format``.
            APIStatusError: The server refused (``BadRequestError``, ``AuthenticationError``,
                ``RateLimitError``, ...), with the server's message.
            APIConnectionError: The server could not be reached (``APITimeoutError`` on timeout).
        """
        if not isinstance(transcript, str) or not transcript.strip():
            raise UsageError("transcript must be non-empty text")
        if not isinstance(output_format, Mapping) or "container" not in output_format:
            raise UsageError(
                "output_format must be a mapping like "
                "{'container': 'raw', 'encoding': 'pcm_s16le', 'sample_rate': 16000}"
            )
        body: dict[str, Any] = {
            "model_id": model_id,
            "transcript": transcript,
            "voice": voice,
            "output_format": dict(output_format),
            **extra_body,
        }
        if language is not None:
            body["language"] = language
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with session.post(self._url, json=body, headers=self._headers) as response:
                content = await response.read()
        except Exception as exc:
            error = http_error(exc, self._secrets.url(self._url), self._secrets, self._timeout)
            if error is None:
                raise
        else:
            error = None
        if error is not None:
            raise error  # outside the except block: the foreign exception is not kept
        if response.status >= 400:
            raise status_error(
                response.status, response.reason or "", content, response.headers, self._secrets
            )
        return SpeechResponse(content, response.headers)

    async def aclose(self) -> None:
        """Close the HTTP connection pool (a later ``generate`` opens a new one)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
