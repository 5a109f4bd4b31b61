"""Issue 10 #4 and #6: one huge chunk under each buffer policy keeps memory bounded and the
event loop responsive.

The chunk is ``HOSTILE_CHUNK_BYTES`` (128 MiB by default; the fuzz session uses 1 GiB) of
non-zero audio, allocated (and its pages touched) before the baseline is taken. While
``send_audio`` runs, a thread samples the process RSS (``VmRSS``) every millisecond and a task
measures the event loop's lag. The RSS may grow by ``max_buffered_ms`` of frames plus slack
(the chunk itself is already in the baseline: the SDK may hold a reference, never a copy).

* ``block``: the chunk streams to the peer; once 8 MiB went out (or it ended) the call is
  cancelled (cancellation is supported at any point), so the test does not depend on the
  chunk size for its duration.
* ``drop_oldest``: the call returns at once; the loop must not stall for seconds.
* ``raise``: the chunk is over the buffer with the queue empty: ``BufferFullError`` at once,
  nothing queued (#4).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
import time
from collections.abc import Iterator

import pytest

import cartesia_stt_async as stt

from .conftest import SLACK, bounded, open_ws
from .peer import Peer

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

CHUNK_BYTES = int(os.environ.get("HOSTILE_CHUNK_BYTES", str(128 * 2**20)))
MAX_BUFFERED_MS = 2000
BUFFERED_BYTES = 32000 * MAX_BUFFERED_MS // 1000  # 16 kHz pcm_s16le
SLACK_BYTES = 48 * 2**20  # allocator, socket buffers, the peer's reader (same process)
STREAMED = 8 * 2**20


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@contextlib.contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Yields a one-item list that holds the highest RSS seen while the block ran."""
    peak = [rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], rss())


async def ticker(lags: list[float]) -> None:
    """Records how late each 10 ms tick fires (the event loop's responsiveness)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        lags.append(loop.time() - due)


@pytest.mark.asyncio
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "policy",
    [
        pytest.param("block"),
        pytest.param("drop_oldest"),
        pytest.param("raise"),
    ],
)
async def test_6_a_huge_chunk_keeps_memory_bounded(policy: stt.BufferPolicy) -> None:
    asyncio.get_running_loop().set_debug(False)  # no traceback capture per callback
    chunk = b"\x01" * CHUNK_BYTES
    lags: list[float] = []
    try:
        async with bounded(120), Peer(inspect_audio=False) as peer:
            manager = open_ws(peer.base_url, max_buffered_ms=MAX_BUFFERED_MS, buffer_policy=policy)
            conn = await manager.enter()
            tick = asyncio.create_task(ticker(lags))
            try:
                gc.collect()
                await asyncio.sleep(0.05)  # the ticker is running
                baseline = rss()
                with peak_rss() as peak:
                    if policy == "block":
                        send = asyncio.create_task(conn.send_audio(chunk))
                        while not send.done() and peer.audio_bytes < STREAMED:  # noqa: ASYNC110
                            await asyncio.sleep(0.01)  # polls the peer's byte count
                        send.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await send
                    elif policy == "drop_oldest":
                        await conn.send_audio(chunk)
                        assert conn.stats.queued_bytes <= BUFFERED_BYTES
                    else:
                        with pytest.raises(stt.BufferFullError):
                            async with asyncio.timeout(1 * SLACK):
                                await conn.send_audio(chunk)
                        assert conn.stats.queued_bytes == 0
                    await asyncio.sleep(0.05)  # a tick after the call, late if it stalled
            finally:
                tick.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tick
                await conn.close()
        grown = peak[0] - baseline
        assert grown <= BUFFERED_BYTES + SLACK_BYTES, (
            f"RSS grew {grown / 2**20:.0f} MiB for a {CHUNK_BYTES / 2**20:.0f} MiB chunk ({policy})"
        )
        # No single step of send_audio may hold the loop for long (drop_oldest: issue #6).
        assert max(lags, default=0.0) < 0.5 * SLACK, f"loop stalled {max(lags):.2f} s"
    finally:
        del chunk
        gc.collect()
