"""Commands, connect parameters, URL and headers (protocol.md §1, §2, §3): exact strings."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cartesia_stt_async.errors import ConfigurationError, InvalidCommandError, UsageError
from cartesia_stt_async.protocol.audio import AudioFormat
from cartesia_stt_async.protocol.commands import (
    COMMANDS,
    DEFAULT_BASE_URL,
    DEFAULT_CARTESIA_VERSION,
    STT_PATH,
    ConnectParams,
    build_headers,
    build_ws_url,
    normalize_command,
)

# -- commands ------------------------------------------------------------------------------------


def test_constants() -> None:
    assert COMMANDS == ("finalize", "close")
    assert DEFAULT_BASE_URL == "https://api.cartesia.ai"
    assert DEFAULT_CARTESIA_VERSION == "2026-08-14"  # what the official SDKs 4.x send
    assert STT_PATH == "/stt/websocket"


@pytest.mark.parametrize(
    ("given", "canonical"), [("finalize", "finalize"), ("close", "close"), ("done", "close")]
)
def test_normalize_command(given: str, canonical: str) -> None:
    assert normalize_command(given) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "Finalize",
        "CLOSE",
        "Done",
        "finalize ",
        " close",
        "flush",
        "config",
        "",
        '{"type":"close"}',
        '"finalize"',
    ],
)
def test_unknown_command_strings(bad: str) -> None:
    with pytest.raises(InvalidCommandError, match="unknown command") as exc:
        normalize_command(bad)
    assert repr(bad) in str(exc.value)


@pytest.mark.parametrize(
    ("bad", "type_name"),
    [(b"close", "bytes"), (None, "NoneType"), (1, "int"), (["finalize"], "list"), (True, "bool")],
)
def test_non_string_commands(bad: object, type_name: str) -> None:
    with pytest.raises(InvalidCommandError, match=f"got {type_name}$"):
        normalize_command(bad)


# -- ConnectParams -------------------------------------------------------------------------------


def build(**kw: Any) -> ConnectParams:
    args: dict[str, Any] = {"model": "ink-2", "encoding": "pcm_s16le", "sample_rate": 16000}
    args.update(kw)
    return ConnectParams.build(**args)


def test_minimal_query() -> None:
    assert build().query() == [
        ("model", "ink-2"),
        ("encoding", "pcm_s16le"),
        ("sample_rate", "16000"),
    ]


def test_query_order_and_repeated_keyterm() -> None:
    params = build(
        model="ink-whisper",
        encoding="pcm_mulaw",
        sample_rate=8000,
        language="de",
        keyterm=["Cartesia", "Ink 2", "Cartesia"],
        min_volume=0.1,
        max_silence_duration_secs=2,
        extra_query={"x": True, "y": [1, 2], "z": None, "w": ("a", None, False)},
    )
    assert params.query() == [
        ("model", "ink-whisper"),
        ("encoding", "pcm_mulaw"),
        ("sample_rate", "8000"),
        ("language", "de"),
        ("keyterm", "Cartesia"),
        ("keyterm", "Ink 2"),
        ("keyterm", "Cartesia"),  # repeated as given
        ("min_volume", "0.1"),
        ("max_silence_duration_secs", "2"),  # str() of what was given, as the official SDK
        ("x", "true"),
        ("y", "1"),
        ("y", "2"),
        ("w", "a"),
        ("w", "false"),
    ]
    assert params.keyterms == ("Cartesia", "Ink 2", "Cartesia")
    assert params.audio_format == AudioFormat("pcm_mulaw", 8000)


@pytest.mark.parametrize(
    "keyterm", [("a", "b"), ["a", "b"], (t for t in ("a", "b")), iter(["a", "b"])]
)
def test_keyterm_accepts_any_sequence_or_iterable(keyterm: Any) -> None:
    assert build(keyterm=keyterm).keyterms == ("a", "b")


@pytest.mark.parametrize("empty", [None, [], ()])
def test_no_keyterms(empty: Any) -> None:
    params = build(keyterm=empty)
    assert params.keyterms == ()
    assert not [k for k, _ in params.query() if k == "keyterm"]


def test_limits_are_inclusive() -> None:
    build(keyterm=[f"k{i:02d}" for i in range(100)])  # exactly 100
    build(keyterm=["x" * 600, "y" * 600])  # exactly 1200 characters
    build(keyterm=["é" * 1200])  # characters, not UTF-8 bytes
    build(min_volume=0)
    build(min_volume=1)
    build(min_volume=0.5)
    build(max_silence_duration_secs=1e6)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": None}, "model"),
        ({"model": 2}, "model"),
        ({"encoding": "opus"}, "encoding"),
        ({"encoding": None}, "encoding"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": -16000}, "sample_rate"),
        ({"sample_rate": 16000.5}, "sample_rate"),
        ({"sample_rate": 16000.0}, "sample_rate"),
        ({"sample_rate": "16000"}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"language": ""}, "language"),
        ({"language": 5}, "language"),
        ({"keyterm": "Cartesia"}, "keyterm"),
        ({"keyterm": b"Cartesia"}, "keyterm"),
        ({"keyterm": [""]}, "keyterm"),
        ({"keyterm": ["ok", None]}, "keyterm"),
        ({"keyterm": [1]}, "keyterm"),
        ({"keyterm": [b"bytes"]}, "keyterm"),
        ({"keyterm": [f"t{i}" for i in range(101)]}, "at most 100 keyterms, got 101"),
        ({"keyterm": ["x" * 1201]}, "keyterms total 1201 characters; the limit is 1200"),
        ({"keyterm": ["x" * 600, "y" * 601]}, "keyterms total 1201"),
        ({"min_volume": -0.1}, "min_volume"),
        ({"min_volume": 1.01}, "min_volume"),
        ({"min_volume": math.nan}, "min_volume"),
        ({"min_volume": math.inf}, "min_volume"),
        ({"min_volume": "0.1"}, "min_volume"),
        ({"min_volume": True}, "min_volume"),
        ({"max_silence_duration_secs": -1}, "max_silence_duration_secs"),
        ({"max_silence_duration_secs": math.inf}, "max_silence_duration_secs"),
        ({"max_silence_duration_secs": math.nan}, "max_silence_duration_secs"),
        ({"max_silence_duration_secs": "0.5"}, "max_silence_duration_secs"),
        ({"max_silence_duration_secs": False}, "max_silence_duration_secs"),
    ],
)
def test_bad_params_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(UsageError, match=field):
        build(**kw)


def test_bare_string_keyterm_has_a_clear_message() -> None:
    with pytest.raises(UsageError, match="keyterm must be a list of strings, not a single string"):
        build(keyterm="Cartesia")


def test_connect_params_rejects_a_bare_string_keyterms() -> None:
    with pytest.raises(UsageError, match="keyterm"):
        ConnectParams(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            keyterms="abc",  # type: ignore[arg-type]
        )


def test_connect_params_direct_construction_validates_too() -> None:
    with pytest.raises(UsageError, match="keyterm"):
        ConnectParams(model="ink-2", encoding="pcm_s16le", sample_rate=16000, keyterms=("",))
    with pytest.raises(UsageError, match="min_volume"):
        ConnectParams(model="ink-2", encoding="pcm_s16le", sample_rate=16000, min_volume=2.0)


# -- URL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.cartesia.ai", "wss://api.cartesia.ai/stt/websocket"),
        ("https://api.cartesia.ai/", "wss://api.cartesia.ai/stt/websocket"),
        ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/stt/websocket"),
        ("http://127.0.0.1:8765/", "ws://127.0.0.1:8765/stt/websocket"),
        ("https://example.com/api", "wss://example.com/api/stt/websocket"),
        ("https://example.com/api/", "wss://example.com/api/stt/websocket"),
        ("https://example.com/api///", "wss://example.com/api/stt/websocket"),
        ("http://localhost:80/a/b/", "ws://localhost:80/a/b/stt/websocket"),
        ("HTTP://Example.com", "ws://Example.com/stt/websocket"),
        ("https://[::1]:9000", "wss://[::1]:9000/stt/websocket"),
        ("ws://127.0.0.1:8765", "ws://127.0.0.1:8765/stt/websocket"),
        ("wss://example.com/v1", "wss://example.com/v1/stt/websocket"),
        ("https://example.com#frag", "wss://example.com/stt/websocket"),
    ],
)
def test_url_from_http_base(base_url: str, expected: str) -> None:
    assert build_ws_url([], base_url=base_url) == expected


def test_default_base_url() -> None:
    assert build_ws_url([("model", "ink-2")]) == "wss://api.cartesia.ai/stt/websocket?model=ink-2"


@pytest.mark.parametrize(
    ("ws_base", "expected"),
    [
        ("ws://127.0.0.1:1", "ws://127.0.0.1:1/stt/websocket"),
        ("ws://127.0.0.1:1/p", "ws://127.0.0.1:1/p/stt/websocket"),
        ("wss://edge.example.com/v/", "wss://edge.example.com/v/stt/websocket"),
    ],
)
def test_websocket_base_url_wins(ws_base: str, expected: str) -> None:
    assert build_ws_url([], base_url="http://ignored:1", websocket_base_url=ws_base) == expected


def test_query_merge_order_and_encoding() -> None:
    url = build_ws_url(
        [
            ("model", "ink-2"),
            ("keyterm", "Ink 2"),
            ("keyterm", "a&b=c"),
            ("keyterm", "C++"),
            ("keyterm", "Größe"),
        ],
        base_url="https://example.com/api/?team=7&flag=",
    )
    assert url == (
        "wss://example.com/api/stt/websocket?team=7&flag=&model=ink-2"
        "&keyterm=Ink%202&keyterm=a%26b%3Dc&keyterm=C%2B%2B&keyterm=Gr%C3%B6%C3%9Fe"
    )


def test_spaces_encode_as_percent_20_also_from_the_base_query() -> None:
    url = build_ws_url([("keyterm", "New York")], base_url="http://h?note=a+b%20c")
    assert url == "ws://h/stt/websocket?note=a%20b%20c&keyterm=New%20York"
    assert "+" not in url


def test_websocket_base_url_query_is_merged_first() -> None:
    url = build_ws_url([("model", "ink-2")], websocket_base_url="wss://h/x?access_token=t")
    assert url == "wss://h/x/stt/websocket?access_token=t&model=ink-2"


def test_connect_params_end_to_end() -> None:
    params = build(language="en", keyterm=["Cartesia", "Ink 2"])
    assert build_ws_url(params.query()) == (
        "wss://api.cartesia.ai/stt/websocket?model=ink-2&encoding=pcm_s16le&sample_rate=16000"
        "&language=en&keyterm=Cartesia&keyterm=Ink%202"
    )


@pytest.mark.parametrize("ws_base", ["http://x", "https://x", "x", "ftp://x", "127.0.0.1:8765", ""])
def test_websocket_base_url_must_be_ws_or_wss(ws_base: str) -> None:
    with pytest.raises(ConfigurationError, match="websocket_base_url must start with ws"):
        build_ws_url([], websocket_base_url=ws_base)


@pytest.mark.parametrize(
    ("base_url", "ws_base"),
    [
        ("https:///nohost", None),
        ("x", None),
        ("api.cartesia.ai", None),
        ("", None),
        ("/relative/path", None),
        ("https://x", "ws://"),
        ("https://x", "wss:///p"),
    ],
)
def test_missing_host_is_a_configuration_error(base_url: str, ws_base: str | None) -> None:
    with pytest.raises(ConfigurationError, match="has no host"):
        build_ws_url([], base_url=base_url, websocket_base_url=ws_base)


# -- headers -------------------------------------------------------------------------------------


def test_headers() -> None:
    headers = build_headers(api_key="sk_1", cartesia_version="2025-11-04", user_agent="ua/1")
    assert headers == {
        "Authorization": "Bearer sk_1",
        "cartesia-version": "2025-11-04",
        "User-Agent": "ua/1",
    }
    assert list(headers) == ["Authorization", "cartesia-version", "User-Agent"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"Cartesia-Version": "2026-03-01"},
            {"Authorization": "Bearer k", "User-Agent": "ua", "Cartesia-Version": "2026-03-01"},
        ),
        (
            {"CARTESIA-VERSION": "x"},
            {"Authorization": "Bearer k", "User-Agent": "ua", "CARTESIA-VERSION": "x"},
        ),
        (
            {"authorization": "Bearer other"},
            {"cartesia-version": "v", "User-Agent": "ua", "authorization": "Bearer other"},
        ),
        (
            {"user-agent": "mine/2", "X-Extra": "1"},
            {
                "Authorization": "Bearer k",
                "cartesia-version": "v",
                "user-agent": "mine/2",
                "X-Extra": "1",
            },
        ),
        (
            {"X-API-Key": "k2"},
            {
                "Authorization": "Bearer k",
                "cartesia-version": "v",
                "User-Agent": "ua",
                "X-API-Key": "k2",
            },
        ),
        ({}, {"Authorization": "Bearer k", "cartesia-version": "v", "User-Agent": "ua"}),
    ],
)
def test_extra_headers_override_case_insensitively(
    extra: dict[str, str], expected: dict[str, str]
) -> None:
    headers = build_headers(api_key="k", cartesia_version="v", user_agent="ua", extra_headers=extra)
    assert headers == expected
    assert len({k.lower() for k in headers}) == len(headers)


def test_extra_headers_are_not_mutated() -> None:
    extra = {"Authorization": "Bearer x"}
    build_headers(api_key="k", cartesia_version="v", user_agent="ua", extra_headers=extra)
    assert extra == {"Authorization": "Bearer x"}


@pytest.mark.parametrize(
    ("base_url", "match"),
    [
        ("ftp://example.com", "must start with http:// or https://"),
        ("file:///etc/passwd", "must start with http"),
        ("https:///no-host", "has no host"),
        ("http://[::1", "not a valid URL"),
        ("http://example.com:99999", "not a valid URL"),
        ("http://example.com:port", "not a valid URL"),
    ],
)
def test_unusable_base_urls_are_configuration_errors(base_url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        build_ws_url([], base_url=base_url)
