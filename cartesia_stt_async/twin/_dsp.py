"""Sample conversion for the twin: the six wire encodings to and from float, and resampling.

Needs numpy and soxr (the ``audio`` extra, which ``twin`` includes). Everything here is
synchronous and CPU-bound: the engine and the speech synthesizer call it from worker threads.

* :func:`decode` turns wire bytes of any encoding into float32 samples in [-1, 1];
  :func:`encode` does the reverse (clipping, rounding to nearest, G.711 companding). They are
  the SDK's own codec (:mod:`cartesia_stt_async.audio` uses the same functions).
* :class:`Resampler` converts a stream between any two integer rates with libsoxr (the
  ``soxr`` package). It keeps state across calls, so feeding a stream in 100 ms pieces gives
  the same samples as feeding it whole.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from .._wavconvert import np_decode, np_encode

__all__ = ["Resampler", "decode", "encode", "to_s16le"]

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
