"""The client surface against the twin: configuration, handshake, the official SDK's flow,
error mapping, protocol errors from a misbehaving peer, and secrets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Faults, ScriptedEngine

from .conftest import API_KEY, SLACK, TwinFactory, client_for, other_tasks, pcm


@pytest.mark.asyncio
async def test_handshake_sends_auth_version_user_agent_and_query(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        client = client_for(twin)
        async with client.stt.manual_finalize.websocket(
            model="ink-whisper",
            encoding="pcm_mulaw",
            sample_rate=8000,
            language="de",
            keyterm=["Cartesia", "Ink 2"],
            min_volume=0.25,
            max_silence_duration_secs=0.5,
        ) as conn:
            assert conn.request_id
        rec = twin.sessions[0]
        assert rec.headers["authorization"] == f"Bearer {API_KEY}"
        assert rec.headers["cartesia-version"] == "2026-08-14"
        assert re.fullmatch(r"cartesia-stt-async/\d+\.\d+\.\d+\S*", rec.headers["user-agent"])
        assert rec.query == [
            ("model", "ink-whisper"),
            ("encoding", "pcm_mulaw"),
            ("sample_rate", "8000"),
            ("language", "de"),
            ("keyterm", "Cartesia"),
            ("keyterm", "Ink 2"),
            ("min_volume", "0.25"),
            ("max_silence_duration_secs", "0.5"),
        ]
        assert rec.request_id == conn.request_id


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    monkeypatch.setenv("CARTESIA_BASE_URL", "http://127.0.0.1:9/prefix/")
    client = stt.AsyncCartesia()
    mgr = client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    )
    assert mgr.url.startswith("ws://127.0.0.1:9/prefix/stt/websocket?model=ink-2&")
    assert API_KEY not in repr(client) and API_KEY not in repr(mgr)
    monkeypatch.delenv("CARTESIA_BASE_URL")
    default = stt.AsyncCartesia().stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    )
    assert default.url.startswith("wss://api.cartesia.ai/stt/websocket?")
    wsb = stt.AsyncCartesia(websocket_base_url="ws://127.0.0.1:1/x").stt.manual_finalize
    assert wsb.websocket(model="m", encoding="pcm_alaw", sample_rate=8000).url.startswith(
        "ws://127.0.0.1:1/x/stt/websocket?"
    )


def test_missing_api_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(stt.ConfigurationError, match="CARTESIA_API_KEY"):
        stt.AsyncCartesia()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoding": "mp3"}, "encoding"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": "16000"}, "sample_rate"),
        ({"keyterm": "Cartesia"}, "keyterm"),
        ({"min_volume": 2.0}, "min_volume"),
        ({"model": ""}, "model"),
        ({"speed": 0}, "speed"),
    ],
)
def test_bad_parameters_fail_before_connecting(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"model": "ink-2", "encoding": "pcm_s16le", "sample_rate": 16000}
    args.update(kwargs)
    client = stt.AsyncCartesia(api_key=API_KEY, base_url="http://127.0.0.1:9")
    with pytest.raises(stt.UsageError, match=match):
        client.stt.manual_finalize.websocket(**args)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_seed_async_example_flow_through_compatible_surface(
    twin_factory: TwinFactory,
) -> None:
    """The seed's async example, with the TTS call replaced by fixed audio."""
    engine = ScriptedEngine([["The quick brown fox."], [" Sandy sells seashells."]])
    async with twin_factory(engine=engine) as twin:
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url)
        encoding = "pcm_s16le"
        sample_rate = 16000
        full_transcript = ""
        printed: list[str] = []

        async with client.stt.manual_finalize.websocket(
            encoding=encoding, model="ink-2", sample_rate=sample_rate
        ) as connection:

            async def generate_audio_and_push(utterance: str) -> None:
                audio = pcm(0.3)
                chunk_bytes = (sample_rate * 2) // 10
                for i in range(0, len(audio), chunk_bytes):
                    await connection.send_raw(audio[i : i + chunk_bytes])
                    await asyncio.sleep(0.01)
                await connection.send("finalize")

            async def send_audio() -> None:
                for utterance in ("The quick brown fox", " Sandy sells seashells"):
                    await generate_audio_and_push(utterance)
                await connection.send("close")

            async def receive_events() -> None:
                nonlocal full_transcript
                async for event in connection:
                    if event.type == "transcript":
                        if event.is_final:  # type: ignore[union-attr]
                            full_transcript += event.text  # type: ignore[union-attr]
                    elif event.type in ("flush_done", "done"):
                        printed.append(event.type)
                    elif event.type == "error":
                        printed.append(event.message)  # type: ignore[union-attr]

            await asyncio.gather(send_audio(), receive_events())

        assert full_transcript == "The quick brown fox. Sandy sells seashells."
        assert printed == ["flush_done", "flush_done", "done"]
        assert [n for _, n in twin.sessions[0].frames] == [3200, 3200, 3200] * 2
        assert [c for _, c in twin.sessions[0].commands] == ["finalize", "finalize", "close"]
    assert not other_tasks()


@pytest.mark.asyncio
async def test_connect_shortcut_and_enter(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([[" hi"]])) as twin:
        conn = await stt.connect(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            api_key=API_KEY,
            base_url=twin.base_url,
            speed=None,
        ).enter()
        await conn.send_audio(pcm(0.1))
        assert (await conn.finalize(timeout=5 * SLACK)).text == " hi"
        await conn.aclose()
        assert conn.state == "done"
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, stt.BadRequestError),
        (403, stt.PermissionDeniedError),
        (404, stt.NotFoundError),
        (418, stt.APIStatusError),
        (500, stt.ServerError),
        (503, stt.ServerError),
    ],
)
async def test_handshake_refusals_map_to_typed_errors(
    twin_factory: TwinFactory, status: int, cls: type[stt.APIStatusError]
) -> None:
    async with twin_factory(engine=ScriptedEngine([]), faults=Faults(refuse={0: status})) as twin:
        with pytest.raises(cls) as info:
            # max_retries=0: the first 5xx is raised (test_retry.py shows it retried).
            async with client_for(twin, max_retries=0).stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000
            ):
                pass
        assert type(info.value) is cls
        assert info.value.status_code == status
        assert API_KEY not in str(info.value)
    assert not other_tasks()


@pytest.mark.asyncio
async def test_401_and_429(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([]), api_keys=["other"], max_sessions=1) as twin:
        with pytest.raises(stt.AuthenticationError) as auth:
            async with client_for(twin).stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000
            ):
                pass
        assert auth.value.status_code == 401
        assert API_KEY not in str(auth.value) and API_KEY not in repr(auth.value)
        good = stt.AsyncCartesia(
            api_key="other", base_url=twin.base_url, max_retries=0
        ).stt.manual_finalize
        async with good.websocket(model="ink-2", encoding="pcm_s16le", sample_rate=16000):
            with pytest.raises(stt.RateLimitError) as limited:
                async with good.websocket(model="ink-2", encoding="pcm_s16le", sample_rate=16000):
                    pass
        assert limited.value.status_code == 429
        assert limited.value.retry_after == 1.0
    assert not other_tasks()


@pytest.mark.asyncio
async def test_in_band_error_is_event_when_iterating_and_error_when_finalizing(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        mf = client_for(twin).stt.manual_finalize
        async with mf.websocket(model="ink-2", encoding="pcm_s16le", sample_rate=123) as conn:
            events = [e async for e in conn]  # ends cleanly after the error event and close
        assert [e.type for e in events] == ["error"]
        err = events[0]
        assert isinstance(err, stt.ErrorEvent)
        assert err.status_code == 400 and "sample_rate" in err.message

        with pytest.raises(stt.BadRequestError) as info:
            async with mf.websocket(model="ink-2", encoding="pcm_s16le", sample_rate=123) as c2:
                await c2.finalize(timeout=5 * SLACK)
        assert info.value.status_code == 400
        assert info.value.request_id
    assert not other_tasks()


@pytest.mark.asyncio
async def test_unreachable_server_is_a_connection_error() -> None:
    # Bind a port, then close it, so nothing listens there.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = stt.AsyncCartesia(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(stt.APIConnectionError) as info:
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000
        ):
            pass
    assert API_KEY not in str(info.value)


Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def silent_peer() -> AsyncIterator[str]:
    """Accepts the WebSocket upgrade by hand, then never reads or answers anything again
    (not even a close frame): a hung server, which the websockets library cannot imitate."""
    writers: list[asyncio.StreamWriter] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        key = re.search(rb"(?i)sec-websocket-key: *(\S+)", head)
        assert key is not None
        accept = base64.b64encode(
            hashlib.sha1(key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def raw_peer(handler: Handler) -> AsyncIterator[str]:
    """A real websockets server that misbehaves as ``handler`` says; yields its base URL."""
    async with ws_serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"http://127.0.0.1:{port}"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("this is not json", "not a JSON object"),
        ('{"type": "transcript", "is_final": "yes", "text": 3}', "malformed 'transcript'"),
        ('{"no_type": 1}', "without a string 'type'"),
        (b"\x00\x01binary", "binary"),
    ],
)
async def test_malformed_server_messages_are_protocol_errors(
    payload: str | bytes, match: str
) -> None:
    async def handler(peer: ServerConnection) -> None:
        await peer.send(payload)
        await peer.wait_closed()

    async with raw_peer(handler) as base_url:
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=base_url)
        with pytest.raises(stt.ProtocolError, match=match):
            async with client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, close_timeout=1.0
            ) as conn:
                await conn.send_audio(pcm(0.1))
                await conn.finalize(timeout=5 * SLACK)
    assert not other_tasks()


@pytest.mark.asyncio
async def test_unknown_event_types_and_fields_are_surfaced_not_fatal() -> None:
    async def handler(peer: ServerConnection) -> None:
        await peer.send('{"type": "speech_started", "request_id": "r1", "at": 0.5}')
        async for message in peer:
            if message == "finalize":
                await peer.send(
                    '{"type":"transcript","is_final":true,"text":" ok","request_id":"r1",'
                    '"new_field":{"x":1},"words":[{"words":["ok"],"start":[0.1],"end":[0.3]}]}'
                )
                await peer.send('{"type":"flush_done","request_id":"r1"}')
            elif message == "close":
                await peer.send('{"type":"done","request_id":"r1"}')
                await peer.close()

    async with raw_peer(handler) as base_url:
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=base_url)
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(pcm(0.1))
            utt = await conn.finalize(timeout=5 * SLACK)
            await conn.send("close")
            events = [e async for e in conn]
        assert utt.text == " ok"
        assert [w.word for w in utt.words] == ["ok"]
        assert [e.type for e in events] == ["speech_started", "transcript", "flush_done", "done"]
        unknown = events[0]
        assert isinstance(unknown, stt.UnknownEvent) and unknown.data["at"] == 0.5
    assert not other_tasks()


@pytest.mark.asyncio
async def test_abnormal_close_fails_waiters_and_iteration() -> None:
    async def handler(peer: ServerConnection) -> None:
        await peer.recv()
        await peer.close(code=1011, reason="internal error")

    async with raw_peer(handler) as base_url:
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=base_url)
        with pytest.raises(stt.ConnectionClosedError) as info:
            async with client.stt.manual_finalize.websocket(
                model="ink-2",
                encoding="pcm_s16le",
                sample_rate=16000,
                speed=None,
                max_retries=0,  # reconnecting is tested in test_reconnect.py
            ) as conn:
                await conn.send_audio(pcm(0.1))
                await conn.finalize(timeout=5 * SLACK)
        assert info.value.code == 1011
        assert info.value.reason == "internal error"
        with pytest.raises(stt.ConnectionClosedError):
            async for _ in conn:
                pass
    assert not other_tasks()


@pytest.mark.asyncio
async def test_api_key_never_logged(
    twin_factory: TwinFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with twin_factory(engine=ScriptedEngine([[" x"]])) as twin:
        async with client_for(twin).stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(pcm(0.1))
            await conn.finalize(timeout=5 * SLACK)
        async with twin_factory(engine=ScriptedEngine([]), api_keys=["other"]) as strict:
            with pytest.raises(stt.AuthenticationError):
                async with client_for(strict).stt.manual_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000
                ):
                    pass
    messages = [r.getMessage() for r in caplog.records]
    assert any("authorization" in m.lower() for m in messages)  # the handshake was logged
    assert not [m for m in messages if API_KEY in m or API_KEY[-10:] in m]


@pytest.mark.asyncio
async def test_key_in_a_base_url_query_is_redacted_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = stt.AsyncCartesia(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/?api_key={API_KEY}"
    )
    mgr = client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000
    )
    assert API_KEY not in mgr.url and API_KEY not in repr(mgr) and API_KEY not in repr(client)
    with pytest.raises(stt.APIConnectionError) as info:
        await mgr.enter()
    assert API_KEY not in str(info.value)
    assert not [r for r in caplog.records if API_KEY in r.getMessage()]


@pytest.mark.asyncio
async def test_an_unnoticed_failure_is_raised_when_leaving_the_block() -> None:
    """A drop nobody observed must not pass silently: final transcripts may be missing."""

    async def handler(peer: ServerConnection) -> None:
        await peer.recv()
        peer.transport.abort()  # drop without a close frame

    async with raw_peer(handler) as base_url:
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=base_url)
        with pytest.raises(stt.ConnectionClosedError) as info:
            async with client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None, max_retries=0
            ) as conn:
                await conn.send_audio(pcm(0.1))
                await asyncio.sleep(0.3)
        assert info.value.code == 1006
        assert conn.state == "closed"
    assert not other_tasks()


@pytest.mark.asyncio
async def test_exit_returns_once_done_arrives_even_if_the_server_keeps_the_socket() -> None:
    async def handler(peer: ServerConnection) -> None:
        async for message in peer:
            if message == "close":
                await peer.send('{"type":"transcript","is_final":true,"text":" last"}')
                await peer.send('{"type":"done"}')
                await peer.wait_closed()  # never closes on its own

    async with raw_peer(handler) as base_url:
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=base_url)
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None, close_timeout=10
        ) as conn:
            await conn.send_audio(pcm(0.1))
        assert loop.time() - start < 2 * SLACK
        assert conn.transcript.text == " last"
        assert conn.state == "done"
    assert not other_tasks()


@pytest.mark.asyncio
async def test_leaving_on_an_exception_is_prompt_with_a_silent_server() -> None:
    async with silent_peer() as base_url:
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=base_url)
        loop = asyncio.get_running_loop()
        with pytest.raises(RuntimeError, match="user code failed"):
            async with client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, close_timeout=10
            ):
                start = loop.time()
                raise RuntimeError("user code failed")
        assert loop.time() - start < 1.5 * SLACK
    assert not other_tasks()


@pytest.mark.asyncio
async def test_official_handler_style_on_once_off_dispatch(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([["a"], [" b"]])) as twin:
        seen: list[str] = []
        first_only: list[str] = []

        manager = client_for(twin).stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        )

        @manager.on("transcript")
        async def on_transcript(event: stt.TranscriptEvent) -> None:
            seen.append(event.text)

        manager.once("flush_done", lambda e: first_only.append(e.type))

        def never(event: stt.Event) -> None:
            seen.append("never")

        assert manager.on("done", never) is manager
        assert manager.off("done", never) is manager
        manager.on("flush_done", never)  # moved to the connection, removed there

        async with manager as conn:
            conn.off("flush_done", never)
            everything: list[str] = []
            conn.on("event", lambda e: everything.append(e.type))
            for _ in range(2):
                await conn.send_audio(pcm(0.1))
                await conn.send("finalize")
            await conn.send("close")
            await conn.dispatch_events()
        assert seen == ["a", " b"]
        assert first_only == ["flush_done"]
        assert everything == ["transcript", "flush_done", "transcript", "flush_done", "done"]


@pytest.mark.asyncio
async def test_dispatch_raises_an_unhandled_error_event(twin_factory: TwinFactory) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([])) as twin,
        client_for(twin).stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=1
        ) as conn,
    ):
        with pytest.raises(stt.BadRequestError, match="sample_rate"):
            await conn.dispatch_events()
