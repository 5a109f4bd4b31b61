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
  3 s utterance), so in-process threads would stall the loop. The loop only pickles small
  messages; waiting for the worker happens on a thread that releases the GIL. Pings, other
  sessions' frames and ``flush_done`` keep flowing while a worker decodes.
* Every encoding and sample rate the protocol allows is converted to 16 kHz 16-bit mono first.
* ``keyterm`` words found in the dictionary are added to that session's language model as
  unigrams; such a decoder is not returned to the pool. Words with no dictionary
  pronunciation (most numbers, new coinages) cannot be boosted: the twin logs a warning
  naming them and recognizes the rest of the session normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ._sphinx_worker import worker_main
from .engines import FinalOrder, RecognizerSession, Segment, SessionParams

__all__ = ["SphinxEngine"]

log = logging.getLogger("cartesia_stt_async.twin")


class RecognizerError(RuntimeError):
    """The recognizer worker failed (its message names the cause)."""


class _Worker:
    """A recognizer process and the pipe to it; one request at a time."""

    def __init__(self, args: tuple[int, bool, float]) -> None:
        self._args = args
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        self.sessions = 0
        self.generation = 0  # one more at every (re)start: sessions of older ones are gone

    def _start(self) -> Connection:
        ctx = multiprocessing.get_context("spawn")  # never fork a process running threads
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=worker_main, args=(child, *self._args), name="twin-sphinx", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self.generation += 1
        return parent

    def call(self, op: str, *args: Any, generation: int | None = None) -> Any:
        """Run ``op`` in the worker and return its result (blocking: call from a thread).

        With ``generation`` (a session's), fail instead of starting a new worker: the
        session's decoder died with the old one.
        """
        with self._lock:
            conn = self._conn
            alive = conn is not None and self._process.is_alive()
            if generation is not None and (not alive or generation != self.generation):
                raise RecognizerError(f"the recognizer process died before {op}")
            if conn is None or not alive:
                conn = self._start()
            try:
                conn.send((op, args))
                status, value = conn.recv()
            except (EOFError, OSError) as exc:
                self._conn = None
                raise RecognizerError(f"the recognizer process died during {op}") from exc
        if status != "ok":
            raise RecognizerError(value)
        return value

    async def kill(self) -> None:
        """Kill the worker process now (for tests of recognizer failure)."""
        process = self._process
        if process is not None:
            process.kill()
            await asyncio.to_thread(process.join, 5.0)

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to quit; kill it if it does not within ``timeout``."""
        with self._lock:
            conn, process, self._conn = self._conn, self._process, None
            if conn is None:
                return
            try:
                conn.send(("quit", ()))
                if conn.poll(timeout):
                    conn.recv()
            except (EOFError, OSError):
                pass
            conn.close()
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)


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

    order: FinalOrder = "finals_first"

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
