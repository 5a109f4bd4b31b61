"""Audio formats, exact frame sizes, reframing and WAV header checks (pure: no I/O, no clock).

The realtime endpoint takes raw, headerless, mono PCM in the ``encoding`` and ``sample_rate``
declared in the connection URL (docs/protocol.md). Cartesia recommends ~100 ms per binary
frame, sent at real-time pace. This module knows how many bytes that is for every encoding, cuts
arbitrary chunks into exact frames, and reads WAV headers so a file can be checked against the
session before a single byte is sent.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Final, Literal, get_args

import msgspec

from ..errors import InvalidAudioError, UsageError

__all__ = [
    "BYTES_PER_SAMPLE",
    "ENCODINGS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "SNIFF_BYTES",
    "WAVE_FORMAT_ALAW",
    "WAVE_FORMAT_IEEE_FLOAT",
    "WAVE_FORMAT_MULAW",
    "WAVE_FORMAT_PCM",
    "WAV_ENCODINGS",
    "AudioFormat",
    "Encoding",
    "Reframer",
    "Span",
    "WavInfo",
    "as_bytes_view",
    "audio_bytes",
    "check_not_a_file",
    "g711_decode_table",
    "parse_wav_header",
]

Encoding = Literal["pcm_s16le", "pcm_s32le", "pcm_f16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"]
"""The six encodings the manual-finalize endpoint accepts (docs/protocol.md)."""

ENCODINGS: Final[tuple[Encoding, ...]] = get_args(Encoding)

BYTES_PER_SAMPLE: Final[dict[str, int]] = {
    "pcm_s16le": 2,
    "pcm_s32le": 4,
    "pcm_f16le": 2,
    "pcm_f32le": 4,
    "pcm_mulaw": 1,
    "pcm_alaw": 1,
}

# The sample rates Cartesia's realtime endpoints take (docs/protocol.md).
MIN_SAMPLE_RATE: Final = 8000
MAX_SAMPLE_RATE: Final = 48000

DEFAULT_FRAME_MS: Final = 100


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The audio format of one session: encoding and sample rate (always mono).

    Args:
        encoding: One of :data:`ENCODINGS`.
        sample_rate: Samples per second, a positive integer.

    Raises:
        UsageError: If the encoding is unknown or the sample rate is not a positive integer.
    """

    encoding: str
    sample_rate: int

    def __post_init__(self) -> None:
        if not isinstance(self.encoding, str) or self.encoding not in BYTES_PER_SAMPLE:
            raise UsageError(
                f"unknown encoding {self.encoding!r}; expected one of {', '.join(ENCODINGS)}"
            )
        if (
            isinstance(self.sample_rate, bool)
            or not isinstance(self.sample_rate, int)
            or self.sample_rate <= 0
        ):
            raise UsageError(f"sample_rate must be a positive integer, got {self.sample_rate!r}")

    @property
    def sample_width(self) -> int:
        """Bytes per sample (mono, so also bytes per frame of one sample)."""
        return BYTES_PER_SAMPLE[self.encoding]

    @property
    def bytes_per_second(self) -> int:
        """Bytes of audio per second of speech."""
        return self.sample_width * self.sample_rate

    def frame_bytes(self, frame_ms: int = DEFAULT_FRAME_MS) -> int:
        """Bytes in one frame of ``frame_ms`` milliseconds, rounded down to whole samples.

        Args:
            frame_ms: Frame length in milliseconds (100 by default, as Cartesia recommends).

        Returns:
            The byte count, at least one sample. 100 ms of 16 kHz pcm_s16le is 3200.
        """
        if isinstance(frame_ms, bool) or not isinstance(frame_ms, int) or frame_ms <= 0:
            raise UsageError(f"frame_ms must be a positive integer, got {frame_ms!r}")
        samples = max(1, self.sample_rate * frame_ms // 1000)
        return samples * self.sample_width

    def duration(self, nbytes: int) -> float:
        """Seconds of audio in ``nbytes`` bytes."""
        return nbytes / self.bytes_per_second

    def check_aligned(self, nbytes: int, what: str = "audio") -> None:
        """Raise :class:`InvalidAudioError` unless ``nbytes`` is a whole number of samples."""
        if nbytes % self.sample_width:
            raise InvalidAudioError(
                f"{what} of {nbytes} bytes is not a whole number of {self.encoding} samples "
                f"({self.sample_width} bytes each); the session would be misaligned from here on"
            )


# Signatures of files that are not raw samples: (offset, bytes, what it is). Only multi-byte
# ASCII-like marks: raw PCM starting with one of them is vanishingly unlikely (an MP3 without
# an ID3 tag starts with a 2-byte frame sync, which a PCM sample can be: not checked).
_FILE_SIGNATURES: Final = (
    (0, b"ID3", "an MP3 file"),
    (0, b"OggS", "an Ogg file (Opus or Vorbis)"),
    (0, b"fLaC", "a FLAC file"),
    (4, b"ftyp", "an MP4/M4A file"),
    (0, b"\x1aE\xdf\xa3", "a WebM/Matroska file"),
)
SNIFF_BYTES: Final = 4096
"""How many leading bytes of a session's audio :func:`check_not_a_file` looks at (a WAV
header, ``LIST`` chunks included, fits)."""


def check_not_a_file(head: bytes | bytearray | memoryview, fmt: AudioFormat) -> None:
    """Refuse audio that starts like a file rather than raw samples (the first bytes of a
    session's audio): the server would hear its header and compressed data as noise and answer
    with an empty or garbage transcript, and nobody would be told. A WAV file is refused only
    when its format is not the session's (channels, encoding, rate).

    Raises:
        InvalidAudioError: Naming the format found and what to do instead.
    """
    head = bytes(head[:SNIFF_BYTES])
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        # A whole WAV file sent as audio: harmless when it is the session's own format (its
        # header is a few samples of noise), garbage otherwise: then say so.
        try:
            info = parse_wav_header(head)
        except InvalidAudioError:
            return  # a header this short or odd cannot be judged
        info.check_matches(fmt, name="the audio is a WAV file (header included) that")
        return
    for offset, mark, what in _FILE_SIGNATURES:
        if head[offset : offset + len(mark)] == mark:
            raise InvalidAudioError(
                f"the audio starts like {what}, which the API does not decode: it takes raw "
                f"{fmt.encoding} samples at {fmt.sample_rate} Hz. Decode it first, e.g. "
                f"ffmpeg -i input -f s16le -ac 1 -ar {fmt.sample_rate} output.raw "
                "(then encoding='pcm_s16le')"
            )


@functools.cache
def g711_decode_table(encoding: str) -> tuple[int, ...]:
    """G.711 code (0-255) to 16-bit sample value, for ``pcm_mulaw`` or ``pcm_alaw`` (the ITU
    reference g711.c expansion): the one table the codec and the VAD both read."""
    table = []
    for code in range(256):
        if encoding == "pcm_mulaw":
            u = ~code & 0xFF
            t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
            table.append(0x84 - t if u & 0x80 else t - 0x84)
        else:
            a = code ^ 0x55
            t = (a & 0x0F) << 4
            seg = (a & 0x70) >> 4
            t = t + 8 if seg == 0 else (t + 0x108) << max(seg - 1, 0)
            table.append(t if a & 0x80 else -t)
    return tuple(table)


def audio_bytes(data: object) -> bytes | bytearray | memoryview:
    """``data`` checked to be audio (``bytes``, ``bytearray`` or ``memoryview``) and seen as
    its bytes (:func:`as_bytes_view`): what every audio entry point takes.

    Raises:
        InvalidAudioError: For any other type (named), or a released ``memoryview``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidAudioError(
            f"audio must be bytes, bytearray or memoryview, got {type(data).__name__}"
        )
    return as_bytes_view(data)


def as_bytes_view(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """The bytes of an audio chunk: the one rule for every audio entry point.

    ``send_audio``, ``send_raw``, ``stream`` and :meth:`VadFinalizer.feed
    <cartesia_stt_async.vad.VadFinalizer.feed>` all take audio through here, so they agree:

    * ``bytes`` and ``bytearray`` are their bytes;
    * a contiguous ``memoryview`` of any item type and shape (an int16 ``array``, a numpy
      array) is viewed as its bytes, without a copy;
    * a non-contiguous ``memoryview`` (a strided slice such as ``view[::2]``, one column of a
      numpy array) is copied: its bytes are those of ``view.tobytes()``, the items in logical
      (row-major) order, as ``bytes(view)`` gives them.

    Returns:
        ``data`` itself, a byte view of it, or (non-contiguous) a ``bytes`` copy.

    Raises:
        InvalidAudioError: For a released ``memoryview``.
    """
    if not isinstance(data, memoryview):
        return data
    try:
        contiguous, flat = data.c_contiguous, data.itemsize == 1 and data.ndim == 1
    except ValueError:  # "operation forbidden on released memoryview object"
        raise InvalidAudioError("audio memoryview has been released") from None
    if not contiguous:
        return data.tobytes()
    return data if flat else data.cast("B")


class Span(msgspec.Struct, frozen=True, gc=False):
    """A zero-copy frame: ``data[start:stop]`` of an immutable ``bytes`` object.

    Audio handed over as ``bytes`` is queued and kept for replay as spans of it, never copied.
    A span is not tracked by the garbage collector (a ``memoryview`` per frame would be:
    thousands of them alive in send queues and replay journals made full collections frequent
    and long). ``len(span)`` is its size, ``bytes(span)`` a copy, :meth:`view` a zero-copy view
    for the moment of writing; a span equals the bytes it holds.
    """

    data: bytes
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __bytes__(self) -> bytes:
        return self.data[self.start : self.stop]

    def __eq__(self, other: object) -> bool:
        """Equal to any frame (bytes-like or span) with the same bytes."""
        if type(other) is Span:
            other = bytes(other)
        if not isinstance(other, bytes | bytearray | memoryview):
            return NotImplemented
        return self.data[self.start : self.stop] == other

    def __hash__(self) -> int:
        return hash(self.data[self.start : self.stop])

    def view(self) -> memoryview:
        """A zero-copy view of the frame (do not keep it: it is GC-tracked)."""
        return memoryview(self.data)[self.start : self.stop]


class Reframer:
    """Cut a stream of arbitrary chunks into exact, equal frames.

    ``push()`` returns every complete frame now available and keeps the remainder;
    ``flush()`` returns the remainder (a shorter last frame, before ``finalize`` or ``close``).
    A chunk may end in the middle of a sample; the flushed remainder may not.

    Args:
        frame_bytes: Size of every frame but the flushed last one.
        sample_width: Bytes per sample, to check the remainder at ``flush()``.
    """

    __slots__ = ("_buf", "frame_bytes", "sample_width")

    def __init__(self, frame_bytes: int, sample_width: int = 1) -> None:
        if frame_bytes <= 0 or frame_bytes % sample_width:
            raise UsageError(
                f"frame_bytes {frame_bytes} must be a positive multiple of {sample_width}"
            )
        self.frame_bytes = frame_bytes
        self.sample_width = sample_width
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of their frame."""
        return len(self._buf)

    def push(
        self, chunk: bytes | bytearray | memoryview, start: int = 0, stop: int | None = None
    ) -> list[bytes | Span]:
        """Add ``chunk[start:stop]``; return the complete frames it makes available (possibly
        none).

        Frames cut from a ``bytes`` object are :class:`Span` s of it (zero-copy: ``bytes`` never
        changes, so the caller cannot alter audio that is queued or kept for replay). Frames of
        anything else (``bytearray``, ``memoryview``, numpy arrays) are copies, and so is a
        frame that spans two chunks.
        """
        buf = self._buf
        size = self.frame_bytes
        frames: list[bytes | Span] = []
        data: bytes | memoryview
        if type(chunk) is bytes:
            stop = len(chunk) if stop is None else stop
            if not buf and start == 0 and stop == size == len(chunk):
                return [chunk]  # one whole frame, immutable: no copy at all
            data, pos = chunk, start
        else:
            data = memoryview(as_bytes_view(chunk))[start:stop]
            pos, stop = 0, len(data)
        if buf:  # complete the held-back frame first (a copy)
            take = min(size - len(buf), stop - pos)
            buf += data[pos : pos + take]
            pos += take
            if len(buf) < size:
                return frames
            frames.append(bytes(buf))
            buf.clear()
        end = pos + (stop - pos) // size * size
        if isinstance(data, bytes):
            frames.extend(Span(data, i, i + size) for i in range(pos, end, size))
        else:
            frames.extend(data[i : i + size].tobytes() for i in range(pos, end, size))
        if end < stop:
            buf += data[end:stop]
        return frames

    def discard(self) -> int:
        """Drop the held-back remainder; return how many bytes it had."""
        held = len(self._buf)
        self._buf.clear()
        return held

    def flush(self) -> bytes:
        """Return and clear the remainder (``b""`` when there is none).

        Raises:
            InvalidAudioError: If the remainder ends in the middle of a sample; the remainder
                is discarded so that the session stays aligned.
        """
        data = bytes(self._buf)
        self._buf.clear()
        if len(data) % self.sample_width:
            raise InvalidAudioError(
                f"audio ends with {len(data) % self.sample_width} stray byte(s): "
                f"{len(data)} bytes is not a whole number of {self.sample_width}-byte samples"
            )
        return data


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a WAV header says.

    Attributes:
        encoding: The matching protocol encoding, or ``None`` when the WAV holds something the
            protocol cannot carry (8-bit, 24-bit, 64-bit float, ...).
        sample_rate: Samples per second.
        channels: Channel count (the protocol needs 1).
        bits_per_sample: Bits per sample as written in the header.
        format_tag: The WAVE format tag (1 PCM, 3 float, 6 A-law, 7 mu-law).
        data_offset: Byte offset of the first audio byte in the file.
        data_size: Bytes of audio in the ``data`` chunk (may be 0 or huge for streamed WAVs).
    """

    encoding: Encoding | None
    sample_rate: int
    channels: int
    bits_per_sample: int
    format_tag: int
    data_offset: int
    data_size: int

    def check_matches(self, fmt: AudioFormat, name: str = "WAV file") -> None:
        """Raise :class:`InvalidAudioError` unless this WAV can be streamed to ``fmt`` as-is."""
        problems = []
        if self.channels != 1:
            problems.append(f"has {self.channels} channels but the protocol takes mono")
        if self.encoding != fmt.encoding:
            got = self.encoding or f"format tag {self.format_tag}, {self.bits_per_sample}-bit"
            problems.append(f"is {got} but the session expects {fmt.encoding}")
        if self.sample_rate != fmt.sample_rate:
            problems.append(
                f"is {self.sample_rate} Hz but the session expects {fmt.sample_rate} Hz"
            )
        if problems:
            raise InvalidAudioError(
                f"{name} "
                + "; ".join(problems)
                + ". Convert it for the session with cartesia_stt_async.audio.convert_wav(path, "
                f"encoding={fmt.encoding!r}, sample_rate={fmt.sample_rate}), or open the session "
                "in the file's own format (load_wav(path).format)"
            )


# WAVE format tags (RFC 2361), the one home of the WAV tables: the codec reads these too.
WAVE_FORMAT_PCM: Final = 1
WAVE_FORMAT_IEEE_FLOAT: Final = 3
WAVE_FORMAT_ALAW: Final = 6
WAVE_FORMAT_MULAW: Final = 7
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE

WAV_ENCODINGS: Final[dict[tuple[int, int], Encoding]] = {
    (WAVE_FORMAT_PCM, 16): "pcm_s16le",
    (WAVE_FORMAT_PCM, 32): "pcm_s32le",
    (WAVE_FORMAT_IEEE_FLOAT, 16): "pcm_f16le",
    (WAVE_FORMAT_IEEE_FLOAT, 32): "pcm_f32le",
    (WAVE_FORMAT_MULAW, 8): "pcm_mulaw",
    (WAVE_FORMAT_ALAW, 8): "pcm_alaw",
}
"""(format tag, bits per sample) of a WAV file whose samples are a protocol encoding."""


def parse_wav_header(head: bytes) -> WavInfo:
    """Parse a RIFF/WAVE header from the first bytes of a file.

    Args:
        head: The start of the file, through the ``data`` chunk header (4 KiB is plenty for
            ordinary files; chunks before ``data`` such as ``LIST`` are skipped).

    Returns:
        The parsed :class:`WavInfo`.

    Raises:
        InvalidAudioError: If the bytes are not a WAV header this module understands.
    """
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise InvalidAudioError("not a WAV file: missing RIFF/WAVE header")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(head):
        cid = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(head):
                raise InvalidAudioError("WAV fmt chunk is truncated")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, body)
            if tag == _WAVE_FORMAT_EXTENSIBLE:
                if size < 40 or body + 26 > len(head):
                    raise InvalidAudioError("WAV extensible fmt chunk is truncated")
                # The sub-format GUID starts with the real format tag.
                (tag,) = struct.unpack_from("<H", head, body + 24)
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise InvalidAudioError("WAV data chunk comes before its fmt chunk")
            tag, channels, rate, bits = fmt
            return WavInfo(
                encoding=WAV_ENCODINGS.get((tag, bits)),
                sample_rate=rate,
                channels=channels,
                bits_per_sample=bits,
                format_tag=tag,
                data_offset=body,
                data_size=size,
            )
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    raise InvalidAudioError("WAV header has no data chunk in its first bytes")
