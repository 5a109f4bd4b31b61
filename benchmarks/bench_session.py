"""Whole sessions: cartesia_stt_async vs the official ``cartesia`` SDK, same twin, same run.

What is measured: a twin server runs in a separate process (``cartesia-stt twin --port 0``),
so the client process's CPU time is the client's alone. Each client then runs the same
sessions, one after the other, alternating, several rounds:

* open a manual-finalize session, stream ``UTTERANCES`` utterances of ``SECONDS`` s of 16 kHz
  pcm_s16le each in 100 ms frames with no pacing, ``finalize`` after each, ``close``, read
  every event until ``done``, concatenating final deltas;
* ours uses ``conn.stream(..., speed=None)``; the official client uses the seed's
  ``send_raw``/``send``/``async for`` flow under ``asyncio.gather`` (without the sleeps).

Reported: wall seconds and client CPU seconds per session (median), and the finalize →
flush_done latency seen by each client, as ratios official/ours (> 1: we are faster/cheaper).
Both clients must produce the same transcript, or the run fails.

Needs the official package: ``pip install 'cartesia[websockets]==3.2.0'``.
Run: ``python benchmarks/bench_session.py [rounds]``.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import time
from typing import Any

import cartesia_stt_async as stt

SECONDS = 3.0
UTTERANCES = 5
FRAME = 3200
AUDIO = bytes(int(SECONDS * 16000) * 2)


async def run_ours(base_url: str) -> tuple[str, list[float]]:
    client = stt.AsyncCartesia(api_key="bench-key", base_url=base_url)
    async with client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
    ) as conn:
        transcript = await conn.stream([AUDIO] * UTTERANCES, speed=None)
    return transcript.text, [u.latency for u in transcript.utterances if u.latency is not None]


async def run_official(base_url: str) -> tuple[str, list[float]]:
    from cartesia import AsyncCartesia

    client = AsyncCartesia(api_key="bench-key", base_url=base_url)
    text = ""
    sent: list[float] = []
    latencies: list[float] = []
    async with client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    ) as connection:

        async def send_audio() -> None:
            for _ in range(UTTERANCES):
                for i in range(0, len(AUDIO), FRAME):
                    await connection.send_raw(AUDIO[i : i + FRAME])
                sent.append(time.perf_counter())
                await connection.send("finalize")
            await connection.send("close")

        async def receive_events() -> None:
            nonlocal text
            flushed = 0
            async for event in connection:
                if event.type == "transcript" and event.is_final:
                    text += event.text
                elif event.type == "flush_done":
                    latencies.append(time.perf_counter() - sent[flushed])
                    flushed += 1
                elif event.type == "done":
                    break

        await asyncio.gather(send_audio(), receive_events())
    await client.close()
    return text, latencies


def measure(fn: Any, base_url: str) -> tuple[float, float, str, list[float]]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    text, lat = asyncio.run(fn(base_url))
    return time.perf_counter() - wall0, time.process_time() - cpu0, text, lat


def main() -> int:
    try:
        import cartesia  # noqa: F401
    except ImportError:
        print("needs the official SDK: pip install 'cartesia[websockets]==3.2.0'", file=sys.stderr)
        return 2
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    script = ",".join(f"[' utterance {k}']" for k in range(UTTERANCES))
    twin = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio; from cartesia_stt_async.twin import run_forever, ScriptedEngine;"
            f"asyncio.run(run_forever('127.0.0.1', 0, engine=ScriptedEngine([{script}])))",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert twin.stdout is not None
        match = re.search(r"http://\S+", twin.stdout.readline())
        if not match:
            print("the twin did not start", file=sys.stderr)
            return 1
        base_url = match.group(0)
        results: dict[str, list[tuple[float, float, list[float]]]] = {"ours": [], "official": []}
        texts: dict[str, set[str]] = {"ours": set(), "official": set()}
        measure(run_ours, base_url)  # warm-up both
        measure(run_official, base_url)
        for _ in range(rounds):
            for name, fn in (("ours", run_ours), ("official", run_official)):
                wall, cpu, text, lat = measure(fn, base_url)
                results[name].append((wall, cpu, lat))
                texts[name].add(text)
        if len(texts["ours"] | texts["official"]) != 1:
            print(f"transcripts differ: {texts}", file=sys.stderr)
            return 1
        audio_s = SECONDS * UTTERANCES
        print(f"{rounds} rounds; each session streams {audio_s:.0f} s of audio unpaced")
        summary: dict[str, tuple[float, float, float]] = {}
        for name, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            latency = statistics.median(x for r in rows for x in r[2])
            summary[name] = (wall, cpu, latency)
            print(
                f"{name:9s} wall {wall * 1000:7.1f} ms  client CPU {cpu * 1000:7.1f} ms  "
                f"finalize->flush_done {latency * 1000:6.2f} ms"
            )
        o, f = summary["ours"], summary["official"]
        print(
            f"ratios official/ours: wall {f[0] / o[0]:.2f}x  CPU {f[1] / o[1]:.2f}x  "
            f"latency {f[2] / o[2]:.2f}x"
        )
        return 0
    finally:
        twin.terminate()
        twin.wait(10)


if __name__ == "__main__":
    sys.exit(main())
