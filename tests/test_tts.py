"""``client.tts.generate`` against the twin's ``/tts/bytes`` (offline Pico voice)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cartesia_stt_async as stt
from cartesia_stt_async import SpeechResponse
from cartesia_stt_async.protocol.audio import BYTES_PER_SAMPLE, parse_wav_header
from cartesia_stt_async.twin import ScriptedEngine, _dsp, serve

from .conftest import API_KEY

VOICE = {"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"}
TEXT = "Sandy sells seashells"


def fmt(container: str = "raw", encoding: str = "pcm_s16le", rate: int = 16000) -> dict[str, Any]:
    return {"container": container, "encoding": encoding, "sample_rate": rate}


async def generate(base_url: str, key: str = API_KEY, **kw: Any) -> SpeechResponse:
    body: dict[str, Any] = {
        "model_id": "sonic-latest",
        "transcript": TEXT,
        "voice": VOICE,
        "output_format": fmt(),
        "language": "en",
    }
    body.update(kw)
    async with stt.AsyncCartesia(api_key=key, base_url=base_url) as client:
        return await client.tts.generate(**body)


@pytest.mark.asyncio
@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"])
@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100])
async def test_raw_audio_in_every_encoding_and_rate(encoding: str, rate: int) -> None:
    async with serve(engine=ScriptedEngine([])) as twin:
        reference = await (await generate(twin.base_url)).read()
        response = await generate(twin.base_url, output_format=fmt("raw", encoding, rate))
        audio = await response.read()
    seconds = len(reference) / 32000
    assert seconds > 0.5
    assert len(audio) % BYTES_PER_SAMPLE[encoding] == 0
    assert len(audio) / BYTES_PER_SAMPLE[encoding] / rate == pytest.approx(seconds, abs=1e-3)
    samples = _dsp.decode(audio, encoding)
    peak = float(np.abs(samples).max())
    assert 0.1 < peak < 0.99  # speech, and scaled down from Pico's clipping default volume
    assert response.request_id and response.content_type == "application/octet-stream"


@pytest.mark.asyncio
@pytest.mark.parametrize(("encoding", "rate"), [("pcm_s16le", 22050), ("pcm_f32le", 48000)])
async def test_wav_container_has_a_matching_header(encoding: str, rate: int) -> None:
    async with serve(engine=ScriptedEngine([])) as twin:
        response = await generate(twin.base_url, output_format=fmt("wav", encoding, rate))
        wav = await response.read()
    info = parse_wav_header(wav)
    assert (info.encoding, info.sample_rate, info.channels) == (encoding, rate, 1)
    assert info.data_offset + info.data_size == len(wav)
    assert response.content_type == "audio/wav"


@pytest.mark.asyncio
async def test_response_streams_in_chunks_and_writes_files(tmp_path: Path) -> None:
    async with serve(engine=ScriptedEngine([])) as twin:
        response = await generate(twin.base_url)
    audio = await response.read()
    chunks = [c async for c in response.iter_bytes(1000)]
    assert b"".join(chunks) == audio and max(map(len, chunks)) == 1000
    await response.write_to_file(tmp_path / "a.raw")
    assert (tmp_path / "a.raw").read_bytes() == audio


BAD_FIELDS = [
    ({"transcript": "   "}, stt.UsageError, "transcript"),
    ({"output_format": {"encoding": "pcm_s16le"}}, stt.UsageError, "output_format"),
    ({"output_format": fmt("mp3")}, stt.BadRequestError, "container"),
    ({"output_format": fmt("raw", "pcm_s32le")}, stt.BadRequestError, "encoding"),
    ({"output_format": fmt("raw", "pcm_s16le", 12345)}, stt.BadRequestError, "sample_rate"),
    ({"language": "xx"}, stt.BadRequestError, "language"),
    ({"voice": 7}, stt.BadRequestError, "voice"),
    ({"model_id": ""}, stt.BadRequestError, "model_id"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("override", "error", "field"), BAD_FIELDS)
async def test_bad_requests_name_the_field(
    override: dict[str, Any], error: type[Exception], field: str
) -> None:
    async with serve(engine=ScriptedEngine([])) as twin:
        with pytest.raises(error, match=field) as info:
            await generate(twin.base_url, **override)
    if isinstance(info.value, stt.APIStatusError):
        assert info.value.status_code == 400 and info.value.request_id


@pytest.mark.asyncio
async def test_wrong_key_is_an_authentication_error_without_the_key() -> None:
    async with serve(engine=ScriptedEngine([]), api_keys=["the-right-key"]) as twin:
        with pytest.raises(stt.AuthenticationError) as info:
            await generate(twin.base_url, key=API_KEY)
    assert info.value.status_code == 401
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value)


@pytest.mark.asyncio
async def test_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(stt.APIConnectionError) as info:
        await generate(f"http://127.0.0.1:{port}")
    assert API_KEY not in str(info.value)


def test_client_repr_hides_the_key() -> None:
    client = stt.AsyncCartesia(api_key=API_KEY, base_url="http://127.0.0.1:9")
    assert API_KEY not in repr(client.tts)


@pytest.mark.asyncio
async def test_equal_requests_give_identical_audio_whatever_came_before() -> None:
    """Pico's audio used to depend on earlier requests (it read memory left by them)."""
    others = ["The quick brown fox jumps over the lazy dog.", "Bonjour tout le monde."]
    async with serve(engine=ScriptedEngine([])) as twin:
        first = await (await generate(twin.base_url)).read()
        runs = [first]
        for other, language in zip(others, ["en", "fr"], strict=True):
            await generate(twin.base_url, transcript=other, language=language)
            runs.append(await (await generate(twin.base_url)).read())
    assert len(first) > 16000
    assert runs[1] == first and runs[2] == first
