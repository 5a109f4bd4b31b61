"""The public surface is small and pinned; every error has one root."""

from __future__ import annotations

import inspect

import cartesia_stt_async
import cartesia_stt_async.errors as errors
import cartesia_stt_async.twin as twin

PUBLIC = [
    "ENCODINGS",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncCartesia",
    "AsyncConnection",
    "AudioFormat",
    "AuthenticationError",
    "BadRequestError",
    "CartesiaSTTError",
    "ConfigurationError",
    "ConnectionClosedError",
    "ConnectionManager",
    "ConnectionStateError",
    "ConnectionStats",
    "DoneEvent",
    "Encoding",
    "ErrorEvent",
    "Event",
    "FlushDoneEvent",
    "InvalidAudioError",
    "InvalidCommandError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "Transcript",
    "TranscriptEvent",
    "UnknownEvent",
    "UsageError",
    "Utterance",
    "Word",
    "__version__",
    "connect",
    "parse_event",
]


def test_all_is_pinned_and_importable() -> None:
    assert cartesia_stt_async.__all__ == PUBLIC
    for name in PUBLIC:
        assert hasattr(cartesia_stt_async, name), name


def test_twin_surface() -> None:
    assert twin.__all__ == sorted(twin.__all__)
    for name in twin.__all__:
        assert hasattr(twin, name), name


def test_every_error_has_the_one_root() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) >= 18
    for cls in classes:
        assert issubclass(cls, errors.CartesiaSTTError), cls
    assert issubclass(errors.APITimeoutError, TimeoutError)


def test_error_for_status_and_messages() -> None:
    err = errors.error_for_status(429, "slow down", retry_after=2.5, request_id="r")
    assert isinstance(err, errors.RateLimitError)
    assert (err.status_code, err.retry_after, err.request_id) == (429, 2.5, "r")
    assert str(err) == "429: slow down"
    assert type(errors.error_for_status(502, "x")) is errors.ServerError
    assert type(errors.error_for_status(409, "x")) is errors.APIStatusError
    titled = errors.APIError("bad model", status_code=400, title="Invalid model")
    assert str(titled) == "400 Invalid model: bad model"
