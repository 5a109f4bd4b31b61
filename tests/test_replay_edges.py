"""Replay at its edges: a journal cut by max_replay_ms; a silent utterance, then a drop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine
from cartesia_stt_async.twin.faults import Fault, Faults

from .conftest import SLACK, TwinFactory, client_for, other_tasks, pcm
from .test_reconnect import ws

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops


async def wait_for(predicate: Callable[[], bool], timeout: float = 5 * SLACK) -> None:
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


@pytest.mark.asyncio
async def test_audio_lost_to_max_replay_of_a_later_utterance_is_not_replayed_with_a_gap(
    twin_factory: TwinFactory,
) -> None:
    # max_replay_ms=100 keeps one 100 ms frame. Utterance A (1 frame) is finalized with
    # send(), then B (3 frames) is written before A's flush_done arrives: the bound drops A's
    # frame and B's first two. Answering A must not make the journal look complete again.
    a, b = pcm(0.1, value=1), pcm(0.3, value=2)
    engine = ScriptedEngine([], by_audio={a: ["Alpha."], b: [" Bravo."]})
    faults = Faults(
        [Fault("close", connection=0, after_events=2, code=1011)],  # right after A's answer
        flush_done_delay=0.3 * SLACK,
    )
    async with twin_factory(engine=engine, faults=faults) as twin:
        conn = await ws(client_for(twin), max_replay_ms=100).enter()
        try:
            await conn.send_audio(a)
            await conn.send("finalize")
            await conn.send_audio(b)
            await wait_for(lambda: conn.stats.frames_sent == 4)
            # B cannot be replayed exactly: its text must not come out wrong.
            with pytest.raises(stt.ConnectionClosedError):
                utt = await conn.finalize(timeout=5 * SLACK)
                pytest.fail(f"B answered from a partial replay: {utt.text!r}")
        finally:
            await conn.close()
        assert conn.transcript.text == "Alpha."
    assert not other_tasks()


@pytest.mark.asyncio
async def test_silent_first_utterance_then_a_drop_does_not_duplicate_text(
    twin_factory: TwinFactory,
) -> None:
    a, b, c = pcm(0.1, value=1), pcm(0.1, value=2), pcm(0.1, value=3)
    # A finals-first server (the twin's default and Cartesia's documented order); A is silent.
    engine = ScriptedEngine([], by_audio={a: [], b: [" Bravo."], c: [" Charlie."]})
    # Events: flush_done(A), final(B), flush_done(B): drop while B's late window is open.
    faults = Faults([Fault("abort", connection=0, after_events=3)])
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin), late_final_grace=5 * SLACK) as conn:
            for x in (a, b, c):
                await conn.send_audio(x)
                await conn.send("finalize")
        assert conn.stats.reconnects == 1
        assert conn.transcript.text == " Bravo. Charlie."
    assert not other_tasks()
