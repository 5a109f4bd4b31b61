"""Pacing accuracy: our deadline schedule vs the seed's ``send_raw`` + ``sleep(0.1)`` loop.

What is measured: each client streams ``SECONDS`` s of 16 kHz pcm_s16le audio in 100 ms frames
at real time to one twin (in this process), and the twin records when every frame arrived.
Drift = (arrival of the last frame - arrival of the first) - (frames - 1) x 100 ms: how far the
stream fell behind real time. Ours paces on ``start + n x 100 ms`` (``send_audio``, speed 1.0);
the official ``cartesia`` client is driven exactly as its documented example does
(``await send_raw(chunk); await asyncio.sleep(0.1)``). Reported as a ratio official/ours.

Needs the official package: ``pip install 'cartesia[websockets]==3.2.0'``.
Run: ``python benchmarks/bench_pacing.py [seconds]``.
"""

from __future__ import annotations

import asyncio
import sys

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine, Twin, serve

FRAME = 3200


async def ours(twin: Twin, audio: bytes) -> None:
    client = stt.AsyncCartesia(api_key="bench-key", base_url=twin.base_url)
    async with client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=1.0
    ) as conn:
        await conn.send_audio(audio)
        await conn.finalize()


async def official(twin: Twin, audio: bytes) -> None:
    from cartesia import AsyncCartesia

    client = AsyncCartesia(api_key="bench-key", base_url=twin.base_url)
    async with client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    ) as connection:
        for i in range(0, len(audio), FRAME):
            await connection.send_raw(audio[i : i + FRAME])
            await asyncio.sleep(0.1)
        await connection.send("finalize")
        async for event in connection:
            if event.type == "flush_done":
                break
    await client.close()


def drift(twin: Twin, index: int) -> float:
    frames = twin.sessions[index].frames
    return (frames[-1][0] - frames[0][0]) - (len(frames) - 1) * 0.1


async def main() -> int:
    try:
        import cartesia  # noqa: F401
    except ImportError:
        print("needs the official SDK: pip install 'cartesia[websockets]==3.2.0'", file=sys.stderr)
        return 2
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    audio = bytes(int(seconds * 16000) * 2)
    async with serve(engine=ScriptedEngine([])) as twin:
        await ours(twin, audio)
        await official(twin, audio)
        d_ours, d_official = drift(twin, 0), drift(twin, 1)
    print(f"{seconds:.0f} s of audio in 100 ms frames, real-time pacing")
    print(f"ours:     behind real time by {d_ours * 1000:7.1f} ms at the last frame")
    print(f"official: behind real time by {d_official * 1000:7.1f} ms at the last frame")
    print(f"ratio official/ours: {d_official / max(abs(d_ours), 1e-4):.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
