"""Pytest fixtures for your own test suites: a real twin on 127.0.0.1, port 0.

Enable them in your ``conftest.py``::

    pytest_plugins = ["cartesia_stt_async.testing"]

then::

    @pytest.mark.asyncio
    async def test_my_handler(cartesia_twin_factory):
        async with cartesia_twin_factory(engine=ScriptedEngine([["Hello."]])) as twin:
            client = AsyncCartesia(api_key="test", base_url=twin.base_url)
            ...

Needs ``pytest`` and ``pytest-asyncio`` (the ``test`` extra).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import pytest_asyncio

from .client import AsyncCartesia
from .twin import ScriptedEngine, Twin, serve

__all__ = ["TEST_API_KEY", "cartesia_client", "cartesia_twin", "cartesia_twin_factory"]

TEST_API_KEY = "cartesia-stt-async-test-key"


@pytest.fixture
def cartesia_twin_factory() -> Callable[..., AbstractAsyncContextManager[Twin]]:
    """``serve``: start a twin with your engine and options, ``async with factory(...)``."""
    return serve


@pytest_asyncio.fixture
async def cartesia_twin() -> AsyncIterator[Twin]:
    """A running twin whose scripted engine answers every finalize with no text."""
    async with serve(engine=ScriptedEngine([])) as twin:
        yield twin


@pytest.fixture
def cartesia_client(cartesia_twin: Twin) -> AsyncCartesia:
    """An :class:`AsyncCartesia` pointed at :func:`cartesia_twin`."""
    return AsyncCartesia(api_key=TEST_API_KEY, base_url=cartesia_twin.base_url)
