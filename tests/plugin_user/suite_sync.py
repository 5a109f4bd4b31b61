"""A user's plain (sync) tests: the twin runs on its own thread, so no event loop is needed."""

from __future__ import annotations

import asyncio
import os

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.testing import TwinFactory, TwinServer
from cartesia_stt_async.twin import Faults

# tests/test_testing_plugin.py sets this to check that a wrong expectation here fails.
BROKEN = os.environ.get("PLUGIN_USER_BROKEN") == "1"


async def transcribe(base_url: str, audio: bytes) -> str:
    """The user's code under test: one utterance through the SDK."""
    async with (
        stt.AsyncCartesia(api_key="k", base_url=base_url) as client,
        client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn,
    ):
        await conn.send_audio(audio)
        return (await conn.finalize()).text


@pytest.mark.cartesia_twin([["Good", " morning."]])
def test_sync_code_against_the_twin(cartesia_twin: TwinServer) -> None:
    assert asyncio.run(transcribe(cartesia_twin.base_url, bytes(6400))) == (
        "Good morning!" if BROKEN else "Good morning."
    )
    cartesia_twin.wait_idle()
    assert cartesia_twin.sessions[0].audio_bytes == 6400
    assert cartesia_twin.sessions[0].close_code == 1000


def test_refused_handshake_is_a_typed_error(cartesia_twin_factory: TwinFactory) -> None:
    # Every attempt: the client retries a 5xx twice before it raises.
    twin = cartesia_twin_factory(faults=Faults(refuse={0: 503, 1: 503, 2: 503}))
    with pytest.raises(stt.APIStatusError) as info:
        asyncio.run(transcribe(twin.base_url, bytes(320)))
    assert info.value.status_code == 503


@pytest.mark.cartesia_twin(api_keys=["right-key"])
def test_wrong_key_is_refused(cartesia_twin: TwinServer) -> None:
    with pytest.raises(stt.AuthenticationError):
        asyncio.run(transcribe(cartesia_twin.base_url, bytes(320)))
