"""``client.stt.transcribe`` against the twin's ``POST /stt`` (scripted engine: exact text).

The recognizer's own answers (pocketsphinx on synthesized speech) are in test_batch_speech.py;
retries in test_retry.py and tests/hostile/test_http_retry.py.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine, Twin, serve
from cartesia_stt_async.twin._stt_route import BatchRecord, batch_state

from .conftest import API_KEY, SLACK, client_for, other_tasks, pcm

ROOT = Path(__file__).resolve().parents[1]
TEXT = "Hello there, batch world."


def wav(data: bytes, rate: int = 16000, channels: int = 1, tag: int = 1, bits: int = 16) -> bytes:
    """A WAV file around ``data``."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def _open(path: Path) -> io.BufferedReader:
    return open(path, "rb")  # the caller closes it


def engine(n: int = 8) -> ScriptedEngine:
    return ScriptedEngine([[TEXT]] * n)


def records(twin: Twin) -> list[BatchRecord]:
    return batch_state(twin).requests


async def transcribe(twin: Twin, **kw: Any) -> stt.Transcription:
    args: dict[str, Any] = {"model": "ink-whisper", "language": "en"}
    args.update(kw)
    async with client_for(twin, max_retries=0) as client:
        return await client.stt.transcribe(**args)


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["bytes", "path", "str-path", "file", "tuple", "tuple3"])
async def test_every_file_form(form: str, tmp_path: Path) -> None:
    audio = wav(pcm(2.0))
    path = tmp_path / "meeting.wav"
    path.write_bytes(audio)
    handle = _open(path)  # closed below: transcribe must not close it
    files: dict[str, Any] = {
        "bytes": audio,
        "path": path,
        "str-path": str(path),
        "file": handle,
        "tuple": ("call.wav", audio),
        "tuple3": ("call.bin", handle, "audio/x-wav"),
    }
    names = {"bytes": "upload", "tuple": "call.wav", "tuple3": "call.bin"}
    try:
        async with serve(engine=engine()) as twin:
            result = await transcribe(twin, file=files[form], timestamp_granularities=["word"])
            (record,) = records(twin)
        assert not handle.closed  # the caller's file stays open
    finally:
        handle.close()
    assert isinstance(result, stt.Transcription)
    assert result.text == TEXT
    assert result.duration == 2.0
    assert result.language == "en"
    assert result.request_id == record.request_id
    assert result.words is not None
    assert [w.word for w in result.words] == TEXT.split()
    assert all(isinstance(w, stt.Word) for w in result.words)
    assert result.words[0].start == 0.0 and result.words[-1].end == 2.0
    assert record.filename == names.get(form, "meeting.wav")
    # Given, else guessed from the name ("upload": unknown).
    assert record.content_type == ("application/octet-stream" if form == "bytes" else "audio/x-wav")
    assert record.size == len(audio)
    assert record.fields == [
        ("model", "ink-whisper"),
        ("language", "en"),
        ("timestamp_granularities[]", "word"),
    ]
    assert record.query == []
    assert record.headers["authorization"] == f"Bearer {API_KEY}"
    assert record.headers["cartesia-version"] == "2026-08-14"
    assert not other_tasks()


@pytest.mark.asyncio
async def test_without_word_timestamps_words_is_none() -> None:
    async with serve(engine=engine()) as twin:
        result = await transcribe(twin, file=wav(pcm(1.0)), language=None)
        (record,) = records(twin)
    assert result.text == TEXT and result.words is None
    assert record.fields == [("model", "ink-whisper")]
    assert result.language == "en"  # the server's default


@pytest.mark.asyncio
@pytest.mark.parametrize(("encoding", "width"), [("pcm_s16le", 2), ("pcm_f32le", 4)])
async def test_raw_pcm_sends_encoding_and_rate_in_the_query(encoding: str, width: int) -> None:
    async with serve(engine=engine()) as twin:
        result = await transcribe(
            twin, file=b"\0" * (width * 8000 * 3), encoding=encoding, sample_rate=8000
        )
        (record,) = records(twin)
    assert record.query == [("encoding", encoding), ("sample_rate", "8000")]
    assert result.duration == 3.0
    assert record.content_type == "application/octet-stream"


@pytest.mark.asyncio
async def test_extra_headers_query_and_body_are_sent() -> None:
    async with serve(engine=engine()) as twin:
        await transcribe(
            twin,
            file=wav(pcm(0.5)),
            extra_headers={"X-Trace": "t-1"},
            extra_query={"note": "q"},
            extra_body={"prompt": "p"},
        )
        (record,) = records(twin)
    assert record.headers["x-trace"] == "t-1"
    assert ("note", "q") in record.query
    assert ("prompt", "p") in record.fields


@pytest.mark.asyncio
async def test_a_non_seekable_stream_is_uploaded_chunked() -> None:
    read, write = os.pipe()
    audio = wav(pcm(1.0))
    os.write(write, audio)  # fits the pipe's buffer: 32 KiB
    os.close(write)
    with os.fdopen(read, "rb", buffering=0) as source:
        async with serve(engine=engine()) as twin:
            result = await transcribe(twin, file=source)
            (record,) = records(twin)
    assert result.text == TEXT and record.size == len(audio)


# -- arguments are checked before any I/O --------------------------------------------------


def _bad_cases(tmp: Path) -> list[tuple[dict[str, Any], str]]:
    good = wav(pcm(0.1))
    return [
        ({"model": "ink-2"}, "'ink-2'"),
        ({"model": None}, "model must be an ink-whisper model"),
        ({"language": "xx"}, "'xx'"),
        ({"language": "EN"}, "'EN'"),
        ({"timestamp_granularities": "word"}, "a list like ['word']"),
        ({"timestamp_granularities": ["segment"]}, "'segment'"),
        ({"encoding": "mp3", "sample_rate": 16000}, "'mp3'"),
        ({"encoding": "pcm_s16le", "sample_rate": 7999}, "7999"),
        ({"encoding": "pcm_s16le", "sample_rate": 16000.0}, "16000.0"),
        ({"encoding": "pcm_s16le"}, "raw PCM needs both encoding and sample_rate"),
        ({"sample_rate": 16000}, "raw PCM needs both"),
        ({"file": tmp / "missing.wav"}, "does not exist"),
        ({"file": tmp}, "is a directory"),
        ({"file": io.StringIO("text")}, "binary mode"),
        ({"file": 42}, "got int"),
        ({"file": b""}, "empty"),
        ({"file": ("a.wav",)}, "a tuple of 1"),
        ({"file": (b"name", good)}, "filename must be a string"),
        ({"file": ("a.wav", good, "bad\ntype")}, "MIME type"),
        ({"extra_headers": {"X-A": "b\r\nInjected: 1"}}, "line break"),
        ({"timeout": 0}, "timeout must be"),
        ({"languag": "en"}, "unknown argument(s) 'languag'"),
    ]


@pytest.mark.asyncio
async def test_bad_arguments_fail_before_any_request(tmp_path: Path) -> None:
    async with serve(engine=engine()) as twin:
        async with client_for(twin, max_retries=0) as client:
            for bad, named in _bad_cases(tmp_path):
                args: dict[str, Any] = {"file": wav(pcm(0.1)), "model": "ink-whisper"}
                args.update(bad)
                with pytest.raises(stt.UsageError) as info:
                    await client.stt.transcribe(**args)
                assert named in str(info.value), (bad, str(info.value))
        assert records(twin) == []


@pytest.mark.asyncio
async def test_a_closed_file_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(wav(pcm(0.1)))
    handle = _open(path)
    handle.close()
    async with serve(engine=engine()) as twin:
        with pytest.raises(stt.UsageError, match="closed file object"):
            await transcribe(twin, file=handle)


# -- the server's errors keep its message, code and request id -----------------------------


@pytest.mark.asyncio
async def test_unreadable_audio_is_422_with_the_servers_fields() -> None:
    async with serve(engine=engine()) as twin:
        with pytest.raises(stt.UnprocessableEntityError) as info:
            await transcribe(twin, file=b"ID3\x04 not a wav at all")
        (record,) = records(twin)
    err = info.value
    assert err.status_code == 422 and record.status == 422
    assert err.error_code == "unreadable_audio"
    assert err.title == "Unreadable audio"
    assert "WAV" in err.message
    assert err.request_id == record.request_id
    assert API_KEY not in str(err) and API_KEY not in repr(err.args)


@pytest.mark.asyncio
async def test_too_large_is_413() -> None:
    async with serve(engine=engine()) as twin:
        batch_state(twin).max_upload_bytes = 100_000
        with pytest.raises(stt.APIStatusError) as info:
            await transcribe(twin, file=wav(pcm(4.0)))  # 128 KB
        ok = await transcribe(twin, file=wav(pcm(1.0)))  # 32 KB
    assert info.value.status_code == 413 and info.value.error_code == "file_too_large"
    assert ok.text == TEXT


@pytest.mark.asyncio
async def test_old_cartesia_version_gets_plain_text_errors() -> None:
    async with (
        serve(engine=engine()) as twin,
        client_for(twin, max_retries=0, cartesia_version="2025-04-16") as client,
    ):
        with pytest.raises(stt.APIStatusError) as info:
            await client.stt.transcribe(file=b"not audio", model="ink-whisper")
    assert info.value.status_code == 422
    assert "Unreadable audio: the file is not audio" in info.value.message
    assert info.value.error_code is None


async def _raw_post(twin: Twin, form: aiohttp.FormData, query: str = "") -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{twin.base_url}/stt{query}",
            data=form,
            headers={"Authorization": f"Bearer {API_KEY}", "cartesia-version": "2026-08-14"},
        ) as response,
    ):
        return response.status, await response.json()


def _form(**fields: str | bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(name, value, filename="a.wav")
        else:
            form.add_field(name.replace("_list", "[]"), value)
    return form


W = "ink-whisper"
BAD = "invalid_request"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fields", "query", "status", "code"),
    [
        ({"model": "ink-2", "file": b"x"}, "", 400, "model_not_found"),
        ({"file": b"x"}, "", 400, "invalid_request"),
        ({"model": W, "language": "zz", "file": b"x"}, "", 400, "language_not_supported"),
        ({"model": W, "notes": b"x"}, "", 400, "missing_file"),
        ({"model": W, "timestamp_granularities_list": "s", "file": b"x"}, "", 400, BAD),
        ({"model": W, "file": b"xx"}, "?encoding=pcm_s16le&sample_rate=5", 400, BAD),
        ({"model": W, "file": b"xx"}, "?encoding=opus&sample_rate=16000", 400, BAD),
        ({"model": W, "file": wav(pcm(0.1), channels=2)}, "", 422, "unreadable_audio"),
        ({"model": W, "file": wav(pcm(0.1), bits=24)}, "", 422, "unreadable_audio"),
    ],
)
async def test_twin_error_bodies(
    fields: dict[str, str | bytes], query: str, status: int, code: str
) -> None:
    async with serve(engine=engine()) as twin:
        got, body = await _raw_post(twin, _form(**fields), query)
        (record,) = records(twin)
    assert got == status
    assert set(body) == {"error_code", "title", "message", "request_id"}
    assert body["error_code"] == code and body["request_id"] == record.request_id


@pytest.mark.asyncio
async def test_twin_refuses_a_body_that_is_not_multipart() -> None:
    async with (
        serve(engine=engine()) as twin,
        aiohttp.ClientSession() as session,
        session.post(
            f"{twin.base_url}/stt", json={"model": "ink-whisper"}, headers={"X-API-Key": "k"}
        ) as response,
    ):
        assert response.status == 400
        assert "multipart/form-data" in (await response.json())["message"]


# -- credentials, CORS, the sync client ------------------------------------------------------


@pytest.mark.asyncio
async def test_keys_and_access_tokens() -> None:
    async with serve(engine=engine(), api_keys=["other"]) as twin:
        with pytest.raises(stt.AuthenticationError) as info:
            async with client_for(twin) as client:  # retries on: a 401 is never retried
                await client.stt.transcribe(file=wav(pcm(0.1)), model="ink-whisper")
        assert len(records(twin)) == 1
        assert API_KEY not in str(info.value)
        stt_token = twin.mint_token({"stt": True})
        tts_token = twin.mint_token({"tts": True})
        async with stt.AsyncCartesia(api_key=stt_token, base_url=twin.base_url) as client:
            assert (await client.stt.transcribe(file=wav(pcm(0.1)), model="ink-whisper")).text
        async with stt.AsyncCartesia(
            api_key=tts_token, base_url=twin.base_url, max_retries=0
        ) as client:
            with pytest.raises(stt.AuthenticationError):
                await client.stt.transcribe(file=wav(pcm(0.1)), model="ink-whisper")


@pytest.mark.asyncio
async def test_cors_preflight_and_headers() -> None:
    origin = "http://localhost:5173"
    async with serve(engine=engine()) as twin, aiohttp.ClientSession() as session:
        async with session.options(
            f"{twin.base_url}/stt",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, cartesia-version",
            },
        ) as preflight:
            assert preflight.status == 204
            assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        form = _form(model="ink-whisper", file=wav(pcm(0.2)))
        async with session.post(
            f"{twin.base_url}/stt", data=form, headers={"Origin": origin, "X-API-Key": "k"}
        ) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == origin


def test_sync_client_transcribes(tmp_path: Path) -> None:
    from cartesia_stt_async.twin import start_twin

    path = tmp_path / "a.wav"
    path.write_bytes(wav(pcm(1.5)))
    with (
        start_twin(engine=engine()) as server,
        stt.Cartesia(api_key=API_KEY, base_url=server.base_url) as client,
    ):
        result = client.stt.transcribe(
            file=path, model="ink-whisper", timestamp_granularities=["word"]
        )
    assert result.text == TEXT and result.duration == 1.5 and result.words


# -- the upload is a stream --------------------------------------------------------------------

_UPLOAD = textwrap.dedent(
    """
    import asyncio, os, sys, resource, tracemalloc
    import cartesia_stt_async as stt

    async def main(base_url, path, small):
        async with stt.AsyncCartesia(api_key="k", base_url=base_url, max_retries=0) as client:
            # A small upload first, so imports and the pool are not counted.
            await client.stt.transcribe(file=small, model="ink-whisper", timeout=120)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            result = await client.stt.transcribe(file=path, model="ink-whisper", timeout=120)
            _, peak = tracemalloc.get_traced_memory()
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(peak, (after - before) * 1024, result.duration)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    """
)


@pytest.mark.asyncio
async def test_a_large_file_is_streamed_not_read_into_memory(tmp_path: Path) -> None:
    size = 256 << 20  # 256 MiB of raw PCM: 8388 s at 16 kHz
    path = tmp_path / "large.raw"
    path.touch()
    os.truncate(path, size)  # sparse: no disk I/O to make it
    small = tmp_path / "small.raw"
    small.write_bytes(pcm(1.0))
    script = tmp_path / "upload.py"
    raw = 'model="ink-whisper", encoding="pcm_s16le", sample_rate=16000'
    script.write_text(_UPLOAD.replace('model="ink-whisper"', raw))
    async with serve(engine=ScriptedEngine([["big"]] * 2)) as twin:
        import asyncio

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            twin.base_url,
            str(path),
            str(small),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 50 * SLACK)
    assert proc.returncode == 0, err.decode()
    peak, rss_growth, duration = out.split()
    print(f"256 MiB upload: tracemalloc peak {int(peak)} B, max RSS growth {int(rss_growth)} B")
    assert float(duration) == pytest.approx(size / 32000, abs=0.01)
    # Python allocations and resident memory grow by a few MB at most, not by 256 MiB.
    assert int(peak) < 4 << 20, int(peak)
    assert int(rss_growth) < 16 << 20, int(rss_growth)


@pytest.mark.asyncio
async def test_busy_recognizers_answer_429_with_retry_after() -> None:
    async with serve(engine=engine(), max_sessions=1) as twin:
        client = client_for(twin, max_retries=0)
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000
        ):
            with pytest.raises(stt.RateLimitError) as info:
                await client.stt.transcribe(file=wav(pcm(0.2)), model="ink-whisper")
        assert info.value.error_code == "concurrency_limited"
        assert info.value.retry_after == 1.0
        assert (await client.stt.transcribe(file=wav(pcm(0.2)), model="ink-whisper")).text
        await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=xyz", b"garbage"),
        ("multipart/form-data", b"--x\r\n"),
        ("multipart/form-data; boundary=xyz", b'--xyz\r\nContent-Disposition: form-data; name="f'),
    ],
)
async def test_a_malformed_multipart_body_is_400(content_type: str, body: bytes) -> None:
    async with (
        serve(engine=engine()) as twin,
        aiohttp.ClientSession() as session,
        session.post(
            f"{twin.base_url}/stt",
            data=body,
            headers={"Content-Type": content_type, "X-API-Key": "k"},
        ) as response,
    ):
        assert response.status == 400
        assert "malformed multipart body" in (await response.json())["message"]
