"""The worker-process side of :class:`~.sphinx.SphinxEngine`: decoders and their sessions.

A worker process holds a pool of pocketsphinx decoders and one :class:`_WorkerSession` per
connection; :func:`worker_main` answers ``(op, args)`` requests from the server process over
a pipe. Nothing here runs on the server's event loop.
"""

from __future__ import annotations

import re
import resource
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from ..protocol.audio import BYTES_PER_SAMPLE
from . import _dsp
from .engines import Segment

__all__ = ["DECODER_RATE", "worker_main"]

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


def worker_main(conn: Connection, max_idle: int, interims: bool, keyterm_weight: float) -> None:
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
