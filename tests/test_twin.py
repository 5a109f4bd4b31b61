"""The twin server, driven by a raw websockets client (not our SDK), so its wire behaviour is
checked independently of the client it serves."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import cartesia_stt_async as stt
from cartesia_stt_async.twin import (
    Fault,
    Faults,
    ParamError,
    Reply,
    ScriptedEngine,
    Twin,
    validate_params,
)

from .conftest import API_KEY, SLACK, TwinFactory, other_tasks, pcm

QUERY = "model=ink-2&encoding=pcm_s16le&sample_rate=16000"


@asynccontextmanager
async def raw(
    twin: Twin, query: str = QUERY, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    hdrs = {"Authorization": f"Bearer {API_KEY}"} if headers is None else headers
    async with connect(f"{twin.ws_url}?{query}", additional_headers=hdrs) as conn:
        yield conn


async def events_until(conn: ClientConnection, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        message = await asyncio.wait_for(conn.recv(), 5 * SLACK)
        assert isinstance(message, str)
        out.append(json.loads(message))
        if out[-1]["type"] == kind:
            return out


@pytest.mark.asyncio
async def test_scripted_deltas_are_sent_verbatim_then_flush_done(
    twin_factory: TwinFactory,
) -> None:
    deltas = [" leading", "", "naïve ✓", "trailing  "]
    engine = ScriptedEngine([Reply(finals=deltas, interims=["guess"])])
    async with twin_factory(engine=engine) as twin, raw(twin) as conn:
        rid = conn.response.headers["X-Request-Id"] if conn.response else None
        await conn.send(pcm(0.25))
        await conn.send("finalize")
        events = await events_until(conn, "flush_done")
    assert [(e["type"], e.get("is_final"), e.get("text")) for e in events] == [
        ("transcript", False, "guess"),
        *[("transcript", True, d) for d in deltas],
        ("flush_done", None, None),
    ]
    assert {e["request_id"] for e in events} == {rid}
    assert events[1]["duration"] == pytest.approx(0.25)
    assert events[1]["language"] == "en"
    assert engine.utterance_bytes == [[8000]]


@pytest.mark.asyncio
async def test_flush_first_order(twin_factory: TwinFactory) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([["a", "b"]], order="flush_first")) as twin,
        raw(twin) as conn,
    ):
        await conn.send(pcm(0.1))
        await conn.send("finalize")
        first = json.loads(await conn.recv())
        rest = [json.loads(await conn.recv()) for _ in range(2)]
    assert first["type"] == "flush_done"
    assert [e["text"] for e in rest] == ["a", "b"]


@pytest.mark.asyncio
@pytest.mark.parametrize("command", ["close", "done"])
async def test_close_flushes_remaining_audio_then_done_and_1000(
    twin_factory: TwinFactory, command: str
) -> None:
    async with twin_factory(engine=ScriptedEngine([["one"], ["two"]])) as twin:
        async with raw(twin) as conn:
            await conn.send(pcm(0.1))
            await conn.send("finalize")
            await events_until(conn, "flush_done")
            await conn.send(pcm(0.1))
            await conn.send(command)
            events = await events_until(conn, "done")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(conn.recv(), 5 * SLACK)
            assert conn.close_code == 1000
        assert [e.get("text") for e in events] == ["two", None]
        assert twin.sessions[0].close_code == 1000


@pytest.mark.asyncio
async def test_unknown_command_is_an_error_event_and_session_goes_on(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([["ok"]])) as twin, raw(twin) as conn:
        await conn.send("flush")
        error = json.loads(await conn.recv())
        assert error["type"] == "error"
        assert error["status_code"] == 400
        assert error["error_code"] == "invalid_command"
        assert error["done"] is False  # the session goes on
        await conn.send(pcm(0.1))
        await conn.send("finalize")
        events = await events_until(conn, "flush_done")
        assert events[0]["text"] == "ok"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("model=nope&encoding=pcm_s16le&sample_rate=16000", "model"),
        ("encoding=pcm_s16le&sample_rate=16000", "model"),
        ("model=ink-2&encoding=mp3&sample_rate=16000", "encoding"),
        ("model=ink-2&sample_rate=16000", "encoding"),
        ("model=ink-2&encoding=pcm_s16le&sample_rate=16k", "sample_rate"),
        ("model=ink-2&encoding=pcm_s16le&sample_rate=4000", "sample_rate"),
        ("model=ink-2&encoding=pcm_s16le&sample_rate=96000", "sample_rate"),
        ("model=ink-2&encoding=pcm_s16le", "sample_rate"),
        ("model=ink-2&encoding=pcm_s16le&sample_rate=16000&language=de", "language"),
        ("model=ink-whisper&encoding=pcm_s16le&sample_rate=16000&language=x1", "language"),
        (QUERY + "&min_volume=1.5", "min_volume"),
        (QUERY + "&max_silence_duration_secs=abc", "max_silence_duration_secs"),
        (QUERY + "".join(f"&keyterm=t{i}" for i in range(101)), "keyterms"),
        (QUERY + "&keyterm=" + "x" * 601 + "&keyterm=" + "y" * 600, "1200"),
    ],
)
async def test_bad_parameters_give_one_400_error_event_then_close(
    twin_factory: TwinFactory, query: str, needle: str
) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin, raw(twin, query) as conn:
        error = json.loads(await asyncio.wait_for(conn.recv(), 5 * SLACK))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(conn.recv(), 5 * SLACK)
    assert error["type"] == "error"
    assert error["status_code"] == 400
    assert error["title"]
    assert error["error_code"]
    assert needle in error["message"]
    assert error["request_id"] == twin.sessions[0].request_id
    assert error["done"] is True  # Cartesia's error format: the session ends with it
    assert conn.close_code == 1008


@pytest.mark.asyncio
async def test_valid_optional_parameters_and_repeated_keyterms(twin_factory: TwinFactory) -> None:
    query = (
        "model=ink-whisper&encoding=pcm_alaw&sample_rate=8000&language=es&keyterm=Cartesia"
        "&keyterm=Ink%202&keyterm=a+b&min_volume=0.1&max_silence_duration_secs=0.5"
        "&cartesia_version=2026-03-01"
    )
    async with twin_factory(engine=ScriptedEngine([])) as twin, raw(twin, query) as conn:
        await conn.send("close")
        await events_until(conn, "done")
    params = twin.sessions[0].params
    assert params is not None
    assert params.keyterms == ("Cartesia", "Ink 2", "a b")
    assert (params.min_volume, params.max_silence_duration_secs) == (0.1, 0.5)
    assert params.version == "2026-03-01"  # the query wins over the header
    assert params.language == "es"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "query_suffix"),
    [
        ({"X-API-Key": API_KEY}, ""),
        ({}, f"&api_key={API_KEY}"),
    ],
)
async def test_other_auth_forms_are_accepted(
    twin_factory: TwinFactory, headers: dict[str, str], query_suffix: str
) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([])) as twin,
        raw(twin, QUERY + query_suffix, headers) as conn,
    ):
        await conn.send("close")
        assert (await events_until(conn, "done"))[-1]["type"] == "done"


@pytest.mark.asyncio
async def test_handshake_refusals(twin_factory: TwinFactory) -> None:
    async with twin_factory(
        engine=ScriptedEngine([]), api_keys=["good-key"], max_sessions=1
    ) as twin:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}):
            with pytest.raises(InvalidStatus) as info:
                async with raw(twin, headers=headers):
                    pass
            assert info.value.response.status_code == 401
            body = json.loads(info.value.response.body or b"")
            assert body["error_code"] == "unauthorized"
            assert "wrong-key" not in (info.value.response.body or b"").decode()
        good = {"Authorization": "Bearer good-key"}
        async with raw(twin, headers=good):
            with pytest.raises(InvalidStatus) as limited:
                async with raw(twin, headers=good):
                    pass
            assert limited.value.response.status_code == 429
            assert limited.value.response.headers["Retry-After"] == "1"
        async with aiohttp.ClientSession() as http, http.get(f"{twin.base_url}/nope") as resp:
            assert resp.status == 404


@pytest.mark.asyncio
async def test_idle_timeout_closes_with_1001(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([]), idle_timeout=0.3) as twin, raw(twin) as conn:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await conn.send(pcm(0.1))  # resets the timer
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(conn.recv(), 5 * SLACK)
        assert conn.close_code == 1001
        assert conn.close_reason == "Idle timeout"
        assert 0.3 <= loop.time() - start < 0.3 + 1.0 * SLACK


@pytest.mark.asyncio
async def test_stop_reading_makes_a_raw_client_block(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("stop_reading", after_frames=3)])
    engine = ScriptedEngine([])
    async with twin_factory(engine=engine, faults=faults) as twin, raw(twin) as conn:
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(5000):  # 160 MB if nothing pushed back
                await conn.send(pcm(1.0))
                sent += 32000

        task = asyncio.create_task(flood())
        await asyncio.sleep(1.0 * SLACK)
        assert not task.done()
        assert sent < 24_000_000  # kernel socket buffers at most, never 160 MB
        assert twin.sessions[0].audio_bytes == 3 * 32000
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        conn.transport.abort()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_client_disconnect_is_cleaned_up(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        async with raw(twin) as conn:
            await conn.send(pcm(0.1))
        await asyncio.sleep(0.1)
        assert twin.active_sessions == 0
        assert twin.sessions[0].audio_bytes == 3200
    assert not other_tasks()


def test_validate_params_raises_the_public_param_error() -> None:
    query = [("model", "ink-2"), ("encoding", "pcm_s16le"), ("sample_rate", "96000")]
    with pytest.raises(ParamError) as info:
        validate_params(query, None)
    assert isinstance(info.value, stt.UsageError)
    assert (info.value.title, info.value.error_code) == ("Invalid sample rate", "invalid_parameter")
    assert "96000" in info.value.message
    params = validate_params([*query[:2], ("sample_rate", "8000"), ("keyterm", "a")], "v1")
    assert (params.sample_rate, params.keyterms, params.version) == (8000, ("a",), "v1")


ROOT = Path(__file__).resolve().parents[1]


def doc_blocks(path: Path) -> list[str]:
    """The Python blocks of a Markdown page that are not marked as fragments."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)
    return [b for b in blocks if not b.lstrip().lower().startswith("# fragment")]


def expected_output(block: str) -> list[str]:
    """The ``# comment`` after each ``print(...)`` line: what the block prints."""
    return [
        line.split("  # ", 1)[1].strip()
        for line in block.splitlines()
        if line.strip().startswith("print(") and "  # " in line
    ]


@pytest.mark.parametrize(
    "index",
    [
        # A block that starts the default (recognizing) twin is a speech test.
        pytest.param(i, marks=[pytest.mark.speech] if "ScriptedEngine" not in block else [])
        for i, block in enumerate(doc_blocks(ROOT / "docs" / "twin.md"))
    ],
)
def test_twin_md_examples_run_as_written(index: int, tmp_path: Path) -> None:
    block = doc_blocks(ROOT / "docs" / "twin.md")[index]
    script = tmp_path / "example.py"
    script.write_text(block)
    run = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120 * SLACK,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    expected = expected_output(block)
    assert len(lines) == len(expected), run.stdout
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(re.escape(pattern).replace("<port>", r"\d+"), line), (line, pattern)


@pytest.mark.asyncio
async def test_the_twin_gives_both_base_url_forms(twin_factory: TwinFactory) -> None:
    """Issue 21, first hour #11: pipecat wants ws://HOST:PORT, LiveKit http://HOST:PORT."""
    from cartesia_stt_async.testing import start_twin

    async with twin_factory(engine=ScriptedEngine([])) as twin:
        assert twin.ws_base_url == twin.base_url.replace("http://", "ws://", 1)
        assert twin.ws_url == twin.ws_base_url + "/stt/websocket"
    with start_twin(ScriptedEngine([])) as server:
        assert server.ws_base_url == server.base_url.replace("http://", "ws://", 1)
