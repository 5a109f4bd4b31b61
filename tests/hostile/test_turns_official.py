"""Code written for the official SDK's auto-finalize client runs unchanged on ours (one import
changed): ``send_raw``, ``send({"type": ...})``, ``async for``/``for`` over events with
``event.type`` and ``event.transcript``, ``recv``, ``on``/``dispatch_events``, ``close``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import cartesia_stt_async as cartesia  # the one changed import

from .conftest import CANARY, pcm
from .turns_peer import TurnsConn, turns_server

pytestmark = [pytest.mark.both_loops, pytest.mark.asyncio]

AUDIO = pcm(16000)  # 500 ms


async def script(conn: TurnsConn) -> None:
    await conn.event("connected")
    await conn.heard(len(AUDIO))
    await conn.events(
        "turn.start",
        ("turn.update", "Hello"),
        ("turn.eager_end", "Hello world."),
        ("turn.end", "Hello world."),
        "turn.start",
    )
    await conn.command("close")
    await conn.events(("turn.end", " Bye."))
    await conn.close(1000)


async def official_async(client: Any) -> str:
    """As the official SDK's docs write it."""
    async with client.stt.auto_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    ) as connection:

        async def send_audio() -> None:
            for i in range(0, len(AUDIO), 3200):
                await connection.send_raw(AUDIO[i : i + 3200])
            await connection.send({"type": "config", "turn": {"end_threshold": 0.3}})
            await connection.send({"type": "close"})

        sender = asyncio.create_task(send_audio())
        transcript = ""
        async for event in connection:
            if event.type == "turn.end":
                transcript += event.transcript
            elif event.type == "error":
                raise RuntimeError(event.message)
        await sender
    return transcript


async def official_handlers(client: Any) -> list[str]:
    seen: list[str] = []
    async with client.stt.auto_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    ) as connection:

        @connection.on("turn.end")  # type: ignore[untyped-decorator, unused-ignore]
        async def on_end(event: Any) -> None:
            seen.append(event.transcript)

        connection.on("turn.start", lambda event: seen.append(event.type))
        await connection.send_raw(AUDIO)
        await connection.send_raw('{"type": "close"}')  # JSON text, as the official send_raw
        await connection.dispatch_events()
    return seen


def official_sync(client: Any) -> str:
    with client.stt.auto_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    ) as connection:
        for i in range(0, len(AUDIO), 3200):
            connection.send_raw(AUDIO[i : i + 3200])
        connection.send({"type": "close"})
        first = connection.recv()
        assert first.type == "connected"
        return "".join(e.transcript for e in connection if e.type == "turn.end")


async def test_the_official_async_flow() -> None:
    async with turns_server(script) as server:
        client = cartesia.AsyncCartesia(api_key=CANARY, base_url=server.base_url)
        assert await official_async(client) == "Hello world. Bye."
        (conn,) = server.conns
        assert conn.commands == [
            {"type": "config", "turn": {"end_threshold": 0.3}},
            {"type": "close"},
        ]


async def test_the_official_handlers() -> None:
    async with turns_server(script) as server:
        client = cartesia.AsyncCartesia(api_key=CANARY, base_url=server.base_url)
        seen = await official_handlers(client)
        assert seen == ["turn.start", "Hello world.", "turn.start", " Bye."]


async def test_the_official_sync_flow() -> None:
    async with turns_server(script) as server:

        def run() -> str:
            with cartesia.Cartesia(api_key=CANARY, base_url=server.base_url) as client:
                return official_sync(client)

        assert await asyncio.to_thread(run) == "Hello world. Bye."


async def test_the_sync_idiomatic_surface() -> None:
    async with turns_server(script) as server:

        def run() -> tuple[list[str], str]:
            with cartesia.Cartesia(api_key=CANARY, base_url=server.base_url) as client:
                manager = client.stt.auto_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
                )
                with manager as connection:
                    settings = connection.configure(end_timeout_ms=700)
                    assert settings.end_timeout_ms == 700
                    connection.send_audio(AUDIO)
                    connection.send("close")
                    texts = [turn.text for turn in connection.turns()]
                    assert "SyncTurnConnection" in repr(connection)
                return texts, connection.transcript.text

        assert await asyncio.to_thread(run) == (["Hello world.", " Bye."], "Hello world. Bye.")


async def test_the_official_sync_handlers() -> None:
    async with turns_server(script) as server:

        def run() -> list[str]:
            seen: list[str] = []
            with cartesia.Cartesia(api_key=CANARY, base_url=server.base_url) as client:
                manager = client.stt.auto_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000
                )
                with manager as connection:
                    connection.on("turn.end", lambda event: seen.append(event.transcript))
                    connection.send_raw(AUDIO)
                    connection.send({"type": "close"})
                    connection.dispatch_events()
            return seen

        assert await asyncio.to_thread(run) == ["Hello world.", " Bye."]
