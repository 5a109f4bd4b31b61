"""The public surface is small and pinned; every error has one root (style.md habits 4 and 9)."""

from __future__ import annotations

import dataclasses
import inspect
import pkgutil
import re

import pytest

import cartesia_stt_async
import cartesia_stt_async.errors as errors
import cartesia_stt_async.twin as twin
from cartesia_stt_async._config import (
    OPTION_NAMES,
    TURN_OPTION_NAMES,
    SessionConfig,
    SessionOptions,
    TurnSessionConfig,
    TurnSessionOptions,
)

# Sorted as ruff's RUF022 sorts ``__all__``: SCREAMING_CASE, then CamelCase, then the rest.
PUBLIC = [
    "ENCODINGS",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AccessToken",
    "AsyncCartesia",
    "AsyncConnection",
    "AsyncTurnConnection",
    "AudioFormat",
    "AudioSource",
    "AuthenticationError",
    "BadRequestError",
    "BufferFullError",
    "BufferPolicy",
    "Cartesia",
    "CartesiaSTTError",
    "ConfigurationError",
    "ConflictError",
    "ConnectedEvent",
    "ConnectionClosedError",
    "ConnectionManager",
    "ConnectionStateError",
    "ConnectionStats",
    "Cue",
    "DoneEvent",
    "Encoding",
    "ErrorEvent",
    "Event",
    "EventHandler",
    "FlushDoneEvent",
    "InvalidAudioError",
    "InvalidCommandError",
    "NotFoundError",
    "PermissionDeniedError",
    "Preflight",
    "ProtocolError",
    "ProxyError",
    "RateLimitError",
    "ReconnectError",
    "ReconnectingEvent",
    "RetryPolicy",
    "ServerError",
    "SessionOptions",
    "SpeechResponse",
    "SyncConnection",
    "SyncConnectionManager",
    "SyncSpeechResponse",
    "SyncTurnConnection",
    "SyncTurnConnectionManager",
    "TLSError",
    "TimedWord",
    "Transcript",
    "TranscriptEvent",
    "Transcription",
    "Turn",
    "TurnConfigError",
    "TurnConnectionManager",
    "TurnEagerEndEvent",
    "TurnEndEvent",
    "TurnEvent",
    "TurnResumeEvent",
    "TurnSessionOptions",
    "TurnSettings",
    "TurnSignal",
    "TurnStartEvent",
    "TurnTranscript",
    "TurnUpdateEvent",
    "UnknownEvent",
    "UnprocessableEntityError",
    "UsageError",
    "Utterance",
    "Word",
    "__version__",
    "connect",
    "cues",
    "parse_event",
    "parse_turn_event",
    "to_srt",
    "to_vtt",
]


def isort_key(name: str) -> tuple[int, str]:
    """RUF022's order: constants, then classes, then everything else; each alphabetical."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_pinned() -> None:
    assert cartesia_stt_async.__all__ == PUBLIC


# Modules users may import; every other module of the package is private (``_`` prefix).
PUBLIC_MODULES = {
    "errors",
    "protocol",
    "twin",
    "testing",
    "cli",
    "audio",
    "vad",
    "subtitles",
    "observe",
    "otel",
    "prometheus",
}


def test_internal_modules_are_private() -> None:
    names = {m.name for m in pkgutil.iter_modules(cartesia_stt_async.__path__)}
    assert {n for n in names if not n.startswith("_")} <= PUBLIC_MODULES


def test_session_options_and_the_config_list_the_same_options() -> None:
    assert set(SessionOptions.__annotations__) == OPTION_NAMES
    config_fields = {f.name for f in dataclasses.fields(SessionConfig) if f.init}
    assert config_fields == OPTION_NAMES | {"model", "encoding", "sample_rate"}


def test_turn_session_options_and_the_config_list_the_same_options() -> None:
    assert set(TurnSessionOptions.__annotations__) == TURN_OPTION_NAMES
    config_fields = {f.name for f in dataclasses.fields(TurnSessionConfig) if f.init}
    manual_only = {"language", "min_volume", "max_silence_duration_secs"}
    manual_only |= {"late_final_grace", "final_order"}
    assert config_fields == TURN_OPTION_NAMES | manual_only | {"model", "encoding", "sample_rate"}


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_exists(name: str) -> None:
    assert hasattr(cartesia_stt_async, name)


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from cartesia_stt_async import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC)


def test_version_is_a_string() -> None:
    assert isinstance(cartesia_stt_async.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", cartesia_stt_async.__version__)


def test_every_error_is_exported_at_the_top() -> None:
    exported = [n for n in errors.__all__ if inspect.isclass(getattr(errors, n))]
    assert set(exported) <= set(PUBLIC)


def test_errors_all_is_sorted_and_complete() -> None:
    assert sorted(errors.__all__, key=isort_key) == errors.__all__
    for name in errors.__all__:
        assert hasattr(errors, name), name
    defined = {
        name
        for name, obj in vars(errors).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == errors.__name__
    }
    assert defined == set(errors.__all__)


def error_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__ and issubclass(cls, BaseException)
    ]


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_every_error_derives_from_the_root(cls: type[BaseException]) -> None:
    assert issubclass(cls, errors.CartesiaSTTError)
    assert issubclass(cls, Exception)


def test_api_timeout_error_is_also_a_builtin_timeout() -> None:
    assert issubclass(errors.APITimeoutError, TimeoutError)


def test_usage_and_remote_errors_are_disjoint() -> None:
    # "You called this wrong" and "the peer broke the rules" never share a branch.
    local = [c for c in error_classes() if issubclass(c, errors.UsageError)]
    assert {c.__name__ for c in local} == {
        "UsageError",
        "InvalidAudioError",
        "InvalidCommandError",
        "ConnectionStateError",
        "TurnConfigError",
    }
    for cls in local:
        assert not issubclass(cls, errors.ProtocolError | errors.APIError)


def drawn_tree() -> dict[str, str]:
    """Child → parent as drawn in the ``errors`` module docstring."""
    doc = errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.search(r"(?:├──|└──) (\w+)", line)
        if match:
            depth, name = match.start(), match.group(1)
        elif re.fullmatch(r"\s+CartesiaSTTError", line):
            depth, name = -1, "CartesiaSTTError"
        else:
            continue
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_the_docstring_draws_every_error_with_its_real_parent() -> None:
    parents = drawn_tree()
    assert set(parents) | {"CartesiaSTTError"} == {c.__name__ for c in error_classes()}
    for child, parent in parents.items():
        assert getattr(errors, parent) in getattr(errors, child).__bases__, (child, parent)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
        (503, errors.ServerError),
        (409, errors.ConflictError),
        (422, errors.UnprocessableEntityError),
        (418, errors.APIStatusError),
    ],
)
def test_error_for_status(status: int, cls: type[errors.APIStatusError]) -> None:
    err = errors.error_for_status(status, "msg", title="T", error_code="c", request_id="r")
    assert type(err) is cls
    assert (err.status_code, err.title, err.message, err.error_code, err.request_id) == (
        status,
        "T",
        "msg",
        "c",
        "r",
    )
    assert str(err) == f"{status} T: msg"


def test_rate_limit_carries_retry_after() -> None:
    err = errors.error_for_status(429, "slow down", retry_after=2.5, request_id="r")
    assert isinstance(err, errors.RateLimitError)
    assert (err.status_code, err.retry_after, err.request_id) == (429, 2.5, "r")
    assert str(err) == "429: slow down"


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"status_code": 400, "title": "Invalid model"}, "400 Invalid model: bad model"),
        ({"status_code": 400}, "400: bad model"),
        ({"title": "Invalid model"}, "Invalid model: bad model"),
        ({}, "bad model"),
    ],
)
def test_api_error_text(kwargs: dict[str, object], text: str) -> None:
    assert str(errors.APIError("bad model", **kwargs)) == text  # type: ignore[arg-type]


def test_connection_closed_error_fields() -> None:
    err = errors.ConnectionClosedError("gone", code=1011, reason="internal")
    assert (str(err), err.code, err.reason) == ("gone", 1011, "internal")
    bare = errors.ConnectionClosedError("gone")
    assert (bare.code, bare.reason) == (None, "")


def test_twin_surface_is_sorted_and_importable() -> None:
    assert sorted(twin.__all__, key=isort_key) == twin.__all__
    for name in twin.__all__:
        assert hasattr(twin, name), name


def test_help_shows_the_clients_resources() -> None:
    """Issue 21, first hour #9: help(AsyncCartesia) lists stt, tts and access_token."""
    import pydoc

    for cls in (cartesia_stt_async.AsyncCartesia, cartesia_stt_async.Cartesia):
        text = pydoc.plain(pydoc.render_doc(cls))
        for name in ("stt", "tts", "access_token"):
            assert f"\n |  {name}\n" in text, (cls.__name__, name)
