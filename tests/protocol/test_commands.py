"""Commands, connect parameters, URL and headers: exact strings."""

from __future__ import annotations

import pytest

from cartesia_stt_async.errors import ConfigurationError, InvalidCommandError, UsageError
from cartesia_stt_async.protocol.commands import (
    ConnectParams,
    build_headers,
    build_ws_url,
    normalize_command,
    redact,
)


@pytest.mark.parametrize(
    ("given", "canonical"), [("finalize", "finalize"), ("close", "close"), ("done", "close")]
)
def test_commands(given: str, canonical: str) -> None:
    assert normalize_command(given) == canonical


@pytest.mark.parametrize("bad", ["Finalize", "flush", "", '{"type":"close"}', b"close", None, 1])
def test_bad_commands(bad: object) -> None:
    with pytest.raises(InvalidCommandError):
        normalize_command(bad)


def base(**kw: object) -> ConnectParams:
    args: dict[str, object] = {"model": "ink-2", "encoding": "pcm_s16le", "sample_rate": 16000}
    args.update(kw)
    return ConnectParams.build(**args)  # type: ignore[arg-type]


def test_query_order_and_repeated_keyterms() -> None:
    params = base(
        language="en",
        keyterm=["Cartesia", "Ink 2"],
        min_volume=0.1,
        max_silence_duration_secs=2,
        extra_query={"x": True, "y": [1, 2], "z": None},
    )
    assert params.query() == [
        ("model", "ink-2"),
        ("encoding", "pcm_s16le"),
        ("sample_rate", "16000"),
        ("language", "en"),
        ("keyterm", "Cartesia"),
        ("keyterm", "Ink 2"),
        ("min_volume", "0.1"),
        ("max_silence_duration_secs", "2"),  # as given, like str() in the official SDK
        ("x", "true"),
        ("y", "1"),
        ("y", "2"),
    ]
    assert base().query() == [
        ("model", "ink-2"),
        ("encoding", "pcm_s16le"),
        ("sample_rate", "16000"),
    ]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": None}, "model"),
        ({"encoding": "opus"}, "encoding"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 16000.5}, "sample_rate"),
        ({"language": ""}, "language"),
        ({"keyterm": "Cartesia"}, "keyterm"),
        ({"keyterm": [""]}, "keyterm"),
        ({"keyterm": [1]}, "keyterm"),
        ({"keyterm": [f"t{i}" for i in range(101)]}, "at most 100 keyterms"),
        ({"keyterm": ["x" * 1201]}, "1200"),
        ({"min_volume": -0.1}, "min_volume"),
        ({"min_volume": float("nan")}, "min_volume"),
        ({"min_volume": "0.1"}, "min_volume"),
        ({"max_silence_duration_secs": -1}, "max_silence_duration_secs"),
        ({"max_silence_duration_secs": float("inf")}, "max_silence_duration_secs"),
    ],
)
def test_bad_params_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(UsageError, match=field):
        base(**kw)


@pytest.mark.parametrize(
    ("base_url", "ws_base", "expected"),
    [
        ("https://api.cartesia.ai", None, "wss://api.cartesia.ai/stt/websocket"),
        ("http://127.0.0.1:8765", None, "ws://127.0.0.1:8765/stt/websocket"),
        ("https://example.com/api/", None, "wss://example.com/api/stt/websocket"),
        ("ftp://example.com", None, "wss://example.com/stt/websocket"),
        ("https://x.ai", "ws://127.0.0.1:1/p", "ws://127.0.0.1:1/p/stt/websocket"),
    ],
)
def test_url_derivation(base_url: str, ws_base: str | None, expected: str) -> None:
    assert build_ws_url([], base_url=base_url, websocket_base_url=ws_base) == expected


def test_url_query_merge_and_encoding() -> None:
    url = build_ws_url(
        [("model", "ink-2"), ("keyterm", "Ink 2"), ("keyterm", "a&b")],
        base_url="https://example.com/api?team=7",
    )
    assert url == (
        "wss://example.com/api/stt/websocket?team=7&model=ink-2&keyterm=Ink%202&keyterm=a%26b"
    )


@pytest.mark.parametrize(
    ("base_url", "ws_base"), [("https:///nohost", None), ("https://x", "http://x"), ("x", None)]
)
def test_bad_urls(base_url: str, ws_base: str | None) -> None:
    with pytest.raises(ConfigurationError):
        build_ws_url([], base_url=base_url, websocket_base_url=ws_base)


def test_headers_and_overrides() -> None:
    headers = build_headers(api_key="k", cartesia_version="2025-11-04", user_agent="ua/1")
    assert headers == {
        "Authorization": "Bearer k",
        "cartesia-version": "2025-11-04",
        "User-Agent": "ua/1",
    }
    over = build_headers(
        api_key="k",
        cartesia_version="v",
        user_agent="ua",
        extra_headers={"Cartesia-Version": "2026-03-01", "X-Extra": "1"},
    )
    assert over == {
        "Authorization": "Bearer k",
        "User-Agent": "ua",
        "Cartesia-Version": "2026-03-01",
        "X-Extra": "1",
    }


def test_redact() -> None:
    assert redact("key sk_abcdef and sk_abcdef", ["sk_abcdef"]) == "key *** and ***"
    assert redact("abc", ["", "a"]) == "abc"  # empty and trivially short secrets ignored
