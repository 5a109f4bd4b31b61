"""Property test: random fault schedules never change the transcript.

Each seed builds a session of several utterances (distinct audio, 1-3 final deltas each, some
finalized with ``finalize()`` and awaited, some pipelined with ``send("finalize")``, maybe a
tail answered on ``close``) and a schedule of 1-3 faults on the first connections: TCP aborts
and closes with every recoverable code, after a random number of frames or events, sometimes
with refused handshakes in between. The run with faults must give exactly the transcript and
utterances of the fault-free run. Faults only hit the first connections, so every run ends.

The twin answers utterances by their audio (``ScriptedEngine(by_audio=...)``): a replayed
utterance gets the same text on the new connection, as it would from a real recognizer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine
from cartesia_stt_async.twin.faults import Fault, Faults

from .conftest import SLACK, TwinFactory, client_for, other_tasks, pcm

SCHEDULES = 120
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf", "hotel", " ", ""]


@dataclass
class Plan:
    utterances: list[bytes]
    replies: list[list[str]]
    awaited: list[bool]  # finalize() awaited (else pipelined send("finalize"))
    tail: bool  # the last utterance is not finalized: answered on close
    order: str
    faults: Faults


def make_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    n = rng.randint(2, 4)
    utterances = [pcm(rng.choice([0.05, 0.1, 0.15, 0.25, 0.3]), value=k + 1) for k in range(n)]
    replies = [[f" {rng.choice(WORDS)}{k}" for _ in range(rng.randint(1, 3))] for k in range(n)]
    frames = sum(-(-len(u) // 3200) for u in utterances)
    events = sum(len(r) + 1 for r in replies) + 1
    schedule = []
    for conn in range(rng.randint(1, 3)):
        action = rng.choice(["abort", "close"])  # abort: 1006, a drop without close frame
        code = rng.choice([1001, 1011, 1012, 1013])
        if rng.random() < 0.5:
            trigger = {"after_frames": rng.randint(1, frames)}
        else:
            trigger = {"after_events": rng.randint(1, events)}
        schedule.append(Fault(action, connection=conn, code=code, reason="chaos", **trigger))  # type: ignore[arg-type]
    refuse = {}
    if rng.random() < 0.3:
        refuse[rng.randint(1, 3)] = rng.choice([429, 500, 503])
    return Plan(
        utterances=utterances,
        replies=replies,
        awaited=[rng.random() < 0.5 for _ in range(n)],
        tail=rng.random() < 0.3,
        order=rng.choice(["finals_first", "flush_first"]),
        faults=Faults(schedule, refuse=refuse),
    )


async def run(
    twin_factory: TwinFactory, plan: Plan, faults: Faults | None
) -> tuple[str, list[str], stt.ConnectionStats]:
    engine = ScriptedEngine(
        [],
        order=plan.order,  # type: ignore[arg-type]
        by_audio=dict(zip(plan.utterances, plan.replies, strict=True)),
    )
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with client_for(twin).stt.manual_finalize.websocket(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            speed=None,
            initial_delay=0.001,
            max_delay=0.004,
            close_timeout=10 * SLACK,
            late_final_grace=0.05,
            final_order=plan.order,  # type: ignore[arg-type]
        ) as conn:
            last = len(plan.utterances) - 1
            for k, (audio, awaited) in enumerate(zip(plan.utterances, plan.awaited, strict=True)):
                await conn.send_audio(audio)
                if plan.tail and k == last:
                    break
                if awaited:
                    await conn.finalize(timeout=10 * SLACK)
                else:
                    await conn.send("finalize")
        assert conn.state == "done"
    return conn.transcript.text, [u.text for u in conn.transcript.utterances], conn.stats


@pytest.mark.asyncio
@pytest.mark.virtual_time  # backoffs and grace windows of the in-loop twin: the clock jumps
@pytest.mark.parametrize("seed", range(SCHEDULES))
async def test_fault_schedule_keeps_the_transcript_exact(
    twin_factory: TwinFactory, seed: int
) -> None:
    plan = make_plan(seed)
    expected_text, expected_utts, clean = await run(twin_factory, plan, None)
    assert clean.reconnects == 0
    assert expected_text == "".join("".join(r) for r in plan.replies)
    text, utts, stats = await run(twin_factory, plan, plan.faults)
    assert text == expected_text
    assert utts == expected_utts
    assert stats.reconnects >= 1 or stats.replayed_bytes == 0
    assert not other_tasks()


def test_the_schedules_do_inject_faults() -> None:
    """Guard against a generator that silently stops injecting anything."""
    plans = [make_plan(seed) for seed in range(SCHEDULES)]
    assert all(p.faults.schedule for p in plans)
    assert sum(bool(p.faults.refuse) for p in plans) > 10
    assert {f.action for p in plans for f in p.faults.schedule} == {"abort", "close"}
