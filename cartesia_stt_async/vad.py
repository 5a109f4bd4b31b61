"""Voice activity detection that decides when to send ``finalize`` (pure: no I/O, no clock).

In manual-finalize mode the client says when the user has finished speaking. Push-to-talk
apps say it with a button; hands-free apps say it when the user falls silent.
:class:`VadFinalizer` is that policy: feed it the audio you send, in any chunk sizes, and it
returns the byte offsets within each chunk after which a ``finalize`` is due: the points where
``silence_ms`` of silence has followed speech.

Theory of operation. The audio is cut into analysis frames of ``frame_ms`` (10, 20 or 30 ms)
at exact positions in the stream (frame ``k`` covers samples ``floor(k * F)`` to
``floor((k + 1) * F)``, ``F`` the frame length in samples, a fraction when the rate demands
it), so the decisions do not depend on how the stream was chunked. Each frame is converted to
16-bit samples at a rate the classifier takes (8, 16, 32 or 48 kHz: the session's own rate
when it is one of these, else 16 kHz, or 8 kHz below 16 kHz, by picking evenly spaced
samples) and classified as speech or not:

* ``webrtc``: the WebRTC voice activity detector (the ``webrtcvad-wheels`` package, the
  ``vad`` extra), a Gaussian-mixture model of speech spectra; it ignores steady noise and
  tones. ``aggressiveness`` 0-3 trades missed speech for fewer false alarms.
* ``energy``: no dependency. A frame is speech when its level is at least
  ``energy_threshold_db`` dBFS and ``energy_margin_db`` above the noise floor, the quietest
  frame of the last three seconds (assumed -60 dBFS until three seconds have been seen).
  Good for clean close-talk audio; noise bursts count as speech.

Then one rule: speech starts after ``min_speech_ms`` of consecutive speech frames (so clicks
do not count); once speech has started, ``silence_ms`` of frames that are not confirmed speech
end the utterance, and the finalize offset is the end of the frame that completed the silence.
One finalize per utterance: silence that goes on asks for nothing more.

The decision is causal (it is known at the offset it names), so a live stream that sends the
audio up to the offset, then ``finalize``, sends it ``silence_ms`` (plus at most one frame)
after the speech ended.
"""

from __future__ import annotations

import array
import importlib
import math
import struct
import sys
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Final, Literal

from ._install import install_hint
from .errors import InvalidAudioError, UsageError
from .protocol.audio import AudioFormat, as_bytes_view, g711_decode_table
from .protocol.checks import check_number

__all__ = ["VadBackend", "VadFinalizer"]

VadBackend = Literal["auto", "webrtc", "energy"]
"""``webrtc`` (the ``vad`` extra), ``energy`` (no dependency), or ``auto``: webrtc if installed."""

_WEBRTC_RATES: Final = (8000, 16000, 32000, 48000)
_FRAME_MS: Final = (10, 20, 30)
_MIN_RATE: Final = 8000
_NOISE_WINDOW_MS: Final = 3000
_FULL_SCALE_SQ: Final = 32768.0 * 32768.0


def _clip(value: float) -> int:
    """A float sample (finite: :meth:`VadFinalizer.feed` checks) as a 16-bit one, clipped."""
    return max(-32768, min(32767, int(value * 32767.0)))


_FLOAT_CODES: Final = {"pcm_f32le": "f", "pcm_f16le": "e"}
_CHECK_BLOCK: Final = 4096  # samples unpacked at a time by the finiteness check


def _first_non_finite(buf: bytearray, start: int, stop: int, code: str, width: int) -> int | None:
    """The byte position in ``buf[start:stop]`` (whole samples) of the first NaN or infinity."""
    for block in range(start, stop, _CHECK_BLOCK * width):
        n = min(_CHECK_BLOCK, (stop - block) // width)
        values = struct.unpack_from(f"<{n}{code}", buf, block)
        if not math.isfinite(sum(values)):  # a sum of finite float32s cannot overflow
            bad = next(i for i, v in enumerate(values) if not math.isfinite(v))
            return block + bad * width
    return None


def _decoder(encoding: str) -> Callable[[bytes | bytearray, int, int], list[int]]:
    """``decode(buf, offset, n)``: ``n`` samples from byte ``offset`` as 16-bit integers."""
    if encoding == "pcm_s16le":
        return lambda b, o, n: list(struct.unpack_from(f"<{n}h", b, o))
    if encoding == "pcm_s32le":
        return lambda b, o, n: [v >> 16 for v in struct.unpack_from(f"<{n}i", b, o)]
    if encoding == "pcm_f32le":
        return lambda b, o, n: [_clip(v) for v in struct.unpack_from(f"<{n}f", b, o)]
    if encoding == "pcm_f16le":
        return lambda b, o, n: [_clip(v) for v in struct.unpack_from(f"<{n}e", b, o)]
    table = g711_decode_table(encoding)
    return lambda b, o, n: [table[c] for c in b[o : o + n]]


def _load_webrtcvad() -> Any:
    try:
        return importlib.import_module("webrtcvad")
    except ImportError:
        return None


class VadFinalizer:
    """Decides where ``finalize`` is due: after ``silence_ms`` of silence that follows speech.

    Feed it the session's audio in order, in chunks of any size (a sample split across two
    chunks is fine); it keeps its own position in the stream. Pure logic: no I/O, no clock.

    Args:
        encoding: The session's encoding (one of the six).
        sample_rate: The session's sample rate in Hz.
        silence_ms: Silence after speech that ends an utterance (default 600 ms).
        backend: ``"webrtc"`` (needs the ``vad`` extra), ``"energy"``, or ``"auto"``
            (webrtc when installed, else energy).
        frame_ms: Analysis frame length: 10, 20 or 30 ms (default 30).
        aggressiveness: webrtc only: 0 (least) to 3 (most eager to call a frame non-speech).
        min_speech_ms: Consecutive speech needed before an utterance counts as started
            (default 90 ms).
        energy_threshold_db: energy only: the quietest level (dBFS) that can be speech.
        energy_margin_db: energy only: how far above the noise floor speech must be.

    Raises:
        UsageError: For an unknown encoding or backend, a sample rate that is not an integer
            of at least 8000, ``frame_ms`` other than 10/20/30, non-positive ``silence_ms``, or
            ``backend="webrtc"`` without the ``webrtcvad-wheels`` package.
    """

    def __init__(
        self,
        encoding: str,
        sample_rate: int,
        *,
        silence_ms: int = 600,
        backend: VadBackend = "auto",
        frame_ms: int = 30,
        aggressiveness: int = 2,
        min_speech_ms: int = 90,
        energy_threshold_db: float = -50.0,
        energy_margin_db: float = 12.0,
    ) -> None:
        fmt = AudioFormat(encoding, sample_rate)
        if sample_rate < _MIN_RATE:
            raise UsageError(f"voice activity detection needs at least 8000 Hz, got {sample_rate}")
        if isinstance(frame_ms, bool) or frame_ms not in _FRAME_MS:
            raise UsageError(f"frame_ms must be 10, 20 or 30, got {frame_ms!r}")
        check_number("silence_ms", silence_ms, low=0, strict=True, wanted="a positive number")
        check_number("min_speech_ms", min_speech_ms, low=0, wanted="0 or more")
        if isinstance(aggressiveness, bool) or aggressiveness not in (0, 1, 2, 3):
            raise UsageError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        check_number("energy_threshold_db", energy_threshold_db)
        check_number("energy_margin_db", energy_margin_db)
        if backend not in ("auto", "webrtc", "energy"):
            raise UsageError(f"backend must be 'auto', 'webrtc' or 'energy', got {backend!r}")
        module = _load_webrtcvad() if backend != "energy" else None
        if backend == "webrtc" and module is None:
            raise UsageError(
                "backend='webrtc' needs the webrtcvad-wheels package: "
                f"{install_hint('vad')} (or use backend='energy')"
            )
        self.backend: Literal["webrtc", "energy"] = "webrtc" if module is not None else "energy"
        """The classifier in use."""
        self.format = fmt
        self.silence_ms = silence_ms
        self.frame_ms = frame_ms
        self._width = fmt.sample_width
        if sample_rate in _WEBRTC_RATES:
            self._rate = sample_rate
        else:
            self._rate = 16000 if sample_rate >= 16000 else 8000
        self._out_n = self._rate * frame_ms // 1000  # classifier samples per frame
        self._frame = Fraction(sample_rate * frame_ms, 1000)  # source samples per frame
        self._decode = _decoder(encoding)
        self._float_code = _FLOAT_CODES.get(encoding)
        self._native = (
            encoding == "pcm_s16le" and self._rate == sample_rate and sys.byteorder == "little"
        )
        self._vad = module.Vad(aggressiveness) if module is not None else None
        self._threshold_db = float(energy_threshold_db)
        self._margin_db = float(energy_margin_db)
        self._min_speech_frames = math.ceil(min_speech_ms / frame_ms)
        self._silence_frames = math.ceil(silence_ms / frame_ms)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next byte fed is the start of a new one."""
        self._buf = bytearray()  # bytes from the start of the frame being filled
        self._buf_sample = 0  # absolute index of the sample at _buf[0]
        self._fed = 0  # bytes fed so far
        self._k = 0  # index of the frame being filled
        self._run = 0  # consecutive speech frames
        self._quiet = 0  # frames since the last confirmed speech
        self._speaking = False
        self._levels: deque[float] = deque(maxlen=_NOISE_WINDOW_MS // self.frame_ms)

    @property
    def in_speech(self) -> bool:
        """True between the start of an utterance and its finalize offset."""
        return self._speaking

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[int]:
        """Take the next audio of the stream; return where ``finalize`` is due within it.

        Args:
            chunk: Audio in the session's encoding, any length.

        Returns:
            Byte offsets within ``chunk``, increasing, each ``0 < offset <= len(chunk)``:
            send ``chunk[:offset]``, then ``finalize``, then the rest. Usually empty.

        A ``memoryview`` counts in bytes; a non-contiguous one is taken as the bytes of
        ``view.tobytes()``, as ``send_audio`` takes it.

        Raises:
            UsageError: If ``chunk`` is not bytes-like.
            InvalidAudioError: A float sample (``pcm_f32le``, ``pcm_f16le``) that is NaN or
                infinite, named with its byte offset in the stream; nothing of ``chunk`` is
                taken (the finalizer is as it was before the call). Also a released
                ``memoryview``.
        """
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise UsageError(f"audio must be bytes-like, got {type(chunk).__name__}")
        view = as_bytes_view(chunk)
        buf = self._buf
        held = len(buf)
        buf += view
        if self._float_code is not None:
            self._check_finite(held)
        start = self._fed
        self._fed += len(view)
        width, pos, offsets = self._width, 0, []
        while True:
            first = self._buf_sample
            end = math.floor((self._k + 1) * self._frame)
            nbytes = (end - first) * width
            if pos + nbytes > len(buf):
                break
            if self._step(self._classify(buf, pos, end - first)):
                offsets.append(end * width - start)
            pos += nbytes
            self._buf_sample = end
            self._k += 1
        del buf[:pos]
        return offsets

    def split(
        self, chunk: bytes | bytearray | memoryview
    ) -> list[tuple[bytes | bytearray | memoryview, bool]]:
        """Feed ``chunk`` and cut it where ``finalize`` is due: what a sender sends, in order.

        The one loop of every sender with a VAD (``conn.stream(vad=...)``, ``cartesia-stt
        transcribe --vad``, ``cartesia-stt mic --vad``)::

            for piece, finalize in vad.split(chunk):
                await conn.send_audio(piece)
                if finalize:
                    await conn.send("finalize")

        Args:
            chunk: Audio in the session's encoding, any length (see :meth:`feed`).

        Returns:
            ``(piece, finalize_after)`` pairs whose pieces, joined, are ``chunk``: one per
            offset :meth:`feed` names (``finalize_after`` true), then the rest, if any (false).
            Pieces are never empty; an empty chunk gives ``[]``. Each piece is a slice of
            ``chunk`` (of a ``memoryview``: of its bytes, as :meth:`feed` counts them).

        Raises:
            UsageError, InvalidAudioError: As :meth:`feed`; nothing is cut then.
        """
        offsets = self.feed(chunk)
        data = as_bytes_view(chunk)
        pieces: list[tuple[bytes | bytearray | memoryview, bool]] = []
        start = 0
        for offset in offsets:
            pieces.append((data[start:offset], True))
            start = offset
        if start < len(data):
            pieces.append((data[start:], False))
        return pieces

    def _check_finite(self, held: int) -> None:
        """Raise :class:`InvalidAudioError` if a sample completed by the bytes added after
        ``_buf[:held]`` is a NaN or an infinity; those bytes are then removed again."""
        assert self._float_code is not None
        buf, width = self._buf, self._width
        end = len(buf) - len(buf) % width
        bad = _first_non_finite(buf, held - held % width, end, self._float_code, width)
        if bad is None:
            return
        (value,) = struct.unpack_from(f"<{self._float_code}", buf, bad)
        at = self._buf_sample * width + bad
        del buf[held:]
        raise InvalidAudioError(
            f"{self.format.encoding} audio holds a non-finite sample ({value}) at byte {at} "
            "of the stream: float samples must be finite numbers (full scale is -1 to 1); "
            "this chunk was not taken"
        )

    def _step(self, speech: bool) -> bool:
        """Advance the utterance rule by one frame; True when a finalize is due at its end."""
        if speech:
            self._run += 1
            if self._run >= max(1, self._min_speech_frames):
                self._speaking = True
                self._quiet = 0
                return False
        else:
            self._run = 0
        if not self._speaking:
            return False
        self._quiet += 1
        if self._quiet >= self._silence_frames:
            self._speaking = False
            self._quiet = 0
            return True
        return False

    def _samples(self, buf: bytearray, pos: int, count: int) -> list[int]:
        """The frame's ``count`` source samples at ``pos``, as the classifier's samples."""
        decoded = self._decode(buf, pos, count)
        out_n = self._out_n
        if count == out_n:
            return decoded
        return [decoded[(i * count) // out_n] for i in range(out_n)]

    def _classify(self, buf: bytearray, pos: int, count: int) -> bool:
        if self._native and count == self._out_n:
            pcm = bytes(buf[pos : pos + 2 * count])
            samples: list[int] | None = None
        else:
            samples = self._samples(buf, pos, count)
            pcm = array.array("h", samples).tobytes()
        if self._vad is not None:
            return bool(self._vad.is_speech(pcm, self._rate))
        if samples is None:
            samples = list(array.array("h", pcm))
        energy = sum(s * s for s in samples) / (len(samples) * _FULL_SCALE_SQ)
        level = 10.0 * math.log10(energy) if energy > 0 else -120.0
        floor = min(self._levels, default=math.inf)
        self._levels.append(level)
        return level >= self._threshold_db and level >= floor + self._margin_db
