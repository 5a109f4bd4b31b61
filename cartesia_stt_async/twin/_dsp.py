"""Sample conversion for the twin: the six wire encodings to and from float, and resampling.

Needs numpy and soxr (the ``audio`` extra, which ``twin`` includes). Everything here is
synchronous and CPU-bound: the engine and the speech synthesizer call it from worker threads.

* :func:`decode` turns wire bytes of any encoding into float32 samples in [-1, 1];
  :func:`encode` does the reverse (clipping, rounding to nearest, G.711 companding). They are
  the SDK's own codec (:mod:`cartesia_stt_async.audio` uses the same functions).
* :class:`Resampler` converts a stream between any two integer rates with libsoxr (the
  ``soxr`` package). It keeps state across calls, so feeding a stream in 100 ms pieces gives
  the same samples as feeding it whole.
* :func:`fill_band` gives narrowband audio, resampled to a higher rate, quiet content in the
  band it lacks, for a recognizer whose model was trained on wideband speech.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from .._wavconvert import np_decode, np_encode

__all__ = ["Resampler", "decode", "encode", "fill_band", "to_s16le"]

Float = npt.NDArray[np.float32]


def decode(data: bytes, encoding: str) -> Float:
    """Wire bytes (whole samples) to float32 samples in [-1, 1]."""
    return np_decode(data, encoding)


def encode(samples: Float, encoding: str) -> bytes:
    """Float samples to wire bytes of ``encoding`` (values outside [-1, 1] are clipped)."""
    return np_encode(samples, encoding)


def to_s16le(samples: Float) -> bytes:
    """Float samples to 16-bit little-endian PCM, what pocketsphinx reads."""
    return np_encode(samples, "pcm_s16le")


class Resampler:
    """Streaming resampler between two integer sample rates (libsoxr, through python-soxr).

    Feeding a stream in pieces gives the same samples as feeding it whole (within float
    rounding): the resampler keeps its filter state between calls. Output is aligned with the
    input (no leading delay); what the filter still holds comes out with ``final=True``.

    Args:
        source_rate: Input samples per second.
        target_rate: Output samples per second.
        quality: libsoxr's quality preset (``"HQ"``: 20-bit, flat to 95 % of Nyquist).
    """

    def __init__(self, source_rate: int, target_rate: int, quality: str = "HQ") -> None:
        self.identity = source_rate == target_rate
        self._stream: Any = None
        if not self.identity:
            soxr: Any = importlib.import_module("soxr")  # the ``audio`` extra; untyped
            self._stream = soxr.ResampleStream(
                source_rate, target_rate, 1, dtype="float32", quality=quality
            )

    def process(self, samples: Float, final: bool = False) -> Float:
        """Feed input samples; return the output samples ready now.

        Args:
            samples: The next input samples.
            final: The stream ends here: return the tail (the resampler is then spent).
        """
        if self.identity:
            return samples
        out: Float = self._stream.resample_chunk(
            np.ascontiguousarray(samples, dtype=np.float32), last=final
        )
        return out


FOLD_GAIN = 0.1  # the mirrored band, relative to the speech it mirrors
FILL_NOISE = 1e-3  # RMS of the white noise added in the empty band (full scale is 1)


def fill_band(samples: Float, source_rate: int, rate: int = 16000) -> Float:
    """``samples`` at ``rate`` that came from audio at ``source_rate``: the band above
    ``source_rate / 2``, empty after upsampling, gets a quiet mirror image of the band below
    it and quiet white noise.

    A recognizer trained on wideband speech has filters up to ~7 kHz; telephone audio leaves
    them with no energy at all, which the model never saw (the log of nothing). The mirror
    image (the band below ``rate / 4`` reflected above it, as upsampling without an
    anti-imaging filter would leave it, at :data:`FOLD_GAIN`) carries fricatives' energy up;
    the noise (:data:`FILL_NOISE`, a fixed seed, so the same input gives the same output)
    keeps the rest of the band from being silent. Neither touches the band the audio has.
    Measured on ``benchmarks/twin_quality.py``: see ``docs/twin.md``.
    """
    if source_rate >= rate or len(samples) == 0:  # nothing missing
        return samples
    signs = np.where(np.arange(len(samples)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    rng = np.random.default_rng(0)
    extra = FOLD_GAIN * samples * signs
    extra += FILL_NOISE * rng.standard_normal(len(samples)).astype(np.float32)
    # Keep only what lies above source_rate / 2: remove the band the audio has.
    down, back = Resampler(rate, source_rate), Resampler(source_rate, rate)
    low = down.process(extra, final=True)
    low = np.concatenate([back.process(low), back.process(low[:0], final=True)])
    low = np.pad(low, (0, max(0, len(samples) - len(low))))[: len(samples)]
    high: Float = (samples + extra - low).astype(np.float32)
    return high
