"""Checking a connection's query parameters: what the twin accepts on ``/stt/websocket``.

A bad parameter does not refuse the handshake: the session loop sends one ``error`` event
(``status_code`` 400) built from the :class:`ParamError` and closes 1008.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from ..errors import UsageError
from ..protocol.audio import ENCODINGS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ..protocol.commands import MAX_KEYTERM_CHARS, MAX_KEYTERMS
from .engines import SessionParams

__all__ = ["MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "MODELS", "ParamError", "validate_params"]

MODELS: Final = frozenset({"ink-2", "ink-whisper", "ink-whisper-2025-06-04"})


class ParamError(UsageError):
    """A query parameter the twin rejects; its fields become the ``error`` event.

    Attributes:
        title: Short title, e.g. ``"Invalid model"``.
        message: What is wrong, naming the parameter.
        error_code: Machine-readable code (``invalid_parameter``, ``model_not_found``, ...).
    """

    def __init__(self, title: str, message: str, error_code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.error_code = error_code


def _float_param(name: str, raw: str, low: float, high: float | None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ParamError("Invalid parameter", f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ParamError("Invalid parameter", f"{name} must be {bound}, got {raw!r}")
    return value


def _required(single: dict[str, str], name: str) -> str:
    value = single.get(name)
    if not value:
        raise ParamError("Missing parameter", f"{name} is required")
    return value


def _check_language(model: str, language: str) -> None:
    if model == "ink-2" and language != "en":
        raise ParamError(
            "Unsupported language",
            f"language {language!r} is not supported by ink-2 (English only)",
            "language_not_supported",
        )
    if not (language.isascii() and language.isalpha() and 2 <= len(language) <= 3):
        raise ParamError("Invalid language", f"language {language!r} is not an ISO-639 code")


def _check_keyterms(keyterms: tuple[str, ...]) -> None:
    if len(keyterms) > MAX_KEYTERMS:
        raise ParamError(
            "Too many keyterms",
            f"at most {MAX_KEYTERMS} keyterms are allowed, got {len(keyterms)}",
        )
    if sum(len(t) for t in keyterms) > MAX_KEYTERM_CHARS:
        raise ParamError(
            "Keyterms too long", f"keyterms may total at most {MAX_KEYTERM_CHARS} characters"
        )


def validate_params(query: Sequence[tuple[str, str]], version: str | None) -> SessionParams:
    """Check a connection's query parameters, as the twin does before a session starts.

    Args:
        query: The query pairs as received, in order (repeated ``keyterm`` keys kept).
        version: The ``cartesia-version`` header, if any (a ``cartesia_version`` query wins).

    Returns:
        The validated parameters.

    Raises:
        ParamError: Naming the first bad or missing parameter.
    """
    single = dict(query)
    model = _required(single, "model")
    if model not in MODELS:
        raise ParamError(
            "Invalid model",
            f"The model {model!r} is not valid, make sure it is a valid model ID.",
            "model_not_found",
        )
    encoding = _required(single, "encoding")
    if encoding not in ENCODINGS:
        raise ParamError(
            "Invalid encoding",
            f"encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}",
        )
    raw_rate = _required(single, "sample_rate")
    if not raw_rate.isdigit() or not MIN_SAMPLE_RATE <= int(raw_rate) <= MAX_SAMPLE_RATE:
        raise ParamError(
            "Invalid sample rate",
            f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}, "
            f"got {raw_rate!r}",
        )
    language = single.get("language")
    if language is not None:
        _check_language(model, language)
    keyterms = tuple(v for k, v in query if k == "keyterm")
    _check_keyterms(keyterms)
    min_volume = single.get("min_volume")
    max_silence = single.get("max_silence_duration_secs")
    return SessionParams(
        model=model,
        encoding=encoding,
        sample_rate=int(raw_rate),
        language=language,
        keyterms=keyterms,
        min_volume=None if min_volume is None else _float_param("min_volume", min_volume, 0.0, 1.0),
        max_silence_duration_secs=None
        if max_silence is None
        else _float_param("max_silence_duration_secs", max_silence, 0.0, None),
        version=single.get("cartesia_version") or version,
    )
