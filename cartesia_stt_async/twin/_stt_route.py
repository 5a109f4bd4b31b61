"""``POST /stt``: batch transcription of a whole file, as Cartesia's route answers it.

The request (docs/files.md): ``multipart/form-data`` with a ``file`` part and the fields
``model``, ``language`` and ``timestamp_granularities[]`` (in any order); ``encoding`` and
``sample_rate`` in the query string for raw PCM. The file part is streamed to a temporary file
as it arrives (aiohttp's multipart reader, 64 KiB at a time), never held whole in memory, and
refused once it passes the size limit. The audio is then decoded offline by the twin's engine
(the whole file at once, no pacing): one recognizer session fed the file, closed for its
finals, with word times from the start of the file. An engine that gives no word times (the
scripted one) gets its words spread evenly over the audio.

The twin decodes WAV (PCM, float, mu-law, A-law; mono) and raw PCM; any other container is
"unreadable audio". Statuses (our decision where Cartesia's docs are silent):

* 400 ``invalid_request``: not multipart, a missing or empty ``file``, a missing ``model``,
  a bad ``timestamp_granularities[]``, a bad ``encoding``/``sample_rate`` query; 400
  ``model_not_found``, ``language_not_supported`` for those fields;
* 401: no or a bad credential (an access token needs the ``stt`` grant);
* 413 ``file_too_large``: the file part is over the limit (default 2 GiB);
* 422 ``unreadable_audio``: a file that is not WAV or raw PCM, or a WAV the twin cannot use;
* 429 ``concurrency_limited`` with ``Retry-After``: every recognizer is busy;
* 500 ``recognizer_failed``: the engine failed.

Error bodies are Cartesia's JSON ``{error_code, title, message, request_id}``; with a
``cartesia-version`` older than ``2026-03-01`` they are plain text ``Title: Message``, as
Cartesia documents for those versions. The fault plan's ``http`` faults
(:class:`~cartesia_stt_async.twin.faults.HTTPFault`) apply before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import uuid
import weakref
from dataclasses import dataclass, field
from typing import IO, Final

from aiohttp import BodyPartReader, web
from aiohttp.multipart import BadContentDispositionHeader

from ..errors import InvalidAudioError
from ..protocol.audio import (
    BYTES_PER_SAMPLE,
    ENCODINGS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    parse_wav_header,
)
from ..protocol.batch import LANGUAGES, TIMESTAMP_GRANULARITIES
from ._auth import authorize, refusal
from ._state import OPTIONS, TWIN, Twin
from .engines import Segment, SessionParams

__all__ = ["BatchRecord", "BatchState", "batch_state", "stt_batch_route"]

log = logging.getLogger("cartesia_stt_async.twin")

BATCH_MODELS: Final = frozenset({"ink-whisper", "ink-whisper-2025-06-04"})
MAX_UPLOAD_BYTES: Final = 2 << 30  # 2 GiB, the documented limit
_JSON_ERRORS_SINCE: Final = "2026-03-01"  # older versions get "Title: Message" text
_FIELD_LIMIT: Final = 4096  # bytes of a text field
_FEED_SECONDS: Final = 1.0  # audio per feed() call
_HEAD: Final = 4096  # bytes sniffed for a WAV header


@dataclass
class BatchRecord:
    """What the twin saw of one ``POST /stt`` request (for tests).

    Attributes:
        request_id: The request's id.
        headers: Request headers, lower-case names.
        query: Query pairs as received.
        fields: The form's text fields, in arrival order (``file`` excluded).
        filename: The file part's filename, if any.
        content_type: The file part's content type, if any.
        size: Bytes of the file part received.
        status: The status answered (``None`` for a dropped connection).
    """

    request_id: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    fields: list[tuple[str, str]] = field(default_factory=list)
    filename: str | None = None
    content_type: str | None = None
    size: int = 0
    status: int | None = None


@dataclass
class BatchState:
    """The ``POST /stt`` side of one twin.

    Attributes:
        max_upload_bytes: The file size limit (413 above it); tests may lower it.
        requests: A :class:`BatchRecord` per request, in arrival order.
        active: Requests being transcribed right now.
    """

    max_upload_bytes: int = MAX_UPLOAD_BYTES
    requests: list[BatchRecord] = field(default_factory=list)
    active: int = 0


_STATES: weakref.WeakKeyDictionary[Twin, BatchState] = weakref.WeakKeyDictionary()


def batch_state(twin: Twin) -> BatchState:
    """The ``POST /stt`` state of ``twin`` (its records and size limit)."""
    state = _STATES.get(twin)
    if state is None:
        state = _STATES[twin] = BatchState()
    return state


class _Refused(Exception):
    """Ends a request with an error answer."""

    def __init__(self, status: int, title: str, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.code = code


def _error(refused: _Refused, request_id: str, version: str | None) -> web.Response:
    if version is not None and version < _JSON_ERRORS_SINCE:
        return web.Response(
            status=refused.status,
            text=f"{refused.title}: {refused.message}",
            headers={"X-Request-Id": request_id},
        )
    return refusal(refused.status, request_id, refused.title, refused.message, refused.code)


def _bad(message: str, code: str = "invalid_request", title: str = "Invalid request") -> _Refused:
    return _Refused(400, title, message, code)


def _unreadable(message: str) -> _Refused:
    return _Refused(422, "Unreadable audio", message, "unreadable_audio")


@dataclass
class _Form:
    """The parsed form: text fields, and the file spooled to disk."""

    fields: dict[str, str] = field(default_factory=dict)
    granularities: list[str] = field(default_factory=list)
    file: IO[bytes] | None = None
    size: int = 0


async def _text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > _FIELD_LIMIT:
            raise _bad(f"form field {part.name!r} is longer than {_FIELD_LIMIT} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"form field {part.name!r} is not UTF-8 text") from None


async def _read_form(request: web.Request, record: BatchRecord, limit: int) -> _Form:
    """Parse the multipart body, spooling the file part to a temporary file."""
    if request.content_type != "multipart/form-data":
        raise _bad(f"the body must be multipart/form-data, got {request.content_type!r}")
    form = _Form()
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise _bad("nested multipart bodies are not accepted")
            if part.name == "file":
                if form.file is not None:
                    raise _bad("more than one file part")
                record.filename = part.filename
                record.content_type = part.headers.get("Content-Type")
                form.file = tempfile.TemporaryFile()  # noqa: SIM115  # closed by the route
                while chunk := await part.read_chunk(1 << 16):
                    form.size += len(chunk)
                    if form.size > limit:
                        raise _Refused(
                            413,
                            "File too large",
                            f"the file is larger than the limit of {limit} bytes",
                            "file_too_large",
                        )
                    form.file.write(chunk)
                record.size = form.size
            elif part.name is not None:
                value = await _text(part)
                record.fields.append((part.name, value))
                if part.name == "timestamp_granularities[]":
                    form.granularities.append(value)
                else:
                    form.fields[part.name] = value
            else:
                await part.release()
    except (ValueError, BadContentDispositionHeader) as exc:  # aiohttp's malformed multipart
        # (BadContentDispositionHeader is a warning aiohttp emits; raised where warnings are
        # errors, else the part has no name and is skipped.)
        if form.file is not None:
            form.file.close()
        raise _bad(f"malformed multipart body: {exc}") from None
    except BaseException:
        if form.file is not None:
            form.file.close()
        raise
    return form


@dataclass(frozen=True)
class _Audio:
    encoding: str
    sample_rate: int
    offset: int
    size: int


def _raw_format(query: dict[str, str]) -> tuple[str, int] | None:
    encoding, rate = query.get("encoding"), query.get("sample_rate")
    if encoding is None and rate is None:
        return None
    if encoding not in ENCODINGS:
        raise _bad(f"encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}")
    if rate is None or not rate.isdigit() or not MIN_SAMPLE_RATE <= int(rate) <= MAX_SAMPLE_RATE:
        raise _bad(
            f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}, "
            f"got {rate!r}"
        )
    return encoding, int(rate)


def _audio(file: IO[bytes], size: int, raw: tuple[str, int] | None) -> _Audio:
    """Where the samples are in the spooled file, and their format."""
    if raw is not None:
        return _Audio(raw[0], raw[1], 0, size)
    file.seek(0)
    head = file.read(_HEAD)
    try:
        info = parse_wav_header(head)
    except InvalidAudioError as exc:
        raise _unreadable(
            f"the file is not audio the twin can decode ({exc}); it decodes WAV, and raw PCM "
            "given the encoding and sample_rate query parameters"
        ) from None
    if info.channels != 1:
        raise _unreadable(f"the WAV has {info.channels} channels; the twin decodes mono")
    if info.encoding is None:
        raise _unreadable(
            f"the WAV's samples (format tag {info.format_tag}, {info.bits_per_sample}-bit) are "
            f"not one of {', '.join(ENCODINGS)}"
        )
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise _unreadable(f"the WAV's sample rate {info.sample_rate} Hz is not supported")
    available = max(size - info.data_offset, 0)
    # A streamed WAV may say 0 or 0xFFFFFFFF: the data then runs to the end of the file.
    data_size = info.data_size if 0 < info.data_size <= available else available
    return _Audio(info.encoding, info.sample_rate, info.data_offset, data_size)


def _check_fields(form: _Form) -> tuple[str, str, bool]:
    model = form.fields.get("model")
    if not model:
        raise _bad("model is required")
    if model not in BATCH_MODELS:
        raise _bad(
            f"The model {model!r} is not valid for batch transcription; use ink-whisper.",
            "model_not_found",
            "Invalid model",
        )
    language = form.fields.get("language") or "en"
    if language not in LANGUAGES:
        raise _bad(
            f"language {language!r} is not supported", "language_not_supported", "Invalid language"
        )
    bad = [g for g in form.granularities if g not in TIMESTAMP_GRANULARITIES]
    if bad:
        raise _bad(f"timestamp_granularities[] must be 'word', got {bad[0]!r}")
    if form.file is None:
        raise _bad("the file part is required", "missing_file", "Missing file")
    if form.size == 0:
        raise _bad("the file is empty", "missing_file", "Missing file")
    return model, language, bool(form.granularities)


def _even_words(text: str, duration: float) -> list[tuple[str, float, float]]:
    """Words spread evenly over the audio, for an engine that gives no times."""
    words = text.split()
    if not words:
        return []
    step = duration / len(words)
    return [(w, round(i * step, 3), round((i + 1) * step, 3)) for i, w in enumerate(words)]


async def _recognize(
    request: web.Request, file: IO[bytes], audio: _Audio, model: str, language: str
) -> tuple[str, list[tuple[str, float, float]] | None, float]:
    """Decode the whole file: ``(text, word times or None, duration)``."""
    opts = request.app[OPTIONS]
    params = SessionParams(
        model=model,
        encoding=audio.encoding,
        sample_rate=audio.sample_rate,
        language=language,
        version=request.headers.get("cartesia-version"),
    )
    width = BYTES_PER_SAMPLE[audio.encoding]
    chunk = max(int(audio.sample_rate * _FEED_SECONDS) * width, width)
    segments: list[Segment] = []
    session = await opts.engine.open(params)
    try:
        file.seek(audio.offset)
        left = audio.size - audio.size % width
        while left > 0:
            data = file.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            segments += await session.feed(data)
        segments += await session.close()
    finally:
        await session.aclose()
    finals = [s for s in segments if s.is_final]
    text = "".join(s.text for s in finals).strip()
    duration = round((audio.size // width) / audio.sample_rate, 3)
    if any(s.words is not None for s in finals):
        words = [w for s in finals for w in (s.words or ())]
    else:
        words = _even_words(text, duration) if text else []
    return text, words, duration


async def _apply_faults(request: web.Request, index: int, request_id: str) -> web.Response | None:
    """Run the plan's faults for request ``index``: a response to send instead, or ``None``."""
    for fault in request.app[OPTIONS].faults.for_request(index):
        if fault.action == "delay":
            await asyncio.sleep(fault.delay)
        elif fault.action == "drop":
            await request.read()  # the whole request arrives, then no answer
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # aiohttp ends the handler without answering
        else:
            response = refusal(
                fault.status, request_id, "Injected fault", "refused by the twin", "twin_fault"
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            response.headers.update(fault.headers)
            return response
    return None


async def stt_batch_route(request: web.Request) -> web.StreamResponse:
    """Transcribe the request's file; answer the transcript as JSON."""
    twin, opts = request.app[TWIN], request.app[OPTIONS]
    state = batch_state(twin)
    request_id = str(uuid.uuid4())
    record = BatchRecord(
        request_id=request_id,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=list(request.query.items()),
    )
    index = len(state.requests)
    state.requests.append(record)
    planned = await _apply_faults(request, index, request_id)
    if planned is not None:
        record.status = planned.status
        return planned
    version = request.headers.get("cartesia-version")
    refused = authorize(request, opts, twin.tokens, "stt")
    if refused is not None:
        record.status = 401
        return refused.response(request_id)
    form: _Form | None = None
    try:
        raw = _raw_format(dict(request.query))
        form = await _read_form(request, record, state.max_upload_bytes)
        model, language, want_words = _check_fields(form)
        assert form.file is not None  # checked above
        audio = _audio(form.file, form.size, raw)
        limit = opts.session_limit
        if limit is not None and twin.active_sessions + state.active >= limit:
            raise _Refused(
                429,
                "Too many concurrent requests",
                f"at most {limit} concurrent requests",
                "concurrency_limited",
            )
        state.active += 1
        try:
            text, words, duration = await _recognize(request, form.file, audio, model, language)
        except Exception as exc:  # the engine's failure: a server error, logged
            log.warning("POST /stt recognizer failed: %s: %s", type(exc).__name__, exc)
            raise _Refused(
                500, "Recognizer failed", "the twin's recognizer failed", "recognizer_failed"
            ) from None
        finally:
            state.active -= 1
    except _Refused as err:
        record.status = err.status
        return _error(err, request_id, version)
    finally:
        if form is not None and form.file is not None:
            with contextlib.suppress(OSError):
                form.file.close()
    body: dict[str, object] = {
        "type": "transcript",
        "request_id": request_id,
        "text": text,
        "language": language,
        "duration": duration,
    }
    if want_words:
        body["words"] = [{"word": w, "start": s, "end": e} for w, s, e in words or ()]
    record.status = 200
    return web.Response(
        text=json.dumps(body), content_type="application/json", headers={"X-Request-Id": request_id}
    )
