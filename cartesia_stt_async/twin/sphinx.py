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
* Decoding runs on worker threads, never on the event loop. pocketsphinx holds the GIL while
  it decodes, so all sessions share about one core; audio is fed in 20 ms slices so the loop
  gets the GIL back every few milliseconds (pings, other sessions and ``flush_done`` flow).
* Every encoding and sample rate the protocol allows is converted to 16 kHz 16-bit mono first.
* ``keyterm`` words found in the dictionary are added to that session's language model as
  unigrams; such a decoder is not returned to the pool. Words with no dictionary
  pronunciation (most numbers, new coinages) cannot be boosted: the twin logs a warning
  naming them and recognizes the rest of the session normally.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from ..protocol.audio import BYTES_PER_SAMPLE
from . import _dsp
from .engines import FinalOrder, RecognizerSession, Segment, SessionParams

__all__ = ["SphinxEngine"]

log = logging.getLogger("cartesia_stt_async.twin")

DECODER_RATE: Final = 16000
_SLICE_BYTES: Final = DECODER_RATE * 2 // 50  # 20 ms of 16-bit audio per process_raw call
_FRAMES_PER_SECOND: Final = 100  # pocketsphinx feature frames
_ALT_PRONUNCIATION = re.compile(r"\(\d+\)$")
_T = TypeVar("_T")


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
    initial_cmn: str
    in_utterance: bool = False
    samples: int = 0  # 16 kHz samples decoded this session
    utterance_start: int = 0  # ``samples`` when the current utterance started
    dirty: bool = False  # language model changed: do not pool


class SphinxEngine:
    """Offline speech recognition with pocketsphinx, the twin's default engine.

    Raises:
        ImportError: Without the ``twin`` extra (pocketsphinx, numpy).

    Args:
        max_sessions: Concurrent sessions (one decoder each); the twin answers 429 over it.
        interims: Send ``is_final: false`` chunks from partial hypotheses as audio arrives.
        keyterm_weight: Unigram weight of boosted keyterms, relative to uniform.
        threads: Worker threads that run the decoders.

    Attributes:
        order: Finals before ``flush_done`` (current Cartesia docs).
        decoders_created: Decoders built so far (each about 90 MiB, 0.2-0.3 s).
    """

    order: FinalOrder = "finals_first"

    def __init__(
        self,
        *,
        max_sessions: int = 4,
        interims: bool = True,
        keyterm_weight: float = 1.0,
        threads: int = 2,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        import pocketsphinx  # noqa: F401  # fail now, not at the first session, if missing
        self.max_sessions = max_sessions
        self.interims = interims
        self.keyterm_weight = keyterm_weight
        self.decoders_created = 0
        self._idle: list[_DecoderState] = []
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="twin-sphinx")

    def __repr__(self) -> str:
        return (
            f"<SphinxEngine max_sessions={self.max_sessions} "
            f"created={self.decoders_created} idle={len(self._idle)}>"
        )

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the engine's worker threads."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _create(self) -> _DecoderState:
        decoder = _new_decoder()
        self.decoders_created += 1
        return _DecoderState(decoder, decoder.get_cmn(False))

    async def prewarm(self, count: int = 1) -> None:
        """Create decoders ahead of the first sessions (at most ``max_sessions`` idle)."""
        while len(self._idle) < min(count, self.max_sessions):
            self._idle.append(await self.run(self._create))

    async def open(self, params: SessionParams) -> RecognizerSession:
        """A session with a pooled (or new) decoder, its keyterms added."""
        state = self._idle.pop() if self._idle else await self.run(self._create)
        session = _SphinxSession(self, params, state)
        if params.keyterms:
            unknown = await self.run(self._boost, state, params.keyterms)
            if unknown:
                log.warning(
                    "keyterm word(s) with no pronunciation in the en-us dictionary, "
                    "not boosted: %s",
                    ", ".join(sorted(unknown)),
                )
        return session

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

    def release(self, state: _DecoderState) -> None:
        """Return a session's decoder to the pool (sync, on a worker thread)."""
        if state.in_utterance:
            state.decoder.end_utt()
        if state.dirty or len(self._idle) >= self.max_sessions:
            return  # dropped: its memory goes with it
        state.decoder.set_cmn(state.initial_cmn)
        self._idle.append(_DecoderState(state.decoder, state.initial_cmn))

    async def aclose(self) -> None:
        """Drop idle decoders and stop the worker threads."""
        self._idle.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class _SphinxSession:
    engine: SphinxEngine
    params: SessionParams
    state: _DecoderState | None
    language: str = field(init=False)
    width: int = field(init=False)
    rest: bytes = b""
    finals_sent: int = 0
    last_interim: str = ""

    def __post_init__(self) -> None:
        self.language = self.params.language or "en"
        self.width = BYTES_PER_SAMPLE[self.params.encoding]
        self.resampler = _dsp.Resampler(self.params.sample_rate, DECODER_RATE)

    # --- worker-thread side -------------------------------------------------------------

    def _decode(self, audio: bytes, final: bool) -> str | None:
        """Convert and decode ``audio``; return the partial hypothesis if it changed."""
        state = self.state
        assert state is not None
        data = self.rest + audio
        cut = len(data) - len(data) % self.width
        self.rest = data[cut:]
        samples = self.resampler.process(_dsp.decode(data[:cut], self.params.encoding), final)
        pcm = _dsp.to_s16le(samples)
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
        if not self.engine.interims:
            return None
        hyp = decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text and text != self.last_interim:
            self.last_interim = text
            return text
        return None

    def _end(self) -> list[Segment]:
        state = self.state
        assert state is not None
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
                words.append(
                    (
                        word,
                        round(offset + seg.start_frame / _FRAMES_PER_SECOND, 3),
                        round(offset + (seg.end_frame + 1) / _FRAMES_PER_SECOND, 3),
                    )
                )
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

    def _close(self) -> list[Segment]:
        self._decode(b"", final=True)
        return self._end()

    # --- RecognizerSession ---------------------------------------------------------------

    async def feed(self, audio: bytes) -> Sequence[Segment]:
        partial = await self.engine.run(self._decode, audio, False)
        if partial is None:
            return ()
        text = " " + partial if self.finals_sent else partial
        return (Segment(text, is_final=False, language=self.language),)

    async def finalize(self) -> Sequence[Segment]:
        return await self.engine.run(self._end)

    async def close(self) -> Sequence[Segment]:
        return await self.engine.run(self._close)

    async def aclose(self) -> None:
        state, self.state = self.state, None
        if state is not None:
            await self.engine.run(self.engine.release, state)
