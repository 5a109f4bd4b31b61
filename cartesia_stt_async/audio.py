"""Load or convert a WAV file (an upload, a path, a file object) to a session's audio format.

The realtime endpoint takes raw mono audio in the encoding and sample rate declared when the
session opens. A WAV file a user uploads may be anything: 8/16/24/32-bit integers, 16/32/64-bit
floats, mu-law or A-law, mono or several channels, plain or ``WAVE_FORMAT_EXTENSIBLE``, at any
sample rate. Two helpers turn it into what the session takes:

* :func:`convert_wav` gives the audio in the encoding and sample rate you name, ready for
  ``send_audio``;
* :func:`load_wav` gives it at the file's own sample rate, unchanged when the protocol can
  carry it as it is (mono, one of the six encodings), else as mono ``pcm_s16le``. Open the
  session with its ``encoding`` and ``sample_rate``.

Channels are averaged to mono. Resampling uses libsoxr and needs the ``audio`` extra
(the ``audio`` extra: soxr and numpy); without it a conversion that
needs resampling raises :class:`ResamplingUnavailableError` and every other conversion works
(in pure Python, slower: numpy is used whenever it is installed). Conversion is CPU work; in
a server, run it off the event loop (``await asyncio.to_thread(convert_wav, upload, ...)``).
It works a block at a time, so its memory is the converted audio plus a few MB, whatever the
file's size.

Example (a fragment: ``conn`` is an open session)::

    audio = convert_wav(upload_bytes, encoding="pcm_s16le", sample_rate=16000)
    await conn.send_audio(audio)
"""

from __future__ import annotations

from dataclasses import dataclass

from ._wavconvert import (
    ResamplingUnavailableError,
    WavBody,
    WavSource,
    encode_mono,
    numpy_available,
    parse_wav,
    read_source,
    sample_format_name,
)
from .protocol.audio import AudioFormat, Encoding, WavInfo

__all__ = ["ResamplingUnavailableError", "WavAudio", "WavSource", "convert_wav", "load_wav"]


@dataclass(frozen=True)
class WavAudio:
    """A WAV file's audio as the protocol can carry it: mono, in one of the six encodings.

    Attributes:
        data: The samples, in ``encoding``.
        encoding: The protocol encoding of ``data``.
        sample_rate: Samples per second (the file's own).
        wav: What the file's header says (channels, bits, format tag, ...).
        converted: What was changed, in words; empty when ``data`` is the file's own bytes.
    """

    data: bytes
    encoding: Encoding
    sample_rate: int
    wav: WavInfo
    converted: str = ""

    @property
    def format(self) -> AudioFormat:
        """The session format that takes ``data`` as it is."""
        return AudioFormat(self.encoding, self.sample_rate)

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.format.duration(len(self.data))

    def __repr__(self) -> str:
        return (
            f"<WavAudio {self.encoding} {self.sample_rate} Hz {self.duration:.2f} s"
            f"{' (' + self.converted + ')' if self.converted else ''}>"
        )


def _read(source: WavSource) -> tuple[WavBody, str]:
    raw, name = read_source(source)
    return parse_wav(raw, name), name


def _notes(wav: WavBody) -> str:
    """What :func:`load_wav` changes, in words."""
    info, notes = wav.info, []
    if wav.sample_format != "pcm_s16le":
        notes.append(f"{sample_format_name(info)} to 16-bit PCM")
    if info.channels > 1:
        notes.append(f"{info.channels} channels averaged to mono")
    return "; ".join(notes)


def load_wav(source: WavSource) -> WavAudio:
    """Read a WAV file as mono audio the protocol can carry, at the file's own sample rate.

    A mono file in one of the six protocol encodings is returned as it is; anything else is
    converted to mono ``pcm_s16le`` (``converted`` says what changed). No resampling, so
    this never needs the ``audio`` extra.

    Args:
        source: The WAV file: bytes, a path, or a binary file object.

    Returns:
        The audio, with the encoding and sample rate to open the session with.

    Raises:
        InvalidAudioError: Not a WAV file, or a sample format it cannot read (named).
        UsageError: ``source`` is of another type, or a file object in text mode.
        UsageError: A path that cannot be read.
    """
    wav, _ = _read(source)
    info = wav.info
    if info.encoding is not None and info.channels == 1:
        return WavAudio(bytes(wav.body), info.encoding, info.sample_rate, info)
    data = encode_mono(wav, "pcm_s16le", numpy_available())
    return WavAudio(data, "pcm_s16le", info.sample_rate, info, _notes(wav))


def convert_wav(source: WavSource, *, encoding: str, sample_rate: int) -> bytes:
    """A WAV file's audio in a session's encoding and sample rate, ready for ``send_audio``.

    Args:
        source: The WAV file: bytes, a path, or a binary file object.
        encoding: The session's encoding (one of the six).
        sample_rate: The session's sample rate.

    Returns:
        Mono audio in ``encoding`` at ``sample_rate`` (the file's own bytes when they
        already are).

    Raises:
        UsageError: An unknown encoding, a sample rate that is not a positive integer, or a
            ``source`` of another type.
        InvalidAudioError: Not a WAV file, or a sample format it cannot read (named).
        ResamplingUnavailableError: The rates differ and soxr or numpy is not installed.
        UsageError: A path that cannot be read.
    """
    target = AudioFormat(encoding, sample_rate)  # validates both
    wav, _ = _read(source)
    info = wav.info
    if info.channels == 1 and info.encoding == encoding and info.sample_rate == sample_rate:
        return bytes(wav.body)
    if info.sample_rate != sample_rate:
        return encode_mono(wav, target.encoding, True, sample_rate)
    return encode_mono(wav, target.encoding, numpy_available())
