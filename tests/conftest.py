"""Shared fixtures: a real twin server on 127.0.0.1:0 and a client pointed at it."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import pytest_asyncio

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine, Twin, serve

# Every test loop runs in asyncio debug mode (never-retrieved exceptions, slow callbacks).
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")

API_KEY = "sk_test_0123456789abcdefSECRET"

# Timing slack for loaded CI machines; every bounded wait in the tests is a multiple of it.
SLACK = float(os.environ.get("CARTESIA_TEST_SLACK", "1.0"))

TwinFactory = Callable[..., AbstractAsyncContextManager[Twin]]


def pcm(seconds: float, sample_rate: int = 16000, value: int = 0) -> bytes:
    """Mono pcm_s16le audio of a constant sample value (silence by default)."""
    return value.to_bytes(2, "little", signed=True) * int(seconds * sample_rate)


def client_for(twin: Twin, **kw: object) -> stt.AsyncCartesia:
    """An AsyncCartesia pointed at the twin."""
    return stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url, **kw)  # type: ignore[arg-type]


def ws(client: stt.AsyncCartesia, **options: Any) -> stt.ConnectionManager:
    """A session manager for 16 kHz ``pcm_s16le`` with test defaults: unpaced, and a fast
    reconnect backoff (1-5 ms). Any option can be overridden."""
    merged: dict[str, Any] = {
        "model": "ink-2",
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
        "speed": None,
        "initial_delay": 0.001,
        "max_delay": 0.005,
    }
    merged.update(options)
    return client.stt.manual_finalize.websocket(**merged)


def other_tasks() -> set[asyncio.Task[object]]:
    """Every task of the running loop except the current one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


class _AsyncioErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_asyncio_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test during which asyncio logged an error, such as "Task exception was never
    retrieved" or an unclosed transport."""
    handler = _AsyncioErrors()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
        if request.node.get_closest_marker("asyncio"):
            gc.collect()  # never-retrieved exceptions are reported when a task is collected
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, handler.messages


@pytest.fixture
def twin_factory() -> TwinFactory:
    """Start a twin with custom options: ``async with twin_factory(engine=...) as twin``."""
    return serve


@pytest_asyncio.fixture
async def twin() -> AsyncIterator[Twin]:
    """A twin with an empty script (answers finalize with flush_done only)."""
    async with serve(engine=ScriptedEngine([])) as server:
        yield server
