"""Testing a FastAPI app that uses the SDK: the plugin's twin stands in for Cartesia."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import cartesia_stt_async as stt
from cartesia_stt_async.testing import TwinServer

# -- the app under test (yours lives in your package) ---------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client for the app's lifetime; key and URL from CARTESIA_API_KEY, CARTESIA_BASE_URL.
    async with stt.AsyncCartesia() as client:
        app.state.cartesia = client
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/transcribe")
async def transcribe(request: Request) -> dict[str, str]:
    """Transcribe a request body of 16 kHz mono pcm_s16le audio."""
    client: stt.AsyncCartesia = request.app.state.cartesia
    async with client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
    ) as conn:
        await conn.send_audio(await request.body())
        utterance = await conn.finalize()
    return {"text": utterance.text}


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.cartesia_twin(script=[["Hello", " world."]])
def test_transcribe_returns_the_final_text(
    cartesia_twin: TwinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTESIA_BASE_URL", cartesia_twin.base_url)
    monkeypatch.setenv("CARTESIA_API_KEY", "test-key")
    with TestClient(app) as http:  # runs the lifespan on TestClient's own loop and thread
        response = http.post("/transcribe", content=bytes(32000))
    assert response.json() == {"text": "Hello world."}
    cartesia_twin.wait_idle()
    assert cartesia_twin.sessions[0].audio_bytes == 32000


def test_transcribe_real_speech(
    cartesia_speech_twin: TwinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTESIA_BASE_URL", cartesia_speech_twin.base_url)
    monkeypatch.setenv("CARTESIA_API_KEY", "test-key")
    speech = httpx2.post(  # the twin's /tts/bytes speaks the sentence, offline
        f"{cartesia_speech_twin.base_url}/tts/bytes",
        headers={"X-API-Key": "test-key"},
        json={
            "model_id": "sonic-latest",
            "transcript": "Thank you very much for your help",
            "voice": {"mode": "id", "id": "any"},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        },
    )
    with TestClient(app) as http:
        response = http.post("/transcribe", content=speech.content)
    assert response.json() == {"text": "thank you very much for your help"}
