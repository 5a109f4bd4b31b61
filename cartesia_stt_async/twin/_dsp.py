"""Sample conversion for the twin: the six wire encodings to and from float, and resampling.

Needs numpy (the ``twin`` extra). Everything here is synchronous and CPU-bound: the engine and
the speech synthesizer call it from worker threads.

* :func:`decode` turns wire bytes of any encoding into float32 samples in [-1, 1];
  :func:`encode` does the reverse (clipping, rounding to nearest, G.711 companding).
* :class:`Resampler` converts a stream between any two integer rates with a windowed-sinc
  filter. It keeps state across calls, so feeding a stream in 100 ms pieces gives the same
  samples as feeding it whole.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["Resampler", "decode", "encode", "to_s16le"]

Float = npt.NDArray[np.float32]

# G.711 segment end points (the ITU reference g711.c tables).
_MULAW_SEG_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _mulaw_table() -> Float:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    values = np.where(sign != 0, -magnitude, magnitude)
    return (values / 32768.0).astype(np.float32)


def _alaw_table() -> Float:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    values = np.where(sign != 0, magnitude, -magnitude)
    return (values / 32768.0).astype(np.float32)


_MULAW: Final = _mulaw_table()
_ALAW: Final = _alaw_table()


def decode(data: bytes, encoding: str) -> Float:
    """Wire bytes (whole samples) to float32 samples in [-1, 1]."""
    if encoding == "pcm_s16le":
        return np.frombuffer(data, "<i2").astype(np.float32) / np.float32(32768.0)
    if encoding == "pcm_s32le":
        return (np.frombuffer(data, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if encoding == "pcm_f16le":
        return np.nan_to_num(np.frombuffer(data, "<f2").astype(np.float32)).clip(-1.0, 1.0)
    if encoding == "pcm_f32le":
        return np.nan_to_num(np.frombuffer(data, "<f4").astype(np.float32)).clip(-1.0, 1.0)
    if encoding == "pcm_mulaw":
        return _MULAW[np.frombuffer(data, np.uint8)]
    if encoding == "pcm_alaw":
        return _ALAW[np.frombuffer(data, np.uint8)]
    raise ValueError(f"unknown encoding {encoding!r}")


def _pcm16(samples: Float) -> npt.NDArray[np.int32]:
    scaled: npt.NDArray[np.int32] = np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int32)
    return scaled


def _mulaw_encode(samples: Float) -> bytes:
    pcm = _pcm16(samples) >> 2  # 14-bit magnitude domain of G.711 mu-law
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), 8159) + 33
    seg = np.searchsorted(_MULAW_SEG_END, pcm)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((pcm >> np.minimum(seg + 1, 8)) & 0x0F))
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()


def _alaw_encode(samples: Float) -> bytes:
    pcm = _pcm16(samples) >> 3  # 13-bit domain of G.711 A-law
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, pcm)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((pcm >> np.clip(seg, 1, 8)) & 0x0F))
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()


def encode(samples: Float, encoding: str) -> bytes:
    """Float samples to wire bytes of ``encoding`` (values outside [-1, 1] are clipped)."""
    if encoding == "pcm_s16le":
        return _pcm16(samples).astype("<i2").tobytes()
    if encoding == "pcm_s32le":
        wide = np.rint(np.clip(samples.astype(np.float64), -1.0, 1.0) * 2147483647.0)
        return wide.astype("<i4").tobytes()
    if encoding == "pcm_f16le":
        return np.clip(samples, -1.0, 1.0).astype("<f2").tobytes()
    if encoding == "pcm_f32le":
        return np.clip(samples, -1.0, 1.0).astype("<f4").tobytes()
    if encoding == "pcm_mulaw":
        return _mulaw_encode(samples)
    if encoding == "pcm_alaw":
        return _alaw_encode(samples)
    raise ValueError(f"unknown encoding {encoding!r}")


def to_s16le(samples: Float) -> bytes:
    """Float samples to 16-bit little-endian PCM, what pocketsphinx reads."""
    return encode(samples, "pcm_s16le")


class Resampler:
    """Streaming windowed-sinc (Kaiser) resampler between two integer sample rates.

    Output sample ``n`` sits at input position ``n * source_rate / target_rate``; it is the
    sum of the inputs within ``half_width`` (scaled for downsampling) of that position,
    weighted by a low-pass sinc at the lower Nyquist frequency. The stream before its first
    sample and after :meth:`process` with ``final=True`` is silence.

    Args:
        source_rate: Input samples per second.
        target_rate: Output samples per second.
        half_width: Filter half-length in input samples when upsampling.
    """

    def __init__(self, source_rate: int, target_rate: int, half_width: int = 16) -> None:
        g = math.gcd(source_rate, target_rate)
        self.up = target_rate // g
        self.down = source_rate // g
        self.identity = self.up == self.down
        self.cutoff = min(1.0, target_rate / source_rate) * 0.94
        self.half = math.ceil(half_width / min(1.0, target_rate / source_rate))
        self.beta = 8.0
        self._i0_beta = float(np.i0(self.beta))
        self._buf: Float = np.zeros(self.half + 1, dtype=np.float32)  # silence before start
        self._base = -(self.half + 1)  # stream index of _buf[0]
        self._next = 0  # index of the next output sample
        # Weights depend only on the phase (n * down) mod up: tabulate them when few.
        self._table: npt.NDArray[np.float64] | None = None
        if not self.identity and self.up <= 4096:
            phases = np.arange(self.up, dtype=np.float64)[:, None] / self.up
            taps = np.arange(2 * self.half + 2, dtype=np.float64)[None, :] - self.half
            self._table = self._weights(taps - phases)

    def _weights(self, offsets: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        t = np.clip(offsets / (self.half + 1), -1.0, 1.0)
        window = np.i0(self.beta * np.sqrt(1.0 - t * t)) / self._i0_beta
        return self.cutoff * np.sinc(offsets * self.cutoff) * window

    def process(self, samples: Float, final: bool = False) -> Float:
        """Feed input samples; return every output sample that is now fully determined.

        Args:
            samples: The next input samples.
            final: The stream ends here: return the tail (the resampler is then spent).
        """
        if self.identity:
            return samples
        buf = np.concatenate([self._buf, samples.astype(np.float32, copy=False)])
        end = self._base + len(buf)  # one past the last stream index received
        if final:
            buf = np.concatenate([buf, np.zeros(self.half + 2, dtype=np.float32)])
            last = (end * self.up - 1) // self.down  # outputs up to the end of the input
        else:
            ready = end - self.half - 2  # floor(position) of the last computable output
            last = ((ready + 1) * self.up - 1) // self.down
        count = last - self._next + 1
        if count <= 0:
            self._buf = buf if not final else self._buf
            return np.zeros(0, dtype=np.float32)
        n = np.arange(self._next, last + 1, dtype=np.int64)
        left = (n * self.down) // self.up - self.half
        idx = left[:, None] + np.arange(2 * self.half + 2, dtype=np.int64)[None, :]
        if self._table is not None:
            weights = self._table[(n * self.down) % self.up]
        else:
            weights = self._weights(idx - (n * self.down / self.up)[:, None])
        out: Float = (buf[idx - self._base] * weights).sum(axis=1).astype(np.float32)
        self._next = last + 1
        keep_from = (self._next * self.down) // self.up - self.half
        drop = max(0, keep_from - self._base)
        self._buf = buf[drop:]
        self._base += drop
        return out
