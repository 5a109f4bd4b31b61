"""The turn endpoint's client against the twin's ``/stt/turns/websocket`` route.

The twin decides turns from the audio's energy in *audio time* (docs/twin.md), as Cartesia
decides on audio time: so these tests meet a real server on the things a scripted peer cannot
show, the silence fill (no ``turn.end`` without it), eager ends and resumes from the audio,
settings changed mid-session, and a replay that makes the server find the same turn again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Fault, Faults, ScriptedEngine, Turn, Twin, serve

from .conftest import SLACK

pytestmark = [pytest.mark.both_loops, pytest.mark.asyncio]

SPEECH = (3000).to_bytes(2, "little") * 8000  # 0.5 s, loud enough to be speech
BYTES_PER_S = 32000


def turns_of(twin: Twin, **kw: Any) -> stt.TurnConnectionManager:
    client = stt.AsyncCartesia(api_key="any", base_url=twin.base_url)
    options: dict[str, Any] = {"speed": None, "close_timeout": 5 * SLACK, **kw}
    return client.stt.auto_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, **options
    )


def silence(seconds: float) -> bytes:
    return bytes(int(BYTES_PER_S * seconds) // 2 * 2)


async def test_the_silence_fill_lets_the_server_end_the_turn() -> None:
    engine = ScriptedEngine(turns=[Turn(updates=["Hel", "Hello"], end="Hello world")])
    async with serve(engine=engine) as twin, turns_of(twin) as conn:
        await conn.send_audio(SPEECH)  # and nothing more
        turn = await anext(aiter(conn.turns()))
        assert turn.text == "Hello world" and turn.interim == "Hello"
        # The twin ends a turn after 700 ms of pause (default end threshold 0.2): the SDK
        # sent that pause, in real time.
        assert conn.stats.silence_fill_bytes >= 0.7 * BYTES_PER_S
        assert turn.end is not None and 0.5 + 0.7 <= turn.end <= 0.5 + 0.7 + 0.3
    assert conn.transcript.text == "Hello world"


async def test_the_fill_ends_a_second_turn_after_a_filled_first_one() -> None:
    # A fill wake armed for the first turn's pause was still pending when the second turn
    # opened; the second turn's later deadline must still be armed (it once was lost).
    engine = ScriptedEngine(turns=[Turn(end="Hello world"), Turn(end=" Again")])
    async with serve(engine=engine) as twin, turns_of(twin) as conn:
        turns = aiter(conn.turns())
        await conn.send_audio(SPEECH)
        first = await asyncio.wait_for(anext(turns), 5 * SLACK)
        await conn.send_audio(SPEECH)
        second = await asyncio.wait_for(anext(turns), 5 * SLACK)
    assert (first.text, second.text) == ("Hello world", " Again")
    assert conn.stats.silence_fill_bytes >= 2 * 0.7 * BYTES_PER_S


async def test_without_the_fill_the_turn_waits_for_close() -> None:
    engine = ScriptedEngine(turns=[Turn(updates=["Hel"], end="Hello")])
    async with serve(engine=engine) as twin, turns_of(twin, fill_silence=False) as conn:
        await conn.send_audio(SPEECH)
        await conn.wait_barge_in()
        await asyncio.sleep(1.0)
        assert conn.transcript.turns == []  # audio time stands still: no turn.end
        assert conn.speaking
    # Leaving the block sends close: the twin ends the open turn, then closes 1000.
    assert conn.transcript.text == "Hello" and conn.state == "done"
    assert conn.stats.silence_fill_bytes == 0


async def test_eager_end_and_resume_from_the_audio() -> None:
    engine = ScriptedEngine(turns=[Turn(updates=["Book"], resumed=["Book a table"])])
    audio = SPEECH + silence(0.45) + SPEECH + silence(0.8)
    async with serve(engine=engine) as twin, turns_of(twin) as conn:
        preflights = asyncio.create_task(_preflights(conn))
        await asyncio.sleep(0)
        await conn.send_audio(audio)
        turn = await anext(aiter(conn.turns()))
    assert (turn.text, turn.eager_ends, turn.resumes) == ("Book a table", 2, 1)
    assert await preflights == [("Book", "withdrawn"), ("Book a table", "confirmed")]


async def _preflights(conn: stt.AsyncTurnConnection) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    async for preflight in conn.preflights():
        await preflight.withdrawn()
        out.append((preflight.text, preflight.state))
        if preflight.state == "confirmed":
            return out
    return out


async def test_configure_changes_when_the_server_ends_the_turn() -> None:
    engine = ScriptedEngine(turns=[Turn(end="quick"), Turn(end=" slow")])
    async with serve(engine=engine) as twin, turns_of(twin) as conn:
        await conn.configure(eager_end_threshold=0.6, end_threshold=0.5)  # 300 ms of pause
        await conn.send_audio(SPEECH + silence(0.5))
        turns = aiter(conn.turns())
        quick = await anext(turns)
        await conn.configure(eager_end_threshold=0.4, end_threshold=0.2)  # 700 ms
        start = conn.stats.audio_bytes_sent / BYTES_PER_S
        await conn.send_audio(SPEECH + silence(1.0))
        slow = await anext(turns)
    assert quick.end is not None and slow.end is not None
    assert quick.end <= 0.5 + 0.5  # ended within the 500 ms of silence sent
    assert slow.end - start >= 0.5 + 0.7


async def test_a_drop_mid_turn_replays_it_and_the_twin_finds_the_same_turn() -> None:
    engine = ScriptedEngine(turns=[Turn(updates=["Hel", "Hello"], end="Hello world")])
    # Events on the first socket: connected, turn.start, turn.update; then a TCP abort.
    plan = Faults(schedule=[Fault("abort", connection=0, after_events=3)])
    async with serve(engine=engine, faults=plan) as twin:
        async with turns_of(twin, initial_delay=0.01, max_delay=0.02) as conn:
            signals = asyncio.create_task(_kinds(conn))
            await asyncio.sleep(0)
            await conn.send_audio(SPEECH)
            turn = await anext(aiter(conn.turns()))
        assert turn.text == "Hello world" and conn.stats.reconnects == 1
        assert conn.stats.replayed_bytes >= len(SPEECH)
        assert (await signals).count("start") == 1  # the barge-in is not signalled again
        assert [t.text for t in conn.transcript.turns] == ["Hello world"]


async def _kinds(conn: stt.AsyncTurnConnection) -> list[str]:
    return [signal.kind async for signal in conn.signals()]
