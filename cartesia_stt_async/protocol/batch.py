"""Batch transcription (``POST /stt``): the request's checks and fields, and the answer (pure).

The contract (docs/files.md): a ``multipart/form-data`` body with a ``file`` part and the form
fields ``model``, ``language`` and one ``timestamp_granularities[]`` part per value; ``encoding``
and ``sample_rate`` (raw PCM only) travel in the query string, as both official SDKs send them.
The answer is JSON: ``{"type": "transcript", "text", "request_id", "language", "duration",
"words": [{"word", "start", "end"}]}``, ``words`` only when word timestamps were asked for.

Every argument is checked here before any I/O, each failure a
:class:`~cartesia_stt_async.errors.UsageError` naming the bad value. Our decisions where the
contract is open (the SDKs type these as plain strings):

* ``model`` must be of the ink-whisper family (``ink-whisper``, ``ink-whisper-2025-06-04``,
  later dated snapshots): batch transcription is ink-whisper only.
* ``language`` must be one of the 100 ISO-639-1 codes the docs and SDKs list.
* ``encoding`` and ``sample_rate`` go together: raw PCM needs both, a container file neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from ..errors import ProtocolError, UsageError
from .audio import ENCODINGS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from .checks import check_int
from .events import Word

__all__ = [
    "BATCH_MODEL_FAMILY",
    "LANGUAGES",
    "STT_BATCH_PATH",
    "TIMESTAMP_GRANULARITIES",
    "TranscribeParams",
    "Transcription",
    "audio_duration",
    "check_transcribe",
    "decode_transcription",
]

STT_BATCH_PATH: Final = "/stt"

BATCH_MODEL_FAMILY: Final = "ink-whisper"
"""Batch models: ``ink-whisper`` and its dated snapshots (``ink-whisper-2025-06-04``)."""

TIMESTAMP_GRANULARITIES: Final = ("word",)

LANGUAGES: Final = frozenset(
    [
        "en",
        "zh",
        "de",
        "es",
        "ru",
        "ko",
        "fr",
        "ja",
        "pt",
        "tr",
        "pl",
        "ca",
        "nl",
        "ar",
        "sv",
        "it",
        "id",
        "hi",
        "fi",
        "vi",
        "he",
        "uk",
        "el",
        "ms",
        "cs",
        "ro",
        "da",
        "hu",
        "ta",
        "no",
        "th",
        "ur",
        "hr",
        "bg",
        "lt",
        "la",
        "mi",
        "ml",
        "cy",
        "sk",
        "te",
        "fa",
        "lv",
        "bn",
        "sr",
        "az",
        "sl",
        "kn",
        "et",
        "mk",
        "br",
        "eu",
        "is",
        "hy",
        "ne",
        "mn",
        "bs",
        "kk",
        "sq",
        "sw",
        "gl",
        "mr",
        "pa",
        "si",
        "km",
        "sn",
        "yo",
        "so",
        "af",
        "oc",
        "ka",
        "be",
        "tg",
        "sd",
        "gu",
        "am",
        "yi",
        "lo",
        "uz",
        "fo",
        "ht",
        "ps",
        "tk",
        "nn",
        "mt",
        "sa",
        "lb",
        "my",
        "bo",
        "tl",
        "mg",
        "as",
        "tt",
        "haw",
        "ln",
        "ha",
        "ba",
        "jw",
        "su",
        "yue",
    ]
)
"""The ISO-639-1 codes batch transcription takes (the official SDK's list)."""


class Transcription(msgspec.Struct, kw_only=True):
    """The answer of ``client.stt.transcribe(...)``.

    Attributes:
        text: The whole transcript.
        request_id: The server's id of this request (the ``X-Request-Id`` header when the
            body has none), or ``None``.
        language: The language, as given in the request.
        duration: Seconds of audio in the file.
        words: Each word with its start and end in seconds from the start of the file, when
            ``timestamp_granularities=["word"]`` was asked for; else ``None``.
        type: Always ``"transcript"``.
    """

    text: str
    request_id: str | None = None
    language: str | None = None
    duration: float | None = None
    words: list[Word] | None = None
    type: str = "transcript"


_DECODER: Final = msgspec.json.Decoder(Transcription)


def decode_transcription(body: bytes, request_id: str | None = None) -> Transcription:
    """Decode a ``POST /stt`` answer (unknown fields are ignored).

    Args:
        body: The response body.
        request_id: The ``X-Request-Id`` header (redacted), used when the body has no
            ``request_id``, and named in the error.

    Raises:
        ProtocolError: The body is not a transcript (not JSON, no ``text``, wrong types).
    """
    try:
        result = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # The request id is what support asks for: status errors carry it, this one too.
        of = f" (request id {request_id})" if request_id else ""
        raise ProtocolError(f"the /stt answer{of} is not a transcript: {exc}") from None
    if result.request_id is None and request_id:
        result.request_id = request_id
    return result


class _Duration(msgspec.Struct):
    duration: float | None = None


_DURATION_DECODER: Final = msgspec.json.Decoder(_Duration)


def audio_duration(body: bytes) -> float | None:
    """The ``duration`` of a ``POST /stt`` answer (seconds), ``None`` when it has none or is
    not a transcript: only what an observer's record needs, nothing else decoded."""
    try:
        return _DURATION_DECODER.decode(body).duration
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True)
class TranscribeParams:
    """The checked arguments of one ``transcribe`` call (everything but the file)."""

    model: str
    language: str | None = None
    timestamp_granularities: tuple[str, ...] = ()
    encoding: str | None = None
    sample_rate: int | None = None

    def query(self) -> list[tuple[str, str]]:
        """The query string's pairs: ``encoding`` and ``sample_rate`` for raw PCM."""
        pairs = []
        if self.encoding is not None:
            pairs.append(("encoding", self.encoding))
        if self.sample_rate is not None:
            pairs.append(("sample_rate", str(self.sample_rate)))
        return pairs

    def fields(self) -> list[tuple[str, str]]:
        """The form fields besides ``file``, in the official SDK's order."""
        pairs = [("model", self.model)]
        if self.language is not None:
            pairs.append(("language", self.language))
        pairs += [("timestamp_granularities[]", g) for g in self.timestamp_granularities]
        return pairs


def _check_model(model: object) -> str:
    if not isinstance(model, str) or not (
        model == BATCH_MODEL_FAMILY or model.startswith(BATCH_MODEL_FAMILY + "-")
    ):
        raise UsageError(
            f"model must be an ink-whisper model for batch transcription "
            f"('ink-whisper' or a dated 'ink-whisper-YYYY-MM-DD'), got {model!r}"
        )
    return model


def _check_language(language: object) -> str | None:
    if language is None or (isinstance(language, str) and language in LANGUAGES):
        return language
    raise UsageError(
        f"language must be an ISO-639-1 code batch transcription supports "
        f"(e.g. 'en', 'de', 'ja'), got {language!r}"
    )


def _check_granularities(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise UsageError(f"timestamp_granularities must be a list like ['word'], got {value!r}")
    bad = [g for g in value if g not in TIMESTAMP_GRANULARITIES]
    if bad:
        raise UsageError(
            f"timestamp_granularities values must be 'word', got {bad[0]!r} in {list(value)!r}"
        )
    return tuple(dict.fromkeys(value))


def check_transcribe(
    *,
    model: object,
    language: object = None,
    timestamp_granularities: object = None,
    encoding: object = None,
    sample_rate: object = None,
) -> TranscribeParams:
    """Check ``transcribe``'s arguments (all but the file), before any I/O.

    Returns:
        The checked parameters.

    Raises:
        UsageError: Naming the first bad argument and its value.
    """
    checked_model = _check_model(model)
    checked_language = _check_language(language)
    granularities = _check_granularities(timestamp_granularities)
    if encoding is not None and encoding not in ENCODINGS:
        raise UsageError(
            f"encoding must be one of {', '.join(ENCODINGS)} (raw PCM) or None (a container "
            f"file such as WAV), got {encoding!r}"
        )
    rate = check_int(
        "sample_rate",
        sample_rate,
        low=MIN_SAMPLE_RATE,
        high=MAX_SAMPLE_RATE,
        none=True,
        wanted=f"an int from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz or None",
    )
    if (encoding is None) != (rate is None):
        raise UsageError(
            "raw PCM needs both encoding and sample_rate; a container file (WAV, MP3, ...) "
            f"neither (got encoding={encoding!r}, sample_rate={sample_rate!r})"
        )
    return TranscribeParams(
        model=checked_model,
        language=checked_language,
        timestamp_granularities=granularities,
        encoding=encoding,
        sample_rate=rate,
    )
