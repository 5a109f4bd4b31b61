"""Conformance of ``stt.transcribe``: the official ``cartesia`` 4.2.0 and ours, same code.

tests/official_batch_run.py transcribes a WAV the twin synthesized, once with the official
SDK (in its own environment, tests/official.py) and once with this package (the import
swapped), against the twin's ``POST /stt`` with its offline recognizer. Both must get the
sentence back (WER <= 0.35) with word timings inside the audio, send the same form, and ride
over the same injected 503 (both retry it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from cartesia_stt_async.twin import serve
from cartesia_stt_async.twin._stt_route import BatchRecord, batch_state
from cartesia_stt_async.twin._tts import TTSRequest
from cartesia_stt_async.twin.faults import Faults, HTTPFault
from cartesia_stt_async.twin.wer import word_error_rate

from .official import ROOT, run_official, run_script
from .speech import SEED, _synthesizer, shared_engine

pytestmark = pytest.mark.speech

VERSION = "4.2.0"
SCRIPT = Path(__file__).resolve().parent / "official_batch_run.py"
REFERENCE = SEED[0]
MAX_WER = 0.35


async def run(sdk: str, flavour: str, base_url: str, path: Path) -> dict[str, Any]:
    """Run the script with ``sdk`` (``cartesia`` or ``cartesia_stt_async``); its result."""
    args = (sdk, flavour, base_url, str(path))
    if sdk == "cartesia":
        out = await run_official(VERSION, SCRIPT, *args)
    else:  # this checkout's package, in the test environment
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out, _ = await run_script(sys.executable, str(SCRIPT), *args, env=env)
    result: dict[str, Any] = json.loads(out)
    return result


def check(result: dict[str, Any], seconds: float) -> None:
    assert word_error_rate(REFERENCE, result["text"]) <= MAX_WER, result["text"]
    words = result["words"]
    assert words, result
    assert word_error_rate(REFERENCE, " ".join(w for w, _, _ in words)) <= MAX_WER
    starts = [s for _, s, _ in words]
    assert starts == sorted(starts)
    assert all(0.0 <= s <= e <= seconds + 0.05 for _, s, e in words), words
    assert result["duration"] == pytest.approx(seconds, abs=0.01)
    assert result["language"] == "en"
    assert result["request_id"]


def form_of(record: BatchRecord) -> tuple[object, ...]:
    return (record.fields, record.query, record.filename, record.status)


@pytest.mark.asyncio
@pytest.mark.timeout(180)
@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_official_and_ours_transcribe_the_same_file(flavour: str, tmp_path: Path) -> None:
    audio = _synthesizer().synthesize(TTSRequest(REFERENCE, "wav", "pcm_s16le", 16000, "en"))
    path = tmp_path / "fox.wav"
    path.write_bytes(audio)
    seconds = (len(audio) - 44) / 32000
    faults = Faults(http=[HTTPFault("status", request=0, status=503, retry_after="0.1")])
    results, forms = {}, {}
    for sdk in ("cartesia", "cartesia_stt_async"):
        async with serve(engine=shared_engine(), faults=faults) as twin:
            results[sdk] = await run(sdk, flavour, twin.base_url, path)
            refused, answered = batch_state(twin).requests  # the 503, then its retry
        assert refused.status == 503
        forms[sdk] = form_of(answered)
        assert answered.headers["cartesia-version"] == "2026-08-14"
        assert answered.content_type == "audio/x-wav"
        check(results[sdk], seconds)
    assert forms["cartesia"] == forms["cartesia_stt_async"]
    assert results["cartesia"]["text"] == results["cartesia_stt_async"]["text"]
