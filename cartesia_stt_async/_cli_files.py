"""``cartesia-stt transcribe FILE...``: many files through the batch endpoint, a few at a time.

The pieces, each testable alone:

* :func:`plan` turns the command line's files and directories into :class:`Job` s: every file
  named, and the audio files found under every directory named (recursively, dot-files
  skipped), each with the file its result goes to. It fails before anything is sent: a missing
  path, nothing to transcribe, two inputs that would write the same file.
* :func:`run_jobs` runs the jobs with at most ``jobs`` transcriptions at once, through any
  ``transcribe(path)`` coroutine function (the CLI passes the client's batch call; tests pass
  their own). A file that fails is recorded and the others go on; a finished result is written
  at once (atomically: a reader never sees half a file), so an interruption keeps it.
* :class:`Progress` shows it: a redrawn bar on a terminal, one plain line per file otherwise.
* :func:`summary` says what happened: the failures file by file, and after Ctrl-C what was
  finished and what was not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TextIO

from .errors import CartesiaSTTError, UsageError
from .subtitles import TimedWord, to_srt, to_vtt

__all__ = [
    "AUDIO_SUFFIXES",
    "FORMATS",
    "BatchResult",
    "Format",
    "Job",
    "Outcome",
    "Progress",
    "Transcribe",
    "plan",
    "render",
    "run_jobs",
    "summary",
]

AUDIO_SUFFIXES = (
    ".flac",
    ".m4a",
    ".mp3",
    ".mp4",
    ".mpeg",
    ".mpga",
    ".oga",
    ".ogg",
    ".wav",
    ".webm",
)
"""What a directory is searched for: the containers the batch endpoint decodes."""

Format = Literal["text", "json", "srt", "vtt"]
FORMATS: dict[Format, str] = {"text": ".txt", "json": ".json", "srt": ".srt", "vtt": ".vtt"}
"""Each output format and the suffix of the files it writes."""


class BatchResult(Protocol):
    """What the CLI reads from a transcription (the batch ``transcribe`` result)."""

    @property
    def text(self) -> str: ...
    @property
    def words(self) -> Sequence[TimedWord] | None: ...
    @property
    def duration(self) -> float | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...


Transcribe = Callable[[Path], Awaitable[BatchResult]]
"""``await transcribe(path)``: one file's transcription."""


@dataclass(frozen=True)
class Job:
    """One file to transcribe and where its result goes.

    Attributes:
        source: The audio file.
        target: The file written with the result.
    """

    source: Path
    target: Path


def _found(arg: str) -> list[tuple[Path, Path]]:
    """The files one argument names, each with its path relative to the argument."""
    path = Path(arg)
    if path.is_dir():
        return [
            (found, found.relative_to(path))
            for found in sorted(path.rglob("*"))
            if found.suffix.lower() in AUDIO_SUFFIXES
            and found.is_file()
            and not any(part.startswith(".") for part in found.relative_to(path).parts)
        ]
    if path.is_file():
        return [(path, Path(path.name))]
    if not path.exists():
        raise UsageError(f"{arg}: no such file or directory")
    raise UsageError(f"{arg}: not a file or a directory")


def plan(inputs: Sequence[str], fmt: Format, out: Path | None) -> tuple[list[Job], list[str]]:
    """The jobs for the command line's files and directories.

    A result goes next to its file (``talk.wav`` → ``talk.srt``), or with ``out`` under that
    folder, at the file's path relative to the directory argument it was found in. Two inputs
    that would write the same file (``talk.wav`` and ``talk.mp3``) keep their suffix instead
    (``talk.wav.srt``, ``talk.mp3.srt``), as does a result that would overwrite an input
    (``notes.txt`` gives ``notes.txt.txt``).

    Args:
        inputs: Files (taken whatever their suffix) and directories (searched for
            :data:`AUDIO_SUFFIXES`, recursively, skipping names that start with a dot).
        fmt: The output format.
        out: The folder to write into, or ``None`` for next to each file.

    Returns:
        The jobs, in the order given (a directory's files sorted), each file once; and the
        directory arguments with no audio file in them.

    Raises:
        UsageError: A path that does not exist, nothing to transcribe at all, or two inputs
            that would still write the same file.
    """
    suffix = FORMATS[fmt]
    sources: dict[Path, Path] = {}  # resolved source -> base path of its result
    empty: list[str] = []
    for arg in inputs:
        found = _found(arg)
        if not found:
            empty.append(arg)
        for source, relative in found:
            key = source.resolve()
            if key not in sources:
                sources[key] = (out / relative) if out is not None else source
    if not sources:
        wanted = " ".join(AUDIO_SUFFIXES)
        raise UsageError(f"no audio files in {', '.join(inputs)} (looked for {wanted})")
    targets = {key: base.with_suffix(suffix) for key, base in sources.items()}
    taken: dict[Path, list[Path]] = {}
    for key, target in targets.items():
        taken.setdefault(target.resolve(), []).append(key)
    for key, base in sources.items():
        target = targets[key]
        if len(taken[target.resolve()]) > 1 or target.resolve() in sources:
            targets[key] = base.with_name(base.name + suffix)
    seen: dict[Path, Path] = {}
    for key, target in targets.items():
        other = seen.setdefault(target.resolve(), key)
        if other != key:
            raise UsageError(f"{other} and {key} would both write {target}: transcribe them apart")
    return [Job(key, targets[key]) for key in sources], empty


def render(result: BatchResult, fmt: Format, source: Path) -> str:
    """One result as the text of its output file.

    Args:
        result: The transcription.
        fmt: ``text`` (the transcript and a newline), ``json`` (text, language, duration,
            request id, words), ``srt`` or ``vtt`` (cut by :func:`~cartesia_stt_async.cues`
            with its defaults).
        source: The audio file (named in the JSON).

    Raises:
        UsageError: Subtitles from a result without word timings, or with impossible ones.
    """
    if fmt == "text":
        return result.text.strip() + "\n"
    words = result.words
    if fmt == "json":
        document = {
            "file": str(source),
            "text": result.text,
            "language": result.language,
            "duration": result.duration,
            "request_id": result.request_id,
            "words": None
            if words is None
            else [{"word": w.word, "start": w.start, "end": w.end} for w in words],
        }
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if words is None:
        raise UsageError("the server sent no word timings, so no subtitles")
    return to_srt(words) if fmt == "srt" else to_vtt(words)


def _write(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically: a temporary file beside it, then a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@dataclass
class Outcome:
    """What :func:`run_jobs` did so far (filled in as it goes, so it survives a cancel).

    Attributes:
        total: The number of jobs.
        done: The finished jobs, in the order they finished.
        failed: The failed jobs and why, in the order they failed.
        running: The jobs under way.
    """

    total: int
    done: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)
    running: list[Job] = field(default_factory=list)


def _name(path: Path) -> str:
    """A path as the user will recognise it: relative to the working directory when inside it."""
    with contextlib.suppress(ValueError, OSError):  # OSError: the working directory is gone
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class Progress:
    """How the run shows itself: a bar redrawn in place on a terminal, plain lines otherwise.

    Args:
        stream: Where to write (standard error).
        total: The number of files.
        tty: A terminal (the bar) or not (one line per finished or failed file).
    """

    def __init__(self, stream: TextIO, total: int, *, tty: bool) -> None:
        self.stream = stream
        self.total = total
        self.tty = tty
        self.finished = 0
        self.failures = 0
        self.running: list[Job] = []
        self._drawn = False

    def _bar(self) -> str:
        width = shutil.get_terminal_size((80, 24)).columns
        cells = 20
        filled = (self.finished + self.failures) * cells // max(self.total, 1)
        head = f"[{'#' * filled}{'.' * (cells - filled)}] {self.finished + self.failures}/"
        head += f"{self.total}"
        if self.failures:
            head += f", {self.failures} failed"
        if self.running:
            head += f"  {_name(self.running[0].source)}"
            if len(self.running) > 1:
                head += f" (+{len(self.running) - 1})"
        return head[: width - 1]

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self._bar())
            self._drawn = True
            self.stream.flush()

    def _line(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self._draw()
        self.stream.flush()

    def started(self, job: Job) -> None:
        """A file's upload begins."""
        self.running.append(job)
        self._draw()

    def finished_one(self, job: Job, seconds: float, note: str = "") -> None:
        """A file's result was written."""
        self.running.remove(job)
        self.finished += 1
        if self.tty:
            self._draw()
        else:
            extra = f", {note}" if note else ""
            self._line(
                f"done   {_name(job.source)} -> {_name(job.target)} ({seconds:.1f} s{extra})"
            )

    def failed_one(self, job: Job, why: str) -> None:
        """A file failed (shown on a terminal too: above the bar)."""
        self.running.remove(job)
        self.failures += 1
        self._line(f"FAILED {_name(job.source)}: {why}")

    def close(self) -> None:
        """Take the bar away (before the summary)."""
        self._clear()
        self.stream.flush()


async def run_jobs(
    jobs: Sequence[Job],
    transcribe: Transcribe,
    fmt: Format,
    *,
    concurrency: int,
    progress: Progress,
    outcome: Outcome,
) -> None:
    """Transcribe every job, at most ``concurrency`` at once; write each result as it comes.

    A failure (an error of this package, such as a refused or undecodable file, or an
    ``OSError`` writing the result) is recorded in ``outcome`` and shown; the other files go
    on. (Retrying a 429 or a 5xx is the client's job: its ``max_retries``.) Cancelling
    cancels the uploads under way and waits for them; ``outcome`` then says what finished.

    Args:
        jobs: What to do (from :func:`plan`).
        transcribe: ``await transcribe(path)`` gives one file's result.
        fmt: The output format.
        concurrency: The most transcriptions at once (``--jobs``).
        progress: Where progress shows.
        outcome: Filled in as files finish or fail.
    """
    pending = iter(jobs)

    async def one(job: Job) -> None:
        began = time.monotonic()
        outcome.running.append(job)
        progress.started(job)
        try:
            result = await transcribe(job.source)
            text = render(result, fmt, job.source)
            _write(job.target, text)
        except (CartesiaSTTError, OSError) as exc:
            outcome.running.remove(job)
            outcome.failed.append((job, _why(exc)))
            progress.failed_one(job, _why(exc))
            return
        except BaseException:
            outcome.running.remove(job)
            raise
        outcome.running.remove(job)
        outcome.done.append(job)
        note = "no speech" if not result.text.strip() else ""
        progress.finished_one(job, time.monotonic() - began, note)

    async def worker() -> None:
        for job in pending:  # one shared iterator: each job is taken by one worker
            await one(job)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(jobs))):
            group.create_task(worker())


def _names(jobs: Sequence[Job], limit: int = 20) -> str:
    names = [_name(job.source) for job in jobs[:limit]]
    if len(jobs) > limit:
        names.append(f"and {len(jobs) - limit} more")
    return ", ".join(names)


def summary(outcome: Outcome, jobs: Sequence[Job], *, interrupted: bool) -> list[str]:
    """The closing lines: counts, each failure and why, and after an interruption what
    finished and what did not.

    Args:
        outcome: What happened.
        jobs: Every job, in order.
        interrupted: Whether the run was stopped (Ctrl-C).
    """
    lines: list[str] = []
    done, failed = len(outcome.done), len(outcome.failed)
    if interrupted:
        ended = {job for job in outcome.done} | {job for job, _ in outcome.failed}
        unfinished = [job for job in jobs if job not in ended]
        lines.append(f"interrupted: {done} of {outcome.total} files finished")
        if outcome.done:
            lines.append(f"  finished (written): {_names(outcome.done)}")
        if unfinished:
            lines.append(f"  not finished: {_names(unfinished)}")
    elif failed:
        lines.append(f"{done} of {outcome.total} files transcribed, {failed} failed:")
    else:
        lines.append(f"{done} of {outcome.total} files transcribed")
    if failed and interrupted:
        lines.append(f"  {failed} failed:")
    lines += [f"  {_name(job.source)}: {why}" for job, why in outcome.failed]
    return lines
