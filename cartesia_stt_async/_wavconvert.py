"""The conversion engine behind :mod:`cartesia_stt_async.audio`, the CLI and the twin.

Samples travel as float32 in [-1, 1]. There are two codecs with identical results, so that
numpy stays optional:

* numpy (``np_decode``/``np_encode``, vectorized; the ``audio`` extra), used when installed;
* pure Python (``py_decode``/``py_encode``, ``array`` and ``struct``), used without numpy.

Both read every common WAV sample format (8-bit unsigned, 16/24/32-bit integer, 16/32/64-bit
float, mu-law and A-law) and write the six protocol encodings; channels are averaged to mono.
Resampling needs libsoxr (the ``soxr`` package, with numpy): without it,
:class:`ResamplingUnavailableError` says what to install.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import struct
import sys
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeAlias

from ._install import install_hint
from ._translate import file_error
from .errors import ConfigurationError, InvalidAudioError, UsageError
from .protocol.audio import (
    BYTES_PER_SAMPLE,
    WAV_ENCODINGS,
    WAVE_FORMAT_ALAW,
    WAVE_FORMAT_IEEE_FLOAT,
    WAVE_FORMAT_MULAW,
    WAVE_FORMAT_PCM,
    WavInfo,
    g711_decode_table,
    parse_wav_header,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Float = npt.NDArray[np.float32]

__all__ = [
    "ResamplingUnavailableError",
    "WavSource",
    "encode_mono",
    "np_decode",
    "np_encode",
    "py_decode",
    "py_encode",
    "require_resampler",
    "resample",
    "sample_format_name",
]

WavSource: TypeAlias = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]
"""A WAV file: its bytes, a path, or a binary file object (read to the end)."""

AUDIO_EXTRA: Final = install_hint("audio")

_PCM, _FLOAT, _ALAW, _MULAW = (
    WAVE_FORMAT_PCM,
    WAVE_FORMAT_IEEE_FLOAT,
    WAVE_FORMAT_ALAW,
    WAVE_FORMAT_MULAW,
)
_TAG_NAMES: Final = {
    1: "PCM",
    2: "MS ADPCM",
    3: "IEEE float",
    6: "A-law",
    7: "mu-law",
    17: "IMA ADPCM",
}
_BIG_ENDIAN: Final = sys.byteorder == "big"


class ResamplingUnavailableError(ConfigurationError, ImportError):
    """Resampling was needed but soxr and numpy (the ``audio`` extra) are not installed."""


# --- sources ---------------------------------------------------------------------------------


def read_source(source: WavSource) -> tuple[bytes, str]:
    """The bytes of a WAV source, and a name for messages (the path, or ``"WAV data"``).

    Raises:
        UsageError: For a source of another type, a file object opened in text mode, or a
            path that cannot be read (naming the path and the reason).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "WAV data"
    if isinstance(source, str | os.PathLike):
        try:
            return Path(source).read_bytes(), os.fspath(source)
        except OSError as exc:
            error = file_error(os.fspath(source), exc)
        raise error  # outside the except block: the OSError is not kept
    read = getattr(source, "read", None)
    if read is None:
        raise UsageError(
            f"a WAV source is bytes, a path or a binary file object, got {type(source).__name__}"
        )
    data = read()
    if not isinstance(data, bytes | bytearray):
        raise UsageError("the WAV file object must be opened in binary mode ('rb')")
    return bytes(data), str(getattr(source, "name", "WAV data"))


# --- G.711 ------------------------------------------------------------------------------------

# Segment end points (the ITU reference g711.c tables).
_MULAW_SEG_END: Final = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END: Final = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def g711_table(tag: int) -> tuple[int, ...]:
    """Code (0-255) to 16-bit sample value, for mu-law (tag 7) or A-law (tag 6)."""
    return g711_decode_table("pcm_mulaw" if tag == _MULAW else "pcm_alaw")


def _mulaw_code(pcm16: int) -> int:
    pcm = pcm16 >> 2  # 14-bit magnitude domain of G.711 mu-law
    mask = 0x7F if pcm < 0 else 0xFF
    pcm = min(abs(pcm), 8159) + 33
    seg = bisect_left(_MULAW_SEG_END, pcm)
    code = 0x7F if seg >= 8 else (seg << 4) | ((pcm >> min(seg + 1, 8)) & 0x0F)
    return (code ^ mask) & 0xFF


def _alaw_code(pcm16: int) -> int:
    pcm = pcm16 >> 3  # 13-bit domain of G.711 A-law
    mask = 0xD5 if pcm >= 0 else 0x55
    pcm = pcm if pcm >= 0 else -pcm - 1
    seg = bisect_left(_ALAW_SEG_END, pcm)
    code = 0x7F if seg >= 8 else (seg << 4) | ((pcm >> min(max(seg, 1), 8)) & 0x0F)
    return (code ^ mask) & 0xFF


@functools.cache
def _g711_encode_table(encoding: str) -> bytes:
    """16-bit sample value (offset by 32768) to code."""
    encode = _mulaw_code if encoding == "pcm_mulaw" else _alaw_code
    return bytes(encode(v) for v in range(-32768, 32768))


# --- the pure-Python codec --------------------------------------------------------------------

# (format tag, bits) the readers take; the six protocol encodings among them.
# The protocol's six (protocol.audio's table) and the three more the readers take.
_FORMATS: Final[dict[tuple[int, int], str]] = {
    **WAV_ENCODINGS,
    (_PCM, 8): "pcm_u8",
    (_PCM, 24): "pcm_s24le",
    (_FLOAT, 64): "pcm_f64le",
}
_WIDTH: Final = {**BYTES_PER_SAMPLE, "pcm_u8": 1, "pcm_s24le": 3, "pcm_f64le": 8}


Bytes: TypeAlias = bytes | memoryview
"""Audio bytes: a ``bytes`` object, or a view of one (a WAV file's body is a view of the file)."""


def _ints(data: Bytes, code: str) -> array[int]:
    values = array(code)
    values.frombytes(data)
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _s24_as_s32(data: Bytes) -> bytes:
    """24-bit little-endian samples as 32-bit ones (a zero low byte: the value times 256)."""
    out = bytearray(len(data) // 3 * 4)
    out[1::4], out[2::4], out[3::4] = data[0::3], data[1::3], data[2::3]
    return bytes(out)


def py_decode(data: Bytes, sample_format: str) -> array[float]:
    """Samples (whole ones) to float32 values in [-1, 1], in pure Python.

    ``sample_format`` is a protocol encoding or one of ``pcm_u8``, ``pcm_s24le``,
    ``pcm_f64le``. Float input is clipped; NaN becomes silence.
    """
    if sample_format == "pcm_u8":
        return array("f", [(v - 128) / 128.0 for v in data])
    if sample_format == "pcm_s16le":
        return array("f", [v / 32768.0 for v in _ints(data, "h")])
    if sample_format in ("pcm_s24le", "pcm_s32le"):
        wide = _s24_as_s32(data) if sample_format == "pcm_s24le" else data
        return array("f", [v / 2147483648.0 for v in _ints(wide, "i")])
    if sample_format in ("pcm_mulaw", "pcm_alaw"):
        table = g711_table(_MULAW if sample_format == "pcm_mulaw" else _ALAW)
        return array("f", [table[v] / 32768.0 for v in data])
    if sample_format == "pcm_f16le":
        floats: Any = struct.unpack(f"<{len(data) // 2}e", data)
    elif sample_format in ("pcm_f32le", "pcm_f64le"):
        floats = _ints(data, "f" if sample_format == "pcm_f32le" else "d")
    else:
        raise ValueError(f"unknown sample format {sample_format!r}")
    return array("f", [0.0 if x != x else max(-1.0, min(1.0, x)) for x in floats])


def py_encode(samples: array[float], encoding: str) -> bytes:
    """Float samples to bytes of a protocol encoding, in pure Python (clipping to [-1, 1])."""
    clipped = [max(-1.0, min(1.0, x)) for x in samples]
    if encoding in ("pcm_s16le", "pcm_mulaw", "pcm_alaw"):
        pcm = array("h", [round(x * 32767.0) for x in clipped])
        if encoding != "pcm_s16le":
            table = _g711_encode_table(encoding)
            return bytes(table[v + 32768] for v in pcm)
        out: array[Any] = pcm
    elif encoding == "pcm_s32le":
        out = array("i", [round(x * 2147483647.0) for x in clipped])
    elif encoding == "pcm_f32le":
        out = array("f", clipped)
    elif encoding == "pcm_f16le":
        return struct.pack(f"<{len(clipped)}e", *clipped)
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    if _BIG_ENDIAN:
        out.byteswap()
    return out.tobytes()


# --- the numpy codec (the ``audio`` extra) -----------------------------------------------------


def numpy_available() -> bool:
    """Whether numpy can be imported."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _np_g711(tag: int) -> Float:
    import numpy as np

    return (np.array(g711_table(tag), dtype=np.float64) / 32768.0).astype(np.float32)


def np_decode(data: Bytes, sample_format: str) -> Float:
    """Samples (whole ones) to float32 values in [-1, 1]; the same values as :func:`py_decode`."""
    import numpy as np

    if sample_format == "pcm_u8":
        return ((np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128).astype(np.float32)
    if sample_format == "pcm_s16le":
        return np.frombuffer(data, "<i2").astype(np.float32) / np.float32(32768.0)
    if sample_format in ("pcm_s24le", "pcm_s32le"):
        wide = _s24_as_s32(data) if sample_format == "pcm_s24le" else data
        return (np.frombuffer(wide, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if sample_format in ("pcm_mulaw", "pcm_alaw"):
        table = _np_g711(_MULAW if sample_format == "pcm_mulaw" else _ALAW)
        decoded: Float = table[np.frombuffer(data, np.uint8)]
        return decoded
    dtype = {"pcm_f16le": "<f2", "pcm_f32le": "<f4", "pcm_f64le": "<f8"}.get(sample_format)
    if dtype is None:
        raise ValueError(f"unknown sample format {sample_format!r}")
    floats = np.nan_to_num(np.frombuffer(data, dtype), nan=0.0, posinf=1.0, neginf=-1.0)
    clipped: Float = np.clip(floats, -1.0, 1.0).astype(np.float32)
    return clipped


def np_encode(samples: Float, encoding: str) -> bytes:
    """Float samples to bytes of a protocol encoding (clipping); the same as :func:`py_encode`."""
    import numpy as np

    clipped = np.clip(samples.astype(np.float64), -1.0, 1.0)
    if encoding in ("pcm_s16le", "pcm_mulaw", "pcm_alaw"):
        pcm = np.rint(clipped * 32767.0).astype(np.int32)
        if encoding == "pcm_s16le":
            return pcm.astype("<i2").tobytes()
        table = np.frombuffer(_g711_encode_table(encoding), np.uint8)
        return table[pcm + 32768].tobytes()
    if encoding == "pcm_s32le":
        return np.rint(clipped * 2147483647.0).astype("<i4").tobytes()
    if encoding == "pcm_f16le":
        return clipped.astype("<f2").tobytes()
    if encoding == "pcm_f32le":
        return clipped.astype("<f4").tobytes()
    raise ValueError(f"unknown encoding {encoding!r}")


def require_resampler(source_rate: int, target_rate: int) -> None:
    """Check that :func:`resample` can run.

    Raises:
        ResamplingUnavailableError: Without soxr or numpy, saying what to install.
    """
    try:
        importlib.import_module("numpy")
        importlib.import_module("soxr")
    except ImportError:
        missing = True
    else:
        missing = False
    if missing:  # raised outside the except block: no ImportError as __context__
        raise ResamplingUnavailableError(
            f"converting {source_rate} Hz audio to {target_rate} Hz needs a resampler: "
            f"{AUDIO_EXTRA} (soxr and numpy)"
        )


def resample(samples: Float, source_rate: int, target_rate: int) -> Float:
    """Whole-signal resampling with libsoxr (high quality).

    Raises:
        ResamplingUnavailableError: Without soxr or numpy.
    """
    require_resampler(source_rate, target_rate)
    import numpy as np

    soxr: Any = importlib.import_module("soxr")  # untyped
    out = soxr.resample(np.asarray(samples, dtype=np.float32), source_rate, target_rate, "HQ")
    return np.asarray(out, dtype=np.float32)


def sample_format_name(info: WavInfo) -> str:
    """A WAV sample format in words: ``24-bit PCM``, ``8-bit mu-law``, ``32-bit IEEE float``."""
    kind = _TAG_NAMES.get(info.format_tag, f"format tag {info.format_tag}")
    return f"{info.bits_per_sample}-bit {kind}"


# --- WAV files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WavBody:
    """A parsed WAV file: what its header says, its sample format and its audio bytes.

    ``body`` is a view of the file's bytes (no copy), whole sample frames only.
    """

    info: WavInfo
    sample_format: str
    body: memoryview


def parse_wav(raw: bytes, name: str) -> WavBody:
    """Check a WAV file's header and cut out its audio (whole sample frames only).

    Raises:
        InvalidAudioError: Not a WAV file, no channels, no sample rate, or a sample format
            this module cannot read (ADPCM, 12-bit, ...), named.
    """
    try:
        info = parse_wav_header(raw)
    except InvalidAudioError as err:
        raise InvalidAudioError(f"{name}: {err}") from None
    if info.channels < 1:
        raise InvalidAudioError(f"{name}: the WAV header says it has no channels")
    if info.sample_rate < 1:
        raise InvalidAudioError(f"{name}: the WAV header says its sample rate is 0")
    sample_format = _FORMATS.get((info.format_tag, info.bits_per_sample))
    if sample_format is None:
        raise InvalidAudioError(
            f"{name}: {sample_format_name(info)} samples cannot be read; convert the file to "
            "16-bit PCM first"
        )
    end = info.data_offset + info.data_size if info.data_size else len(raw)
    body = memoryview(raw)[info.data_offset : min(end, len(raw))]
    frame = _WIDTH[sample_format] * info.channels
    return WavBody(info, sample_format, body[: len(body) - len(body) % frame])


def mono_samples(wav: WavBody, use_numpy: bool) -> Any:
    """The audio as mono float32 samples (channels averaged): a numpy array or an ``array``."""
    channels = wav.info.channels
    if use_numpy:
        import numpy as np

        samples = np_decode(wav.body, wav.sample_format)
        if channels > 1:
            frames = samples.reshape(-1, channels).astype(np.float64)
            samples = frames.mean(axis=1).astype(np.float32)
        return samples
    values = py_decode(wav.body, wav.sample_format)
    if channels == 1:
        return values
    columns = [values[c::channels] for c in range(channels)]
    return array("f", [sum(frame) / channels for frame in zip(*columns, strict=True)])


# Sample frames converted at a time by encode_mono: the working memory (float64 temporaries in
# numpy, a list of Python floats without it) is a few MB whatever the file's size.
_BLOCK_FRAMES: Final = 1 << 14


def encode_mono(
    wav: WavBody, encoding: str, use_numpy: bool, sample_rate: int | None = None
) -> bytes:
    """The audio as mono ``encoding`` (channels averaged), converted a block at a time.

    With a ``sample_rate`` other than the file's, it is also resampled (soxr's stream
    resampler, numpy), block by block. Each step works sample by sample (the resampler keeps
    its own state between blocks), so the result is the same as converting the whole body at
    once; the memory it takes is about the result plus a few MB, not tens of times the file
    (an 8-bit WAV upload peaked at 30 times its size converted whole). The blocks go into
    one growing buffer whose bytes become the result without a final copy.

    Raises:
        ResamplingUnavailableError: Resampling is needed and soxr or numpy is missing.
    """
    stream: Any = None
    source_rate = wav.info.sample_rate
    if sample_rate is not None and sample_rate != source_rate:
        require_resampler(source_rate, sample_rate)
        soxr: Any = importlib.import_module("soxr")  # untyped
        stream = soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32", quality="HQ")
        use_numpy = True
    step = _BLOCK_FRAMES * _WIDTH[wav.sample_format] * wav.info.channels
    encode = np_encode if use_numpy else py_encode
    body, out = wav.body, io.BytesIO()
    for i in range(0, len(body), step):
        samples = mono_samples(WavBody(wav.info, wav.sample_format, body[i : i + step]), use_numpy)
        if stream is not None:
            samples = stream.resample_chunk(samples, last=i + step >= len(body))
        out.write(encode(samples, encoding))
    return out.getvalue()
