"""``client.tts``: speech synthesis over HTTP (``POST /tts/bytes``).

Shaped like the official SDK's async ``client.tts.generate(...)``, so the seed example's
``audio = await (await client.tts.generate(...)).read()`` runs unchanged. Against the local
twin the voice is an offline one (SVOX Pico); against the real API it is the voice you name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from multidict import CIMultiDict

from ._http import HTTPClient
from .errors import UsageError

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

    Args:
        http: The client's HTTP transport (closed by the client's ``close()``).
    """

    def __init__(self, http: HTTPClient) -> None:
        self._http = http

    def __repr__(self) -> str:
        return f"<TTS url={self._http.url('/tts/bytes')!r}>"

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
        content, headers = await self._http.post("/tts/bytes", body, accept="audio/wav")
        return SpeechResponse(content, headers)
