"""``client.stt.transcribe(...)``: a whole file in one request (``POST /stt``).

Shaped like the official SDK's ``client.stt.transcribe``: the same argument names and
meanings, so code written for it runs with one import changed. The file is uploaded as a
stream (64 KiB at a time, read in a worker thread), never read whole into memory, whatever
form it is given in:

* a path (``str`` or ``os.PathLike``): opened per attempt, closed after; the part's filename is
  its base name;
* ``bytes`` (or ``bytearray``/``memoryview``): sent as is, filename ``upload``;
* a binary file object (anything with ``read()`` returning bytes): read from its current
  position; never closed here (it is yours);
* the official tuple ``(filename, content[, content_type])``, ``content`` any of the above.

Retries (the client's :class:`~.protocol.retry.RetryPolicy`) re-send the file from its start:
a path or bytes always can, a seekable file object is sought back to where it was, and a
non-seekable one (a pipe, a socket) is never retried once an attempt started reading it: the
first failure is raised.
"""

from __future__ import annotations

import io
import mimetypes
import os
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any, Final, TypedDict

import aiohttp

from ._http import HTTPClient
from .errors import UsageError
from .protocol.batch import (
    STT_BATCH_PATH,
    Transcription,
    audio_duration,
    check_transcribe,
    decode_transcription,
)
from .protocol.checks import check_number
from .protocol.commands import check_header_value

__all__ = ["FileTypes", "TranscribeOptions", "check_options", "transcribe"]

FileContent = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
FileTypes = (
    FileContent | tuple[str | None, FileContent] | tuple[str | None, FileContent, str | None]
)
"""What ``transcribe(file=...)`` takes (the official SDK's ``FileTypes``, plus ``str`` paths)."""

_DEFAULT_NAME: Final = "upload"  # httpx's name for a bytes upload, what the official SDK sends


class _Reader(io.RawIOBase):
    """A file object as aiohttp reads it for one attempt.

    ``close()`` (which aiohttp calls) leaves the file open; a non-seekable file has no
    ``fileno`` (else aiohttp would take a pipe's size, 0, as the upload's length). aiohttp
    reads in worker threads, and a read of an abandoned attempt may still run after the next
    attempt has sought the file back: each read checks, under the source's lock, that its
    attempt is still the current one (else it reads nothing).
    """

    def __init__(self, source: _Source, file: Any, seekable: bool, attempt: int) -> None:
        super().__init__()
        self._source = source
        self._file = file
        self._seekable = seekable
        self._attempt = attempt

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def _check_seekable(self) -> None:
        if not self._seekable:
            raise io.UnsupportedOperation("not seekable")

    def tell(self) -> int:
        self._check_seekable()
        return int(self._file.tell())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_seekable()
        return int(self._file.seek(offset, whence))

    def fileno(self) -> int:
        self._check_seekable()
        return int(self._file.fileno())

    def read(self, size: int | None = -1) -> bytes:
        with self._source.lock:
            if self._attempt != self._source.attempt:
                return b""  # an abandoned attempt's late read: leave the file alone
            data = self._file.read(size)
        if not isinstance(data, bytes | bytearray):
            raise UsageError(
                f"file must be opened in binary mode ('rb'): read() gave {type(data).__name__}"
            )
        return bytes(data)

    def readinto(self, buffer: Any) -> int:  # pragma: no cover - aiohttp calls read()
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Source:
    """A file object given by the caller, shared by the attempts of one call."""

    def __init__(self, file: Any) -> None:
        self.file = file
        try:
            self.start: int | None = file.tell() if file.seekable() else None
        except (AttributeError, OSError):
            self.start = None
        self.lock = threading.Lock()
        self.attempt = 0

    def reader(self) -> _Reader:
        """A reader for a new attempt, from where the file was when given."""
        with self.lock:
            self.attempt += 1
            if self.attempt > 1 and self.start is not None:
                self.file.seek(self.start)
        return _Reader(self, self.file, self.start is not None, self.attempt)

    def replayable(self) -> bool:
        """Seekable, or never handed to an attempt (a non-seekable file is never retried:
        an abandoned attempt may have read from it in a worker thread)."""
        return self.start is not None or self.attempt == 0


class _Upload:
    """The ``file`` argument, checked, as a multipart part that can be made once per attempt."""

    def __init__(self, file: object) -> None:
        name: object = None
        content_type: object = None
        if isinstance(file, tuple):
            if not 2 <= len(file) <= 3:
                raise UsageError(
                    "file as a tuple must be (filename, content) or (filename, content, "
                    f"content_type), got a tuple of {len(file)}"
                )
            name, content_type = file[0], (file[2] if len(file) == 3 else None)
            file = file[1]
        if isinstance(file, tuple):
            raise UsageError("file tuple content must be a path, bytes or a binary file object")
        self._path: str | None = None
        self._data: bytes | bytearray | memoryview | None = None
        self._source: _Source | None = None  # the caller's file object
        self._opened: list[IO[bytes]] = []
        if isinstance(file, str | os.PathLike):
            path = os.fspath(file)
            if not isinstance(path, str):
                raise UsageError(f"file path must be text, got {path!r}")
            if not os.path.isfile(path):
                why = "is a directory" if os.path.isdir(path) else "does not exist"
                raise UsageError(f"cannot transcribe {path!r}: the file {why}")
            if not os.access(path, os.R_OK):
                raise UsageError(f"cannot transcribe {path!r}: the file is not readable")
            self._path = path
            default_name = os.path.basename(path)
        elif isinstance(file, bytes | bytearray | memoryview):
            if not len(file):
                raise UsageError("file is empty (0 bytes)")
            self._data = file
            default_name = _DEFAULT_NAME
        elif isinstance(file, io.TextIOBase):
            raise UsageError("file must be opened in binary mode ('rb'), not text mode")
        elif callable(getattr(file, "read", None)):
            if getattr(file, "closed", False) is True:
                raise UsageError("file is a closed file object")
            self._source = _Source(file)
            raw_name = getattr(file, "name", None)
            default_name = (
                os.path.basename(raw_name) if isinstance(raw_name, str) else _DEFAULT_NAME
            )
        else:
            raise UsageError(
                "file must be a path, bytes, a binary file object or a (filename, content"
                f"[, content_type]) tuple, got {type(file).__name__}"
            )
        if name is not None and not isinstance(name, str):
            raise UsageError(f"the file tuple's filename must be a string, got {name!r}")
        self.filename = name or default_name
        self.content_type = self._content_type(content_type)

    def _content_type(self, given: object) -> str:
        if given is not None:
            if not isinstance(given, str) or not given or any(c in given for c in "\r\n\0"):
                raise UsageError(
                    f"the file tuple's content_type must be a MIME type, got {given!r}"
                )
            return given
        guessed, _ = mimetypes.guess_type(self.filename)
        return guessed or "application/octet-stream"

    def body(self) -> Any:
        """The part's content for one attempt (from the start of the file)."""
        if self._data is not None:
            return self._data
        if self._path is not None:
            opened = open(self._path, "rb")  # noqa: SIM115  # closed by close()
            self._opened.append(opened)
            return opened
        assert self._source is not None
        return self._source.reader()

    def replayable(self) -> bool:
        """Whether the part can be sent again from its start."""
        return self._source is None or self._source.replayable()

    def close(self) -> None:
        """Close the files this upload opened (never the caller's)."""
        for opened in self._opened:
            opened.close()
        self._opened.clear()


def _check_extra(
    extra_headers: object, extra_query: object, extra_body: object
) -> tuple[dict[str, str], list[tuple[str, str]], list[tuple[str, str]]]:
    headers: dict[str, str] = {}
    if extra_headers is not None:
        if not isinstance(extra_headers, Mapping):
            raise UsageError(f"extra_headers must be a mapping, got {type(extra_headers).__name__}")
        for key, value in extra_headers.items():
            check_header_value(f"extra_headers[{key!r}]", key, value)
            headers[key] = value
    pairs: list[list[tuple[str, str]]] = []
    for what, extra in (("extra_query", extra_query), ("extra_body", extra_body)):
        if extra is None:
            pairs.append([])
            continue
        if not isinstance(extra, Mapping):
            raise UsageError(f"{what} must be a mapping, got {type(extra).__name__}")
        found = []
        for key, value in extra.items():
            if not isinstance(key, str) or not isinstance(value, str | int | float):
                raise UsageError(f"{what}[{key!r}] must be a string or a number")
            found.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
        pairs.append(found)
    return headers, pairs[0], pairs[1]


class TranscribeOptions(TypedDict, total=False):
    """The optional arguments of ``transcribe`` (each documented at
    ``AsyncCartesia().stt.transcribe``)."""

    language: str | None
    timestamp_granularities: Sequence[str] | None
    encoding: str | None
    sample_rate: int | None
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: float | None


def check_options(options: Mapping[str, object]) -> None:
    """Raise :class:`UsageError` for an argument ``transcribe`` does not take."""
    unknown = sorted(set(options) - set(TranscribeOptions.__annotations__))
    if unknown:
        raise UsageError(
            f"transcribe() got unknown argument(s) {', '.join(map(repr, unknown))}; it takes "
            f"file, model, {', '.join(TranscribeOptions.__annotations__)}"
        )


async def transcribe(
    http: HTTPClient,
    *,
    file: FileTypes,
    model: str,
    language: str | None = None,
    timestamp_granularities: Sequence[str] | None = None,
    encoding: str | None = None,
    sample_rate: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
    extra_query: Mapping[str, object] | None = None,
    extra_body: Mapping[str, object] | None = None,
    timeout: float | None = None,
) -> Transcription:
    """Transcribe a whole file (see ``AsyncCartesia().stt.transcribe``)."""
    params = check_transcribe(
        model=model,
        language=language,
        timestamp_granularities=timestamp_granularities,
        encoding=encoding,
        sample_rate=sample_rate,
    )
    headers, query, fields = _check_extra(extra_headers, extra_query, extra_body)
    timeout = check_number("timeout", timeout, low=0.0, strict=True, none=True)
    upload = _Upload(file)

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field(
            "file", upload.body(), filename=upload.filename, content_type=upload.content_type
        )
        for key, value in [*params.fields(), *fields]:
            data.add_field(key, value)
        return data

    try:
        content, answer_headers = await http.post(
            STT_BATCH_PATH,
            accept="application/json",
            form=form,
            replayable=upload.replayable,
            query=[*params.query(), *query],
            extra_headers=headers,
            timeout=timeout,
            audio_seconds=audio_duration,
        )
    finally:
        upload.close()
    request_id = http.secrets.optional(answer_headers.get("X-Request-Id"))
    return decode_transcription(content, request_id)
