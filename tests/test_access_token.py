"""Access tokens: minted by the twin's ``POST /access-token``, enforced on its routes, created
with our ``AccessTokenResource`` and with the official ``cartesia`` client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import cartesia_stt_async as stt
from cartesia_stt_async._access_token import AccessToken
from cartesia_stt_async.twin import Reply, ScriptedEngine, Twin, serve

from .conftest import SLACK, pcm
from .official import RUNNER, official_python

KEY = "sk_the_only_valid_key_0123"
QUERY = "model=ink-2&encoding=pcm_s16le&sample_rate=16000"
TTS_BODY = {
    "model_id": "sonic-latest",
    "transcript": "Hello there",
    "voice": {"mode": "id", "id": "any"},
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resource(base_url: str, api_key: str = KEY) -> stt.AsyncCartesia:
    """A client whose ``access_token`` the test uses (closed with ``close()``)."""
    return stt.AsyncCartesia(api_key=api_key, base_url=base_url)


@asynccontextmanager
async def token_twin(clock: Clock | None = None) -> AsyncIterator[Twin]:
    engine = ScriptedEngine([Reply(finals=["Hello."])])
    async with serve(engine=engine, api_keys=[KEY], clock=clock or Clock()) as twin:
        yield twin


async def mint(twin: Twin, **kw: Any) -> AccessToken:
    tokens = resource(twin.base_url)
    try:
        return await tokens.access_token.create(**kw)
    finally:
        await tokens.close()


async def transcribe(twin: Twin, api_key: str, **kw: Any) -> str:
    async with (
        stt.AsyncCartesia(api_key=api_key, base_url=twin.base_url) as client,
        client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None, **kw
        ) as conn,
    ):
        await conn.send_audio(pcm(0.2))
        return (await conn.finalize(timeout=5 * SLACK)).text


async def post(twin: Twin, path: str, body: object, auth: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {auth}"} if auth else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(twin.base_url + path, json=body, headers=headers) as resp,
    ):
        raw = await resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw


@pytest.mark.asyncio
async def test_a_minted_token_opens_a_session_as_bearer_and_as_query() -> None:
    async with token_twin() as twin:
        token = await mint(twin, grants={"stt": True}, expires_in=60)
        assert token.token.startswith("tok_") and token.expires_in == 60
        assert token.expires_at is not None and token.grants == {"stt": True}
        assert await transcribe(twin, token.token) == "Hello."
        # A page cannot set headers on a WebSocket: the token goes in the query; the (invalid)
        # API key beside it is not what authorizes the session.
        text = await transcribe(twin, "not-a-key", extra_query={"access_token": token.token})
        assert text == "Hello."
        bearer, query = twin.sessions[0], twin.sessions[1]
        assert bearer.headers["authorization"] == f"Bearer {token.token}"
        assert ("access_token", token.token) in query.query


@pytest.mark.asyncio
async def test_the_grant_decides_which_routes_a_token_opens() -> None:
    async with token_twin() as twin:
        tts_only = (await mint(twin, grants={"tts": True, "stt": False})).token
        status, _ = await post(twin, "/tts/bytes", TTS_BODY, tts_only)
        assert status == 200
        with pytest.raises(stt.AuthenticationError, match="lacks the 'stt' grant") as info:
            await transcribe(twin, tts_only)
        assert tts_only not in str(info.value)
        stt_only = (await mint(twin, grants={"stt": True})).token
        status, body = await post(twin, "/tts/bytes", TTS_BODY, stt_only)
        assert (status, body["error_code"]) == (401, "missing_grant")
        assert "'tts'" in body["message"] and stt_only not in json.dumps(body)


@pytest.mark.asyncio
async def test_an_expired_token_is_refused_and_says_so() -> None:
    clock = Clock()
    async with token_twin(clock) as twin:
        token = (await mint(twin, grants={"stt": True, "tts": True}, expires_in=60)).token
        clock.now += 59.5
        assert await transcribe(twin, token) == "Hello."
        clock.now += 0.5
        for auth in ({"Authorization": f"Bearer {token}"}, {}):
            url = f"{twin.ws_url}?{QUERY}" + ("" if auth else f"&access_token={token}")
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, additional_headers=auth):
                    pass
            body = json.loads(info.value.response.body or b"")
            assert info.value.response.status_code == 401
            assert body["error_code"] == "token_expired" and "expired" in body["message"]
            assert token not in (info.value.response.body or b"").decode()
        status, body = await post(twin, "/tts/bytes", TTS_BODY, token)
        assert (status, body["error_code"]) == (401, "token_expired")


@pytest.mark.asyncio
async def test_unknown_tokens_are_refused_even_where_any_key_would_do() -> None:
    async with serve(engine=ScriptedEngine([])) as twin:  # api_keys=None: any key is valid
        for auth, suffix in (({"Authorization": "Bearer tok_forged"}, ""), ({}, "&access_token=x")):
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"{twin.ws_url}?{QUERY}{suffix}", additional_headers=auth):
                    pass
            body = json.loads(info.value.response.body or b"")
            assert (info.value.response.status_code, body["error_code"]) == (401, "invalid_token")
        async with connect(f"{twin.ws_url}?{QUERY}", additional_headers={"X-API-Key": "k"}):
            pass  # an API key still works


@pytest.mark.asyncio
async def test_only_an_api_key_can_mint() -> None:
    async with token_twin() as twin:
        token = (await mint(twin, grants={"stt": True, "tts": True})).token
        for key, needle in ((token, "cannot mint"), ("sk_wrong", "Invalid API key")):
            with pytest.raises(stt.AuthenticationError, match=needle) as info:
                await mint_with(twin.base_url, key)
            assert key not in str(info.value) and key not in repr(info.value)
        assert len(twin.tokens) == 1


async def mint_with(base_url: str, api_key: str) -> None:
    tokens = resource(base_url, api_key)
    try:
        await tokens.access_token.create(grants={"stt": True})
    finally:
        await tokens.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"grants": {"stt": True}, "expires_in": 0}, "expires_in"),
        ({"grants": {"stt": True}, "expires_in": 3601}, "expires_in"),
        ({"grants": {"stt": True}, "expires_in": "60"}, "expires_in"),
        ({"grants": {"stt": True}, "expires_in": True}, "expires_in"),
        ({"grants": {"speech": True}}, "grants.speech"),
        ({"grants": {"stt": "yes"}}, "grants.stt"),
        ({"grants": ["stt"]}, "grants"),
        (["grants"], "JSON object"),
        ("{not json", "not JSON"),
    ],
)
async def test_the_twin_names_what_is_wrong_with_a_mint_request(body: object, needle: str) -> None:
    async with token_twin() as twin:
        if isinstance(body, str):
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    twin.base_url + "/access-token",
                    data=body,
                    headers={"Authorization": f"Bearer {KEY}"},
                ) as resp,
            ):
                status, reply = resp.status, await resp.json()
        else:
            status, reply = await post(twin, "/access-token", body, KEY)
    assert status == 400 and reply["error_code"] == "invalid_request"
    assert needle in reply["message"]


@pytest.mark.asyncio
async def test_defaults_and_nulls_follow_the_official_schema() -> None:
    async with token_twin() as twin:
        status, reply = await post(twin, "/access-token", {}, KEY)
        assert status == 200 and reply["expires_in"] == 60
        status, reply = await post(
            twin, "/access-token", {"grants": {"stt": None, "tts": True}, "expires_in": None}, KEY
        )
        assert status == 200 and reply["expires_in"] == 60
        status, _ = await post(twin, "/tts/bytes", TTS_BODY, reply["token"])
        assert status == 200


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"grants": {"stt": 1}}, "True or False"),
        ({"grants": {"voice": True}}, "unknown grant 'voice'"),
        ({"grants": ["stt"]}, "mapping"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": 3601}, "expires_in"),
        ({"expires_in": 60.0}, "expires_in"),
        ({"expires_in": True}, "expires_in"),
    ],
)
async def test_bad_arguments_are_usage_errors_before_any_io(
    kwargs: Mapping[str, Any], needle: str
) -> None:
    tokens = resource(closed_port_url())  # any I/O would be an APIConnectionError
    with pytest.raises(stt.UsageError, match=needle):
        await tokens.access_token.create(**kwargs)
    await tokens.close()


@pytest.mark.asyncio
async def test_an_unreachable_server_is_a_connection_error() -> None:
    tokens = resource(closed_port_url())
    with pytest.raises(stt.APIConnectionError) as info:
        await tokens.access_token.create(grants={"stt": True})
    assert KEY not in str(info.value)
    await tokens.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "needle"), [(b'{"tok": "x"}', "no token"), (b"<html>", "JSON")])
async def test_an_answer_without_a_token_is_a_protocol_error(answer: bytes, needle: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/access-token", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    tokens = resource(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(stt.ProtocolError, match=needle):
            await tokens.access_token.create(grants={"stt": True}, expires_in=10)
    finally:
        await tokens.close()
        await runner.cleanup()


def test_reprs_hide_the_key_and_the_token() -> None:
    tokens = resource("http://127.0.0.1:9")
    assert KEY not in repr(tokens)
    token = AccessToken("tok_secret_value", expires_in=60, issued_at=0.0, grants={"stt": True})
    assert "tok_secret_value" not in repr(token) and token.expires_at == 60.0


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_twin_mint_token_and_the_official_client() -> None:
    # The official client in its own environment (tests/official.py), as a subprocess.
    python = await asyncio.to_thread(official_python)
    async with token_twin() as twin:
        proc = await asyncio.create_subprocess_exec(
            str(python),
            str(RUNNER),
            "token",
            twin.base_url,
            KEY,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60 * SLACK)
        assert proc.returncode == 0, err.decode()
        token, refused = out.decode().split()
        assert await transcribe(twin, token) == "Hello."
        # A token in the official client (its ``token=`` option) cannot mint either.
        assert refused == "AuthenticationError"
        direct = twin.mint_token({"stt": True}, expires_in=5)
        assert await transcribe(twin, direct) == "Hello."
        with pytest.raises(stt.UsageError, match="expires_in"):
            twin.mint_token({"stt": True}, expires_in=0)
