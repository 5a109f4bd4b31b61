"""Offline speech synthesis for the twin's ``/tts/bytes`` (docs/protocol.md).

The voice is SVOX Pico through py-nanotts (the ``twin`` extra): it ships in the package and
synthesizes about 200x faster than real time on one core, always at 16 kHz 16-bit mono. We
convert to the requested encoding and sample rate, and wrap it in a WAV header on request.

Pico holds the GIL while it speaks, so a transcript is spoken one sentence per call.
At its default volume Pico clips (hundreds of samples at full scale per sentence), so the twin
asks for half volume; at a slightly slowed rate the offline recognizer understands it better.

Equal requests give byte-identical audio. Pico reads parts of its working memory before
writing them, and py-nanotts takes that memory from ``malloc`` without clearing it: the first
call in a process gets fresh (zeroed) pages from the kernel, later calls get whatever earlier
calls left there, so the same text sounded slightly different depending on what was spoken
before. While Pico speaks we ask glibc to hand out zero-filled memory (``mallopt(M_PERTURB)``),
which gives every call what the first call got.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["TTS_ENCODINGS", "TTS_SAMPLE_RATES", "Synthesizer", "TTSRequest", "TTSRequestError"]

TTS_ENCODINGS: Final = ("pcm_f32le", "pcm_s16le", "pcm_mulaw", "pcm_alaw")
TTS_SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 44100, 48000)
MAX_TRANSCRIPT_CHARS: Final = 5000
PICO_RATE: Final = 16000
PICO_VOLUME: Final = 0.5
PICO_SPEED: Final = 0.85
_PICO_VOICES: Final = {"en": "en-US", "de": "de-DE", "es": "es-ES", "fr": "fr-FR", "it": "it-IT"}

# Pico holds the GIL while it speaks (~4 ms per second of speech): one sentence per call lets
# the event loop in between, even for a long transcript.
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")

_WAV_TAG: Final = {"pcm_s16le": 1, "pcm_f32le": 3, "pcm_alaw": 6, "pcm_mulaw": 7}
_WAV_BITS: Final = {"pcm_s16le": 16, "pcm_f32le": 32, "pcm_alaw": 8, "pcm_mulaw": 8}


class TTSRequestError(Exception):
    """A ``/tts/bytes`` request the twin cannot serve (HTTP 400, names the field)."""


@dataclass(frozen=True)
class TTSRequest:
    """A validated ``/tts/bytes`` body."""

    transcript: str
    container: str
    encoding: str
    sample_rate: int
    language: str

    @classmethod
    def from_json(cls, body: object) -> TTSRequest:
        """Check a decoded JSON body against docs/protocol.md

        Raises:
            TTSRequestError: Naming the first bad or missing field.
        """
        if not isinstance(body, Mapping):
            raise TTSRequestError("request body must be a JSON object")
        model_id = body.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise TTSRequestError("model_id is required (for example 'sonic-latest')")
        transcript = body.get("transcript")
        if not isinstance(transcript, str) or not transcript.strip():
            raise TTSRequestError("transcript is required and must be non-empty text")
        if len(transcript) > MAX_TRANSCRIPT_CHARS:
            raise TTSRequestError(f"transcript is longer than {MAX_TRANSCRIPT_CHARS} characters")
        voice = body.get("voice")
        if not (
            (isinstance(voice, str) and voice)
            or (isinstance(voice, Mapping) and isinstance(voice.get("id"), str))
        ):
            raise TTSRequestError("voice is required: an id string or {'mode': 'id', 'id': ...}")
        fmt = body.get("output_format")
        if not isinstance(fmt, Mapping):
            raise TTSRequestError("output_format is required")
        container = fmt.get("container")
        if container not in ("raw", "wav"):
            raise TTSRequestError(
                f"output_format.container {container!r} is not supported by the twin: "
                "use 'raw' or 'wav'"
            )
        encoding = fmt.get("encoding")
        if encoding not in TTS_ENCODINGS:
            raise TTSRequestError(
                f"output_format.encoding {encoding!r} is not one of {', '.join(TTS_ENCODINGS)}"
            )
        rate = fmt.get("sample_rate")
        if isinstance(rate, bool) or rate not in TTS_SAMPLE_RATES:
            raise TTSRequestError(
                f"output_format.sample_rate {rate!r} is not one of "
                f"{', '.join(map(str, TTS_SAMPLE_RATES))}"
            )
        language = body.get("language", "en")
        if language is None:
            language = "en"
        if not isinstance(language, str) or language not in _PICO_VOICES:
            raise TTSRequestError(
                f"language {language!r} is not available offline: use one of "
                f"{', '.join(_PICO_VOICES)}"
            )
        return cls(transcript, str(container), str(encoding), int(rate), language)


def wav_header(encoding: str, sample_rate: int, data_size: int) -> bytes:
    """A RIFF/WAVE header for mono audio of ``encoding`` with ``data_size`` bytes."""
    bits = _WAV_BITS[encoding]
    block = bits // 8
    fmt = struct.pack(
        "<HHIIHH", _WAV_TAG[encoding], 1, sample_rate, sample_rate * block, block, bits
    )
    if _WAV_TAG[encoding] != 1:
        fmt += b"\x00\x00"  # cbSize: non-PCM formats carry the extension size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", data_size)
    return b"RIFF" + struct.pack("<I", len(body) + data_size) + body


# glibc's mallopt parameter: fill every allocation with (byte ^ 0xFF) and every freed block
# with byte. 0xFF makes allocations zero-filled; 0 (the default) turns it off.
_M_PERTURB: Final = -6
_ZERO_FILL: Final = 0xFF


def _libc_mallopt() -> Any:
    """glibc's ``mallopt``, or ``None`` elsewhere (musl, macOS: no such knob)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


_MALLOPT: Final = _libc_mallopt()
# One Pico call at a time in the process: the malloc setting below is process-wide.
_PICO_LOCK: Final = threading.Lock()


@contextlib.contextmanager
def _zeroed_malloc() -> Iterator[None]:
    """Make ``malloc`` return zero-filled memory for the duration (glibc; else no effect)."""
    if _MALLOPT is None:
        yield
        return
    _MALLOPT(_M_PERTURB, _ZERO_FILL)
    try:
        yield
    finally:
        restore = os.environ.get("MALLOC_PERTURB_", "0")
        _MALLOPT(_M_PERTURB, int(restore) & 0xFF if restore.isdigit() else 0)


class Synthesizer:
    """Pico speech synthesis, one call at a time in the process.

    Pico holds the GIL while it runs (about 5 ms per second of speech), so one thread is all
    the parallelism there is; the lock also keeps its C state single-user, and makes equal
    requests give identical audio (see the module docstring).
    """

    def __init__(self) -> None:
        from py_nanotts import NanoTTS  # the ``twin`` extra

        self._tts: Any = NanoTTS()

    def synthesize(self, request: TTSRequest) -> bytes:
        """The request's audio, synchronously (call from a worker thread)."""
        parts = [p for p in _SENTENCE_END.split(request.transcript) if p.strip()]
        with _PICO_LOCK, _zeroed_malloc():
            pcm = b"".join(
                self._tts.speak(
                    part, voice=_PICO_VOICES[request.language], speed=PICO_SPEED, volume=PICO_VOLUME
                )
                for part in parts
            )
        import numpy as np

        from . import _dsp

        samples = _dsp.decode(pcm, "pcm_s16le")
        if request.sample_rate != PICO_RATE:
            resampler = _dsp.Resampler(PICO_RATE, request.sample_rate)
            samples = np.concatenate(
                [resampler.process(samples), resampler.process(samples[:0], final=True)]
            )
        audio = _dsp.encode(samples, request.encoding)
        if request.container == "wav":
            return wav_header(request.encoding, request.sample_rate, len(audio)) + audio
        return audio

    async def generate(self, request: TTSRequest) -> bytes:
        """The request's audio, off the event loop."""
        return await asyncio.to_thread(self.synthesize, request)
