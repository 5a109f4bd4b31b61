"""The push-to-talk page in headless Chromium, against the example app and the speech twin.

Chromium's fake microphone plays a WAV file the twin synthesized; the test holds the page's
button while it plays, releases it, and reads the recognized words off the page. Needs
Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright`` package, which drives
that binary; no browser is downloaded.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from cartesia_stt_async.testing import TwinServer
from examples.fastapi_app import Settings, create_app

from ..conftest import SLACK

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CARTESIA_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_COPY = ROOT / "docs" / "img" / "push-to-talk.png"

# The flags this machine needs (no network but loopback), plus a fake microphone.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]

SENTENCE = "Thank you very much for your help"
LEAD_SILENCE = 2.0  # seconds before the speech: the page opens the microphone on first press
# (the fake microphone plays from getUserMedia on; the worklet loads after it: on a loaded
# machine 1 s was not always enough, and the first word was lost)
TAIL_SILENCE = 2.0  # after it: the button is released in here


def have_chromium() -> bool:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):  # CI installs it (.ci/run): missing there is a failure
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        return False
    return True


pytestmark = pytest.mark.skipif(not have_chromium(), reason=f"no Chromium at {CHROMIUM}")


@contextmanager
def fake_mic_browser(
    playwright: Any, tmp_path: Path, wav: Path, viewport: dict[str, int] | None = None
) -> Iterator[Any]:
    """Debian's Chromium, headless, a fresh profile, its microphone playing ``wav`` once."""
    options: dict[str, Any] = {"viewport": viewport} if viewport else {}
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),  # a fresh profile
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}%noloop"],
        **options,
    )
    try:
        yield context
    finally:
        context.close()


def keep_screenshot(shot: Path, copy: Path) -> None:
    """Refresh a docs picture from a test's screenshot, on request only
    (``CARTESIA_UPDATE_SCREENSHOTS=1``): a test run leaves the tree as it was."""
    if os.environ.get("CARTESIA_UPDATE_SCREENSHOTS"):
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, copy)


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The example app under uvicorn on 127.0.0.1 (a free port), in a thread."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, ws="websockets-sansio", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30 * SLACK
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30 * SLACK)


def speech_wav(twin: TwinServer, path: Path) -> float:
    """Have the twin say SENTENCE; write it with silence around it as a 16 kHz WAV file.

    Returns:
        The file's length in seconds.
    """
    response = httpx2.post(
        f"{twin.base_url}/tts/bytes",
        headers={"X-API-Key": "k"},
        json={
            "model_id": "sonic-latest",
            "transcript": SENTENCE,
            "voice": {"mode": "id", "id": "any"},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        },
    )
    response.raise_for_status()
    audio = bytes(int(LEAD_SILENCE * 32000)) + response.content + bytes(int(TAIL_SILENCE * 32000))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio)
    path.write_bytes(out.getvalue())
    return len(audio) / 32000


@pytest.mark.speech
@pytest.mark.timeout(180)
def test_push_to_talk_page_transcribes_the_microphone(
    cartesia_speech_twin: TwinServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    wav = tmp_path / "speech.wav"
    seconds = speech_wav(cartesia_speech_twin, wav)
    speech_seconds = seconds - LEAD_SILENCE - TAIL_SILENCE
    settings = Settings(api_key="server-side-key", base_url=cartesia_speech_twin.base_url)
    with (
        served(settings) as base,
        sync_playwright() as playwright,
        fake_mic_browser(playwright, tmp_path, wav, {"width": 720, "height": 560}) as context,
    ):
        page = context.new_page()
        page.goto(base + "/")
        talk = page.locator("#talk")
        talk.hover()
        page.mouse.down()  # hold to talk: the microphone opens, the file starts playing
        page.wait_for_timeout((LEAD_SILENCE + speech_seconds + 0.8) * 1000)
        page.mouse.up()  # release: 'finalize'
        page.locator('#transcript[data-turns="1"]').wait_for(timeout=30_000 * SLACK)
        text = page.locator("#transcript").inner_text()
        shot = tmp_path / "push-to-talk.png"
        page.screenshot(path=str(shot))
    keep_screenshot(shot, SCREENSHOT_COPY)
    assert text.strip() == "thank you very much for your help"
    cartesia_speech_twin.wait_idle(10 * SLACK)  # the page's session ended with the browser
    record = cartesia_speech_twin.sessions[0]
    assert record.headers["authorization"] == "Bearer server-side-key"
    assert [c for _, c in record.commands][:1] == ["finalize"]
