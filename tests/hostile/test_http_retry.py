"""Retries at every edge, against small hostile servers written here on raw asyncio streams.

An :class:`HTTPScript` server answers its n-th request with its n-th action: canned bytes (a
status line, ``Retry-After``, ``retry-after-ms``, ``x-should-retry``...), a TCP abort after
reading the request, or silence. Every HTTP call (``stt.transcribe``, ``tts.generate``,
``access_token.create``) goes through the same policy; so does the first handshake of a
WebSocket session (the hostile :class:`~.peer.Peer` refuses it). A close frame without a
code (1005) is a recoverable drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.protocol.retry import RetryPolicy

from ..conftest import SLACK, pcm
from .conftest import CANARY, bounded, open_ws
from .peer import Peer, PeerConn, Refusal

pytestmark = pytest.mark.both_loops

FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)
WAV_OK = b"RIFF\x24\x00\x00\x00WAVEfmt "  # the body of a /tts/bytes answer (never parsed)
TRANSCRIPT = json.dumps({"type": "transcript", "text": "ok", "request_id": "r-1"}).encode()
TOKEN = json.dumps({"token": "tok_abc", "expires_in": 60}).encode()


def answer(status: int, body: bytes = b"{}", **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def refused(status: int, **headers: str) -> bytes:
    body = {"error_code": "e", "title": "T", "message": f"m {status}", "request_id": "rid-x"}
    return answer(status, json.dumps(body).encode(), **headers)


@dataclass
class HTTPScript:
    """Answers request n with ``actions[n]`` (the last one repeats): bytes, ``"abort"`` (TCP
    abort once the request was read) or ``"silent"`` (never answers)."""

    actions: list[bytes | str]
    requests: list[tuple[bytes, int, float]] = field(default_factory=list)  # head, body, time
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            index = len(self.requests)
            self.requests.append((head, len(body), asyncio.get_running_loop().time()))
            action = self.actions[min(index, len(self.actions) - 1)]
            if action == "abort":
                writer.transport.abort()
            elif action == "silent":
                await reader.read()
            else:
                assert isinstance(action, bytes)
                writer.write(action)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()  # the test is over
        finally:
            self._tasks.discard(task)
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            server.close()
            tasks = list(self._tasks)  # a silent answer still waiting
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    def gaps(self) -> list[float]:
        times = [t for _, _, t in self.requests]
        return [b - a for a, b in itertools.pairwise(times)]


Call = Callable[[stt.AsyncCartesia], Awaitable[object]]


async def transcribe(client: stt.AsyncCartesia) -> object:
    return await client.stt.transcribe(file=b"RIFF" + bytes(4000), model="ink-whisper")


async def tts(client: stt.AsyncCartesia) -> object:
    return await client.tts.generate(
        model_id="sonic-latest",
        transcript="hi",
        voice={"mode": "id", "id": "v"},
        output_format={"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000},
    )


async def token(client: stt.AsyncCartesia) -> object:
    return await client.access_token.create(grants={"stt": True})


CALLS: dict[str, tuple[Call, bytes]] = {
    "transcribe": (transcribe, answer(200, TRANSCRIPT)),
    "tts": (tts, answer(200, WAV_OK)),
    "token": (token, answer(200, TOKEN)),
}


async def call(
    name: str, script: HTTPScript, policy: RetryPolicy = FAST, **kw: Any
) -> tuple[object | None, BaseException | None]:
    run, _ = CALLS[name]
    async with (
        bounded(15),
        script.running() as base_url,
        stt.AsyncCartesia(api_key=CANARY, base_url=base_url, max_retries=policy, **kw) as client,
    ):
        try:
            return await run(client), None
        except stt.CartesiaSTTError as exc:
            return None, exc


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize(
    "first",
    [
        pytest.param(refused(429), id="429"),
        pytest.param(refused(500), id="500"),
        pytest.param(refused(503), id="503"),
        pytest.param("abort", id="abort"),
        pytest.param(answer(200, b"", Content_Length="0")[:20], id="cut-status-line"),
    ],
)
async def test_every_http_call_retries_transient_failures(name: str, first: bytes | str) -> None:
    script = HTTPScript([first, first, CALLS[name][1]])
    result, error = await call(name, script)
    assert error is None, repr(error)
    assert result is not None
    assert len(script.requests) == 3
    assert len({size for _, size, _ in script.requests}) == 1  # the same body each time


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_4xx_are_raised_at_once(name: str, status: int) -> None:
    script = HTTPScript([refused(status), CALLS[name][1]])
    _, error = await call(name, script)
    assert isinstance(error, stt.APIStatusError) and error.status_code == status
    assert error.message == f"m {status}" and error.request_id == "rid-x"
    assert len(script.requests) == 1
    assert CANARY not in str(error)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CALLS))
async def test_the_budget_runs_out_with_the_last_error(name: str) -> None:
    script = HTTPScript([refused(502)])
    _, error = await call(name, script)
    assert isinstance(error, stt.ServerError) and error.status_code == 502
    assert len(script.requests) == 3
    _, error = await call(name, HTTPScript([refused(503)]), RetryPolicy(max_retries=0))
    assert isinstance(error, stt.ServerError)


@pytest.mark.asyncio
async def test_retry_after_ms_and_retry_after_are_honoured() -> None:
    script = HTTPScript(
        [refused(429, retry_after_ms="300"), refused(503, Retry_After="1"), answer(200, TOKEN)]
    )
    _, error = await call("token", script)
    assert error is None
    first, second = script.gaps()
    assert 0.3 <= first < 0.3 + SLACK
    assert 1.0 <= second < 1.0 + SLACK


@pytest.mark.asyncio
async def test_x_should_retry_is_obeyed_both_ways() -> None:
    script = HTTPScript([refused(503, x_should_retry="false"), answer(200, TOKEN)])
    _, error = await call("token", script)
    assert isinstance(error, stt.ServerError) and len(script.requests) == 1
    script = HTTPScript([refused(409, x_should_retry="true"), answer(200, TOKEN)])
    _, error = await call("token", script)
    assert error is None and len(script.requests) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CALLS))
async def test_a_silent_server_fails_at_one_deadline(name: str) -> None:
    script = HTTPScript(["silent"])
    loop = asyncio.get_running_loop()
    start = loop.time()
    run, _ = CALLS[name]
    async with (
        bounded(15),
        script.running() as base_url,
        stt.AsyncCartesia(api_key=CANARY, base_url=base_url, max_retries=FAST) as client,
    ):
        if name == "transcribe":
            with pytest.raises(stt.APITimeoutError):
                await client.stt.transcribe(file=b"RIFF", model="ink-whisper", timeout=0.5)
        else:
            client._http.timeout = 0.5  # tts and token take the client's timeout
            with pytest.raises(stt.APITimeoutError):
                await run(client)
    assert 0.5 <= loop.time() - start < 0.5 + SLACK
    assert len(script.requests) == 1  # no time was left for another attempt


# -- the first handshake of a session ------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(Refusal(429, b"{}", {"Retry-After": "0.2"}), id="429"),
        pytest.param(Refusal(503, b"{}"), id="503"),
        pytest.param(Refusal(502, b"{}", {"retry-after-ms": "1"}), id="502"),
    ],
)
async def test_the_first_handshake_rides_over_a_brief_outage(refusal: Refusal) -> None:
    async with bounded(15), Peer(refuse={0: refusal, 1: refusal}) as peer:
        async with open_ws(peer.base_url, retry=FAST) as conn:
            await conn.send_audio(pcm(0.1, value=1))
            assert (await conn.finalize(timeout=5 * SLACK)).text == " <3200>"
        assert [h.accepted for h in peer.handshakes] == [False, False, True]
        assert conn.stats.reconnects == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_the_first_handshake_never_retries_a_refusal_that_would_repeat(status: int) -> None:
    async with bounded(15), Peer(refuse={0: Refusal(status, b"{}")}) as peer:
        with pytest.raises(stt.APIStatusError) as info:
            async with open_ws(peer.base_url, retry=FAST):
                pass
        assert info.value.status_code == status
        assert len(peer.handshakes) == 1


@pytest.mark.asyncio
async def test_the_first_handshake_gives_up_after_the_budget() -> None:
    refusal = Refusal(503, b'{"message": "down"}')
    async with bounded(15), Peer(refuse={i: refusal for i in range(5)}) as peer:
        with pytest.raises(stt.ServerError, match="down"):
            async with open_ws(peer.base_url, retry=FAST):
                pass
        assert len(peer.handshakes) == 3


# -- 1005: a close frame without a code ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_close_without_a_code_1005_is_a_recoverable_drop() -> None:
    async def handler(conn: PeerConn) -> None:
        if conn.index == 0:
            await conn.recv()  # the first audio frame
            conn.ended = True
            await conn.send_frame(0x8, b"")  # a close frame with no status code: 1005
            conn.writer.close()
            return
        await conn.peer.count_mode(conn)

    async with bounded(15), Peer(handler=handler) as peer:
        async with open_ws(peer.base_url) as conn:
            await conn.send_audio(pcm(0.1, value=1))
            assert (await conn.finalize(timeout=5 * SLACK)).text == " <3200>"
        assert conn.stats.reconnects == 1
        assert peer.accepted == 2
