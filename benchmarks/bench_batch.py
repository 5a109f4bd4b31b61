"""Batch transcription (``POST /stt``): files per second and upload memory, ours vs plain aiohttp.

Measured, in one run, against the twin serving ``POST /stt`` in a process of its own (a
``ScriptedEngine``: the server's per-file cost is parsing, spooling and a fixed answer, so the
client side is what differs):

1. **Files per second** at a few concurrency levels: ``--files`` WAV files of ``--seconds``
   seconds each, uploaded by ``concurrency`` tasks sharing one client, through
   ``client.stt.transcribe(file=path, ...)`` and through a plain ``aiohttp`` upload (one
   ``ClientSession``, the same multipart form from an open file, the JSON answer decoded with
   ``json.loads``). Reported: files/s and the client process's CPU seconds per file, and ours
   over plain as ratios (files/s: above 1 means we are faster; CPU: below 1 means we use less).
   Each level runs ``--repeat`` times, alternating, and the median is kept.
2. **Peak memory while uploading a large file** (``--large-mib`` of raw PCM, a sparse file): in a
   fresh subprocess each, after a small warm-up upload, the growth of the peak RSS
   (``ru_maxrss``) and tracemalloc's peak during the large upload, ours vs the plain aiohttp
   upload of the same open file (and, for contrast, aiohttp sending the file read whole into
   ``bytes``: what the measurement shows when a client does buffer).

Run: ``python benchmarks/bench_batch.py`` (about a minute); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cartesia_stt_async as stt  # noqa: E402

_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from cartesia_stt_async.twin import ScriptedEngine, serve

    async def main():
        engine = ScriptedEngine([["The quick brown fox jumps over the lazy dog."]])
        async with serve(engine=engine) as twin:
            print(twin.base_url, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)

_UPLOAD = textwrap.dedent(
    """
    import asyncio, json, resource, sys, tracemalloc
    import aiohttp
    import cartesia_stt_async as stt

    RAW = {"encoding": "pcm_s16le", "sample_rate": "16000"}

    async def plain(session, base_url, path, whole=False):
        form = aiohttp.FormData()
        form.add_field("model", "ink-whisper")
        with open(path, "rb") as f:
            content = f.read() if whole else f  # whole: the naive way, for contrast
            form.add_field(
                "file", content, filename="a.raw", content_type="application/octet-stream"
            )
            async with session.post(
                base_url + "/stt", data=form, params=RAW, headers={"X-API-Key": "k"}
            ) as response:
                response.raise_for_status()
                return json.loads(await response.read())["duration"]

    async def main(who, base_url, large, small):
        if who == "ours":
            client = stt.AsyncCartesia(api_key="k", base_url=base_url, max_retries=0)
            async def upload(path):
                result = await client.stt.transcribe(
                    file=path, model="ink-whisper", encoding="pcm_s16le", sample_rate=16000,
                    timeout=600,
                )
                return result.duration
        else:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
            async def upload(path):
                return await plain(session, base_url, path, whole=who == "whole")
        await upload(small)  # warm-up: imports, the pool
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        duration = await upload(large)
        _, peak = tracemalloc.get_traced_memory()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await (client.close() if who == "ours" else session.close())
        print(json.dumps({"rss_growth": (after - before) * 1024, "traced_peak": peak,
                          "duration": duration}))

    asyncio.run(main(*sys.argv[1:5]))
    """
)


@contextlib.asynccontextmanager
async def twin_process() -> AsyncIterator[str]:
    """The twin in its own process; yields its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SERVER,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        yield line.decode().strip()
    finally:
        proc.terminate()
        await proc.wait()


def make_wav(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x01\x00" * int(16000 * seconds))


Upload = Callable[[Path], Awaitable[str]]


async def run_level(upload: Upload, files: list[Path], concurrency: int) -> tuple[float, float]:
    """Upload every file with ``concurrency`` workers: (files/s, CPU s per file)."""
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for path in files:
        queue.put_nowait(path)

    async def worker() -> None:
        while not queue.empty():
            text = await upload(queue.get_nowait())
            assert text, "no transcript"

    cpu, wall = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(files) / wall, cpu / len(files)


async def throughput(
    base_url: str, files: list[Path], levels: list[int], repeat: int
) -> list[dict[str, float]]:
    client = stt.AsyncCartesia(api_key="k", base_url=base_url, max_retries=0)
    session = aiohttp.ClientSession()

    async def ours(path: Path) -> str:
        result = await client.stt.transcribe(
            file=path, model="ink-whisper", language="en", timestamp_granularities=["word"]
        )
        return result.text

    async def plain(path: Path) -> str:
        form = aiohttp.FormData()
        form.add_field("model", "ink-whisper")
        form.add_field("language", "en")
        form.add_field("timestamp_granularities[]", "word")
        with open(path, "rb") as f:  # noqa: ASYNC230  # what a plain script does
            form.add_field("file", f, filename=path.name, content_type="audio/x-wav")
            async with session.post(
                f"{base_url}/stt", data=form, headers={"X-API-Key": "k"}
            ) as response:
                response.raise_for_status()
                text: str = json.loads(await response.read())["text"]
                return text

    rows = []
    try:
        await run_level(ours, files[:10], 2)  # warm both pools
        await run_level(plain, files[:10], 2)
        for level in levels:
            runs: dict[str, list[tuple[float, float]]] = {"ours": [], "plain": []}
            for _ in range(repeat):
                runs["ours"].append(await run_level(ours, files, level))
                runs["plain"].append(await run_level(plain, files, level))
            med = {
                who: (
                    statistics.median(r[0] for r in got),
                    statistics.median(r[1] for r in got),
                )
                for who, got in runs.items()
            }
            rows.append(
                {
                    "concurrency": level,
                    "ours_files_per_s": med["ours"][0],
                    "plain_files_per_s": med["plain"][0],
                    "ours_cpu_ms_per_file": med["ours"][1] * 1000,
                    "plain_cpu_ms_per_file": med["plain"][1] * 1000,
                }
            )
    finally:
        await client.close()
        await session.close()
    return rows


async def upload_memory(base_url: str, tmp: Path, mib: int) -> dict[str, dict[str, float]]:
    large, small = tmp / "large.raw", tmp / "small.raw"
    large.touch()
    os.truncate(large, mib << 20)  # sparse: no disk I/O to make it
    small.write_bytes(b"\0" * 32000)
    script = tmp / "upload.py"
    script.write_text(_UPLOAD)
    out = {}
    for who in ("ours", "plain", "whole"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            who,
            base_url,
            str(large),
            str(small),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        stdout, _ = await proc.communicate()
        assert proc.returncode == 0, who
        out[who] = json.loads(stdout)
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.files, args.repeat, args.large_mib = 40, 1, 64
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        wav = tmp / "clip.wav"
        make_wav(wav, args.seconds)
        files = []
        for i in range(args.files):
            path = tmp / f"clip{i}.wav"
            os.link(wav, path)
            files.append(path)
        async with twin_process() as base_url:
            rows = await throughput(base_url, files, levels, args.repeat)
            memory = await upload_memory(base_url, tmp, args.large_mib)
    size_kib = wav.stat().st_size // 1024 if wav.exists() else int(args.seconds * 32)
    out = io.StringIO()
    out.write(
        f"files/s: {args.files} WAV files of {args.seconds:g} s ({size_kib} KiB), median of "
        f"{args.repeat}\n\n"
    )
    out.write(
        "| concurrency | ours files/s | plain files/s | ours / plain | ours CPU ms/file "
        "| plain CPU ms/file | ours / plain |\n|---|---|---|---|---|---|---|\n"
    )
    for r in rows:
        out.write(
            f"| {r['concurrency']} | {r['ours_files_per_s']:.1f} | {r['plain_files_per_s']:.1f} "
            f"| {ratio(r['ours_files_per_s'], r['plain_files_per_s'])} "
            f"| {r['ours_cpu_ms_per_file']:.2f} | {r['plain_cpu_ms_per_file']:.2f} "
            f"| {ratio(r['ours_cpu_ms_per_file'], r['plain_cpu_ms_per_file'])} |\n"
        )
    ours, plain, whole = memory["ours"], memory["plain"], memory["whole"]
    out.write(f"\nupload of a {args.large_mib} MiB file (raw PCM, sparse):\n\n")
    out.write(
        "| | ours | plain aiohttp (open file) | ours / plain | aiohttp, file read whole |\n"
        "|---|---|---|---|---|\n"
    )
    for key, label in (("rss_growth", "peak RSS growth"), ("traced_peak", "tracemalloc peak")):
        out.write(
            f"| {label} | {ours[key] / 1024:.0f} KiB | {plain[key] / 1024:.0f} KiB "
            f"| {ratio(ours[key], plain[key])} | {whole[key] / 1024:.0f} KiB |\n"
        )
    print(out.getvalue())


if __name__ == "__main__":
    asyncio.run(main())
