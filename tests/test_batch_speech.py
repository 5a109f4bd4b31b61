"""``POST /stt`` with the twin's offline recognizer: raw PCM and WAV in several formats.

The official SDK's run of the same call is tests/test_official_batch.py.
"""

from __future__ import annotations

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import serve
from cartesia_stt_async.twin.wer import word_error_rate

from .conftest import client_for
from .speech import SEED, convert, shared_engine, speech
from .test_batch import wav

pytestmark = pytest.mark.speech

TEXT = SEED[0]  # (SEED[1] alone: "so he sells seashells on the sea sure", WER 0.43)


@pytest.mark.asyncio
@pytest.mark.parametrize(("encoding", "rate"), [("pcm_f32le", 16000), ("pcm_s16le", 24000)])
async def test_raw_pcm_is_recognized_with_word_times(encoding: str, rate: int) -> None:
    audio = convert(speech(TEXT), encoding, rate)
    seconds = len(speech(TEXT)) / 32000
    async with serve(engine=shared_engine()) as twin, client_for(twin) as client:
        result = await client.stt.transcribe(
            file=audio,
            model="ink-whisper",
            language="en",
            timestamp_granularities=["word"],
            encoding=encoding,
            sample_rate=rate,
        )
    assert word_error_rate(TEXT, result.text) <= 0.35, result.text
    assert result.duration == pytest.approx(seconds, abs=0.01)
    assert result.words and all(0 <= w.start <= w.end <= seconds + 0.05 for w in result.words)


@pytest.mark.asyncio
async def test_a_wav_is_recognized_and_words_are_none_unless_asked() -> None:
    async with serve(engine=shared_engine()) as twin, client_for(twin) as client:
        result = await client.stt.transcribe(file=wav(speech(TEXT)), model="ink-whisper")
    assert isinstance(result, stt.Transcription)
    assert word_error_rate(TEXT, result.text) <= 0.35, result.text
    assert result.words is None
