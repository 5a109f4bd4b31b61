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
a path or bytes always can, a seekable file object is sought back, and a non-seekable one
(a pipe, a socket) that was already partly read is never retried: the first failure is raised.
"""

from __future__ import annotations

import io
import mimetypes
import os
from collections.abc import Mapping, Sequence
from typing import IO, Any, Final

import aiohttp

from ._http import HTTPClient
from .errors import UsageError
from .protocol.batch import STT_BATCH_PATH, Transcription, check_transcribe, decode_transcription
from .protocol.checks import check_number
from .protocol.commands import check_header_value

__all__ = ["FileTypes", "transcribe"]

FileContent = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
FileTypes = (
    FileContent | tuple[str | None, FileContent] | tuple[str | None, FileContent, str | None]
)
"""What ``transcribe(file=...)`` takes (the official SDK's ``FileTypes``, plus ``str`` paths)."""

_DEFAULT_NAME: Final = "upload"  # httpx's name for a bytes upload, what the official SDK sends


class _Reader(io.RawIOBase):
    """The caller's file object as aiohttp reads it: ``close()`` leaves the file open (it is
    the caller's), and a non-seekable file has no ``fileno`` (else aiohttp would take a pipe's
    size, 0, as the upload's length)."""

    def __init__(self, file: Any) -> None:
        super().__init__()
        self.file = file
        try:
            self.start: int | None = file.tell() if file.seekable() else None
        except (AttributeError, OSError):
            self.start = None
        self.consumed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.start is not None

    def tell(self) -> int:
        if self.start is None:
            raise io.UnsupportedOperation("not seekable")
        return int(self.file.tell())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.start is None:
            raise io.UnsupportedOperation("not seekable")
        return int(self.file.seek(offset, whence))

    def fileno(self) -> int:
        if self.start is None:
            raise io.UnsupportedOperation("not seekable")
        return int(self.file.fileno())

    def read(self, size: int | None = -1) -> bytes:
        data = self.file.read(size)
        if not isinstance(data, bytes | bytearray):
            raise UsageError(
                f"file must be opened in binary mode ('rb'): read() gave {type(data).__name__}"
            )
        if data:
            self.consumed = True
        return bytes(data)

    def readinto(self, buffer: Any) -> int:  # pragma: no cover - aiohttp calls read()
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        super().close()  # marks this wrapper closed; the caller's file stays open


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
        self._reader: _Reader | None = None
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
            self._reader = _Reader(file)
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
            opened = open(self._path, "rb")  # noqa: SIM115  # closed by aclose()
            self._opened.append(opened)
            return _Reader(opened)
        reader = self._reader
        assert reader is not None
        if reader.consumed and reader.start is not None:
            reader.file.seek(reader.start)
        return reader

    def replayable(self) -> bool:
        """Whether the part can be sent again from its start."""
        reader = self._reader
        return reader is None or reader.start is not None or not reader.consumed

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
        )
    finally:
        upload.close()
    return decode_transcription(content, answer_headers.get("X-Request-Id"))
