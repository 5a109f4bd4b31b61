"""The official ``cartesia`` 4.2.0 client's turn-detection flow against the twin's
``/stt/turns/websocket``: one ``turn.end`` per spoken sentence, and the sentences' words.

The audio: sentences synthesized by the twin's own voice (``/tts/bytes``'s synthesizer),
1.5 s of silence after each, in a WAV file. The official client runs in its own virtual
environment (``tests/official.py``) as a subprocess (``tests/official_turns_run.py``, the
SDK's ``stt_auto_finalize_websocket_async`` example flow: 100 ms chunks at real-time pace,
``{"type": "close"}``, ``turn.end`` transcripts joined verbatim).
"""

from __future__ import annotations

import re
import wave
from pathlib import Path

import pytest

from cartesia_stt_async.twin import serve
from cartesia_stt_async.twin.wer import word_error_rate

from .official import run_official
from .speech import SEED, shared_engine, speech
from .test_conformance import MAX_WER, full_transcript

pytestmark = pytest.mark.speech

VERSION = "4.2.0"
RUNNER = Path(__file__).resolve().parent / "official_turns_run.py"
SENTENCES = (*SEED, "Please call me tomorrow morning")
PAUSE = b"\0\0" * 24000  # 1.5 s at 16 kHz


def write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16000)
        wf.writeframes(b"".join(speech(s) + PAUSE for s in SENTENCES))


@pytest.mark.asyncio
@pytest.mark.timeout(150)
async def test_official_client_gets_one_turn_end_per_sentence(tmp_path: Path) -> None:
    wav = tmp_path / "sentences.wav"
    write_wav(wav)
    async with serve(engine=shared_engine()) as twin:
        printed = await run_official(VERSION, RUNNER, twin.base_url, str(wav))
    (record,) = twin.sessions
    assert record.close_code == 1000
    assert [text for _, text in record.commands] == ['{"type": "close"}']
    assert record.headers.get("cartesia-version") == "2026-08-14"

    kinds = re.findall(r"^(connected|turn\.\w+|error) \|", printed, re.MULTILINE)
    assert "error" not in kinds, printed
    assert kinds[0] == "connected"
    assert re.search(rf"^request_id \| {record.request_id}$", printed, re.MULTILINE)
    # One turn per sentence: start ... end, three times, nothing else but updates between.
    turns = [k for k in kinds[1:] if k in ("turn.start", "turn.end")]
    assert turns == ["turn.start", "turn.end"] * len(SENTENCES), printed
    assert "turn.resume" not in kinds, printed

    ends = re.findall(r"^turn\.end \| (.*)$", printed, re.MULTILINE)
    transcript = full_transcript(printed)
    assert transcript == "".join(ends)
    assert all(end.startswith(" ") for end in ends[1:]), ends  # the model's spacing
    reference = ". ".join(SENTENCES) + "."
    assert word_error_rate(reference, transcript) <= MAX_WER, transcript
    for sentence, end in zip(SENTENCES, ends, strict=True):
        assert word_error_rate(sentence, end) <= 0.5, (sentence, end)
