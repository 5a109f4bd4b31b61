"""``cartesia-stt transcribe FILE...`` end to end: the real client, the twin's ``POST /stt``.

A directory of WAV files with a corrupt one, the twin's 429-then-200 fault, every output
format, a real terminal (a pty) for the progress bar, and a real Ctrl-C (SIGINT to the
process) against a hostile HTTP server that holds uploads and sees them cancelled.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from cartesia_stt_async.cli import main
from cartesia_stt_async.twin import Faults, ScriptedEngine, Twin
from cartesia_stt_async.twin._stt_route import batch_state
from cartesia_stt_async.twin.faults import HTTPFault

from .conftest import API_KEY, SLACK, pcm
from .test_sync import twin_thread

TEXT = "Hello there, batch world."


def wav(seconds: float) -> bytes:
    """A mono 16 kHz 16-bit WAV file of silence (the scripted engine answers TEXT anyway)."""
    data = pcm(seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + (fmt + b"data" + struct.pack("<I", len(data)) + data)
    )


CORRUPT = b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4


def recordings(folder: Path) -> dict[str, Path]:
    """Three good WAV files (one in a subfolder) and a corrupt one."""
    files = {
        "a": folder / "a.wav",
        "b": folder / "b.wav",
        "c": folder / "sub" / "c.wav",
        "corrupt": folder / "corrupt.wav",
    }
    (folder / "sub").mkdir(parents=True)
    for name, path in files.items():
        path.write_bytes(CORRUPT if name == "corrupt" else wav(2.0))
    return files


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def one_srt_cue(text: str) -> tuple[float, float, str]:
    """The single cue of an SRT file: start, end, text."""
    match = re.fullmatch(
        r"1\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n", text
    )
    assert match, text
    n = [int(g) for g in match.groups()[:8]]
    start = n[0] * 3600 + n[1] * 60 + n[2] + n[3] / 1000
    end = n[4] * 3600 + n[5] * 60 + n[6] + n[7] / 1000
    return start, end, match.group(9)


@pytest.fixture
def batch_twin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Twin]]:
    """Start a scripted twin in a thread (with a fault plan, if given); the CLI finds it
    through CARTESIA_API_KEY and CARTESIA_BASE_URL."""
    stack: list[object] = []

    def start(faults: Faults | None = None) -> Twin:
        cm = twin_thread(ScriptedEngine([[TEXT]] * 4), faults=faults)
        twin = cm.__enter__()
        stack.append(cm)
        monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
        monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
        return twin

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_a_directory_with_a_corrupt_wav(
    batch_twin: Callable[..., Twin], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = batch_twin()
    files = recordings(tmp_path / "in")
    code = main(["transcribe", str(tmp_path / "in"), "--format", "srt", "--jobs", "2"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert out == ""  # results go to files; progress and the summary to stderr
    for name in ("a", "b", "c"):
        start, end, text = one_srt_cue(files[name].with_suffix(".srt").read_text())
        assert text == TEXT and 0.0 <= start < end <= 2.0
    assert not files["corrupt"].with_suffix(".srt").exists()
    assert leftovers(tmp_path) == []
    assert "Traceback" not in err
    lines = err.splitlines()
    summary = lines[lines.index("3 of 4 files transcribed, 1 failed:") :]
    assert len(summary) == 2 and summary[1].startswith(
        f"  {files['corrupt']}: 422 Unreadable audio: "
    )
    assert sum(line.startswith("done   ") for line in lines) == 3
    assert len(batch_state(twin).requests) == 4
    # Word timings were asked for (subtitles need them).
    fields = batch_state(twin).requests[0].fields
    assert ("timestamp_granularities[]", "word") in fields and ("model", "ink-whisper") in fields


def test_a_429_then_200_is_retried(
    batch_twin: Callable[..., Twin], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = Faults(http=[HTTPFault("status", request=0, status=429, retry_after="0.1")])
    twin = batch_twin(plan)
    files = recordings(tmp_path / "in")
    code = main(["transcribe", str(tmp_path / "in"), "--format", "srt", "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 1, err  # the corrupt file still fails; the refused one does not
    statuses = [r.status for r in batch_state(twin).requests]
    assert statuses[:2] == [429, 200] and statuses.count(429) == 1 and len(statuses) == 5
    for name in ("a", "b", "c"):
        assert one_srt_cue(files[name].with_suffix(".srt").read_text())[2] == TEXT
    assert "3 of 4 files transcribed, 1 failed:" in err


def test_a_429_on_every_try_fails_that_file_only(
    batch_twin: Callable[..., Twin], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refusals = [HTTPFault("status", request=n, status=429, retry_after="0.05") for n in range(3)]
    batch_twin(Faults(http=refusals))
    (tmp_path / "a.wav").write_bytes(wav(1.0))
    (tmp_path / "b.wav").write_bytes(wav(1.0))
    code = main(["transcribe", str(tmp_path), "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "b.txt").read_text() == TEXT + "\n"
    assert not (tmp_path / "a.txt").exists()
    assert re.search(rf"^  {re.escape(str(tmp_path / 'a.wav'))}: 429 Injected fault", err, re.M), (
        err
    )


@pytest.mark.parametrize("fmt", ["text", "json", "srt", "vtt"])
def test_each_format_under_out(
    fmt: str, batch_twin: Callable[..., Twin], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = batch_twin()
    source = tmp_path / "in" / "talk.wav"
    source.parent.mkdir()
    source.write_bytes(wav(1.5))
    out = tmp_path / "out"
    assert main(["transcribe", str(source), "--format", fmt, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    suffix = {"text": ".txt", "json": ".json", "srt": ".srt", "vtt": ".vtt"}[fmt]
    assert os.listdir(out) == [f"talk{suffix}"]
    written = (out / f"talk{suffix}").read_text()
    if fmt == "text":
        assert written == TEXT + "\n"
    elif fmt == "json":
        document = json.loads(written)
        assert document["file"] == str(source) and document["text"] == TEXT
        assert document["duration"] == pytest.approx(1.5)
        assert " ".join(w["word"] for w in document["words"]) == TEXT
    elif fmt == "srt":
        assert one_srt_cue(written)[2] == TEXT
    else:
        assert written.startswith("WEBVTT\n\n00:00:00.") and written.endswith(f"\n{TEXT}\n")
    assert err.splitlines()[-1] == "1 of 1 files transcribed"
    fields = batch_state(twin).requests[0].fields
    assert (("timestamp_granularities[]", "word") in fields) == (fmt != "text")


def test_model_and_language_reach_the_server(
    batch_twin: Callable[..., Twin], tmp_path: Path
) -> None:
    twin = batch_twin()
    (tmp_path / "a.wav").write_bytes(wav(0.5))
    assert main(["transcribe", str(tmp_path), "--language", "de"]) == 0
    assert ("language", "de") in batch_state(twin).requests[0].fields
    assert main(["transcribe", str(tmp_path)]) == 0
    assert not any(name == "language" for name, _ in batch_state(twin).requests[1].fields)
    # Batch is ink-whisper only: a usage error before any file is sent.
    assert main(["transcribe", str(tmp_path), "--model", "ink-2"]) == 2
    assert main(["transcribe", str(tmp_path), "--language", "xx"]) == 2
    assert len(batch_state(twin).requests) == 2


def run_env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    env.update(CARTESIA_API_KEY=API_KEY, CARTESIA_BASE_URL=base_url)
    return env


def test_a_terminal_gets_a_progress_bar(batch_twin: Callable[..., Twin], tmp_path: Path) -> None:
    import pty

    twin = batch_twin()
    recordings(tmp_path / "in")
    main_fd, child_fd = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cartesia_stt_async", "transcribe", str(tmp_path / "in")],
            stderr=child_fd,
            stdout=subprocess.PIPE,
            env=run_env(twin.base_url) | {"COLUMNS": "200"},
            timeout=60 * SLACK,
            check=False,
        )
        os.close(child_fd)
        child_fd = -1
        chunks = []
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main_fd)
        if child_fd >= 0:
            os.close(child_fd)
    assert done.returncode == 1
    screen = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "\r\x1b[K[" in screen and "] 4/4, 1 failed" in screen  # the bar, redrawn
    assert "done   " not in screen  # no per-file lines on a terminal: the bar shows them
    # Above the bar: clear the bar's line, print the failure, draw the bar again.
    assert re.search(
        r"\r\x1b\[KFAILED \S*corrupt\.wav: 422 Unreadable audio: .*\n\r\x1b\[K\[", screen
    )
    # The finished bar is cleared before the summary.
    corrupt = re.escape(str(tmp_path / "in" / "corrupt.wav"))
    assert re.search(
        r"\r\x1b\[K\[#{20}\] 4/4, 1 failed\r\x1b\[K3 of 4 files transcribed, 1 failed:\n"
        rf"  {corrupt}: 422 Unreadable audio: [^\n]*\n\Z",
        screen,
    ), screen


# -- Ctrl-C ------------------------------------------------------------------------------------


class Holding:
    """A ``POST /stt`` that answers ``fast*`` files at once and holds the others forever,
    recording each held upload the client cancels (its connection closed under it)."""

    def __init__(self) -> None:
        self.held: list[str] = []
        self.cancelled: list[str] = []
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        name = ""
        async for part in await request.multipart():
            if getattr(part, "name", None) == "file":
                name = part.filename or ""  # type: ignore[union-attr]
                while await part.read_chunk():  # type: ignore[union-attr]
                    pass
        if name.startswith("fast"):
            body = {
                "type": "transcript",
                "text": "Quick one.",
                "request_id": "r-fast",
                "duration": 1.0,
                "words": [{"word": "Quick", "start": 0.1, "end": 0.4}],
            }
            body["words"].append({"word": "one.", "start": 0.5, "end": 0.9})  # type: ignore[attr-defined]
            return web.json_response(body)
        self.held.append(name)
        self.changed.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            self.changed.set()
            raise
        raise AssertionError("unreachable")


@asynccontextmanager
async def holding_server() -> AsyncIterator[tuple[str, Holding]]:
    holding = Holding()
    app = web.Application()
    app.router.add_post("/stt", holding.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", holding
    finally:
        await runner.cleanup()


async def wait_for(condition: Callable[[], bool], event: asyncio.Event) -> None:
    async with asyncio.timeout(30 * SLACK):
        while not condition():
            event.clear()
            await event.wait()


@pytest.mark.asyncio
async def test_ctrl_c_cancels_the_uploads_and_says_what_finished(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("fast", "slow1", "slow2", "slow3"):
        (folder / f"{name}.wav").write_bytes(wav(1.0))
    async with holding_server() as (url, server):
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "cartesia_stt_async", "transcribe", str(folder)),
            *("--format", "srt", "--jobs", "2"),  # fast and slow1, then slow2; never slow3
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=run_env(url),
        )
        assert proc.stderr is not None
        seen: list[str] = []
        try:
            async with asyncio.timeout(30 * SLACK):
                while not any(line.startswith("done   ") for line in seen):
                    seen.append((await proc.stderr.readline()).decode())
            await wait_for(lambda: len(server.held) == 2, server.changed)
            proc.send_signal(signal.SIGINT)
            out, rest = await asyncio.wait_for(proc.communicate(), 30 * SLACK)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await wait_for(lambda: len(server.cancelled) == 2, server.changed)
    err = "".join(seen) + rest.decode()
    assert proc.returncode == 130, err
    assert out == b"" and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert sorted(server.held) == sorted(server.cancelled) == ["slow1.wav", "slow2.wav"]
    assert err.splitlines()[-3:] == [
        "interrupted: 1 of 4 files finished",
        f"  finished (written): {folder / 'fast.wav'}",
        "  not finished: " + ", ".join(str(folder / f"slow{n}.wav") for n in (1, 2, 3)),
    ]
    assert (folder / "fast.srt").read_text() == "1\n00:00:00,100 --> 00:00:00,900\nQuick one.\n"
    assert sorted(os.listdir(folder)) == [
        "fast.srt",
        "fast.wav",
        "slow1.wav",
        "slow2.wav",
        "slow3.wav",
    ]


# -- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--realtime", "a.wav", "b.wav"], "--realtime streams one WAV file, got 2"),
        (["a.wav", "--vad", "--format", "srt"], "--format: for the batch run"),
        (["a.wav", "--json", "--out", "x", "--jobs", "2"], "--out, --jobs: for the batch run"),
        (["a.wav", "--jobs", "0"], "--jobs must be an int >= 1, got 0"),
        (["missing.wav"], "missing.wav: no such file or directory"),
        (["empty"], "no audio files in empty (looked for .flac"),
    ],
)
def test_usage_errors_are_one_line(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.wav").write_bytes(wav(0.1))
    (tmp_path / "b.wav").write_bytes(wav(0.1))
    (tmp_path / "empty").mkdir()
    assert main(["transcribe", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cartesia-stt transcribe: "), err
    assert message in err


def test_format_is_checked_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["transcribe", "a.wav", "--format", "docx"])
    assert info.value.code == 2
    assert "invalid choice: 'docx'" in capsys.readouterr().err


# -- no API key: the local twin in-process, real recognition -----------------------------------


@pytest.mark.speech
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_without_a_key_the_local_twin_writes_subtitles(tmp_path: Path) -> None:
    from cartesia_stt_async.twin.wer import word_error_rate

    from .speech import SEED, speech
    from .test_cli import run_cli, write_wav

    write_wav(tmp_path / "talk.wav", speech(SEED[0]), rate=16000, channels=1, width=2)
    (tmp_path / "broken.wav").write_bytes(CORRUPT)
    code, out, err = await run_cli("transcribe", str(tmp_path), "--format", "vtt")
    assert code == 1, err
    assert out == "" and "CARTESIA_API_KEY is not set: using the local twin" in err
    vtt = (tmp_path / "talk.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n00:00:00.")
    said = " ".join(line for line in vtt.splitlines()[1:] if line and "-->" not in line)
    assert word_error_rate(SEED[0], said) <= 0.35, said
    assert err.splitlines()[-2:][0] == "1 of 2 files transcribed, 1 failed:"
    assert f"  {tmp_path / 'broken.wav'}: 422 " in err
