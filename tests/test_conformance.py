"""The seed example end to end against the twin, with the official SDK and with ours.

Both clients run the seed's async example unchanged (``tests/seed_example.py``): text to
speech through ``/tts/bytes``, 100 ms chunks at real-time pace, ``finalize`` after each
sentence, ``close``, concatenate the ``is_final`` deltas. The official client is the PyPI
``cartesia`` package (3.2.0), in a virtual environment of its own (``tests/official.py``: its
websockets pin is not ours), run as a subprocess pointed at the twin by base URL.

On the wire the two clients agree wherever protocol.md speaks: both send bare ``finalize``
and ``close`` text frames and 3200-byte binary frames; the official client also sends its
``X-Stainless-*`` headers and closes with 1000 after ``done``, which the twin ignores. The
twin follows protocol.md (§11): finals before each ``flush_done``, ``done`` then close 1000.
"""

from __future__ import annotations

import ast
import re

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Twin, serve
from cartesia_stt_async.twin.wer import word_error_rate

from . import official
from .official import OFFICIAL_VERSION, RUNNER
from .seed_example import stt_manual_finalize_websocket_async
from .speech import SEED, shared_engine

# Every test here runs the offline recognizer.
pytestmark = pytest.mark.speech

REFERENCE = ". ".join(SEED) + "."
MAX_WER = 0.35


def full_transcript(printed: str) -> str:
    match = re.search(r"^Full transcript: (.*)$", printed, re.MULTILINE)
    assert match, printed
    value = ast.literal_eval(match.group(1))
    assert isinstance(value, str)
    return value


async def run_official(flavour: str, twin: Twin) -> str:
    """Run the seed's ``flavour`` ("async" or "sync") example with the official client in its
    own environment, against ``twin``; return what it printed."""
    return await official.run_official(OFFICIAL_VERSION, RUNNER, flavour, twin.base_url)


def check_wire(twin: Twin) -> list[int]:
    """The session's commands and close; returns its binary frame sizes."""
    (record,) = twin.sessions
    assert [text for _, text in record.commands] == ["finalize", "finalize", "close"]
    assert record.close_code == 1000
    sizes = [size for _, size in record.frames]
    assert sizes and max(sizes) == 3200
    return sizes


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_seed_example_with_both_clients_transcribes_the_sentences(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with serve(engine=shared_engine()) as twin:
        theirs = full_transcript(await run_official("async", twin))
    their_frames = check_wire(twin)  # after the server has wound down: close code recorded

    async with (
        serve(engine=shared_engine()) as twin,
        stt.AsyncCartesia(api_key="twin-key", base_url=twin.base_url) as ours,
    ):
        await stt_manual_finalize_websocket_async(ours)
    assert check_wire(twin) == their_frames  # send_raw frames go out as they came
    printed = capsys.readouterr().out
    mine = full_transcript(printed)

    assert word_error_rate(REFERENCE, theirs) <= MAX_WER, theirs
    assert word_error_rate(REFERENCE, mine) <= MAX_WER, mine
    # Same audio, same frames, same recognizer: the same transcript, byte for byte.
    assert mine == theirs
    # The second utterance's delta carries its own leading space.
    deltas = re.findall(r"^transcript \| (.*)$", printed, re.MULTILINE)
    assert len(deltas) == 2 and deltas[1].startswith(" ") and "".join(deltas) == mine
