"""Pytest fixtures for your own test suites: a real twin on 127.0.0.1, port 0.

Enable them in your ``conftest.py``::

    pytest_plugins = ["cartesia_stt_async.testing"]

then::

    @pytest.mark.asyncio
    async def test_my_handler(cartesia_twin_factory):
        async with cartesia_twin_factory(engine=ScriptedEngine([["Hello."]])) as twin:
            client = AsyncCartesia(api_key="test", base_url=twin.base_url)
            ...

For real speech, ``cartesia_speech_twin`` runs the offline recognizer (one pocketsphinx
engine per test run, its decoders pooled) and ``/tts/bytes``::

    @pytest.mark.asyncio
    async def test_my_voice_bot(cartesia_speech_twin):
        client = AsyncCartesia(api_key="test", base_url=cartesia_speech_twin.base_url)
        ...  # synthesize with client.tts.generate, stream, finalize: real words come back

Needs ``pytest`` and ``pytest-asyncio`` (the ``test`` extra); the speech fixtures also need
the ``twin`` extra.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from ._client import AsyncCartesia
from .twin import ScriptedEngine, Twin, serve

if TYPE_CHECKING:
    from .twin.sphinx import SphinxEngine

__all__ = [
    "TEST_API_KEY",
    "cartesia_client",
    "cartesia_recognizer",
    "cartesia_speech_twin",
    "cartesia_twin",
    "cartesia_twin_factory",
]

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


@pytest.fixture(scope="session")
def cartesia_recognizer() -> Iterator[SphinxEngine]:
    """One offline recognizer for the whole test run (decoders cost ~0.3 s each: pooled)."""
    from .twin.sphinx import SphinxEngine

    engine = SphinxEngine()
    yield engine
    asyncio.run(engine.aclose())


@pytest_asyncio.fixture
async def cartesia_speech_twin(cartesia_recognizer: SphinxEngine) -> AsyncIterator[Twin]:
    """A running twin that recognizes real speech and synthesizes it on ``/tts/bytes``."""
    async with serve(engine=cartesia_recognizer) as twin:
        yield twin
