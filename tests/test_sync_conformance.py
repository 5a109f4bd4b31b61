"""The seed's sync example end to end against the twin, with the official sync client and ours.

Both clients run the seed's sync function unchanged (``tests/seed_sync_example.py``): text to
speech through ``/tts/bytes``, ``send_raw`` of 100 ms chunks with ``time.sleep(0.1)``,
``finalize`` after each sentence, ``close``, then ``for event in connection`` concatenating the
``is_final`` deltas. Ours is imported as a user would: ``from cartesia_stt_async import
Cartesia``. The official client is the PyPI ``cartesia`` package (3.2.0) in a virtual
environment of its own (``tests/official.py``), run as a subprocess pointed at the twin. The
twin serves from its own event loop in a background thread, since a sync program has none.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator

import pytest
from anyio.from_thread import start_blocking_portal

from cartesia_stt_async import Cartesia
from cartesia_stt_async.twin import Twin, serve
from cartesia_stt_async.twin.wer import word_error_rate

from .official import OFFICIAL_VERSION, RUNNER, official_python
from .seed_sync_example import stt_manual_finalize_websocket
from .speech import shared_engine
from .test_conformance import MAX_WER, REFERENCE, check_wire, full_transcript

# Every test here runs the offline recognizer.
pytestmark = pytest.mark.speech


@contextlib.contextmanager
def twin_thread() -> Iterator[Twin]:
    """The hearing twin (offline recognizer), on its own loop in a background thread."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(engine=shared_engine())) as twin,
    ):
        yield twin


def run_official_sync(twin: Twin) -> str:
    """The seed's sync example with the official client in its own environment."""
    result = subprocess.run(
        [str(official_python()), str(RUNNER), "sync", twin.base_url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"official cartesia {OFFICIAL_VERSION}" in result.stderr
    return result.stdout


@pytest.mark.timeout(120)
def test_seed_sync_example_with_both_clients_transcribes_the_sentences(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with twin_thread() as twin:
        theirs = full_transcript(run_official_sync(twin))
    their_frames = check_wire(twin)  # after the twin has wound down: close code recorded

    with twin_thread() as twin, Cartesia(api_key="twin-key", base_url=twin.base_url) as ours:
        stt_manual_finalize_websocket(ours)
    assert check_wire(twin) == their_frames  # send_raw frames go out as they came
    printed = capsys.readouterr().out
    mine = full_transcript(printed)

    assert word_error_rate(REFERENCE, theirs) <= MAX_WER, theirs
    assert word_error_rate(REFERENCE, mine) <= MAX_WER, mine
    # Same audio, same frames, same recognizer: the same transcript, byte for byte.
    assert mine == theirs
    deltas = re.findall(r"^transcript \| (.*)$", printed, re.MULTILINE)
    assert len(deltas) == 2 and deltas[1].startswith(" ") and "".join(deltas) == mine
    assert printed.count("flush_done |") == 2 and printed.count("done       |") == 1
