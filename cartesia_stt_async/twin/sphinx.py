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
import re
import resource
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from ..protocol.audio import BYTES_PER_SAMPLE
from . import _dsp
from .engines import FinalOrder, RecognizerSession, Segment, SessionParams

__all__ = ["SphinxEngine"]

log = logging.getLogger("cartesia_stt_async.twin")

DECODER_RATE: Final = 16000
# 20 ms of 16-bit audio per process_raw call. The block size slightly changes pocketsphinx's
# results (one call per 100 ms frame: WER 0.160 vs 0.154 over the benchmark's sentences), so it
# is fixed here, whatever the client's frame size.
_SLICE_BYTES: Final = DECODER_RATE * 2 // 50
_FRAMES_PER_SECOND: Final = 100  # pocketsphinx feature frames
_ALT_PRONUNCIATION = re.compile(r"\(\d+\)$")


def _new_decoder() -> Any:
    from pocketsphinx import Decoder  # the ``twin`` extra

    return Decoder(samprate=DECODER_RATE, loglevel="FATAL")


def _clean_word(word: str) -> str | None:
    """A segment's word as text, or ``None`` for silence, fillers and sentence markers."""
    if not word or word[0] in "<[" or word.startswith("++"):
        return None
    return _ALT_PRONUNCIATION.sub("", word)


@dataclass
class _DecoderState:
    """One decoder and where its session's audio stands."""

    decoder: Any
    in_utterance: bool = False
    samples: int = 0  # 16 kHz samples decoded this session
    utterance_start: int = 0  # ``samples`` when the current utterance started
    dirty: bool = False  # language model changed: do not pool


class RecognizerError(RuntimeError):
    """The recognizer worker failed (its message names the cause)."""


# --- the worker process side ---------------------------------------------------------------


@dataclass
class _WorkerSession:
    """One connection's decoding state, inside a worker process."""

    state: _DecoderState
    encoding: str
    language: str
    interims: bool
    width: int = field(init=False)
    rest: bytes = b""
    finals_sent: int = 0
    last_interim: str = ""

    def __post_init__(self) -> None:
        self.width = BYTES_PER_SAMPLE[self.encoding]

    def decode(self, audio: bytes, resampler: _dsp.Resampler, final: bool) -> str | None:
        """Convert and decode ``audio``; return the new partial hypothesis, if it changed."""
        state = self.state
        data = self.rest + audio
        cut = len(data) - len(data) % self.width
        self.rest = data[cut:]
        pcm = _dsp.to_s16le(resampler.process(_dsp.decode(data[:cut], self.encoding), final))
        if not pcm:
            return None
        decoder = state.decoder
        if not state.in_utterance:
            decoder.start_utt()
            state.in_utterance = True
            state.utterance_start = state.samples
        for i in range(0, len(pcm), _SLICE_BYTES):
            decoder.process_raw(pcm[i : i + _SLICE_BYTES], False, False)
        state.samples += len(pcm) // 2
        if not self.interims:
            return None
        hyp = decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if not text or text == self.last_interim:
            return None
        self.last_interim = text
        return " " + text if self.finals_sent else text

    def end(self) -> list[Segment]:
        """End the utterance; its words as one final delta (none for silence)."""
        state = self.state
        if not state.in_utterance:
            return []
        decoder = state.decoder
        decoder.end_utt()
        state.in_utterance = False
        self.last_interim = ""
        offset = state.utterance_start / DECODER_RATE
        words: list[tuple[str, float, float]] = []
        for seg in decoder.seg() or ():
            word = _clean_word(seg.word)
            if word is not None:
                start = offset + seg.start_frame / _FRAMES_PER_SECOND
                end = offset + (seg.end_frame + 1) / _FRAMES_PER_SECOND
                words.append((word, round(start, 3), round(end, 3)))
        if not words:
            return []
        text = " ".join(w for w, _, _ in words)
        if self.finals_sent:
            text = " " + text
        self.finals_sent += 1
        duration = (state.samples - state.utterance_start) / DECODER_RATE
        return [
            Segment(
                text,
                is_final=True,
                duration=round(duration, 3),
                language=self.language,
                words=tuple(words),
            )
        ]


class _Recognizer:
    """Everything a worker process holds: the decoder pool and its sessions."""

    def __init__(self, max_idle: int, interims: bool, keyterm_weight: float) -> None:
        self.max_idle = max_idle
        self.interims = interims
        self.keyterm_weight = keyterm_weight
        self.created = 0
        self.idle: list[_DecoderState] = []
        self.sessions: dict[int, tuple[_WorkerSession, _dsp.Resampler]] = {}

    def _create(self) -> _DecoderState:
        decoder = _new_decoder()
        self.created += 1
        return _DecoderState(decoder)

    def prewarm(self, count: int) -> None:
        while len(self.idle) < min(count, self.max_idle):
            self.idle.append(self._create())

    def open(
        self, sid: int, encoding: str, rate: int, language: str, keyterms: Sequence[str]
    ) -> list[str]:
        state = self.idle.pop() if self.idle else self._create()
        session = _WorkerSession(state, encoding, language, self.interims)
        self.sessions[sid] = (session, _dsp.Resampler(rate, DECODER_RATE))
        return sorted(self._boost(state, keyterms)) if keyterms else []

    def _boost(self, state: _DecoderState, keyterms: Sequence[str]) -> set[str]:
        decoder = state.decoder
        lm = decoder.get_lm()
        unknown: set[str] = set()
        added = False
        for term in keyterms:
            for word in term.lower().split():
                if decoder.lookup_word(word) is None:
                    unknown.add(word)
                else:
                    lm.add_word(word, self.keyterm_weight)
                    added = True
        if added:
            state.dirty = True
            decoder.add_lm("keyterms", lm)
            decoder.activate_search("keyterms")
        return unknown

    def feed(self, sid: int, audio: bytes) -> str | None:
        session, resampler = self.sessions[sid]
        return session.decode(audio, resampler, final=False)

    def finalize(self, sid: int) -> list[Segment]:
        return self.sessions[sid][0].end()

    def close(self, sid: int) -> list[Segment]:
        session, resampler = self.sessions[sid]
        session.decode(b"", resampler, final=True)
        return session.end()

    def release(self, sid: int) -> None:
        session, _ = self.sessions.pop(sid)
        state = session.state
        if state.in_utterance:
            state.decoder.end_utt()
        if state.dirty or len(self.idle) >= self.max_idle:
            return  # dropped: its memory goes with it
        # Fresh feature state (cepstral mean, noise estimate): a reused decoder then gives
        # exactly what a new one would.
        state.decoder.reinit_feat()
        self.idle.append(_DecoderState(state.decoder))

    def stats(self) -> dict[str, int]:
        return {
            "decoders_created": self.created,
            "idle_decoders": len(self.idle),
            "sessions": len(self.sessions),
            "rss_kib": _rss_kib(),
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }


def _rss_kib() -> int:
    """This process's resident memory now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _worker_main(conn: Connection, max_idle: int, interims: bool, keyterm_weight: float) -> None:
    """A worker process: answer ``(op, args)`` requests until ``quit`` or EOF."""
    recognizer = _Recognizer(max_idle, interims, keyterm_weight)
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if op == "quit":
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(recognizer, op)(*args)))
        except Exception as exc:  # reported to the caller, the worker goes on
            conn.send(("err", f"{op} failed: {type(exc).__name__}: {exc}"))


# --- the server side --------------------------------------------------------------------------


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
            target=_worker_main, args=(child, *self._args), name="twin-sphinx", daemon=True
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
