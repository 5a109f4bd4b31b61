"""``cartesia-stt mic``: push-to-talk and VAD from a fake microphone, against a real twin.

The microphone is a fake input stream injected through ``main(mic_stream=...)``; Enter presses
come from a script injected through ``main(mic_keys=...)``, which runs in its own thread (as the
stdin reader does), delivers audio blocks as a sound card's callback thread would, and ends
with a real SIGINT to the process (Ctrl-C). The client talks to a twin serving from a
background thread (``CARTESIA_API_KEY`` and ``CARTESIA_BASE_URL`` point at it).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from cartesia_stt_async._cli_mic import InputStream
from cartesia_stt_async.cli import main
from cartesia_stt_async.errors import UsageError
from cartesia_stt_async.twin import Engine, ScriptedEngine, Twin
from cartesia_stt_async.twin.wer import word_error_rate

from .conftest import SLACK, pcm
from .speech import shared_engine, speech
from .test_sync import twin_thread

Post = Callable[[str | None], None]


class FakeStream:
    """A microphone: ``deliver`` hands blocks to the callback, like PortAudio's thread."""

    def __init__(self, sample_rate: int, blocksize: int, on_audio: Callable[[bytes], None]) -> None:
        self.sample_rate = sample_rate
        self.blocksize = blocksize
        self.on_audio = on_audio
        self.started = threading.Event()
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        self.started.set()

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")

    def deliver(self, audio: bytes) -> None:
        block = self.blocksize * 2
        for i in range(0, len(audio), block):
            self.on_audio(audio[i : i + block])


class Rig:
    """The fake microphone's factory, and the stream it made."""

    def __init__(self) -> None:
        self.stream: FakeStream | None = None

    def factory(
        self,
        sample_rate: int,
        blocksize: int,
        device: str | int | None,
        on_audio: Callable[[bytes], None],
    ) -> InputStream:
        self.stream = FakeStream(sample_rate, blocksize, on_audio)
        return self.stream

    def wait_started(self) -> FakeStream:
        deadline = time.monotonic() + 10 * SLACK
        while self.stream is None or not self.stream.started.is_set():
            assert time.monotonic() < deadline, "the microphone was never started"
            time.sleep(0.01)
        return self.stream


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def wait_for(twin: Twin, what: Callable[[Twin], bool]) -> None:
    deadline = time.monotonic() + 30 * SLACK
    while not (twin.sessions and what(twin)):
        assert time.monotonic() < deadline, twin.sessions
        time.sleep(0.02)


def finalizes(twin: Twin) -> int:
    return sum(text == "finalize" for _, text in twin.sessions[0].commands)


Connect = Callable[[Engine], AbstractContextManager[Twin]]


@pytest.fixture
def connect_to(monkeypatch: pytest.MonkeyPatch) -> Connect:
    """``with connect_to(engine) as twin:`` a twin the ``mic`` command will use."""

    @contextlib.contextmanager
    def start(engine: Engine) -> Iterator[Twin]:
        with twin_thread(engine) as twin:
            monkeypatch.setenv("CARTESIA_API_KEY", "mic-test-key")
            monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
            yield twin

    return start


def test_push_to_talk_sends_only_while_talking_and_finalizes_on_enter(
    connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = Rig()
    first, idle, second = pcm(0.5, value=1000), pcm(0.3, value=7), pcm(0.2, value=2000)

    def script(post: Post) -> None:
        stream = rig.wait_started()
        stream.deliver(idle)  # before Enter: not sent
        post("\n")
        stream.deliver(first)
        post("\n")  # finalize
        stream.deliver(idle)  # between turns: not sent
        post("\n")
        stream.deliver(second)
        post("\n")
        wait_for(twin, lambda t: finalizes(t) == 2)
        ctrl_c()

    with connect_to(ScriptedEngine([["Hello", " world."], [" Again."]])) as twin:
        code = main(["mic"], mic_stream=rig.factory, mic_keys=script)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Press Enter to talk" in err and "Traceback" not in err
    assert out.splitlines() == [
        "transcript | Hello",
        "transcript |  world.",
        "transcript |  Again.",
        "",
        "Full transcript: 'Hello world. Again.'",
    ]
    (record,) = twin.sessions
    assert [text for _, text in record.commands] == ["finalize", "finalize", "close"]
    assert record.audio_bytes == len(first) + len(second)
    first_finalize = record.commands[0][0]
    assert sum(size for at, size in record.frames if at < first_finalize) == len(first)
    assert rig.stream is not None and rig.stream.calls == ["start", "stop", "close"]


@pytest.mark.speech
@pytest.mark.timeout(120)
def test_ctrl_c_while_talking_closes_and_prints_the_whole_transcript(
    connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    sentence = "Please call me back when you get home"
    audio = speech(sentence)
    rig = Rig()

    def script(post: Post) -> None:
        stream = rig.wait_started()
        post("\n")
        stream.deliver(audio)  # no second Enter: Ctrl-C mid-turn
        # send_audio holds back the last partial 100 ms frame until 'close'.
        wait_for(twin, lambda t: t.sessions[0].audio_bytes == len(audio) // 3200 * 3200)
        ctrl_c()

    with connect_to(shared_engine()) as twin:
        code = main(["mic"], mic_stream=rig.factory, mic_keys=script)
    out, err = capsys.readouterr()
    assert code == 0, err
    (record,) = twin.sessions
    assert [text for _, text in record.commands] == ["close"]  # 'close' flushes the turn
    full = out.rsplit("Full transcript: ", 1)[1].strip()
    assert word_error_rate(sentence, full.strip("'")) <= 0.35, out


@pytest.mark.speech
@pytest.mark.timeout(120)
def test_vad_finalizes_in_each_pause(
    connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    sentences = ("The quick brown fox jumps over the lazy dog", "Sandy sells seashells")
    pause = pcm(1.0)
    audio = pause + speech(sentences[0]) + pause + speech(sentences[1]) + pause
    rig = Rig()

    def script(post: Post) -> None:
        stream = rig.wait_started()
        post(None)  # no keyboard at all: VAD mode does not need one
        stream.deliver(audio)
        wait_for(twin, lambda t: finalizes(t) == 2)
        ctrl_c()

    with connect_to(shared_engine()) as twin:
        code = main(
            ["mic", "--vad", "--vad-backend", "energy", "--silence-ms", "500"],
            mic_stream=rig.factory,
            mic_keys=script,
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "finalize after 500 ms of silence (energy VAD)" in err
    (record,) = twin.sessions
    assert [text for _, text in record.commands] == ["finalize", "finalize", "close"]
    # Each finalize came after its sentence's audio and within the pause that follows it.
    cuts = [sum(size for t, size in record.frames if t < at) for at, _ in record.commands[:2]]
    ends = [len(pause) + len(speech(sentences[0])), len(audio) - len(pause)]
    for cut, end in zip(cuts, ends, strict=True):
        assert end < cut <= end + len(pause), (cuts, ends)
    deltas = [
        line[len("transcript | ") :]
        for line in out.splitlines()
        if line.startswith("transcript | ")
    ]
    assert len(deltas) == 2
    for said, heard in zip(sentences, deltas, strict=True):
        assert word_error_rate(said, heard) <= 0.35, deltas


def test_end_of_input_ends_push_to_talk_cleanly(
    connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = Rig()

    def script(post: Post) -> None:
        stream = rig.wait_started()
        post("\n")
        stream.deliver(pcm(0.3, value=500))
        post("\n")
        post(None)  # stdin closed

    with connect_to(ScriptedEngine([["Bye."]])) as twin:
        code = main(["mic"], mic_stream=rig.factory, mic_keys=script)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.endswith("Full transcript: 'Bye.'\n")
    assert [text for _, text in twin.sessions[0].commands] == ["finalize", "close"]


# -- no microphone: one line, exit code 2, nothing connected ------------------------------------


def no_device(
    sample_rate: int, blocksize: int, device: str | int | None, on_audio: Callable[[bytes], None]
) -> InputStream:
    raise UsageError("no usable input device: Error querying device -1")


def assert_one_line_usage_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("cartesia-stt mic: "), err
    assert needle in err and "Traceback" not in err


def test_no_input_device_is_one_line_and_exit_2(
    connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect_to(ScriptedEngine([])) as twin:
        code = main(["mic"], mic_stream=no_device)
        assert twin.sessions == []  # reported before connecting
    assert_one_line_usage_error(code, capsys.readouterr().err, "no usable input device")


def test_without_sounddevice_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if not installed
    code = main(["mic"])
    assert_one_line_usage_error(
        code, capsys.readouterr().err, "pip install -e '.[mic]' in a checkout"
    )


def test_sounddevice_without_an_input_device(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    def query_devices(device: object = None, kind: str | None = None) -> object:
        raise PortAudioError("Error querying device -1")

    fake.PortAudioError = PortAudioError  # type: ignore[attr-defined]
    fake.query_devices = query_devices  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    code = main(["mic", "--device", "3"])
    assert_one_line_usage_error(code, capsys.readouterr().err, "no usable input device 3")


def test_this_machines_microphone_state_is_reported_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        importlib.import_module("sounddevice").query_devices(kind="input")
    except OSError:
        pass  # no PortAudio, or no input device: the case to check
    except ImportError:
        pass
    else:
        pytest.skip("this machine has a working microphone")
    code = main(["mic"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


# -- hands-free (mic --turns): the server detects the turns, no key at all ----------------------


def hands_free(rig: Rig, twin_of: Callable[[], Twin], audio: bytes) -> Callable[[Post], None]:
    """A script that never presses a key: it plays ``audio`` into the microphone, waits until
    the twin has it all, and presses Ctrl-C."""

    def script(post: Post) -> None:
        stream = rig.wait_started()
        post(None)  # no keyboard: hands-free does not need one
        stream.deliver(audio)
        # send_audio holds back the last partial 100 ms frame until 'close'.
        wait_for(twin_of(), lambda t: t.sessions[0].audio_bytes == len(audio) // 3200 * 3200)
        ctrl_c()

    return script


def test_hands_free_prints_a_barge_in_and_each_turn_as_it_ends(
    connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    from cartesia_stt_async.twin import Turn

    loud, pause = pcm(0.5, value=3000), pcm(1.5)  # the twin's detector: speech, then a pause
    rig = Rig()
    script = [Turn(updates=["Book"], end="Book a table."), Turn(end=" For two, please.")]
    with connect_to(ScriptedEngine(turns=script)) as twin:
        code = main(
            ["mic", "--turns"],
            mic_stream=rig.factory,
            mic_keys=hands_free(rig, lambda: twin, loud + pause + loud + pause),
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Listening hands-free" in err and "Traceback" not in err
    assert out.splitlines() == [
        "barge-in | turn 0",
        "turn 0 | Book a table.",
        "barge-in | turn 1",
        "turn 1 |  For two, please.",
        "",
        "Full transcript: 'Book a table. For two, please.'",
    ]
    # The twin's eager end comes 400 ms into each pause, with the text so far (a status line).
    assert "turn 0 may be over: 'Book'" in err
    (record,) = twin.sessions
    assert record.turn_settings is not None  # the turn route
    assert [text.replace(" ", "") for _, text in record.commands] == ['{"type":"close"}']
    assert record.audio_bytes == 2 * (len(loud) + len(pause))  # every block went out
    assert rig.stream is not None and rig.stream.calls == ["start", "stop", "close"]


@pytest.mark.speech
@pytest.mark.timeout(120)
def test_hands_free_two_sentences_with_a_pause_are_two_turns(
    connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    sentences = ("The quick brown fox jumps over the lazy dog", "Sandy sells seashells")
    pause = pcm(1.5)
    rig = Rig()
    audio = speech(sentences[0]) + pause + speech(sentences[1]) + pause
    with connect_to(shared_engine()) as twin:
        code = main(
            ["mic", "--turns"],
            mic_stream=rig.factory,
            mic_keys=hands_free(rig, lambda: twin, audio),
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("barge-in")] == [
        "barge-in | turn 0",
        "barge-in | turn 1",
    ]
    ends = [line.split(" | ", 1)[1] for line in lines if line.startswith("turn ")]
    assert len(ends) == 2, out
    for said, heard in zip(sentences, ends, strict=True):
        assert word_error_rate(said, heard) <= 0.35, ends
    assert lines[-1] == f"Full transcript: {''.join(ends)!r}"  # turn.end texts, verbatim


@pytest.mark.parametrize(
    ("extra", "named"), [(["--vad"], "--vad"), (["--language", "de"], "--language")]
)
def test_hands_free_refuses_manual_finalize_options_before_connecting(
    extra: list[str], named: str, connect_to: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = Rig()
    with connect_to(ScriptedEngine([])) as twin:
        code = main(["mic", "--turns", *extra], mic_stream=rig.factory)
        assert twin.sessions == []
    assert_one_line_usage_error(code, capsys.readouterr().err, f"{named}: not with --turns")
    assert rig.stream is None  # not even the microphone was opened


def test_hands_free_reports_a_server_error_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cartesia_stt_async.twin import Fault, Faults, Turn

    rig = Rig()

    def script(post: Post) -> None:
        rig.wait_started().deliver(pcm(0.5, value=3000) + pcm(1.5))  # then nothing: no Ctrl-C

    faults = Faults([Fault("error_event", after_frames=3, code=500)])
    with twin_thread(ScriptedEngine(turns=[Turn(end="Hi.")]), faults=faults) as twin:
        monkeypatch.setenv("CARTESIA_API_KEY", "mic-test-key")
        monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
        code = main(["mic", "--turns"], mic_stream=rig.factory, mic_keys=script)
    out, err = capsys.readouterr()
    assert code == 1, err
    # The turn started before the error; whether its barge-in is shown before the failure
    # stops the session is a race (the audio may meet the failure first). No turn ended.
    assert out in ("", "barge-in | turn 0\n"), out
    assert err.splitlines()[-1] == "cartesia-stt mic: 500 Injected: injected server error", err
    assert rig.stream is not None and rig.stream.calls == ["start", "stop", "close"]
