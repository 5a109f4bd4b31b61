"""Bad input, client side and server side: each case ends in one specific typed error within a
bounded time, never hangs, leaves no task behind, and never shows the API key.

Server misbehaviour comes from the twin's fault plans (:mod:`cartesia_stt_async.twin.faults`)
and its test hooks; a few transport-level cases use plain asyncio servers on 127.0.0.1:0.
"""

from __future__ import annotations

import asyncio
import logging
import math
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Reply, ScriptedEngine, Twin, serve
from cartesia_stt_async.twin.faults import Fault, Faults
from cartesia_stt_async.vad import VadFinalizer

from . import conftest
from .conftest import API_KEY, SLACK, other_tasks, pcm

Action = Callable[["Env"], Awaitable[object]]


@dataclass
class Env:
    """What a case acts on: the base URL of a server, and a way to open a session there."""

    base_url: str
    options: dict[str, Any] = field(default_factory=dict)

    def client(self, **kw: Any) -> stt.AsyncCartesia:
        # No retries: each case's first failure is its subject (retries: test_retry.py).
        kw.setdefault("max_retries", 0)
        return stt.AsyncCartesia(api_key=API_KEY, base_url=self.base_url, **kw)

    def ws(self, **kw: Any) -> stt.ConnectionManager:
        options = {"close_timeout": 1.0 * SLACK, "max_delay": 0.004, **self.options, **kw}
        return conftest.ws(self.client(), **options)


@dataclass
class Case:
    action: Action
    error: type[BaseException]
    match: str | None = None
    twin: dict[str, Any] = field(default_factory=dict)
    server: Callable[[], AbstractAsyncContextManager[str]] | None = None


def session(*steps: Callable[[stt.AsyncConnection], Awaitable[object]], **kw: Any) -> Action:
    """Open a session, run the steps in order, leave normally."""

    async def run(env: Env) -> None:
        async with env.ws(**kw) as conn:
            for step in steps:
                await step(conn)

    return run


def opening(**kw: Any) -> Action:
    async def run(env: Env) -> None:
        async with env.ws(**kw):
            pass

    return run


def preparing(**kw: Any) -> Action:
    async def run(env: Env) -> None:
        env.ws(**kw)

    return run


def audio(seconds: float = 0.1) -> Callable[[stt.AsyncConnection], Awaitable[object]]:
    return lambda c: c.send_audio(pcm(seconds))


def finalize(timeout: float = 5.0) -> Callable[[stt.AsyncConnection], Awaitable[object]]:
    return lambda c: c.finalize(timeout=timeout * SLACK)


def fault(*faults: Fault, **kw: Any) -> dict[str, Any]:
    return {"faults": Faults(list(faults), **kw)}


@asynccontextmanager
async def silent_tcp() -> AsyncIterator[str]:
    """Accepts TCP connections and never says a word (no handshake answer)."""
    writers: list[asyncio.StreamWriter] = []

    async def on_client(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def closed_port() -> AsyncIterator[str]:
    """A port nobody listens on."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    yield f"http://127.0.0.1:{port}"


async def _buffer_full(env: Env) -> None:
    async with env.ws(buffer_policy="raise", max_buffered_ms=500) as conn:
        for _ in range(2000):  # the twin stopped reading: the queue fills up
            await conn.send_audio(pcm(0.1))
        raise AssertionError("never raised")


async def _on_bad_type(env: Env) -> None:
    async with env.ws() as conn:
        conn.on(3, print)  # type: ignore[call-overload]


def released() -> memoryview:
    view = memoryview(pcm(0.1))
    view.release()
    return view


LONG = " " + "word " * 100

CASES: dict[str, Case] = {
    # -- client side: wrong calls ---------------------------------------------------------
    "audio_str": Case(session(lambda c: c.send_audio("abc")), stt.InvalidAudioError),  # type: ignore[arg-type]
    "audio_int": Case(session(lambda c: c.send_audio(5)), stt.InvalidAudioError),  # type: ignore[arg-type]
    "audio_none": Case(session(lambda c: c.send_audio(None)), stt.InvalidAudioError),  # type: ignore[arg-type]
    "raw_odd_bytes": Case(session(lambda c: c.send_raw(b"\x00\x01\x02")), stt.InvalidAudioError),
    "raw_list": Case(session(lambda c: c.send_raw([1, 2])), stt.InvalidAudioError),  # type: ignore[arg-type]
    "audio_released_view": Case(
        session(lambda c: c.send_audio(released())), stt.InvalidAudioError, "released"
    ),
    "raw_released_view": Case(
        session(lambda c: c.send_raw(released())), stt.InvalidAudioError, "released"
    ),
    "unknown_command": Case(session(lambda c: c.send("flush")), stt.InvalidCommandError),
    "command_not_str": Case(session(lambda c: c.send(7)), stt.InvalidCommandError),  # type: ignore[arg-type]
    "audio_after_close": Case(
        session(lambda c: c.send("close"), audio()), stt.ConnectionStateError
    ),
    "finalize_after_close": Case(
        session(lambda c: c.send("close"), finalize()), stt.ConnectionStateError
    ),
    "stray_byte_at_finalize": Case(
        session(lambda c: c.send_audio(pcm(0.1) + b"\x01"), finalize()),
        stt.InvalidAudioError,
        "stray byte",
    ),
    "negative_speed": Case(
        session(lambda c: c.send_audio(pcm(0.1), speed=-1.0)), stt.UsageError, "positive"
    ),
    "nan_speed": Case(preparing(speed=math.nan), stt.UsageError),
    "bad_buffer_policy": Case(preparing(buffer_policy="grow"), stt.UsageError, "buffer_policy"),
    "negative_max_retries": Case(preparing(max_retries=-1), stt.UsageError, "max_retries"),
    "zero_keepalive": Case(preparing(keepalive=0), stt.UsageError, "keepalive"),
    "callback_not_callable": Case(
        preparing(on_reconnecting="yes"), stt.UsageError, "on_reconnecting"
    ),
    "unknown_encoding": Case(preparing(encoding="pcm_u8"), stt.UsageError),
    "zero_sample_rate": Case(preparing(sample_rate=0), stt.UsageError),
    "keyterm_is_a_string": Case(preparing(keyterm="Cartesia"), stt.UsageError, "keyterm"),
    "handler_type_not_str": Case(_on_bad_type, stt.UsageError, "event_type"),
    "queue_full_with_raise_policy": Case(
        _buffer_full,
        stt.BufferFullError,
        "max_buffered_ms",
        twin=fault(Fault("stop_reading", after_frames=2)),
    ),
    # -- server side: refusals ------------------------------------------------------------
    "handshake_401": Case(opening(), stt.AuthenticationError, twin=fault(refuse={0: 401})),
    "handshake_403": Case(opening(), stt.PermissionDeniedError, twin=fault(refuse={0: 403})),
    "handshake_429": Case(opening(), stt.RateLimitError, twin=fault(refuse={0: 429})),
    "handshake_500": Case(opening(), stt.ServerError, twin=fault(refuse={0: 500})),
    "wrong_key": Case(opening(), stt.AuthenticationError, twin={"api_keys": ["other"]}),
    "invalid_model_in_band": Case(
        session(audio(), finalize()), stt.BadRequestError, "model", twin={}
    ),
    "invalid_rate_in_band": Case(session(audio(), finalize()), stt.BadRequestError, "sample_rate"),
    # -- server side: broken wire ---------------------------------------------------------
    "malformed_json": Case(
        session(audio(), finalize()),
        stt.ProtocolError,
        twin=fault(Fault("malformed_json", after_frames=1)),
    ),
    "binary_frame": Case(
        session(audio(), finalize()),
        stt.ProtocolError,
        "binary",
        twin=fault(Fault("binary", after_frames=1)),
    ),
    "error_event_500": Case(
        session(audio(), finalize()),
        stt.ServerError,
        "injected",
        twin=fault(Fault("error_event", after_frames=1, code=500)),
    ),
    "close_1008": Case(
        session(audio(), finalize()),
        stt.ConnectionClosedError,
        "1008",
        twin=fault(Fault("close", after_frames=1, code=1008, reason="policy")),
    ),
    "drop_without_retries": Case(
        session(audio(), finalize(), max_retries=0),
        stt.ConnectionClosedError,
        "1006",
        twin=fault(Fault("abort", after_frames=1)),
    ),
    "drop_after_every_handshake": Case(
        session(audio(), finalize(), max_retries=2),
        stt.ReconnectError,
        "handshake",
        twin=fault(Fault("abort", after_frames=1)),
    ),
    "reconnect_refused_401": Case(
        session(audio(), finalize()),
        stt.AuthenticationError,
        twin=fault(Fault("abort", connection=0, after_frames=1), refuse={1: 401}),
    ),
    "flush_done_withheld": Case(
        session(audio(), finalize(timeout=0.3)),
        stt.APITimeoutError,
        "flush_done",
        twin=fault(withhold_flush_done=True),
    ),
    "server_stops_reading_at_close": Case(
        session(audio()),
        stt.APITimeoutError,
        "done",
        twin=fault(Fault("stop_reading", after_frames=1)),
    ),
    "message_too_large": Case(
        session(audio(), finalize(), max_message_size=200, max_retries=0),
        stt.ConnectionClosedError,
        "1009",
        twin={"engine": ScriptedEngine([Reply(finals=[LONG])])},
    ),
    # -- transport ------------------------------------------------------------------------
    "nobody_listens": Case(
        opening(), stt.APIConnectionError, "could not connect", server=closed_port
    ),
    "handshake_never_answered": Case(
        opening(open_timeout=0.3), stt.APITimeoutError, "opening", server=silent_tcp
    ),
}
CASES["invalid_model_in_band"].action = session(audio(), finalize(), model="ink-9")
CASES["invalid_rate_in_band"].action = session(audio(), finalize(), sample_rate=96000)


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(CASES))
async def test_bad_input_ends_in_a_typed_error(name: str, caplog: pytest.LogCaptureFixture) -> None:
    case = CASES[name]
    caplog.set_level(logging.DEBUG)
    options = {"engine": ScriptedEngine([[" ok"]]), **case.twin}
    server: AbstractAsyncContextManager[Any] = (
        case.server() if case.server is not None else serve(**options)
    )
    async with server as where:
        base_url = where.base_url if isinstance(where, Twin) else where
        with pytest.raises(case.error, match=case.match) as info:
            async with asyncio.timeout(10 * SLACK):  # bounded: never a hang
                await case.action(Env(base_url))
    exc: BaseException | None = info.value
    assert not isinstance(exc, asyncio.CancelledError | TimeoutError) or isinstance(
        exc, stt.APITimeoutError
    )
    while exc is not None:  # the key is in no message of the chain
        assert API_KEY not in str(exc) and API_KEY not in repr(exc)
        exc = exc.__cause__ or exc.__context__
    assert API_KEY not in caplog.text
    assert not other_tasks()


@pytest.mark.asyncio
async def test_a_non_contiguous_view_is_sent_as_its_bytes_by_every_entry_point() -> None:
    """``memoryview(buf)[::2]`` and typed strided views: send_audio, send_raw and
    VadFinalizer.feed take them alike (copied, in order: the bytes of ``view.tobytes()``),
    where send_audio and feed raised a bare TypeError before."""
    heard: list[bytes] = []

    def answer(audio: bytes) -> list[str]:
        heard.append(audio)
        return [" ok"]

    byte_view = memoryview(bytes(range(256)) * 25)[::2]  # 3200 bytes, non-contiguous
    typed_view = memoryview(array("h", range(-1600, 1600)))[::2]  # 1600 samples
    views = [byte_view, typed_view]
    async with (
        serve(engine=ScriptedEngine([], by_audio=answer)) as twin,
        Env(twin.base_url).ws() as conn,
    ):
        for view in views:
            await conn.send_audio(view)
            await conn.finalize(timeout=5 * SLACK)
            await conn.send_raw(view)
            await conn.finalize(timeout=5 * SLACK)
    assert heard == [v.tobytes() for v in views for _ in (1, 2)]
    # Half a second of room tone, a second of buzz, then two of silence.
    loud = array("h", [0] * 8000 + [12000, -12000] * 8000 + [0] * 32000)
    strided = memoryview(array("h", [s for s in loud for _ in (1, 2)]))[::2]
    expected = VadFinalizer("pcm_s16le", 16000, backend="energy").feed(loud.tobytes())
    assert expected  # the pause asks for a finalize
    assert VadFinalizer("pcm_s16le", 16000, backend="energy").feed(strided) == expected
    assert not other_tasks()


def _wav_bytes(channels: int, rate: int, frames: bytes) -> bytes:
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


FILES_SENT_AS_AUDIO = [
    pytest.param(b"ID3\x04\x00\x00" + bytes(3194), "an MP3 file", id="mp3"),
    pytest.param(b"OggS\x00\x02" + bytes(3194), "an Ogg file", id="ogg"),
    pytest.param(b"fLaC\x00\x00" + bytes(3194), "a FLAC file", id="flac"),
    pytest.param(b"\x00\x00\x00\x20ftypM4A " + bytes(3188), "an MP4/M4A file", id="m4a"),
    pytest.param(_wav_bytes(2, 44100, bytes(3200)), "has 2 channels", id="stereo-44k-wav"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("audio", "needle"), FILES_SENT_AS_AUDIO)
@pytest.mark.parametrize("entry", ["send_audio", "send_raw", "stream"])
async def test_a_file_sent_as_raw_audio_is_refused_naming_it(
    audio: bytes, needle: str, entry: str
) -> None:
    """Issue 21, first hour #7: mp3 (or a stereo WAV) bytes sent as raw audio gave an empty or
    garbage transcript without a word; now a typed error names the format and the remedy."""
    async with (
        serve(engine=ScriptedEngine([["heard"]])) as twin,
        stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url) as client,
        client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn,
    ):
        with pytest.raises(stt.InvalidAudioError) as info:
            if entry == "stream":
                await conn.stream([audio])
            else:
                await getattr(conn, entry)(audio)
        if entry == "stream":
            return  # stream() closes the session on its error
        assert conn.stats.audio_bytes_sent == 0  # nothing of it went out
        await conn.send_audio(pcm(0.1))  # raw samples still go
        assert (await conn.finalize()).text == "heard"
    assert needle in str(info.value)
    assert "convert_wav" in str(info.value) or "ffmpeg" in str(info.value)


@pytest.mark.asyncio
async def test_a_wav_file_of_the_sessions_own_format_still_goes_through() -> None:
    """A mono 16 kHz WAV sent whole (header included) was harmless and stays allowed."""
    async with (
        serve(engine=ScriptedEngine([["ok"]])) as twin,
        stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url) as client,
        client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn,
    ):
        await conn.send_raw(_wav_bytes(1, 16000, bytes(3200)))
        assert (await conn.finalize()).text == "ok"


@pytest.mark.asyncio
async def test_a_stereo_wav_path_given_to_stream_says_how_to_convert_it(tmp_path: Any) -> None:
    path = tmp_path / "stereo.wav"
    path.write_bytes(_wav_bytes(2, 44100, bytes(8000)))
    async with (
        serve(engine=ScriptedEngine([])) as twin,
        stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url) as client,
        client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn,
    ):
        with pytest.raises(stt.InvalidAudioError) as info:
            await conn.stream([path])
    assert "has 2 channels" in str(info.value)
    assert "convert_wav(path, encoding='pcm_s16le', sample_rate=16000)" in str(info.value)


def test_with_instead_of_async_with_says_what_to_write() -> None:
    client = stt.AsyncCartesia(api_key=API_KEY, base_url="http://127.0.0.1:9")
    manager = client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    )
    with pytest.raises(stt.UsageError, match="async with"), manager:
        pass
    with pytest.raises(stt.UsageError, match="use the sync client"), client:
        pass
