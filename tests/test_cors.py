"""CORS on the twin's HTTP routes: what a browser asks before ``fetch`` and reads after it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest

from cartesia_stt_async.twin import ScriptedEngine, Twin, serve

from .conftest import API_KEY

# What the official JS SDK (cartesia-js 3.x) sends with a POST from a page.
JS_SDK_HEADERS = (
    "authorization, cartesia-version, content-type, x-stainless-arch, x-stainless-lang, "
    "x-stainless-os, x-stainless-package-version, x-stainless-retry-count, "
    "x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout"
)
TTS_BODY = {
    "model_id": "sonic-latest",
    "transcript": "Hi",
    "voice": "any",
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
}


async def request(
    twin: Twin, method: str, path: str, headers: Mapping[str, str], body: Any = None
) -> tuple[int, Mapping[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, twin.base_url + path, headers=headers, json=body) as resp,
    ):
        return resp.status, resp.headers, await resp.read()


def preflight(origin: str, headers: str = JS_SDK_HEADERS, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/tts/bytes", "/access-token"])
@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:5173", "http://localhost:3000", "http://[::1]:8080", "http://localhost"],
)
async def test_a_loopback_page_passes_the_preflight_by_default(path: str, origin: str) -> None:
    async with serve(engine=ScriptedEngine([])) as twin:
        status, headers, _ = await request(twin, "OPTIONS", path, preflight(origin))
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {h.strip() for h in JS_SDK_HEADERS.split(",")}
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in headers["Vary"]


@pytest.mark.asyncio
async def test_responses_carry_the_origin_errors_included() -> None:
    origin = "http://localhost:5173"
    async with serve(engine=ScriptedEngine([]), api_keys=[API_KEY]) as twin:
        ok = await request(
            twin,
            "POST",
            "/tts/bytes",
            {"Origin": origin, "Authorization": f"Bearer {API_KEY}"},
            TTS_BODY,
        )
        refused = await request(
            twin, "POST", "/access-token", {"Origin": origin, "Authorization": "Bearer nope"}, {}
        )
        plain = await request(twin, "POST", "/access-token", {"X-API-Key": API_KEY}, {})
    for _status, headers, _body in (ok, refused):
        assert headers["Access-Control-Allow-Origin"] == origin
        assert "X-Request-Id" in headers["Access-Control-Expose-Headers"]
    assert ok[0] == 200 and refused[0] == 401
    assert plain[0] == 200 and "Access-Control-Allow-Origin" not in plain[1]


@pytest.mark.asyncio
async def test_other_origins_are_refused_unless_configured() -> None:
    site = "https://app.example.com"
    async with serve(engine=ScriptedEngine([])) as twin:
        status, headers, body = await request(twin, "OPTIONS", "/tts/bytes", preflight(site))
        _, posted, _ = await request(twin, "POST", "/tts/bytes", {"Origin": site}, TTS_BODY)
    assert status == 403 and b"cors_origins" in body
    assert "Access-Control-Allow-Origin" not in headers
    assert "Access-Control-Allow-Origin" not in posted
    async with serve(engine=ScriptedEngine([]), cors_origins=[site + "/"]) as twin:
        mine = await request(twin, "OPTIONS", "/tts/bytes", preflight(site))
        local = await request(twin, "OPTIONS", "/tts/bytes", preflight("http://localhost:3000"))
    assert mine[0] == 204 and mine[1]["Access-Control-Allow-Origin"] == site
    assert local[0] == 403  # naming origins replaces the loopback default
    async with serve(engine=ScriptedEngine([]), cors_origins="*") as twin:
        anywhere = await request(twin, "OPTIONS", "/access-token", preflight(site))
    assert anywhere[0] == 204 and anywhere[1]["Access-Control-Allow-Origin"] == site


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"Access-Control-Request-Method": "DELETE"}, b"takes POST"),
        ({"Access-Control-Request-Headers": "content-type, x-evil"}, b"x-evil"),
    ],
)
async def test_a_preflight_for_what_the_route_does_not_take_is_refused(
    overrides: dict[str, str], needle: bytes
) -> None:
    headers = {**preflight("http://localhost:3000"), **overrides}
    async with serve(engine=ScriptedEngine([])) as twin:
        status, _, body = await request(twin, "OPTIONS", "/tts/bytes", headers)
    assert status == 403 and needle in body


@pytest.mark.asyncio
async def test_private_network_access_and_plain_options() -> None:
    headers = {
        **preflight("http://localhost:3000"),
        "Access-Control-Request-Private-Network": "true",
    }
    async with serve(engine=ScriptedEngine([])) as twin:
        status, answer, _ = await request(twin, "OPTIONS", "/tts/bytes", headers)
        plain_status, plain, _ = await request(twin, "OPTIONS", "/access-token", {})
    assert status == 204 and answer["Access-Control-Allow-Private-Network"] == "true"
    assert plain_status == 204 and plain["Allow"] == "POST, OPTIONS"


def test_cors_origins_must_be_strings() -> None:
    from cartesia_stt_async import UsageError
    from cartesia_stt_async.twin._cors import allowed_origins

    with pytest.raises(UsageError, match="cors_origins"):
        allowed_origins([None])  # type: ignore[list-item]
    assert allowed_origins("http://a.example/") == frozenset({"http://a.example"})
