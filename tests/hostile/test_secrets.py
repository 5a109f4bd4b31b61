"""Issue 10 #10-#12: no secret in any exception, log or repr; no header injection.

The peers echo a canary API key (or access token) in every field a server controls: a refused
handshake's JSON ``message``/``title``/``error_code``/``request_id`` and ``X-Request-Id``
header, an in-band ``error`` event, a close frame's reason, the request id of events. Each test
then searches everything the caller can reach: the exception, its ``__cause__``/``__context__``
chain and every attribute of each (a foreign exception holding the raw HTTP response included),
the package's DEBUG logs, and the reprs.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import cartesia_stt_async as stt

from .conftest import CANARY, SLACK, bounded, client_for, open_ws, pcm
from .peer import Fault, Peer, PeerConn, Refusal

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

TOKEN = "at_canary_4e81b07c93d2f5a6"  # an access token passed in the query string
TOKEN2 = "at_canary_refreshed_51d0c8e2"  # the one on_reconnecting hands out

ECHO = {
    "message": f"invalid key {CANARY}",
    "title": f"Unauthorized: {CANARY}",
    "error_code": CANARY,
    "request_id": CANARY,
}


def reachable(obj: object, depth: int = 0, seen: set[int] | None = None) -> Iterator[str]:
    """Every string reachable from ``obj``: exception text, reprs, attributes, chains."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6 or obj is None:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
        return
    if isinstance(obj, bytes | bytearray):
        yield bytes(obj).decode("latin-1")
        return
    if isinstance(obj, int | float | bool):
        return
    yield repr(obj)
    if isinstance(obj, BaseException):
        yield str(obj)
        for link in (obj.__cause__, obj.__context__, obj.args, getattr(obj, "__notes__", None)):
            yield from reachable(link, depth + 1, seen)
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from reachable(key, depth + 1, seen)
            yield from reachable(value, depth + 1, seen)
        return
    if isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from reachable(item, depth + 1, seen)
        return
    raw_items = getattr(obj, "raw_items", None)  # websockets' Headers
    if callable(raw_items):
        yield from reachable(list(raw_items()), depth + 1, seen)
    attrs: dict[str, Any] = {}
    with_dict = getattr(obj, "__dict__", None)
    if isinstance(with_dict, dict):
        attrs.update(with_dict)
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(obj, name):
                attrs[name] = getattr(obj, name)
    for value in attrs.values():
        if not callable(value) or isinstance(value, BaseException):
            yield from reachable(value, depth + 1, seen)


def leaks(obj: object, secret: str) -> list[str]:
    """The reachable strings that contain ``secret`` (empty when none)."""
    return [s[:160] for s in reachable(obj) if secret in s]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="cartesia_stt_async")
    return caplog


def shown(obj: object) -> list[str]:
    """What a manager or connection shows: its repr and its public, server-fed strings.
    (Their internals legitimately hold the key: they must send it.)"""
    out = [repr(obj)]
    for name in ("url", "request_id"):
        value = getattr(obj, name, None)
        if isinstance(value, str):
            out.append(value)
    return out


def assert_no_leak(
    secret: str, caplog: pytest.LogCaptureFixture, *errors: BaseException, show: object = ()
) -> None:
    """No ``secret`` in the exceptions (deeply), in what ``show`` objects show, in the logs."""
    found = [hit for err in errors for hit in leaks(err, secret)]
    objs = show if isinstance(show, tuple | list) else (show,)
    found += [text[:160] for obj in objs for text in shown(obj) if secret in text]
    assert not found, f"{secret!r} reachable in: {found}"
    logged = [r for r in caplog.text.splitlines() if secret in r]
    assert not logged, f"{secret!r} logged: {logged}"


# -- #10: a key echoed by the server -----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(401, stt.AuthenticationError, id="401"),
        pytest.param(400, stt.BadRequestError, id="400"),
        pytest.param(429, stt.RateLimitError, id="429"),
        pytest.param(503, stt.ServerError, id="503"),
    ],
)
async def test_10_a_refused_handshake_echoing_the_key(
    status: int, error: type[Exception], debug_logs: pytest.LogCaptureFixture
) -> None:
    refusal = Refusal(status, json.dumps(ECHO).encode(), {"X-Request-Id": CANARY})
    # Every attempt refused: 429 and 503 are retried (and logged) before the error is raised.
    async with bounded(10), Peer(refuse={i: refusal for i in range(3)}) as peer:
        manager = open_ws(peer.base_url)
        with pytest.raises(error) as caught:
            async with manager:
                pass
    assert_no_leak(CANARY, debug_logs, caught.value, show=manager)


@pytest.mark.asyncio
async def test_10_a_refused_handshake_with_a_text_body_echoing_the_key(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    refusal = Refusal(401, f"bad key {CANARY}".encode())
    async with bounded(10), Peer(refuse={0: refusal}) as peer:
        with pytest.raises(stt.AuthenticationError) as caught:
            async with open_ws(peer.base_url):
                pass
    # The message is redacted today; the chain (__context__) must not hold the body either.
    assert_no_leak(CANARY, debug_logs, caught.value)


@pytest.mark.asyncio
async def test_10_a_refused_reconnect_echoing_the_key(debug_logs: pytest.LogCaptureFixture) -> None:
    refusal = Refusal(401, json.dumps(ECHO).encode(), {"X-Request-Id": CANARY})
    fault = Fault(0, "recv", 2, "abort")  # drop on the first finalize; the reconnect is refused
    async with bounded(10), Peer(faults=[fault], refuse={1: refusal}) as peer:
        with pytest.raises(stt.AuthenticationError) as caught:
            async with open_ws(peer.base_url) as conn:
                await conn.send_audio(pcm(3200, 1))
                await conn.finalize(timeout=5 * SLACK)
    assert_no_leak(CANARY, debug_logs, caught.value, show=conn)


def _error_event(status: int | None) -> Any:
    async def handler(conn: PeerConn) -> None:
        while True:
            message = await conn.recv()
            if message == "finalize":
                event: dict[str, Any] = {"type": "error", **ECHO}
                if status is not None:
                    event["status_code"] = status
                await conn.send_json(event)
                await conn.close(1011, "error")
                return

    return handler


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, None])
async def test_10_an_error_event_echoing_the_key(
    status: int | None, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with bounded(10), Peer(handler=_error_event(status)) as peer:
        with pytest.raises(stt.APIError) as caught:
            async with open_ws(peer.base_url) as conn:
                await conn.send_audio(pcm(3200, 1))
                await conn.finalize(timeout=5 * SLACK)
    assert_no_leak(CANARY, debug_logs, caught.value, show=conn)


def _close_with_reason(code: int) -> Any:
    async def handler(conn: PeerConn) -> None:
        while True:
            if await conn.recv() == "finalize":
                await conn.close(code, f"key {CANARY}")
                return

    return handler


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [1008, 1011])
async def test_10_a_close_reason_echoing_the_key(
    code: int, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with bounded(10), Peer(handler=_close_with_reason(code)) as peer:
        with pytest.raises(stt.ConnectionClosedError) as caught:
            async with open_ws(peer.base_url, max_retries=0) as conn:
                await conn.send_audio(pcm(3200, 1))
                await conn.finalize(timeout=5 * SLACK)
    assert_no_leak(CANARY, debug_logs, caught.value, show=conn)


@pytest.mark.asyncio
async def test_10_a_request_id_echoing_the_key(debug_logs: pytest.LogCaptureFixture) -> None:
    peer = Peer(request_id=f"req-{CANARY}")
    async with bounded(10), peer, open_ws(peer.base_url) as conn:
        await conn.send_audio(pcm(3200, 1))
        utt = await conn.finalize(timeout=5 * SLACK)
        shown_repr = repr(conn)
    assert utt.text == " <3200>"
    assert CANARY not in shown_repr
    assert_no_leak(CANARY, debug_logs, show=conn)


# -- #11: an access token in the query string ------------------------------------------------


@pytest.mark.asyncio
async def test_11_an_access_token_in_extra_query_is_never_shown(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    async with bounded(10), Peer() as peer:
        manager = open_ws(peer.base_url, extra_query={"access_token": TOKEN})
        async with manager as conn:
            await conn.send_audio(pcm(3200, 1))
            await conn.finalize(timeout=5 * SLACK)
        assert TOKEN in peer.handshakes[0].target  # the server does get it
    assert TOKEN not in repr(manager)
    assert TOKEN not in manager.url
    assert_no_leak(TOKEN, debug_logs, show=(manager, conn))


@pytest.mark.asyncio
async def test_11_an_access_token_in_extra_query_is_not_in_a_connection_error(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with bounded(10):
        with pytest.raises(stt.APIConnectionError) as caught:
            async with open_ws(f"http://127.0.0.1:{port}", extra_query={"access_token": TOKEN}):
                pass
    assert_no_leak(TOKEN, debug_logs, caught.value)


@pytest.mark.asyncio
async def test_11_a_token_handed_out_by_on_reconnecting_is_never_shown(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    def refresh(event: stt.ReconnectingEvent) -> dict[str, object]:
        return {"extra_query": {"access_token": TOKEN2}}

    fault = Fault(0, "recv", 2, "abort")
    async with bounded(10), Peer(faults=[fault]) as peer:
        manager = open_ws(peer.base_url, on_reconnecting=refresh)
        async with manager as conn:
            await conn.send_audio(pcm(3200, 1))
            utt = await conn.finalize(timeout=5 * SLACK)
        assert TOKEN2 in peer.handshakes[1].target
    assert utt.text == " <3200>"
    assert_no_leak(TOKEN2, debug_logs, show=(manager, conn))


@pytest.mark.asyncio
async def test_11_the_same_token_in_a_header_is_redacted(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    async with bounded(10), Peer() as peer:
        manager = open_ws(peer.base_url, extra_headers={"X-API-Key": TOKEN})
        async with manager as conn:
            await conn.send_audio(pcm(3200, 1))
            await conn.finalize(timeout=5 * SLACK)
        assert peer.handshakes[0].headers["x-api-key"] == TOKEN
    assert "X-API-Key: [redacted]" in debug_logs.text  # the handshake was logged...
    assert_no_leak(TOKEN, debug_logs, show=(manager, conn))  # ...without the token


# -- #12: CR or LF in a header value ---------------------------------------------------------


INJECT = "\r\nX-Injected: yes"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("api_key", "extra_headers", "default_headers"),
    [
        pytest.param(CANARY + INJECT, None, None, id="api_key-crlf"),
        pytest.param(CANARY + "\nX-Injected: yes", None, None, id="api_key-lf"),
        pytest.param(CANARY + "\rX-Injected: yes", None, None, id="api_key-cr"),
        pytest.param(CANARY, {"X-Custom": "a" + INJECT}, None, id="extra_headers-crlf"),
        pytest.param(CANARY, {"X-Custom": "a\nX-Injected: yes"}, None, id="extra_headers-lf"),
        pytest.param(CANARY, None, {"X-Custom": "a" + INJECT}, id="default_headers-crlf"),
    ],
)
async def test_12_cr_or_lf_in_a_header_is_a_typed_error_before_connecting(
    api_key: str,
    extra_headers: dict[str, str] | None,
    default_headers: dict[str, str] | None,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    async with bounded(10), Peer() as peer:
        with pytest.raises(stt.CartesiaSTTError) as caught:
            client = client_for(peer.base_url, api_key, default_headers=default_headers)
            manager = client.stt.manual_finalize.websocket(
                model="ink-2",
                encoding="pcm_s16le",
                sample_rate=16000,
                extra_headers=extra_headers,
            )
            async with manager as conn:
                await conn.send_audio(pcm(3200, 1))
                await conn.finalize(timeout=2 * SLACK)
        assert peer.tcp_connections == 0, [h.raw_lines for h in peer.handshakes]
    assert_no_leak(CANARY, debug_logs, caught.value)
