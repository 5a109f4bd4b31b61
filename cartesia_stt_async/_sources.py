"""Audio sources for ``stream()``: bytes, (async) iterables of bytes, and WAV files.

File reads run in a worker thread (``anyio.to_thread``) so a slow disk never blocks the loop.
A WAV file is checked against the session before a byte is sent: a wrong encoding, sample rate
or channel count is an :class:`~cartesia_stt_async.errors.InvalidAudioError`, never a garbage
transcript.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import BinaryIO

import anyio.to_thread

from ._translate import file_error
from .errors import InvalidAudioError, UsageError
from .protocol.audio import AudioFormat, parse_wav_header

__all__ = ["AudioSource", "iter_audio"]

AudioSource = (
    bytes | bytearray | memoryview | str | os.PathLike[str] | Iterable[bytes] | AsyncIterable[bytes]
)
"""One utterance's audio: raw bytes, chunks of bytes (sync or async), or a WAV file path."""

_READ_SIZE = 64 * 1024
_HEADER_SIZE = 64 * 1024


async def iter_audio(source: AudioSource, fmt: AudioFormat) -> AsyncIterator[bytes]:
    """Yield the raw audio bytes of ``source`` in chunks.

    Args:
        source: See :data:`AudioSource`. A ``str`` or path is a WAV file.
        fmt: The session's format; WAV files must match it.

    Raises:
        InvalidAudioError: For a WAV file that is not mono ``fmt``.
        UsageError: For a source of an unsupported type.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
    elif isinstance(source, str | os.PathLike):
        async for chunk in _iter_wav(os.fspath(source), fmt):
            yield chunk
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield _check_chunk(chunk)
    elif isinstance(source, Iterable):
        for chunk in source:
            yield _check_chunk(chunk)
    else:
        raise UsageError(
            "an utterance must be bytes, an iterable or async iterable of bytes, or a WAV path; "
            f"got {type(source).__name__}"
        )


def _check_chunk(chunk: object) -> bytes:
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise InvalidAudioError(f"audio chunks must be bytes, got {type(chunk).__name__}")
    return bytes(chunk)


def _open_wav(path: str, fmt: AudioFormat) -> tuple[BinaryIO, int]:
    opened: BinaryIO | UsageError
    try:
        opened = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        opened = file_error(path, exc, "open")
    if isinstance(opened, UsageError):  # raised outside the except block: no __context__
        raise opened
    f = opened
    try:
        info = parse_wav_header(f.read(_HEADER_SIZE))
        info.check_matches(fmt, name=f"WAV file {os.path.basename(path)!r}")
        f.seek(info.data_offset)
    except BaseException:
        f.close()
        raise
    # Streamed WAVs write 0 or 0xFFFFFFFF as the data size: read to the end then.
    size = info.data_size if 0 < info.data_size < 0xFFFFFFFF else -1
    return f, size


async def _iter_wav(path: str, fmt: AudioFormat) -> AsyncIterator[bytes]:
    f, remaining = await anyio.to_thread.run_sync(_open_wav, path, fmt)
    try:
        while remaining:
            want = _READ_SIZE if remaining < 0 else min(_READ_SIZE, remaining)
            chunk = await anyio.to_thread.run_sync(f.read, want)
            if not chunk:
                break
            if remaining > 0:
                remaining -= len(chunk)
            yield chunk
    finally:
        f.close()
