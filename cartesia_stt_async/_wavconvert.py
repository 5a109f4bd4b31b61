"""Read any common WAV file as audio the realtime endpoint accepts (pure Python, no numpy).

A mono WAV in one of the protocol's six encodings at 8-48 kHz is streamed as it is. Anything
else (stereo, 8-bit, 24-bit, 64-bit float, G.711 with several channels, ...) is converted to
mono ``pcm_s16le`` at the file's own sample rate: channels are averaged, samples rescaled.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidAudioError
from .protocol.audio import WavInfo, parse_wav_header

__all__ = ["LoadedAudio", "load_wav"]

MIN_RATE = 8000
MAX_RATE = 48000

_PCM, _FLOAT, _ALAW, _MULAW = 1, 3, 6, 7


@dataclass(frozen=True)
class LoadedAudio:
    """Audio ready to stream.

    Attributes:
        data: The samples, in ``encoding``.
        encoding: A protocol encoding.
        sample_rate: Samples per second.
        converted: What was converted, in words (empty when streamed as-is).
    """

    data: bytes
    encoding: str
    sample_rate: int
    converted: str = ""


def _g711_table(tag: int) -> list[int]:
    table = []
    for code in range(256):
        if tag == _MULAW:
            u = ~code & 0xFF
            t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
            table.append(0x84 - t if u & 0x80 else t - 0x84)
        else:
            a = code ^ 0x55
            t = (a & 0x0F) << 4
            seg = (a & 0x70) >> 4
            t = t + 8 if seg == 0 else (t + 0x108) << max(seg - 1, 0)
            table.append(t if a & 0x80 else -t)
    return table


def _to_s16(body: bytes, info: WavInfo) -> array[int]:
    """Interleaved samples of any supported WAV format as signed 16-bit values."""
    tag, bits = info.format_tag, info.bits_per_sample
    width = bits // 8
    body = body[: len(body) - len(body) % max(width, 1)]
    if tag == _PCM and bits == 8:
        return array("h", ((v - 128) << 8 for v in body))
    if tag == _PCM and bits in (16, 24, 32):
        # Keep the two most significant bytes of each little-endian sample.
        out = bytearray(len(body) // width * 2)
        out[0::2] = body[width - 2 :: width]
        out[1::2] = body[width - 1 :: width]
        samples = array("h", bytes(out))
    elif tag == _FLOAT and bits in (32, 64):
        floats = array("f" if bits == 32 else "d", body)
        if sys.byteorder == "big":
            floats.byteswap()
        return array("h", (round(max(-1.0, min(1.0, f)) * 32767) for f in floats))
    elif tag in (_MULAW, _ALAW) and bits == 8:
        table = _g711_table(tag)
        return array("h", (table[v] for v in body))
    else:
        raise InvalidAudioError(
            f"WAV format tag {tag} with {bits}-bit samples cannot be read; "
            "convert it to 16-bit PCM first"
        )
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def load_wav(path: str | Path) -> LoadedAudio:
    """Read a WAV file, converting it when the protocol cannot carry it as it is.

    Raises:
        InvalidAudioError: Not a WAV file, an unreadable format, or a sample rate outside
            8000-48000 Hz.
        OSError: The file cannot be read.
    """
    raw = Path(path).read_bytes()
    info = parse_wav_header(raw[: 1 << 16])
    end = info.data_offset + info.data_size if info.data_size else len(raw)
    body = raw[info.data_offset : min(end, len(raw))]
    if not MIN_RATE <= info.sample_rate <= MAX_RATE:
        raise InvalidAudioError(
            f"{path}: {info.sample_rate} Hz is outside the {MIN_RATE}-{MAX_RATE} Hz the API "
            "takes; resample it first"
        )
    if info.channels < 1:
        raise InvalidAudioError(f"{path}: the WAV header says it has no channels")
    if info.encoding is not None and info.channels == 1:
        width = info.bits_per_sample // 8
        return LoadedAudio(body[: len(body) - len(body) % width], info.encoding, info.sample_rate)
    samples = _to_s16(body, info)
    notes = []
    if info.encoding is None:
        notes.append(f"{info.bits_per_sample}-bit format tag {info.format_tag} to 16-bit PCM")
    if info.channels > 1:
        ch = info.channels
        channels = [samples[c::ch] for c in range(ch)]
        samples = array("h", (sum(frame) // ch for frame in zip(*channels, strict=False)))
        notes.append(f"{ch} channels averaged to mono")
    if sys.byteorder == "big":
        samples.byteswap()
    return LoadedAudio(samples.tobytes(), "pcm_s16le", info.sample_rate, "; ".join(notes))
