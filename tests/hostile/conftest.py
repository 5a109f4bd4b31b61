"""Helpers of the hostile-peer suite: clients pointed at a :class:`~.peer.Peer`, bounded waits,
the task-leak check, and the ``final_order`` option as the public API spells it.

Everything here drives the SDK through its public API only (``import cartesia_stt_async as
stt``), so the suite survives any restructuring of the package's internals.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cartesia_stt_async as stt

from ..conftest import SLACK

__all__ = [
    "CANARY",
    "FAST",
    "SEEDS",
    "SLACK",
    "bounded",
    "client_for",
    "final_order_kw",
    "leftover_tasks",
    "open_ws",
    "pcm",
]

# A realistic-looking API key that the hostile servers echo back in every field they can.
CANARY = "sk_canary_7f3a9c1e5b2d4468"

# Reconnect backoff for tests: tiny, so schedules with several drops stay fast.
FAST: dict[str, Any] = {"initial_delay": 0.001, "max_delay": 0.004}

# Seeds of the property test: 500 by default, more in the long fuzz run (HOSTILE_SEEDS=5000).
SEEDS = int(os.environ.get("HOSTILE_SEEDS", "500"))


def pcm(nbytes: int, value: int = 1) -> bytes:
    """``nbytes`` bytes of mono pcm_s16le with every sample ``value`` (0: silence)."""
    assert nbytes % 2 == 0
    return value.to_bytes(2, "little", signed=True) * (nbytes // 2)


def client_for(base_url: str, api_key: str = CANARY, **kw: Any) -> stt.AsyncCartesia:
    """An ``AsyncCartesia`` pointed at a peer's ``base_url``."""
    return stt.AsyncCartesia(api_key=api_key, base_url=base_url, **kw)


def open_ws(base_url: str, *, api_key: str = CANARY, **kw: Any) -> stt.ConnectionManager:
    """``client.stt.manual_finalize.websocket`` with test defaults (unpaced, fast backoff);
    ``proxy`` and ``ssl`` go to the client, and ``retry`` as the client's ``max_retries`` (its
    retry policy: the first handshake's); everything else to ``websocket()``."""
    client_kw: dict[str, Any] = {k: kw.pop(k) for k in ("proxy", "ssl") if k in kw}
    if "retry" in kw:
        client_kw["max_retries"] = kw.pop("retry")
    options: dict[str, Any] = {
        "model": "ink-2",
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
        "speed": None,
        "close_timeout": 5 * SLACK,
        **FAST,
        **kw,
    }
    return client_for(base_url, api_key, **client_kw).stt.manual_finalize.websocket(**options)


@functools.cache
def final_order_supported() -> bool:
    """Whether ``websocket()`` takes ``final_order`` yet (issue 10). No I/O: it only builds
    a manager."""
    try:
        open_ws("http://127.0.0.1:9", final_order="flush_first")
    except TypeError:
        return False
    return True


def final_order_kw(order: str) -> dict[str, Any]:
    """The ``websocket()`` keywords for a server of this order.

    Finals-first sessions use the default (Cartesia's current docs). Flush-first sessions pass
    ``final_order="flush_first"``, once the SDK has the option; until then they run with the
    SDK's learned order, which is what issue 10 #1 and #2 describe.
    """
    if order == "flush_first" and final_order_supported():
        return {"final_order": "flush_first"}
    return {}


async def leftover_tasks() -> list[str]:
    """Names of the tasks still running besides the current one; cancels and awaits them
    (bounded), so that a failing test cannot leak into the next one."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    names = [repr(t.get_coro()) for t in tasks]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2 * SLACK)
    return names


@asynccontextmanager
async def bounded(seconds: float) -> AsyncIterator[None]:
    """Bound a test body to ``seconds * SLACK``; on the way out, cancel any task left behind
    and, if the body succeeded, fail when there was one."""
    try:
        async with asyncio.timeout(seconds * SLACK):
            yield
    except BaseException:
        await leftover_tasks()
        raise
    left = await leftover_tasks()
    assert not left, f"tasks left behind: {left}"
