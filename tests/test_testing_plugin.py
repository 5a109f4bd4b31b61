"""The fixtures users get from the registered pytest plugin (no conftest line needed)."""

from __future__ import annotations

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Twin


@pytest.mark.asyncio
async def test_client_fixture_talks_to_twin_fixture(
    cartesia_client: stt.AsyncCartesia, cartesia_twin: Twin
) -> None:
    async with cartesia_client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
    ) as conn:
        await conn.send_audio(bytes(3200))
        utt = await conn.finalize(timeout=5)
    assert utt.text == ""
    assert cartesia_twin.sessions[0].audio_bytes == 3200
    assert cartesia_twin.sessions[0].close_code == 1000


@pytest.mark.asyncio
async def test_speech_twin_fixture_recognizes_what_it_synthesized(
    cartesia_speech_twin: Twin,
) -> None:
    async with stt.AsyncCartesia(api_key="k", base_url=cartesia_speech_twin.base_url) as client:
        response = await client.tts.generate(
            model_id="sonic-latest",
            transcript="Thank you very much for your help",
            voice="any",
            output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        )
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(await response.read())
            utt = await conn.finalize(timeout=30)
    assert utt.text == "thank you very much for your help"
