"""The runner behind ``cartesia-stt transcribe FILE...`` (``_cli_files``), piece by piece.

``plan``, ``render``, ``Progress`` and ``summary`` are checked exactly; ``run_jobs`` runs with a
transcribe coroutine of the test's own, so the bound on concurrency, failures and
cancellation are observable step by step. The end-to-end runs (the real client, the twin, a
hostile HTTP server, a real Ctrl-C) are in tests/test_cli_batch.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cartesia_stt_async import Word
from cartesia_stt_async._cli_files import (
    BatchResult,
    Job,
    Outcome,
    Progress,
    plan,
    render,
    run_jobs,
    summary,
)
from cartesia_stt_async.errors import BadRequestError, UsageError

pytestmark = pytest.mark.both_loops


@dataclass
class Result:
    text: str
    words: Sequence[Word] | None = None
    duration: float | None = 1.0
    language: str | None = "en"
    request_id: str | None = "req-1"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return path


# -- plan --------------------------------------------------------------------------------------


def test_plan_recurses_for_audio_and_writes_next_to_each_file(tmp_path: Path) -> None:
    a = touch(tmp_path / "in" / "a.wav")
    b = touch(tmp_path / "in" / "sub" / "b.MP3")
    touch(tmp_path / "in" / "notes.txt")  # not audio: skipped in a directory
    touch(tmp_path / "in" / ".hidden" / "c.wav")  # dot-folders skipped
    touch(tmp_path / "in" / "._d.wav")  # macOS resource forks too
    jobs, empty = plan([str(tmp_path / "in")], "srt", None)
    assert jobs == [
        Job(a.resolve(), a.with_suffix(".srt")),
        Job(b.resolve(), b.with_suffix(".srt")),
    ]
    assert empty == []


def test_plan_takes_named_files_whatever_their_suffix(tmp_path: Path) -> None:
    raw = touch(tmp_path / "call.pcm")
    jobs, _ = plan([str(raw)], "vtt", None)
    assert jobs == [Job(raw.resolve(), tmp_path / "call.vtt")]


def test_plan_with_out_mirrors_the_tree(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "a.wav")
    touch(tmp_path / "in" / "sub" / "b.wav")
    single = touch(tmp_path / "elsewhere" / "c.flac")
    out = tmp_path / "out"
    jobs, _ = plan([str(tmp_path / "in"), str(single)], "json", out)
    assert [j.target for j in jobs] == [out / "a.json", out / "sub" / "b.json", out / "c.json"]


def test_plan_keeps_the_suffix_when_two_files_would_collide(tmp_path: Path) -> None:
    touch(tmp_path / "talk.wav")
    touch(tmp_path / "talk.mp3")
    touch(tmp_path / "other.wav")
    jobs, _ = plan([str(tmp_path)], "srt", None)
    assert sorted(j.target.name for j in jobs) == ["other.srt", "talk.mp3.srt", "talk.wav.srt"]


def test_plan_never_overwrites_an_input(tmp_path: Path) -> None:
    named = touch(tmp_path / "notes.txt")
    (job,) = plan([str(named)], "text", None)[0]
    assert job.target == tmp_path / "notes.txt.txt"
    audio = touch(tmp_path / "notes.wav")  # notes.txt is an input too: keep the suffix
    jobs, _ = plan([str(named), str(audio)], "text", None)
    assert [j.target.name for j in jobs] == ["notes.txt.txt", "notes.wav.txt"]


def test_plan_takes_each_file_once(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.wav")
    jobs, _ = plan([str(a), str(tmp_path), str(a)], "text", None)
    assert jobs == [Job(a.resolve(), tmp_path / "a.txt")]


def test_plan_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.wav: no such file or directory"):
        plan([str(tmp_path / "missing.wav")], "text", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no audio files in .*empty \(looked for \.flac"):
        plan([str(tmp_path / "empty")], "text", None)
    touch(tmp_path / "x" / "a.wav")
    touch(tmp_path / "y" / "a.wav")
    with pytest.raises(UsageError, match=r"would both write .*a\.wav\.srt"):
        plan([str(tmp_path / "x" / "a.wav"), str(tmp_path / "y" / "a.wav")], "srt", tmp_path / "o")


def test_plan_reports_empty_directories_beside_others(tmp_path: Path) -> None:
    touch(tmp_path / "a.wav")
    (tmp_path / "empty").mkdir()
    jobs, empty = plan([str(tmp_path / "a.wav"), str(tmp_path / "empty")], "text", None)
    assert len(jobs) == 1 and empty == [str(tmp_path / "empty")]


# -- render ------------------------------------------------------------------------------------


WORDS = [Word("Good", 0.0, 0.3), Word("morning.", 0.35, 0.8)]


def test_render_each_format(tmp_path: Path) -> None:
    result = Result(" Good morning.", WORDS)
    assert render(result, "text", tmp_path / "a.wav") == "Good morning.\n"
    assert render(result, "srt", tmp_path / "a.wav") == (
        "1\n00:00:00,000 --> 00:00:00,800\nGood morning.\n"
    )
    assert render(result, "vtt", tmp_path / "a.wav") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:00.800\nGood morning.\n"
    )
    assert json.loads(render(result, "json", tmp_path / "a.wav")) == {
        "file": str(tmp_path / "a.wav"),
        "text": " Good morning.",
        "language": "en",
        "duration": 1.0,
        "request_id": "req-1",
        "words": [
            {"word": "Good", "start": 0.0, "end": 0.3},
            {"word": "morning.", "start": 0.35, "end": 0.8},
        ],
    }


def test_subtitles_need_word_timings(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no word timings"):
        render(Result("hi", None), "srt", tmp_path / "a.wav")
    assert json.loads(render(Result("hi", None), "json", tmp_path / "a.wav"))["words"] is None
    assert render(Result("", []), "srt", tmp_path / "a.wav") == ""  # silence: an empty file


# -- run_jobs ----------------------------------------------------------------------------------


@dataclass
class FakeServer:
    """A transcribe coroutine: each file's result, or an exception, after a gate opens."""

    fail: dict[str, BaseException] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    running: int = 0
    most: int = 0
    calls: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    async def __call__(self, path: Path) -> BatchResult:
        self.calls.append(path.name)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.01)
            if path.name in self.hang:
                await asyncio.Event().wait()
            if path.name in self.fail:
                raise self.fail[path.name]
            return Result(f"text of {path.name}", [Word(path.stem, 0.0, 0.5)])
        except asyncio.CancelledError:
            self.cancelled.append(path.name)
            raise
        finally:
            self.running -= 1


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes left behind (there must be none)."""
    return [name for name in os.listdir(folder) if name.endswith(".part")]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def files(tmp_path: Path, n: int) -> list[Job]:
    for i in range(n):
        touch(tmp_path / f"f{i:02d}.wav")
    return plan([str(tmp_path)], "srt", None)[0]


@pytest.mark.asyncio
async def test_run_jobs_bounds_concurrency_and_keeps_results_past_a_failure(
    tmp_path: Path,
) -> None:
    jobs = files(tmp_path, 9)
    server = FakeServer(fail={"f03.wav": BadRequestError("corrupt audio", status_code=400)})
    outcome = Outcome(len(jobs))
    err = io.StringIO()
    await run_jobs(
        jobs,
        server,
        "srt",
        concurrency=3,
        progress=Progress(err, len(jobs), tty=False),
        outcome=outcome,
    )
    assert server.most == 3
    assert sorted(server.calls) == [f"f{i:02d}.wav" for i in range(9)]
    assert [(j.source.name, why) for j, why in outcome.failed] == [
        ("f03.wav", "400: corrupt audio")
    ]
    assert len(outcome.done) == 8 and outcome.running == []
    for job in jobs:
        assert job.target.exists() == (job.source.name != "f03.wav")
    assert (tmp_path / "f00.srt").read_text() == "1\n00:00:00,000 --> 00:00:00,500\nf00\n"
    assert leftovers(tmp_path) == []
    lines = err.getvalue().splitlines()
    assert sum(line.startswith("done   ") for line in lines) == 8
    assert [line for line in lines if line.startswith("FAILED")] == [
        f"FAILED {jobs[3].source}: 400: corrupt audio"
    ]
    assert summary(outcome, jobs, interrupted=False) == [
        "8 of 9 files transcribed, 1 failed:",
        f"  {jobs[3].source}: 400: corrupt audio",
    ]


@pytest.mark.asyncio
async def test_cancelling_cancels_the_uploads_and_keeps_what_finished(tmp_path: Path) -> None:
    jobs = files(tmp_path, 5)
    server = FakeServer(hang={"f02.wav", "f03.wav", "f04.wav"})
    outcome = Outcome(len(jobs))
    run = asyncio.create_task(
        run_jobs(
            jobs,
            server,
            "srt",
            concurrency=2,
            progress=Progress(io.StringIO(), len(jobs), tty=False),
            outcome=outcome,
        )
    )
    await until(lambda: server.running == 2 and len(outcome.done) == 2)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(server.cancelled) == ["f02.wav", "f03.wav"]  # f04 never started
    assert server.running == 0 and outcome.running == []
    assert [j.source.name for j in outcome.done] == ["f00.wav", "f01.wav"]
    assert (tmp_path / "f00.srt").exists() and not (tmp_path / "f02.srt").exists()
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing leaked
    assert summary(outcome, jobs, interrupted=True) == [
        "interrupted: 2 of 5 files finished",
        f"  finished (written): {jobs[0].source}, {jobs[1].source}",
        f"  not finished: {jobs[2].source}, {jobs[3].source}, {jobs[4].source}",
    ]


@pytest.mark.asyncio
async def test_a_write_error_is_that_file_failing(tmp_path: Path) -> None:
    jobs = files(tmp_path, 2)
    (tmp_path / "f01.srt").mkdir()  # the target is a directory: the rename fails
    outcome = Outcome(2)
    await run_jobs(
        jobs,
        FakeServer(),
        "srt",
        concurrency=2,
        progress=Progress(io.StringIO(), 2, tty=False),
        outcome=outcome,
    )
    assert [j.source.name for j in outcome.done] == ["f00.wav"]
    assert [j.source.name for j, _ in outcome.failed] == ["f01.wav"]
    assert leftovers(tmp_path) == []


# -- progress and summary ----------------------------------------------------------------------


def test_progress_on_a_terminal_is_one_redrawn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    jobs = [Job(tmp_path / f"{n}.wav", tmp_path / f"{n}.srt") for n in "abc"]
    out = io.StringIO()
    progress = Progress(out, 3, tty=True)
    progress.started(jobs[0])
    progress.started(jobs[1])
    progress.finished_one(jobs[0], 1.0)
    progress.failed_one(jobs[1], "corrupt")
    progress.close()
    text = out.getvalue()
    assert "\n" not in text.replace(f"FAILED {jobs[1].source}: corrupt\n", "")
    frames = [f for f in text.split("\r\x1b[K") if f]
    assert frames[0] == f"[....................] 0/3  {jobs[0].source}"
    assert frames[1] == f"[....................] 0/3  {jobs[0].source} (+1)"
    assert frames[2] == f"[######..............] 1/3  {jobs[1].source}"
    assert frames[3] == f"FAILED {jobs[1].source}: corrupt\n"
    assert frames[4] == "[#############.......] 2/3, 1 failed"
    assert text.endswith("\r\x1b[K")  # closed: the bar is gone


def test_progress_elsewhere_is_plain_lines(tmp_path: Path) -> None:
    job = Job(tmp_path / "a.wav", tmp_path / "a.srt")
    out = io.StringIO()
    progress = Progress(out, 1, tty=False)
    progress.started(job)
    progress.finished_one(job, 2.345, "no speech")
    progress.close()
    assert out.getvalue() == f"done   {job.source} -> {job.target} (2.3 s, no speech)\n"


def test_summary_when_all_went_well(tmp_path: Path) -> None:
    job = Job(tmp_path / "a.wav", tmp_path / "a.srt")
    assert summary(Outcome(1, done=[job]), [job], interrupted=False) == ["1 of 1 files transcribed"]


def test_summary_names_relative_paths_and_cuts_long_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    jobs = [Job(tmp_path / f"{i:02d}.wav", tmp_path / f"{i:02d}.srt") for i in range(25)]
    lines = summary(Outcome(25, done=[]), jobs, interrupted=True)
    assert lines[0] == "interrupted: 0 of 25 files finished"
    assert lines[1] == "  not finished: " + ", ".join(f"{i:02d}.wav" for i in range(20)) + (
        ", and 5 more"
    )


def test_the_bar_fits_the_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    progress = Progress(out, 3, tty=True)
    source = tmp_path / "a-very-long-name-indeed.wav"
    progress.started(Job(source, tmp_path / "a.srt"))
    assert out.getvalue() == "\r\x1b[K" + f"[....................] 0/3  {source}"[:39]
