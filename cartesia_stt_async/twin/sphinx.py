"""The twin's default recognizer: offline CMU pocketsphinx with its packaged en-us model.

Nothing is downloaded: the pocketsphinx wheel carries the acoustic model, the dictionary and
the language model. Each connection gets its own decoder, fed incrementally as frames arrive
(``start_utt`` / ``process_raw`` / ``hyp`` / ``end_utt``); ``finalize`` ends the utterance and
sends its text as one final delta (with a leading space after the first utterance), with
``words`` timed in seconds from the start of the session.

Costs and limits (measured on a 2-core x86 machine; see ``docs/twin.md``):

* A decoder takes about 90 MiB and 0.2-0.3 s to create. Decoders are pooled: a finished
  session's decoder is reset and reused. The engine caps concurrent sessions
  (``max_sessions``, default 4): the twin answers HTTP 429 at the handshake over the cap.
* Decoding runs in worker processes (``workers``, default 1), never on the event loop:
  pocketsphinx holds the GIL for the whole of a call (``end_utt`` alone takes ~0.1 s for a
  3 s utterance), so in-process threads would stall the loop. Requests and replies are
  pickled and written or read on a helper thread, one call at a time per worker; a thread
  waiting for its worker holds no GIL. Pings, other sessions' frames and ``flush_done`` keep
  flowing while a worker decodes.
* A worker is a program of its own, not a ``multiprocessing`` child: ``sys.executable -c``
  importing :mod:`._sphinx_worker` with the server's ``sys.path``, talking over a private
  pair of pipes (length-prefixed pickle frames; the protocol is in that module). It never
  imports the server's ``__main__``, so the twin runs from a script without a main guard,
  ``python -c``, a notebook or a REPL. Its stdin is ``/dev/null`` and its stdout and stderr
  go to a temporary file, so nothing it prints reaches the pipes or the user's terminal.
* Lifecycle: a worker starts at its first call and again after it died. A dead worker's
  sessions fail (:class:`RecognizerError`, which the twin turns into close 1011) and never
  reach its successor (``generation``); the twin logs how it ended and the end of its output.
  A worker runs in its own session (Ctrl-C is the server's to handle), quits at EOF on its
  request pipe (the server closed it or died), and is stopped with the engine: ``aclose()``,
  or at interpreter exit for an engine nobody closed. Stopping waits for a running call,
  then kills the worker if it has not quit.
* Every encoding and sample rate the protocol allows is converted to 16 kHz 16-bit mono first.
  Narrowband audio (below 11.025 kHz: telephone 8 kHz) is kept per utterance and decoded
  whole at ``finalize``, its missing band filled (``_sphinx_worker._WorkerSession``): its
  words depend on its own audio only. From 11.025 kHz up, finals come from the live decoder.
* ``keyterm`` words found in the dictionary are added to that session's language model as
  unigrams; such a decoder is not returned to the pool. Words with no dictionary
  pronunciation (most numbers, new coinages) cannot be boosted: the twin logs a warning
  naming them and recognizes the rest of the session normally.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Final

from ..protocol.session import ServerOrder
from ._sphinx_worker import read_frame, write_frame
from .engines import RecognizerSession, Segment, SessionParams

__all__ = ["SphinxEngine"]

log = logging.getLogger("cartesia_stt_async.twin")


class RecognizerError(RuntimeError):
    """The recognizer worker failed (its message names the cause)."""


# The worker's program: argv is its two channel fds, then our sys.path (as multiprocessing's
# spawn does), so it imports this very package even when a script, a test runner or a
# notebook put it on the path.
_BOOT: Final = (
    "import sys; sys.path[:] = sys.argv[3:]; "
    f"from {__package__}._sphinx_worker import main; main(int(sys.argv[1]), int(sys.argv[2]))"
)
_OUTPUT_TAIL: Final = 2000  # characters of a dead worker's output put in the log


@dataclass
class _Process:
    """A running worker: the process, its ends of the channel, and its output."""

    popen: subprocess.Popen[bytes]
    requests: IO[bytes]  # the pipe it reads requests from
    replies: IO[bytes]  # the pipe it writes replies to
    log: IO[bytes]  # its stdout and stderr: an unnamed temporary file, read when it dies


class _Worker:
    """A recognizer process and the pipes to it; one request at a time.

    Every method blocks: call them from a thread, never from the event loop.
    """

    def __init__(self, config: tuple[int, bool, float]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._process: _Process | None = None
        self._stopping = False
        self._death = ""  # how the last process ended, for the errors of its sessions
        self.sessions = 0
        self.generation = 0  # one more at every (re)start: sessions of older ones are gone

    def _start(self) -> _Process:
        log_file = tempfile.TemporaryFile()  # noqa: SIM115  # closed by _discard
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        try:
            popen = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(requests_read), str(replies_write), *sys.path],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                pass_fds=(requests_read, replies_write),
                # Its own session: Ctrl-C in the terminal (a REPL's KeyboardInterrupt) is
                # the server's to handle; the worker quits when its request pipe closes.
                start_new_session=True,
            )
        except BaseException:
            for fd in (requests_write, replies_read):
                os.close(fd)
            log_file.close()
            raise
        finally:
            os.close(requests_read)
            os.close(replies_write)
        requests = open(requests_write, "wb")  # noqa: SIM115  # closed by _discard
        replies = open(replies_read, "rb")  # noqa: SIM115
        self._process = _Process(popen, requests, replies, log_file)
        self.generation += 1
        _live_workers.add(self)
        return self._process

    def _discard(self, timeout: float) -> str:
        """Close the pipes and reap the process (killed after ``timeout``); how it ended."""
        process, self._process = self._process, None
        if process is None:
            return ""
        for stream in (process.requests, process.replies):
            with contextlib.suppress(OSError):  # flushing to a dead process
                stream.close()
        try:
            process.popen.wait(timeout)  # EOF on its request pipe: the worker quits
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()
        how = _describe_exit(process.popen.returncode)
        with process.log as log_file:
            log_file.seek(0, os.SEEK_END)
            log_file.seek(max(0, log_file.tell() - _OUTPUT_TAIL))
            tail = log_file.read().decode("utf-8", "replace").strip()
        if not self._stopping:
            log.warning(
                "twin: the recognizer process (pid %d) ended unexpectedly (%s)%s",
                process.popen.pid,
                how,
                f"; the end of its output:\n{tail}" if tail else "",
            )
        return f"{how}: {tail.splitlines()[-1]}" if tail else how

    def call(self, op: str, *args: Any, generation: int | None = None) -> Any:
        """Run ``op`` in the worker and return its result.

        With ``generation`` (a session's), fail instead of starting a new worker: the
        session's decoder died with the old one.

        Raises:
            RecognizerError: The worker died (or could not start), or ``op`` failed in it.
        """
        with self._lock:
            process = self._process
            if process is not None and process.popen.poll() is not None:
                self._death = self._discard(0.0)  # died between calls
                process = None
            if generation is not None and (process is None or generation != self.generation):
                raise RecognizerError(f"the recognizer process died before {op} ({self._death})")
            fresh = process is None
            if process is None:
                try:
                    process = self._start()
                except OSError as exc:
                    raise RecognizerError(f"could not start the recognizer process: {exc}") from exc
            try:
                if fresh:
                    write_frame(process.requests, self._config)
                write_frame(process.requests, (op, args))
                status, value = read_frame(process.replies)
            except Exception as exc:  # EOF, a broken pipe, a corrupt frame: the worker is lost
                self._death = self._discard(2.0)
                raise RecognizerError(
                    f"the recognizer process died during {op} ({self._death})"
                ) from exc
        if status != "ok":
            raise RecognizerError(value)
        return value

    async def kill(self) -> None:
        """Kill the worker process now (for tests of recognizer failure)."""
        process = self._process
        if process is not None:
            process.popen.kill()
            await asyncio.to_thread(process.popen.wait, 5.0)

    @property
    def pid(self) -> int | None:
        """The running worker process's id (``None`` before the first call and after stop)."""
        process = self._process
        return process.popen.pid if process is not None else None

    def stop(self, timeout: float = 2.0) -> None:
        """Close the worker's request pipe (it quits); kill it if not gone within ``timeout``.

        A call still running after ``timeout`` is ended by killing the worker.
        """
        self._stopping = True
        if not self._lock.acquire(timeout=timeout):
            process = self._process
            if process is not None:
                process.popen.kill()  # the stuck call sees EOF and lets go of the lock
            self._lock.acquire()
        try:
            self._discard(timeout)
        finally:
            self._stopping = False
            self._lock.release()
        _live_workers.discard(self)


def _describe_exit(code: int) -> str:
    """A process's return code in words: ``exit code 1``, ``killed by SIGKILL``."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


_live_workers: weakref.WeakSet[_Worker] = weakref.WeakSet()


@atexit.register
def _stop_live_workers() -> None:
    """At interpreter exit, stop workers of engines nobody closed (no orphan processes)."""
    for worker in list(_live_workers):
        worker.stop(timeout=1.0)


class SphinxEngine:
    """Offline speech recognition with pocketsphinx, the twin's default engine.

    Args:
        max_sessions: Concurrent sessions (one decoder each); the twin answers 429 over it.
        interims: Send ``is_final: false`` chunks from partial hypotheses as audio arrives.
        keyterm_weight: Unigram weight of boosted keyterms, relative to uniform.
        workers: Recognizer processes; sessions are spread over them.

    Raises:
        ImportError: Without the ``twin`` extra (pocketsphinx, numpy).

    Attributes:
        order: Finals before ``flush_done`` (current Cartesia docs).
    """

    order: ServerOrder = "finals_first"

    def __init__(
        self,
        *,
        max_sessions: int = 4,
        interims: bool = True,
        keyterm_weight: float = 1.0,
        workers: int = 1,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        import pocketsphinx  # noqa: F401  # fail now, not at the first session, if missing

        self.max_sessions = max_sessions
        self.interims = interims
        idle_per_worker = -(-max_sessions // workers)
        self._workers = [
            _Worker((idle_per_worker, interims, keyterm_weight)) for _ in range(workers)
        ]
        # One thread per possible in-flight call: a waiting thread holds no GIL.
        self._executor = ThreadPoolExecutor(
            max_workers=max_sessions + workers + 1, thread_name_prefix="twin-sphinx"
        )
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<SphinxEngine max_sessions={self.max_sessions} workers={len(self._workers)}>"

    async def _call(
        self, worker: _Worker, op: str, *args: Any, generation: int | None = None
    ) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(worker.call, op, *args, generation=generation)
        return await loop.run_in_executor(self._executor, call)

    async def prewarm(self, count: int = 1) -> None:
        """Start the workers and create ``count`` decoders ahead of the first sessions."""
        per_worker = -(-count // len(self._workers))
        await asyncio.gather(*(self._call(w, "prewarm", per_worker) for w in self._workers))

    async def stats(self) -> list[dict[str, int]]:
        """Per worker: decoders created, idle decoders, open sessions, RSS and peak in KiB."""
        return list(await asyncio.gather(*(self._call(w, "stats") for w in self._workers)))

    async def open(self, params: SessionParams) -> RecognizerSession:
        """A session on the least busy worker, with a pooled (or new) decoder."""
        worker = min(self._workers, key=lambda w: w.sessions)
        sid = next(self._ids)
        language = params.language or "en"
        worker.sessions += 1
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(
            self._executor,
            functools.partial(
                worker.call,
                "open",
                sid,
                params.encoding,
                params.sample_rate,
                language,
                params.keyterms,
            ),
        )
        try:
            unknown = await asyncio.shield(opening)
        except BaseException:
            worker.sessions -= 1
            # Cancelled while the worker was opening: release the session once it exists.
            opening.add_done_callback(functools.partial(self._after_open_abandoned, worker, sid))
            raise
        if unknown:
            log.warning(
                "keyterm word(s) with no pronunciation in the en-us dictionary, not boosted: %s",
                ", ".join(unknown),
            )
        return _SphinxSession(self, worker, sid, language, worker.generation)

    def _after_open_abandoned(
        self, worker: _Worker, sid: int, opening: asyncio.Future[Any]
    ) -> None:
        """Release a session whose opener was cancelled, once the worker has made it."""
        if opening.cancelled() or opening.exception() is not None:
            return  # nothing was made (and the exception is now retrieved)
        with contextlib.suppress(RuntimeError):  # the engine is closing: nothing to keep
            self._executor.submit(worker.call, "release", sid)

    async def aclose(self) -> None:
        """Stop the worker processes and threads (their decoders go with them)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, w.stop) for w in self._workers))
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class _SphinxSession:
    engine: SphinxEngine
    worker: _Worker
    sid: int
    language: str
    generation: int
    released: bool = False

    async def _call(self, op: str, *args: Any) -> Any:
        return await self.engine._call(self.worker, op, self.sid, *args, generation=self.generation)

    async def feed(self, audio: bytes) -> Sequence[Segment]:
        partial = await self._call("feed", audio)
        if partial is None:
            return ()
        return (Segment(partial, is_final=False, language=self.language),)

    async def finalize(self) -> Sequence[Segment]:
        segments: list[Segment] = await self._call("finalize")
        return segments

    async def close(self) -> Sequence[Segment]:
        segments: list[Segment] = await self._call("close")
        return segments

    async def aclose(self) -> None:
        if self.released:
            return
        self.released = True
        self.worker.sessions -= 1
        with contextlib.suppress(RecognizerError):  # a dead worker took the decoder along
            await self._call("release")
