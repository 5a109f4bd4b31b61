"""Shared speech material for the recognizer tests: one engine per test run, cached audio.

A pocketsphinx decoder costs ~90 MiB and ~0.3 s to build, so the tests share one pooled
:class:`SphinxEngine` (its own worker threads work with every test's event loop).
"""

from __future__ import annotations

import functools

import numpy as np

from cartesia_stt_async.twin import _dsp
from cartesia_stt_async.twin._tts import Synthesizer, TTSRequest
from cartesia_stt_async.twin.sphinx import SphinxEngine

SEED = ("The quick brown fox jumps over the lazy dog", "Sandy sells seashells on the sea shore")


@functools.cache
def shared_engine() -> SphinxEngine:
    """The test run's engine (interims on, four sessions)."""
    return SphinxEngine(max_sessions=4)


@functools.cache
def _synthesizer() -> Synthesizer:
    return Synthesizer()


@functools.cache
def speech(text: str, encoding: str = "pcm_s16le", sample_rate: int = 16000) -> bytes:
    """``text`` spoken by the twin's voice, as raw audio in ``encoding`` at ``sample_rate``."""
    return _synthesizer().synthesize(TTSRequest(text, "raw", encoding, sample_rate, "en"))


def convert(audio: bytes, encoding: str, sample_rate: int) -> bytes:
    """16 kHz ``pcm_s16le`` audio converted to another encoding and rate."""
    samples = _dsp.decode(audio, "pcm_s16le")
    if sample_rate != 16000:
        resampler = _dsp.Resampler(16000, sample_rate)
        samples = np.concatenate(
            [resampler.process(samples), resampler.process(samples[:0], final=True)]
        )
    return _dsp.encode(samples, encoding)
