"""The FastAPI example app (examples/fastapi_app) against the twin: relay, uploads, page, CLI.

The relay must forward each final delta exactly once, in order, nothing lost, across a
reconnect at any point of an utterance; bad input from the browser gets a clear error over
the socket, and a Cartesia session never outlives its browser.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect as ws_connect

from cartesia_stt_async.protocol.session import FinalOrderOption
from cartesia_stt_async.testing import TwinFactory, TwinServer
from cartesia_stt_async.twin import Fault, FaultAction, Faults, Turn
from examples.fastapi_app import Settings, create_app

from .conftest import LOOP_TYPES, LOOPS, SLACK, selected_loops

ROOT = Path(__file__).resolve().parent.parent
APP_SOURCE = str(ROOT / "examples" / "fastapi_app" / "app.py")

# Three utterances' audio (0.1 s each at 16 kHz pcm_s16le) and the twin's answers to them,
# keyed by audio as a recognizer would answer: a replayed utterance gets the same text.
HELLO, BYE, LAST = (bytes([n, 0]) * 1600 for n in (1, 2, 3))
ANSWERS = {HELLO: ["Hello", ", world."], BYE: [" Bye."], LAST: [" See", " you."]}
FINALS = ["Hello", ", world.", " Bye.", " See", " you."]
# Events the twin sends on a connection that gets all of it: 2 finals + flush_done,
# 1 final + flush_done, then (LAST answered at close) 2 finals + done.
EVENTS = 8
# What the browser receives for HELLO, finalize, BYE, finalize, LAST, close.
EXPECTED = [
    {"type": "final", "text": "Hello"},
    {"type": "final", "text": ", world."},
    {"type": "turn", "index": 0},
    {"type": "final", "text": " Bye."},
    {"type": "turn", "index": 1},
    {"type": "final", "text": " See"},
    {"type": "final", "text": " you."},
    {"type": "done", "transcript": "Hello, world. Bye. See you."},
    {"closed": 1000},
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Relay tests run the app on each loop of ``--loops`` (asyncio's and uvloop, which
    uvicorn[standard] serves it on)."""
    if "relay_loop" in metafunc.fixturenames:
        metafunc.parametrize("relay_loop", selected_loops(metafunc.config))


async def running_loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


@contextmanager
def app_for(
    twin: TwinServer,
    final_order: FinalOrderOption = "finals_first",
    loop: str = "asyncio",
    **options: Any,
) -> Iterator[TestClient]:
    """The app on ``loop``, in a test client (which runs it on a loop of its own thread);
    ``options`` are more :class:`Settings`."""
    settings = Settings(
        api_key="server-side-key",
        base_url=twin.base_url,
        # Unpaced, quick reconnects, and the order in which the twin sends finals.
        session_options={"speed": None, "initial_delay": 0.01, "final_order": final_order},
        **{"turn_options": {"speed": None, "initial_delay": 0.01}, **options},
    )
    with TestClient(create_app(settings), backend_options={"loop_factory": LOOPS[loop]}) as http:
        assert http.portal is not None
        assert http.portal.call(running_loop_type) is LOOP_TYPES[loop]
        yield http


def talk(ws: Any, *messages: bytes | str) -> list[dict[str, Any]]:
    """Send messages to the relay, then collect what it sends until it closes the socket."""
    assert ws.receive_json() == {"type": "ready"}
    for message in messages:
        if isinstance(message, bytes):
            ws.send_bytes(message)
        else:
            ws.send_text(message)
    return until_closed(ws)


def until_closed(ws: Any) -> list[dict[str, Any]]:
    """What the relay sends until it closes the socket, then ``{"closed": code}``."""
    received = []
    while True:
        try:
            received.append(ws.receive_json())
        except WebSocketDisconnect as closed:
            received.append({"closed": closed.code})
            return received


# What the relays say to b"\x01\x02\x03" and to bytes(32002), both dropped.
AUDIO_ERRORS = [
    {
        "type": "error",
        "message": "audio messages must hold whole 16-bit samples; got 3 bytes (dropped)",
        "fatal": False,
    },
    {
        "type": "error",
        "message": "audio messages may hold at most 1 s (32000 bytes); got 32002 bytes (dropped)",
        "fatal": False,
    },
]


def converse(twin: TwinServer, route: str, *messages: bytes | str, **options: Any) -> list[Any]:
    """:func:`talk` to ``route`` of the app on ``twin`` (``options``: of :func:`app_for`)."""
    with app_for(twin, **options) as http, http.websocket_connect(route) as ws:
        return talk(ws, *messages)


def finals(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages if m.get("type") == "final"]


@pytest.mark.cartesia_twin(by_audio=ANSWERS)
def test_relay_forwards_final_deltas_and_marks_each_turn(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    with (
        app_for(cartesia_twin, loop=relay_loop) as http,
        http.websocket_connect("/ws/transcribe") as ws,
    ):
        got = talk(ws, HELLO, "finalize", BYE, "finalize", LAST, "close")
    assert got == EXPECTED
    cartesia_twin.wait_idle(5 * SLACK)
    record = cartesia_twin.sessions[0]
    assert record.headers["authorization"] == "Bearer server-side-key"  # the key stays here
    assert [c for _, c in record.commands] == ["finalize", "finalize", "close"]
    assert record.audio_bytes == 3 * len(HELLO)


@pytest.mark.parametrize("order", ["finals_first", "flush_first"])
@pytest.mark.parametrize("action", ["close", "abort"])
@pytest.mark.parametrize("after_events", range(1, EVENTS))
def test_relay_is_exact_through_a_drop_at_every_event(
    cartesia_twin_factory: TwinFactory,
    order: FinalOrderOption,
    action: FaultAction,
    after_events: int,
    relay_loop: str,
) -> None:
    # after_events=2 with finals_first: the drop comes right after the first utterance's
    # finals, before its flush_done; the utterance is replayed and answered again.
    fault = Fault(action, connection=0, after_events=after_events, code=1011)
    twin = cartesia_twin_factory(by_audio=ANSWERS, order=order, faults=Faults([fault]))
    with app_for(twin, order, relay_loop) as http, http.websocket_connect("/ws/transcribe") as ws:
        got = talk(ws, HELLO, "finalize", BYE, "finalize", LAST, "close")
    assert finals(got) == FINALS
    assert [m for m in got if m.get("type") in ("turn", "error")] == [
        {"type": "turn", "index": 0},
        {"type": "turn", "index": 1},
    ]
    if order == "finals_first":
        assert got == EXPECTED
    else:
        # Flush-first, text answered at close may be attributed to the last turn (its late
        # window); each turn's marker still follows its own text.
        kinds = [m.get("text", m.get("type")) for m in got]
        assert kinds.index("turn") == 2 and kinds.index("turn", 3) > kinds.index(" Bye.")
    assert got[-2:] == [{"type": "done", "transcript": "".join(FINALS)}, {"closed": 1000}]
    assert len(twin.sessions) == 2  # it did reconnect
    twin.wait_idle(5 * SLACK)


@pytest.mark.cartesia_twin(by_audio=ANSWERS)
def test_bad_input_gets_a_clear_error_and_the_session_goes_on(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    with (
        app_for(cartesia_twin, loop=relay_loop) as http,
        http.websocket_connect("/ws/transcribe") as ws,
    ):
        got = talk(
            ws,
            "hello?",
            b"\x01\x02\x03",
            bytes(32002),
            "",
            HELLO,
            "finalize",
            "close",
        )
    errors = [m for m in got if m.get("type") == "error"]
    assert errors == [
        {
            "type": "error",
            "message": "unknown command 'hello?': send 'finalize' or 'close' as text, "
            "audio as binary",
            "fatal": False,
        },
        *AUDIO_ERRORS,
        {
            "type": "error",
            "message": "unknown command '': send 'finalize' or 'close' as text, audio as binary",
            "fatal": False,
        },
    ]
    assert finals(got) == ["Hello", ", world."]
    assert got[-1] == {"closed": 1000}
    cartesia_twin.wait_idle(5 * SLACK)
    assert cartesia_twin.sessions[0].audio_bytes == len(HELLO)  # nothing of the bad frames


@pytest.mark.parametrize("last", ["audio", "finalize", "close"])
@pytest.mark.cartesia_twin(by_audio=ANSWERS, faults=Faults(flush_done_delay=0.3))
def test_a_vanished_browser_never_leaks_a_cartesia_session(
    cartesia_twin: TwinServer, last: str, relay_loop: str
) -> None:
    with (
        app_for(cartesia_twin, loop=relay_loop) as http,
        http.websocket_connect("/ws/transcribe") as ws,
    ):
        assert ws.receive_json() == {"type": "ready"}
        ws.send_bytes(HELLO)
        if last != "audio":
            ws.send_text("finalize")
        if last == "close":
            ws.send_text("close")
        deadline = time.monotonic() + 5 * SLACK
        while cartesia_twin.sessions[0].audio_bytes < len(HELLO):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert cartesia_twin.active_sessions == 1
        # The browser goes away without a goodbye (a closed tab): the app must end the
        # Cartesia session it opened for it, and keep serving others.
        ws.close(1001)
        cartesia_twin.wait_idle(5 * SLACK)
        assert http.get("/").status_code == 200
    assert cartesia_twin.sessions[0].close_code == 1000  # closed by the app, not the twin


@pytest.mark.cartesia_twin(faults=Faults([Fault("error_event", after_frames=1, code=500)]))
def test_a_cartesia_error_is_reported_and_closes_the_browser_socket(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    with (
        app_for(cartesia_twin, loop=relay_loop) as http,
        http.websocket_connect("/ws/transcribe") as ws,
    ):
        got = talk(ws, HELLO, "finalize")
    assert got[-2]["type"] == "error" and got[-2]["fatal"] is True
    assert got[-2]["message"] == "transcription failed: 500 Injected: injected server error"
    assert got[-1] == {"closed": 1011}
    cartesia_twin.wait_idle(5 * SLACK)


@pytest.mark.cartesia_twin(api_keys=["the-real-key"])
def test_a_refused_session_is_reported_to_the_browser(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    with (
        app_for(cartesia_twin, loop=relay_loop) as http,
        http.websocket_connect("/ws/transcribe") as ws,
    ):
        message = ws.receive_json()
        assert message["type"] == "error" and message["fatal"] is True
        assert message["message"].startswith("transcription failed: ")
        assert "server-side-key" not in message["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1011


@pytest.mark.cartesia_twin(by_audio=ANSWERS)
def test_a_finalize_flood_gets_a_clear_error_and_a_1008_close(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    # 20,000 finalize messages (300 KB) once cost seconds of CPU and froze the event loop
    # for every user of the process; now a session takes max_turns turns, then closes.
    with (
        app_for(cartesia_twin, loop=relay_loop, max_turns=50) as http,
        http.websocket_connect("/ws/transcribe") as ws,
    ):
        got = talk(ws, HELLO, *["finalize"] * 2000, "close")
    assert got[-2:] == [
        {
            "type": "error",
            "message": "too many turns: a session takes at most 50 finalize commands; this "
            "one is closed (1008), open a new one to go on",
            "fatal": True,
        },
        {"closed": 1008},
    ]
    assert finals(got) in (FINALS[:2], [])  # turn 0's text, if it was answered in time
    assert len([m for m in got if m.get("type") == "turn"]) <= 50
    cartesia_twin.wait_idle(5 * SLACK)  # its Cartesia session is over
    commands = [c for _, c in cartesia_twin.sessions[0].commands]
    assert set(commands) <= {"finalize"} and len(commands) <= 50  # the 51st never left


def relay_lines(http_factory: Callable[[], Any], turns: int) -> int:
    """Lines of examples/fastapi_app/app.py run while a browser sends ``turns`` finalizes.

    Counted by a trace function on the test client's thread (where the app runs): a
    structural measure of the relay's work, not a timing.
    """
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def on_call(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code.co_filename == APP_SOURCE else None

    previous = threading.gettrace()
    threading.settrace(on_call)  # for threads started from here: the test client's
    try:
        with http_factory() as http, http.websocket_connect("/ws/transcribe") as ws:
            threading.settrace(previous)
            got = talk(ws, *["finalize"] * turns, "close")
    finally:
        threading.settrace(previous)
    assert [m["index"] for m in got if m.get("type") == "turn"] == list(range(turns))
    assert got[-1] == {"closed": 1000}
    return count


@pytest.mark.cartesia_twin(script=[[f" {n}."] for n in range(400)])
def test_forwarding_a_turn_does_not_rescan_the_earlier_ones(cartesia_twin: TwinServer) -> None:
    # The relay summed the final chunks of every earlier utterance for each turn it
    # forwarded: work grew with the square of the turns. It is linear now: four times the
    # turns, four times the lines of the app run (the old code ran about 13 times as many).
    few = relay_lines(lambda: app_for(cartesia_twin), 100)
    many = relay_lines(lambda: app_for(cartesia_twin), 400)
    assert many < 5 * few, (few, many)


def wav(audio: bytes, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(audio)
    return out.getvalue()


@pytest.mark.cartesia_twin(by_audio=ANSWERS)
def test_upload_route_transcribes_a_wav_file(cartesia_twin: TwinServer) -> None:
    stereo = b"".join(HELLO[i : i + 2] * 2 for i in range(0, len(HELLO), 2))  # L = R = HELLO
    with app_for(cartesia_twin) as http:
        mono = http.post("/api/transcribe", files={"file": ("hello.wav", wav(HELLO))})
        two = http.post("/api/transcribe", files={"file": ("s.wav", wav(stereo, channels=2))})
        not_wav = http.post("/api/transcribe", files={"file": ("x.mp3", b"ID3\x03 not a wav")})
    assert mono.status_code == 200, mono.text
    assert mono.json() == {"text": "Hello, world.", "seconds": 0.1}
    assert two.json() == {"text": "Hello, world.", "seconds": 0.1}  # averaged to mono
    assert not_wav.status_code == 422
    assert not_wav.json()["detail"] == "WAV data: not a WAV file: missing RIFF/WAVE header"
    cartesia_twin.wait_idle(5 * SLACK)
    assert len(cartesia_twin.sessions) == 2  # the bad file never opened a session
    assert [s.audio_bytes for s in cartesia_twin.sessions] == [len(HELLO)] * 2


@pytest.mark.cartesia_twin(by_audio=ANSWERS)
def test_upload_route_refuses_a_file_over_the_limit_with_413(cartesia_twin: TwinServer) -> None:
    limit = len(wav(HELLO))
    with app_for(cartesia_twin, max_upload_bytes=limit) as http:
        fits = http.post("/api/transcribe", files={"file": ("hello.wav", wav(HELLO))})
        big = http.post("/api/transcribe", files={"file": ("big.wav", wav(HELLO + b"\0\0"))})
    assert fits.status_code == 200, fits.text
    assert big.status_code == 413
    assert big.json()["detail"] == (
        f"the file is larger than {limit} bytes, the most this server takes"
    )
    cartesia_twin.wait_idle(5 * SLACK)
    assert len(cartesia_twin.sessions) == 1  # the big file never opened a session


@pytest.mark.speech
def test_upload_route_recognizes_real_speech(cartesia_speech_twin: TwinServer) -> None:
    speech = httpx2.post(
        f"{cartesia_speech_twin.base_url}/tts/bytes",
        headers={"X-API-Key": "k"},
        json={
            "model_id": "sonic-latest",
            "transcript": "Thank you very much for your help",
            "voice": {"mode": "id", "id": "any"},
            "output_format": {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000},
        },
    )
    with app_for(cartesia_speech_twin) as http:
        response = http.post("/api/transcribe", files={"file": ("speech.wav", speech.content)})
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "thank you very much for your help"


def test_page_and_its_scripts_are_served(cartesia_twin: TwinServer) -> None:
    with app_for(cartesia_twin) as http:
        page = http.get("/")
        script = http.get("/static/ptt.js")
        worklet = http.get("/static/pcm-worklet.js")
    assert page.status_code == 200 and 'id="talk"' in page.text
    assert 'src="/static/ptt.js"' in page.text
    assert script.status_code == 200 and 'socket.send("finalize")' in script.text
    assert worklet.status_code == 200 and 'registerProcessor("pcm-capture"' in worklet.text


def test_token_route_mints_a_short_lived_token_the_twin_accepts(cartesia_twin: TwinServer) -> None:
    with app_for(cartesia_twin) as http:
        response = http.post("/api/token")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] == 60 and body["token"]
    assert "server-side-key" not in response.text
    # A browser would open the socket with the token in the query, never the API key.
    url = f"{cartesia_twin.ws_url}?model=ink-2&encoding=pcm_s16le&sample_rate=16000"
    with ws_connect(f"{url}&access_token={body['token']}") as browser:
        browser.send("close")
        assert json.loads(browser.recv())["type"] == "done"
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"{url}&access_token=not-a-token").close()
    assert refused.value.response.status_code == 401


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def served(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m examples.fastapi_app`` on a free port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.fastapi_app", "--port", str(port), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30 * SLACK
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                httpx2.get(base + "/", timeout=1)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "the app did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=10 * SLACK)


def test_one_command_runs_the_app_on_a_local_twin_without_a_key() -> None:
    with served(env={"CARTESIA_API_KEY": ""}) as base:
        page = httpx2.get(base + "/")
    assert page.status_code == 200 and "Push to talk" in page.text


def test_docs_fastapi_md_shows_the_app_verbatim() -> None:
    docs = (ROOT / "docs" / "fastapi.md").read_text()
    source = (ROOT / "examples" / "fastapi_app" / "app.py").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", docs, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 7
    for block in blocks:
        assert block in source, block[:200]  # excerpts of the app the tests above run
    assert (ROOT / "docs" / "img" / "push-to-talk.png").exists()
    assert (ROOT / "docs" / "img" / "hands-free.png").exists()


# -- the hands-free relay (/ws/turns): the twin's detector decides the turns --------------------

LOUD = bytes([0x20, 0x0B]) * 8000  # 0.5 s at 2848: speech to the twin's energy detector
PAUSE = bytes(48000)  # 1.5 s: a turn ends in it (eager end at 0.4 s, end at 0.7 s)
SHORT_PAUSE = bytes(16000)  # 0.5 s: an eager end, not an end


def frames(audio: bytes) -> list[bytes]:
    """``audio`` as a page sends it: one binary message per 100 ms."""
    return [audio[i : i + 3200] for i in range(0, len(audio), 3200)]


BOOK = [Turn(updates=["Book"], end="Book a table."), Turn(end=" For two, please.")]


@pytest.mark.cartesia_twin(turns=BOOK)
def test_hands_free_relay_sends_each_turns_moments(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    got = converse(
        cartesia_twin, "/ws/turns", *frames(LOUD + PAUSE + LOUD + PAUSE), "close", loop=relay_loop
    )
    assert got == [
        {"type": "turn.start", "index": 0},  # the barge-in moment
        {"type": "turn.eager_end", "index": 0, "text": "Book"},
        {"type": "turn.end", "index": 0, "text": "Book a table."},
        {"type": "turn.start", "index": 1},
        {"type": "turn.eager_end", "index": 1, "text": ""},
        {"type": "turn.end", "index": 1, "text": " For two, please."},
        {"type": "done", "transcript": "Book a table. For two, please."},  # verbatim join
        {"closed": 1000},
    ]
    cartesia_twin.wait_idle(5 * SLACK)
    (record,) = cartesia_twin.sessions
    assert record.turn_settings is not None  # /stt/turns/websocket
    assert record.headers["authorization"] == "Bearer server-side-key"  # the key stays here
    assert [json.loads(c) for _, c in record.commands] == [{"type": "close"}]  # no finalize
    assert record.audio_bytes == 2 * len(LOUD + PAUSE)


@pytest.mark.cartesia_twin(
    turns=[Turn(updates=["Book"], resumed=["Book a table"], end="Book a table.")]
)
def test_hands_free_relay_shows_a_withdrawn_eager_end(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    got = converse(
        cartesia_twin,
        "/ws/turns",
        *frames(LOUD + SHORT_PAUSE + LOUD + PAUSE),
        "close",
        loop=relay_loop,
    )
    assert got == [
        {"type": "turn.start", "index": 0},
        {"type": "turn.eager_end", "index": 0, "text": "Book"},  # the user may be done...
        {"type": "turn.resume", "index": 0},  # ...but went on: drop a reply started on it
        {"type": "turn.eager_end", "index": 0, "text": "Book a table"},
        {"type": "turn.end", "index": 0, "text": "Book a table."},
        {"type": "done", "transcript": "Book a table."},
        {"closed": 1000},
    ]


@pytest.mark.cartesia_twin(turns=BOOK)
def test_hands_free_relay_reports_bad_input_and_goes_on(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    got = converse(
        cartesia_twin,
        "/ws/turns",
        "finalize",
        b"\x01\x02\x03",
        bytes(32002),
        *frames(LOUD + PAUSE),
        "close",
        loop=relay_loop,
    )
    assert [m for m in got if m.get("type") == "error"] == [
        {
            "type": "error",
            "message": "unknown command 'finalize': send 'close' as text, audio as binary",
            "fatal": False,
        },
        *AUDIO_ERRORS,
    ]
    assert got[-2:] == [{"type": "done", "transcript": "Book a table."}, {"closed": 1000}]
    cartesia_twin.wait_idle(5 * SLACK)
    assert cartesia_twin.sessions[0].audio_bytes == len(LOUD + PAUSE)  # nothing of the bad ones


@pytest.mark.cartesia_twin(turns=BOOK)
def test_hands_free_relay_closes_with_1008_past_max_turns(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    # Noise that starts turn after turn would keep a session (and Cartesia) busy forever.
    got = converse(
        cartesia_twin,
        "/ws/turns",
        *frames((LOUD + PAUSE) * 3),
        "close",
        loop=relay_loop,
        max_turns=2,
    )
    assert [m.get("index") for m in got if m.get("type") == "turn.end"] == [0, 1]
    assert got[-2:] == [
        {
            "type": "error",
            "message": "too many turns: a session takes at most 2 turns; this one is closed "
            "(1008), open a new one to go on",
            "fatal": True,
        },
        {"closed": 1008},
    ]
    assert {"type": "turn.start", "index": 2} not in got
    cartesia_twin.wait_idle(5 * SLACK)  # its Cartesia session is over


@pytest.mark.cartesia_twin(turns=BOOK)
def test_hands_free_relay_never_outlives_its_browser(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    with (
        app_for(cartesia_twin, loop=relay_loop) as http,
        http.websocket_connect("/ws/turns") as ws,
    ):
        assert ws.receive_json() == {"type": "ready"}
        for frame in frames(LOUD):
            ws.send_bytes(frame)
        assert ws.receive_json() == {"type": "turn.start", "index": 0}  # mid-turn
        assert cartesia_twin.active_sessions == 1
        ws.close(1001)  # a closed tab
        cartesia_twin.wait_idle(5 * SLACK)
        assert http.get("/hands-free").status_code == 200
    assert cartesia_twin.sessions[0].close_code == 1000  # closed by the app, not the twin


@pytest.mark.cartesia_twin(api_keys=["the-real-key"])
def test_hands_free_relay_reports_a_refused_session(cartesia_twin: TwinServer) -> None:
    with app_for(cartesia_twin) as http, http.websocket_connect("/ws/turns") as ws:
        got = until_closed(ws)  # no ready: the session never opened
    assert got[0]["type"] == "error" and got[0]["fatal"] is True
    assert got[0]["message"].startswith("transcription failed: ")
    assert "server-side-key" not in got[0]["message"]
    assert got[-1] == {"closed": 1011}


def test_hands_free_page_and_its_scripts_are_served(cartesia_twin: TwinServer) -> None:
    with app_for(cartesia_twin) as http:
        page = http.get("/hands-free")
        script = http.get("/static/hands-free.js")
        shared = http.get("/static/relay.js")
    assert page.status_code == 200 and "<button" not in page.text  # no button: hands-free
    assert 'src="/static/relay.js"' in page.text and 'src="/static/hands-free.js"' in page.text
    assert script.status_code == 200 and 'new Relay("/ws/turns"' in script.text
    assert "finalize" not in script.text  # Cartesia decides the turns
    assert shared.status_code == 200 and "class Relay" in shared.text


def test_a_token_also_opens_the_turn_detection_socket(cartesia_twin: TwinServer) -> None:
    with app_for(cartesia_twin) as http:
        token = http.post("/api/token").json()["token"]
    url = f"{cartesia_twin.turns_url}?model=ink-2&encoding=pcm_s16le&sample_rate=16000"
    with ws_connect(f"{url}&access_token={token}") as browser:
        assert json.loads(browser.recv())["type"] == "connected"
        browser.send(json.dumps({"type": "close"}))
        with pytest.raises(ConnectionClosedOK):
            browser.recv()


@pytest.mark.cartesia_twin(
    turns=BOOK, faults=Faults([Fault("error_event", after_frames=3, code=500)])
)
def test_hands_free_relay_reports_a_cartesia_error_and_closes_1011(
    cartesia_twin: TwinServer, relay_loop: str
) -> None:
    got = converse(cartesia_twin, "/ws/turns", *frames(LOUD + PAUSE), loop=relay_loop)
    # turn.start came before the error; whether it is forwarded before the failure stops
    # the relay is a race (the audio task may meet the failure first).
    assert got[:-2] in ([], [{"type": "turn.start", "index": 0}]), got
    assert got[-2:] == [
        {
            "type": "error",
            "message": "transcription failed: 500 Injected: injected server error",
            "fatal": True,
        },
        {"closed": 1011},
    ]
    cartesia_twin.wait_idle(5 * SLACK)
