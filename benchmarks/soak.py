"""Soak: N concurrent sessions for M minutes through random faults; nothing may be lost.

What is measured, against what: each worker opens session after session against a twin
running in a separate process (so only the client's memory is measured here). The twin drops
or closes a random share of its connections (TCP abort, or close 1001/1011/1012/1013, after a
random number of frames or events) and refuses some handshakes with 500/503. Every utterance
is a run of one constant sample value, unique to the utterance, and the twin answers it with
``" u<value>:<bytes>"``: the bytes it heard for that utterance. So the client can check, for
every utterance, that it was transcribed exactly once, in order, with every byte of its audio.

Reported: utterances sent and verified, lost audio bytes (must be 0), transcripts that differ
from the fault-free expectation (must be 0), sessions that failed, reconnects, replayed bytes,
and the client's memory over time (RSS and tracemalloc; must be flat).

    python benchmarks/soak.py --sessions 4 --minutes 1

The twin gets faults on connection indices it accepts, from a seeded schedule; the workers'
choices (utterance lengths, finalize style) come from their own seeded generators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field

import cartesia_stt_async as stt

SAMPLE_RATE = 16000
FAULT_SHARE = 0.25  # of connections
MAX_CONNECTIONS = 20_000  # faults are scheduled for this many accepted connections


# -- the twin (run in a child process) ----------------------------------------------------


def _answer(audio: bytes) -> list[str]:
    """The twin's engine: the utterance's sample value and how many bytes arrived."""
    if not audio:
        return []
    value = int.from_bytes(audio[:2], "little", signed=True)
    if audio != audio[:2] * (len(audio) // 2):
        return [f" garbled:{len(audio)}"]
    return [f" u{value}:{len(audio)}"]


def _faults(seed: int) -> object:
    from cartesia_stt_async.twin.faults import Fault, Faults

    rng = random.Random(seed)
    schedule = []
    refuse = {}
    for index in range(MAX_CONNECTIONS):
        if rng.random() < FAULT_SHARE:
            action = rng.choice(["abort", "close"])
            code = rng.choice([1001, 1011, 1012, 1013])
            if rng.random() < 0.5:
                trigger = {"after_frames": rng.randint(1, 40)}
            else:
                trigger = {"after_events": rng.randint(1, 8)}
            schedule.append(Fault(action, connection=index, code=code, **trigger))  # type: ignore[arg-type]
    for handshake in range(MAX_CONNECTIONS):
        if rng.random() < 0.03:
            refuse[handshake] = rng.choice([500, 503])
    return Faults(schedule, refuse=refuse)


async def _run_twin(seed: int) -> None:
    from cartesia_stt_async.twin import ScriptedEngine, serve

    engine = ScriptedEngine([], by_audio=_answer)
    async with serve(engine=engine, faults=_faults(seed), idle_timeout=60) as twin:  # type: ignore[arg-type]
        print(twin.base_url, flush=True)
        while True:
            await asyncio.sleep(3600)
            engine.utterance_bytes.clear()


# -- the clients --------------------------------------------------------------------------


@dataclass
class Totals:
    utterances: int = 0
    verified: int = 0
    audio_bytes: int = 0
    lost_bytes: int = 0
    mismatched: int = 0
    sessions: int = 0
    refused_opens: int = 0
    failed_sessions: int = 0
    reconnects: int = 0
    replayed_bytes: int = 0
    failures: dict[str, int] = field(default_factory=dict)


async def _session(
    client: stt.AsyncCartesia,
    rng: random.Random,
    next_value: list[int],
    totals: Totals,
    speed: float,
) -> None:
    utterances: list[tuple[int, bytes]] = []
    for _ in range(rng.randint(2, 6)):
        next_value[0] = next_value[0] % 32000 + 1
        samples = rng.choice([1600, 3200, 4800, 8000, 16000])
        utterances.append(
            (next_value[0], next_value[0].to_bytes(2, "little", signed=True) * samples)
        )
    totals.sessions += 1
    conn: stt.AsyncConnection | None = None
    refused = False
    try:
        async with client.stt.manual_finalize.websocket(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=SAMPLE_RATE,
            speed=speed,
            initial_delay=0.05,
            max_delay=0.5,
        ) as conn:
            for _, audio in utterances:
                await conn.send_audio(audio)
                if rng.random() < 0.5:
                    await conn.finalize(timeout=30)
                else:
                    await conn.send("finalize")
    except stt.APIStatusError:
        if conn is None:  # the first handshake was refused: nothing was sent, nothing lost
            totals.sessions -= 1
            totals.refused_opens += 1
            refused = True
        else:
            raise
    except stt.CartesiaSTTError as exc:
        totals.failed_sessions += 1
        name = type(exc).__name__
        totals.failures[name] = totals.failures.get(name, 0) + 1
    finally:
        if not refused:
            _check(utterances, conn, totals)


def _check(
    utterances: list[tuple[int, bytes]], conn: stt.AsyncConnection | None, totals: Totals
) -> None:
    """Count what the transcript proves about every utterance of one session."""
    expected = "".join(f" u{v}:{len(a)}" for v, a in utterances)
    totals.utterances += len(utterances)
    totals.audio_bytes += sum(len(a) for _, a in utterances)
    got = conn.transcript.text if conn is not None else ""
    if got != expected:
        totals.mismatched += 1
    heard: dict[int, int] = {}
    for part in got.split(" "):
        if part.startswith("u") and ":" in part:
            key, count = part[1:].split(":")
            heard[int(key)] = heard.get(int(key), 0) + int(count)
    for value, audio in utterances:
        n = heard.get(value, 0)
        totals.lost_bytes += max(len(audio) - n, 0)
        totals.verified += n == len(audio)
    if conn is not None:
        totals.reconnects += conn.stats.reconnects
        totals.replayed_bytes += conn.stats.replayed_bytes


async def _worker(base_url: str, seed: int, deadline: float, totals: Totals, speed: float) -> None:
    rng = random.Random(seed)
    next_value = [seed * 1000]
    async with stt.AsyncCartesia(api_key="soak", base_url=base_url) as client:
        while time.monotonic() < deadline:
            await _session(client, rng, next_value, totals, speed)


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


async def _main(sessions: int, minutes: float, seed: int, speed: float) -> int:
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--twin", "--seed", str(seed), stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        base_url = (await child.stdout.readline()).decode().strip()
        totals = Totals()
        start = time.monotonic()
        deadline = start + minutes * 60
        tracemalloc.start()
        samples: list[tuple[float, int, int]] = []
        workers = [
            asyncio.create_task(_worker(base_url, seed * 100 + i, deadline, totals, speed))
            for i in range(sessions)
        ]
        interval = max(minutes * 60 / 12, 1.0)
        while not all(w.done() for w in workers):
            await asyncio.wait(workers, timeout=interval)
            samples.append(
                (time.monotonic() - start, _rss_kib(), tracemalloc.get_traced_memory()[0] // 1024)
            )
        for w in workers:
            w.result()
        tracemalloc.stop()
    finally:
        child.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), 5)
    elapsed = time.monotonic() - start
    print(f"soak: {sessions} concurrent sessions for {elapsed:.0f} s, speed {speed}x, seed {seed}")
    print(f"sessions opened        {totals.sessions}")
    print(f"opens refused (retried) {totals.refused_opens}")
    print(f"sessions failed        {totals.failed_sessions} {totals.failures or ''}".rstrip())
    print(f"utterances sent        {totals.utterances} ({totals.audio_bytes} audio bytes)")
    print(f"utterances verified    {totals.verified}")
    print(f"lost audio bytes       {totals.lost_bytes}")
    print(f"transcripts mismatched {totals.mismatched}")
    print(f"reconnects             {totals.reconnects}")
    print(f"replayed audio bytes   {totals.replayed_bytes}")
    print("memory (t s, RSS KiB, traced KiB):")
    for t, rss, traced in samples:
        print(f"  {t:6.1f}  {rss:8d}  {traced:8d}")
    half = samples[len(samples) // 2 :]
    if len(half) >= 2:
        growth = (half[-1][2] - half[0][2]) / max((half[-1][0] - half[0][0]) / 60, 1e-9)
        print(f"traced memory growth over the second half: {growth:+.0f} KiB/min")
    ok = totals.lost_bytes == 0 and totals.mismatched == 0
    print("result:", "OK" if ok else "LOSS")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=2.0, help="pacing (1.0: real time)")
    parser.add_argument("--twin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.twin:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run_twin(args.seed))
        return 0
    return asyncio.run(_main(args.sessions, args.minutes, args.seed, args.speed))


if __name__ == "__main__":
    sys.exit(main())
