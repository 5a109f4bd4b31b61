"""``cartesia-stt transcribe --realtime --turns``: a WAV file through the turn-detection
socket of a real twin, each turn printed as it ends, the transcript joined verbatim.

The twin serves from a background thread (``CARTESIA_API_KEY`` and ``CARTESIA_BASE_URL``
point at it); scripted turns pin the exact output, the offline recognizer the real thing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartesia_stt_async.cli import main
from cartesia_stt_async.twin import Fault, Faults, ScriptedEngine, Turn, Twin
from cartesia_stt_async.twin.wer import word_error_rate

from .conftest import pcm
from .speech import SEED, shared_engine, speech
from .test_cli import write_wav
from .test_sync import twin_thread

LOUD = pcm(0.5, value=3000)  # the twin's energy detector hears speech
PAUSE = bytes(int(1.5 * 32000))  # 1.5 s at 16 kHz: every turn ends in it
SCRIPT = [
    Turn(updates=["Book"], end="Book a table."),
    Turn(updates=[" For"], end=" For two, please."),
]


def wav(path: Path, audio: bytes) -> Path:
    """``audio`` (16 kHz mono ``pcm_s16le``) as a WAV file at ``path``."""
    write_wav(path, audio, rate=16000, channels=1, width=2)
    return path


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Twin]:
    """A twin with two scripted turns, which the command uses."""
    with twin_thread(ScriptedEngine(turns=SCRIPT)) as twin:
        monkeypatch.setenv("CARTESIA_API_KEY", "cli-turns-key")
        monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
        yield twin


def test_each_turn_is_printed_as_it_ends_then_the_transcript(
    scripted: Twin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = wav(tmp_path / "two.wav", LOUD + PAUSE + LOUD + PAUSE)
    code = main(["transcribe", "--turns", str(path), "--speed", "0"])  # --turns: realtime
    out, err = capsys.readouterr()
    assert code == 0, err
    # The turn.end texts verbatim; the transcript joins them with nothing added or removed.
    assert out.splitlines() == [
        "turn 0 | Book a table.",
        "turn 1 |  For two, please.",
        "Book a table. For two, please.",
    ]
    (record,) = scripted.sessions
    assert record.turn_settings is not None  # the turn route, not /stt/websocket
    ((_, command),) = record.commands  # never a finalize: the server ends the turns
    assert json.loads(command) == {"type": "close"}
    assert record.audio_bytes == len(LOUD + PAUSE + LOUD + PAUSE)


def test_json_prints_every_turn_event(
    scripted: Twin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = wav(tmp_path / "two.wav", LOUD + PAUSE + LOUD + PAUSE)
    code = main(["transcribe", "--realtime", "--turns", "--json", str(path), "--speed", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "connected"
    assert kinds.count("turn.start") == 2 and kinds.count("turn.end") == 2
    ends = [e["transcript"] for e in events if e["type"] == "turn.end"]
    assert ends == ["Book a table.", " For two, please."]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--vad"], "--vad"),
        (["--finalize-every", "2"], "--finalize-every"),
        (["--language", "fr"], "--language"),
    ],
)
def test_options_of_manual_finalize_are_usage_errors_with_turns(
    extra: list[str], named: str, scripted: Twin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = wav(tmp_path / "a.wav", LOUD)
    assert main(["transcribe", "--turns", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cartesia-stt transcribe: {named}: not with --turns"), err
    assert err.count("\n") == 1
    assert scripted.sessions == []  # refused before connecting


def test_turns_streams_one_file_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = wav(tmp_path / "a.wav", LOUD), wav(tmp_path / "b.wav", LOUD)
    assert main(["transcribe", "--turns", str(a), str(b)]) == 2
    assert "--realtime streams one WAV file, got 2" in capsys.readouterr().err


def test_silence_gives_no_turn_and_says_so(
    scripted: Twin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = wav(tmp_path / "quiet.wav", PAUSE)
    assert main(["transcribe", "--turns", str(path), "--speed", "0"]) == 0
    out, err = capsys.readouterr()
    assert out == "\n"  # no turn; the empty transcript
    assert f"no speech was recognized in {path} (1.5 s of audio)" in err


@pytest.mark.speech
@pytest.mark.timeout(120)
def test_two_sentences_with_a_pause_are_two_turns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = wav(tmp_path / "seed.wav", speech(SEED[0]) + PAUSE + speech(SEED[1]) + PAUSE)
    with twin_thread(shared_engine()) as twin:
        monkeypatch.setenv("CARTESIA_API_KEY", "cli-turns-key")
        monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
        code = main(["transcribe", "--turns", str(path), "--speed", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    *turns, transcript = out.splitlines()
    assert [line.split(" | ", 1)[0] for line in turns] == ["turn 0", "turn 1"], out
    texts = [line.split(" | ", 1)[1] for line in turns]
    assert texts[1].startswith(" ")  # verbatim: the second turn brings its own space
    assert transcript == "".join(texts)
    for said, heard in zip(SEED, texts, strict=True):
        assert word_error_rate(said, heard) <= 0.35, texts


def test_a_server_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = wav(tmp_path / "two.wav", LOUD + PAUSE + LOUD + PAUSE)
    faults = Faults([Fault("error_event", after_frames=3, code=500)])
    with twin_thread(ScriptedEngine(turns=SCRIPT), faults=faults) as twin:
        monkeypatch.setenv("CARTESIA_API_KEY", "cli-turns-key")
        monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
        code = main(["transcribe", "--turns", str(path), "--speed", "0"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert out == ""  # no turn ended; no transcript printed for a failed session
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert err.splitlines()[-1] == (
        "cartesia-stt transcribe: 500 Injected: injected server error"
    ), err
