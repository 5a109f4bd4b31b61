"""The hands-free page in headless Chromium, against the example app and the speech twin.

Chromium's fake microphone plays a WAV file in the twin's synthesized voice: a sentence, a pause of
1.5 s, another sentence. Nobody touches the page: it streams the microphone to the app's
``/ws/turns`` relay, which opens a turn-detection session on the twin; the test waits for
two turns to appear, each with its barge-in mark, and reads their words off the page.
A second test plays a sound, a short pause and the sound again to a scripted twin and reads
the marks of an eager end withdrawn (``turn.resume``) off the page.
Chromium and playwright as in test_push_to_talk.py (no browser is downloaded).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cartesia_stt_async.testing import TwinServer
from cartesia_stt_async.twin import Turn
from cartesia_stt_async.twin.wer import word_error_rate
from examples.fastapi_app import Settings

from ..conftest import SLACK
from ..speech import speech
from ..test_cli import write_wav
from .test_push_to_talk import (
    CHROMIUM,
    ROOT,
    fake_mic_browser,
    have_chromium,
    keep_screenshot,
    served,
)

SCREENSHOT_COPY = ROOT / "docs" / "img" / "hands-free.png"
SENTENCES = ("Thank you very much for your help", "Please call me tomorrow morning")
LEAD_SILENCE = 2.0  # the microphone plays from getUserMedia on; the worklet loads after it
PAUSE = 1.5  # between the sentences: the first turn ends in it (the twin: after 0.7 s)
TAIL_SILENCE = 2.0

pytestmark = pytest.mark.skipif(not have_chromium(), reason=f"no Chromium at {CHROMIUM}")


def two_sentences_wav(path: Path) -> float:
    """Write silence, a sentence, a pause, a sentence, silence (the twin's voice) as a
    16 kHz WAV file.

    Returns:
        The file's length in seconds.
    """
    first, second = (speech(text) for text in SENTENCES)
    silence = [bytes(int(s * 32000)) for s in (LEAD_SILENCE, PAUSE, TAIL_SILENCE)]
    audio = silence[0] + first + silence[1] + second + silence[2]
    write_wav(path, audio, rate=16000, channels=1, width=2)
    return len(audio) / 32000


@pytest.mark.speech
@pytest.mark.timeout(180)
def test_hands_free_page_shows_two_turns_and_their_barge_ins(
    cartesia_speech_twin: TwinServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    wav = tmp_path / "two-sentences.wav"
    seconds = two_sentences_wav(wav)
    settings = Settings(api_key="server-side-key", base_url=cartesia_speech_twin.base_url)
    with (
        served(settings) as base,
        sync_playwright() as playwright,
        fake_mic_browser(playwright, tmp_path, wav, {"width": 720, "height": 640}) as context,
    ):
        page = context.new_page()
        page.goto(base + "/hands-free")  # no click, no key: it listens by itself
        assert page.locator("button").count() == 0
        page.locator('#transcript[data-turns="2"]').wait_for(timeout=(seconds + 30 * SLACK) * 1000)
        turns = page.locator("#transcript .turn .text").all_inner_texts()
        barge_ins = page.locator("#transcript .mark.barge-in").count()
        counted = page.locator("#transcript").get_attribute("data-barge-ins")
        agent = page.locator("#agent").inner_text()
        shot = tmp_path / "hands-free.png"
        page.screenshot(path=str(shot))
    keep_screenshot(shot, SCREENSHOT_COPY)
    assert barge_ins == 2 and counted == "2", (barge_ins, counted)
    assert agent == "Agent may speak"  # both turns ended: the barge-in is over
    assert len(turns) == 2, turns
    for said, heard in zip(SENTENCES, turns, strict=True):
        assert word_error_rate(said, heard) <= 0.35, turns
    cartesia_speech_twin.wait_idle(10 * SLACK)  # the page's session ended with the browser
    (record,) = cartesia_speech_twin.sessions
    assert record.turn_settings is not None  # the turn-detection route
    assert record.headers["authorization"] == "Bearer server-side-key"
    assert not any("finalize" in command for _, command in record.commands)


def tone(seconds: float) -> bytes:
    """A 440 Hz tone at a third of full scale: speech to the twin's energy detector."""
    n = int(seconds * 16000)
    return b"".join(
        int(10000 * math.sin(2 * math.pi * 440 * i / 16000)).to_bytes(2, "little", signed=True)
        for i in range(n)
    )


@pytest.mark.cartesia_twin(
    turns=[Turn(updates=["Book"], resumed=["Book a table"], end="Book a table.")]
)
@pytest.mark.timeout(120)
def test_hands_free_page_shows_an_eager_end_withdrawn(
    cartesia_twin: TwinServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    # A sound, 0.5 s of pause (the twin's eager end comes at 0.4 s, its end at 0.7 s), the
    # sound again (turn.resume), a long pause (the end). Scripted text: no recognizer.
    wav = tmp_path / "resume.wav"
    audio = bytes(64000) + tone(0.6) + bytes(16000) + tone(0.6) + bytes(64000)
    write_wav(wav, audio, rate=16000, channels=1, width=2)
    settings = Settings(api_key="server-side-key", base_url=cartesia_twin.base_url)
    with (
        served(settings) as base,
        sync_playwright() as playwright,
        fake_mic_browser(playwright, tmp_path, wav) as context,
    ):
        page = context.new_page()
        page.goto(base + "/hands-free")
        page.locator('#transcript[data-turns="1"]').wait_for(timeout=30_000 * SLACK)
        marks = page.locator("#transcript .mark").all_inner_texts()
        text = page.locator("#transcript .turn .text").inner_text()
    kinds = [mark.rsplit(" ", 2)[0] for mark in marks]  # without the time ("1.2 s")
    assert kinds == ["barge-in", "eager end", "resumed: eager end withdrawn", "eager end", "end"]
    assert text == "Book a table."
