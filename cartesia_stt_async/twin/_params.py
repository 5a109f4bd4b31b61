"""Checking a connection's query parameters: what the twin accepts on ``/stt/websocket`` and
``/stt/turns/websocket`` (and in the latter's ``config`` commands).

A bad parameter does not refuse the handshake: the session loop sends one ``error`` event
(``status_code`` 400) built from the :class:`ParamError` and closes 1008.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from ..errors import UsageError
from ..protocol.audio import ENCODINGS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ..protocol.commands import MAX_KEYTERM_CHARS, MAX_KEYTERMS
from ._detector import DEFAULT_SETTINGS, TurnSettings
from .engines import SessionParams

__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "MODELS",
    "TURN_MODELS",
    "TURN_RANGES",
    "ParamError",
    "turn_settings",
    "validate_params",
    "validate_turn_params",
]

MODELS: Final = frozenset({"ink-2", "ink-whisper", "ink-whisper-2025-06-04"})
TURN_MODELS: Final = frozenset({"ink-2"})
# Cartesia's documented ranges of the turn parameters (inclusive).
TURN_RANGES: Final = {
    "start_threshold": (0.5, 0.9),
    "eager_end_threshold": (0.3, 0.6),
    "end_threshold": (0.05, 0.5),
    "end_timeout_ms": (640.0, 11200.0),
}


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


def _float_param(name: str, raw: object, low: float, high: float | None) -> float:
    try:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError
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


def _audio_params(
    query: Sequence[tuple[str, str]], models: frozenset[str]
) -> tuple[dict[str, str], str, str, int, tuple[str, ...]]:
    """The parameters both socket routes share: model, encoding, sample rate, keyterms.

    Returns:
        The last value of each name, then the model, encoding, rate and keyterms.
    """
    single = dict(query)
    model = _required(single, "model")
    if model not in models:
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
    keyterms = tuple(v for k, v in query if k == "keyterm")
    _check_keyterms(keyterms)
    return single, model, encoding, int(raw_rate), keyterms


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
    single, model, encoding, rate, keyterms = _audio_params(query, MODELS)
    language = single.get("language")
    if language is not None:
        _check_language(model, language)
    min_volume = single.get("min_volume")
    max_silence = single.get("max_silence_duration_secs")
    return SessionParams(
        model=model,
        encoding=encoding,
        sample_rate=rate,
        language=language,
        keyterms=keyterms,
        min_volume=None if min_volume is None else _float_param("min_volume", min_volume, 0.0, 1.0),
        max_silence_duration_secs=None
        if max_silence is None
        else _float_param("max_silence_duration_secs", max_silence, 0.0, None),
        version=single.get("cartesia_version") or version,
    )


def turn_settings(
    values: Mapping[str, object], base: TurnSettings, prefix: str = "turn_"
) -> TurnSettings:
    """``base`` with the turn parameters found in ``values`` checked and applied.

    Args:
        values: Query parameters (``turn_start_threshold``, ...: ``prefix`` + field name) or
            a ``config`` command's ``turn`` object (``prefix=""``); other names are ignored.
        base: The settings the values change.
        prefix: What precedes each field name in ``values``.

    Returns:
        The new settings.

    Raises:
        ParamError: A value that is not a number, out of its range, or thresholds out of
            order (start > eager end > end).
    """
    changed: dict[str, float] = {}
    for name, (low, high) in TURN_RANGES.items():
        raw = values.get(prefix + name)
        if raw is not None:
            changed[name] = _float_param(prefix + name, raw, low, high)
    settings = replace(base, **changed)
    if not (settings.start_threshold > settings.eager_end_threshold > settings.end_threshold):
        raise ParamError(
            "Invalid parameter",
            f"the turn thresholds must be ordered {prefix}start_threshold > "
            f"{prefix}eager_end_threshold > {prefix}end_threshold, got "
            f"{settings.start_threshold} > {settings.eager_end_threshold} > "
            f"{settings.end_threshold}",
        )
    return settings


def validate_turn_params(
    query: Sequence[tuple[str, str]], version: str | None
) -> tuple[SessionParams, TurnSettings]:
    """Check the query parameters of a ``/stt/turns/websocket`` connection.

    Unknown parameters (``language`` among them: the route is English only) are ignored.

    Args:
        query: The query pairs as received, in order (repeated ``keyterm`` keys kept).
        version: The ``cartesia-version`` header, if any (a ``cartesia_version`` query wins).

    Returns:
        The recognizer's parameters and the turn settings.

    Raises:
        ParamError: Naming the first bad or missing parameter.
    """
    single, model, encoding, rate, keyterms = _audio_params(query, TURN_MODELS)
    settings = turn_settings(single, DEFAULT_SETTINGS)
    params = SessionParams(
        model=model,
        encoding=encoding,
        sample_rate=rate,
        keyterms=keyterms,
        version=single.get("cartesia_version") or version,
    )
    return params, settings
