"""The ``cartesia-stt`` command and the README's quick start, run as real processes."""

from __future__ import annotations

import ast
import asyncio
import json
import math
import os
import re
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.cli import main
from cartesia_stt_async.twin import Twin
from cartesia_stt_async.twin.wer import word_error_rate

from .conftest import API_KEY, SLACK, pcm
from .speech import SEED, shared_engine, speech

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.asyncio
async def test_twin_command_serves_the_protocol() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cartesia_stt_async",
        "twin",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20 * SLACK)).decode()
        match = re.search(r"twin listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        # The form pipecat's service wants (it refuses http://), on the next line.
        ws_line = (await asyncio.wait_for(proc.stdout.readline(), 5 * SLACK)).decode()
        assert ws_line.split()[-1] == match.group(1).replace("http://", "ws://"), ws_line
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=match.group(1))
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(pcm(0.2))
            utt = await conn.finalize(timeout=5 * SLACK)
        assert utt.text == ""  # the default script is empty: flush_done only
        assert conn.state == "done"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10 * SLACK)


def test_cli_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["twin", "--port", str(port)]) == 1
    assert "cannot serve" in capsys.readouterr().err


def test_cli_requires_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


@pytest.mark.asyncio
async def test_readme_quickstart_runs() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "quickstart.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30 * SLACK)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["'Hello world.'", "'Hello world.'"]
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples" / "quickstart.py").read_text()
    # The README shows the same program (its body, minus the module docstring and guard).
    body = example.split('"""', 2)[2].split("\n\nif __name__")[0].strip()
    assert body.replace("\n\n\n", "\n\n") in readme.replace("\n\n\n", "\n\n")


async def run_cli(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run ``python -m cartesia_stt_async ARGS`` without an API key (so: the local twin)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("CARTESIA_API_KEY", "CARTESIA_BASE_URL")
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cartesia_stt_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout * SLACK)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.speech
@pytest.mark.asyncio
async def test_demo_without_a_key_runs_the_seed_flow_on_the_local_twin() -> None:
    text = "Please call me back when you get home. I would like to book a table for two."
    code, out, err = await run_cli("demo", "--speed", "0", text)
    assert code == 0, err
    assert "CARTESIA_API_KEY is not set: using the local twin at http://127.0.0.1:" in out
    deltas = re.findall(r"^transcript \| (.*)$", out, re.MULTILINE)
    assert len(deltas) == 2 and deltas[1].startswith(" ")
    assert out.count("flush_done |") == 2 and "done       |" in out
    match = re.search(r"^Full transcript: (.*)$", out, re.MULTILINE)
    assert match
    full = ast.literal_eval(match.group(1))
    assert full == "".join(deltas)
    assert word_error_rate(text, full) <= 0.35


def write_wav(path: Path, frames: bytes, *, rate: int, channels: int, width: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)


def stereo_24bit(audio_s16: bytes) -> bytes:
    """16-bit mono to 24-bit stereo (both channels the same)."""
    out = bytearray()
    for i in range(0, len(audio_s16), 2):
        sample = b"\x00" + audio_s16[i : i + 2]  # 24-bit little-endian: low byte first
        out += sample + sample
    return bytes(out)


@pytest.mark.speech
@pytest.mark.asyncio
async def test_transcribe_converts_a_stereo_24_bit_wav(tmp_path: Path) -> None:
    sentence = "The meeting has been moved to Friday afternoon"
    path = tmp_path / "stereo24.wav"
    write_wav(path, stereo_24bit(speech(sentence)), rate=16000, channels=2, width=3)
    code, out, err = await run_cli("transcribe", "--realtime", str(path), "--speed", "0")
    assert code == 0, err
    assert "converted" in err and "2 channels averaged to mono" in err and "24-bit" in err
    assert word_error_rate(sentence, out.strip()) <= 0.35


@pytest.mark.speech
@pytest.mark.asyncio
async def test_transcribe_json_lines_with_periodic_finalize(tmp_path: Path) -> None:
    audio = speech(SEED[0]) + speech(SEED[1])
    path = tmp_path / "mono.wav"
    write_wav(path, audio, rate=16000, channels=1, width=2)
    code, out, err = await run_cli(
        "transcribe", "--realtime", str(path), "--speed", "0", "--json", "--finalize-every", "2"
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    seconds = len(audio) / 32000
    assert sum(e["type"] == "flush_done" for e in events) == math.ceil(seconds / 2)
    assert events[-1]["type"] == "done"
    finals = "".join(e["text"] for e in events if e["type"] == "transcript" and e["is_final"])
    assert len(finals.split()) >= 8  # cut every 2 s, mid-word: words, not accuracy
    starts = [w["start"] for e in events if e.get("words") for w in e["words"]]
    assert starts == sorted(starts) and starts[-1] > 4.0  # session time, across finalizes
    assert {e["request_id"] for e in events} == {events[0]["request_id"]}


@pytest.mark.asyncio
async def test_transcribe_rejects_what_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    code, _, err = await run_cli("transcribe", "--realtime", str(path))
    assert code == 2 and "not a WAV file" in err  # a usage error
    code, _, err = await run_cli("transcribe", "--realtime", str(tmp_path / "missing.wav"))
    assert code == 2 and "missing.wav" in err  # an unreadable file is a usage error too
    code, _, err = await run_cli("transcribe", str(path), "--finalize-every", "-1")  # implied
    assert code == 2 and "--finalize-every" in err


@pytest.mark.parametrize("every", ["inf", "nan", "0", "-1"])
def test_finalize_every_must_be_a_finite_positive_number(
    every: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # inf used to pass the check and end in an OverflowError traceback (int(inf * rate)).
    path = tmp_path / "short.wav"
    write_wav(path, bytes(3200), rate=16000, channels=1, width=2)
    assert main(["transcribe", str(path), "--finalize-every", every]) == 2
    err = one_line(capsys.readouterr().err)
    expected = f"--finalize-every must be a positive number of seconds, got {float(every)}"
    assert f"cartesia-stt transcribe: {expected}\n" == err


def test_twin_rejects_a_bad_worker_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["twin", "--port", "0", "--workers", "0"]) == 2
    assert "workers must be at least 1" in capsys.readouterr().err


# -- one-line errors, usage errors, "no speech" (issues 9 and 12) ------------------------------


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_twin_port_out_of_range_is_one_line(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["twin", "--port", port]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"--port must be between 0 and 65535, got {port}" in err


def test_twin_port_in_use_is_one_line_from_the_real_process() -> None:
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        # As a user runs it: not in asyncio's debug mode, whose slow-callback notes (a loaded
        # machine) would add lines of asyncio's own to stderr.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
        done = subprocess.run(
            [sys.executable, "-m", "cartesia_stt_async", "twin", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60 * SLACK,
            check=False,
            env=env,
        )
    assert done.returncode == 1
    err = one_line(done.stderr)
    assert f"cannot serve on 127.0.0.1:{port}" in err and "address already in use" in err


def test_demo_without_words_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("", " . ", "..."):
        assert main(["demo", text]) == 2
        err = one_line(capsys.readouterr().err)
        assert "nothing to say" in err


def test_unknown_option_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err
    for command in ("demo", "transcribe", "mic", "twin"):
        assert re.search(rf"^  {command} +\S", err, re.MULTILINE), err
    assert "cartesia-stt COMMAND --help" in err
    with pytest.raises(SystemExit):
        main([])
    assert "a command is required" in capsys.readouterr().err


def test_vad_and_finalize_every_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.wav"
    write_wav(path, pcm(0.5), rate=16000, channels=1, width=2)
    code = main(["transcribe", str(path), "--vad", "--finalize-every", "1"])
    assert code == 2
    assert "choose one" in one_line(capsys.readouterr().err)


@pytest.fixture
def local_twin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Twin]:
    """The hearing twin in a thread; the CLI finds it through CARTESIA_BASE_URL."""
    from .test_sync import twin_thread

    with twin_thread(shared_engine()) as twin:
        monkeypatch.setenv("CARTESIA_API_KEY", "cli-test-key")
        monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
        yield twin


def tone(seconds: float, hz: float = 440.0) -> bytes:
    return b"".join(
        int(8000 * math.sin(2 * math.pi * hz * i / 16000)).to_bytes(2, "little", signed=True)
        for i in range(int(seconds * 16000))
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("name", "audio"), [("silence", pcm(2.0)), ("tone", tone(2.0)), ("empty", b"")]
)
@pytest.mark.speech
def test_transcribe_says_when_no_speech_was_recognized(
    name: str,
    audio: bytes,
    local_twin: Twin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / f"{name}.wav"
    write_wav(path, audio, rate=16000, channels=1, width=2)
    assert main(["transcribe", "--realtime", str(path), "--speed", "0"]) == 0
    out, err = capsys.readouterr()
    assert out == "\n"  # stdout stays the transcript: empty
    assert f"no speech was recognized in {path}" in err
    # A key and CARTESIA_BASE_URL: the CLI says whose server it talks to, not "Cartesia's".
    assert f"using the server from CARTESIA_BASE_URL at {local_twin.base_url}" in err
    assert "the Cartesia API" not in err


@pytest.mark.speech
@pytest.mark.timeout(120)
def test_transcribe_with_vad_finalizes_in_the_pauses(
    local_twin: Twin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pause = pcm(1.0)
    first, second = speech(SEED[0]), speech(SEED[1])
    audio = first + pause + second + pause
    path = tmp_path / "two.wav"
    write_wav(path, audio, rate=16000, channels=1, width=2)
    code = main(
        [
            *("transcribe", "--realtime", str(path), "--speed", "0"),
            *("--vad", "--vad-backend", "energy", "--json"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events].count("flush_done") == 2
    (record,) = local_twin.sessions
    assert [text for _, text in record.commands] == ["finalize", "finalize", "close"]
    cuts = [sum(size for t, size in record.frames if t < at) for at, _ in record.commands[:2]]
    ends = [len(first), len(first) + len(pause) + len(second)]
    for cut, end in zip(cuts, ends, strict=True):
        assert end < cut <= end + len(pause), (cuts, ends)
    finals = [e["text"] for e in events if e["type"] == "transcript" and e["is_final"]]
    assert word_error_rate(". ".join(SEED), "".join(finals)) <= 0.35, finals
