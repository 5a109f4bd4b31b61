"""Hostile proxies (review 3, issue 20: items 5, 6, 7, 10, 11), on asyncio's loop and uvloop.

* 5: a proxy that accepts the TCP connection and never answers: the session times out and the
  client's socket to the proxy is closed at once (per attempt, reconnects included), as a
  direct connection's is.
* 6: a proxy URL without a scheme (``user:pass@host:3128``, which curl, requests and urllib
  accept) is taken as ``http://``; no credential part, however short, appears in a message.
* 7: credentials with reserved and non-ASCII characters, percent-encoded in the URL, are
  decoded the same way for sessions and HTTP requests.
* 10: a proxy from the environment with a bad port is a :class:`ConfigurationError` naming
  the variable and how to bypass it, credentials redacted.
* 11: a proxy that closes without answering is a :class:`ProxyError`, and nothing is raised
  inside an event-loop callback (the autouse ``no_asyncio_errors`` fixture fails the test if
  asyncio logs an error).

The proxy that misbehaves is written here; the one that tunnels and checks Basic credentials is
the TLS suite's (``tests/test_tls_proxy.py``). The environment's proxy is never used for a
loopback target: a test of the environment path points the client at ``twin.invalid``
(``ALIAS``), which only the test proxies resolve (to 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Fault, Faults, ScriptedEngine, serve

from ..proxies import LoopbackServer, clean_proxy_env, pipe
from ..test_tls_proxy import ALIAS, TTS_BODY, Proxy, aliased, upstream
from .conftest import CANARY, SLACK, bounded, open_ws

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

HELLO = (300).to_bytes(2, "little", signed=True) * 3200  # 0.2 s of pcm_s16le


@dataclass
class HostileProxy(LoopbackServer):
    """A CONNECT proxy on 127.0.0.1 that reads the request and then misbehaves.

    ``modes`` says what to do with each connection, in order (the last one repeats):
    ``"silent"`` never answers (and never closes), ``"close"`` closes without a word,
    ``"partial"`` sends half a status line and closes, ``"tunnel"`` answers 200 and tunnels to
    the target. It records every connection, and which ones the client has closed.
    """

    modes: list[str]
    port: int = 0
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    open: set[int] = field(default_factory=set)  # connections the client has not closed
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.accepted
        self.accepted += 1
        self.open.add(index)
        self._writers.add(writer)
        mode = self.modes[min(index, len(self.modes) - 1)]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            if mode == "silent":
                while await reader.read(65536):  # until the client closes
                    pass
            elif mode == "partial":
                writer.write(b"HTTP/1.1 20")
                await writer.drain()
            elif mode == "tunnel":
                host, port = head.split(b" ", 2)[1].decode().rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(upstream(host), int(port))
                self._writers.add(up_writer)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open.discard(index)
            writer.close()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean proxy environment (both spellings removed): a test sets what it needs."""
    return clean_proxy_env(monkeypatch)


async def one_utterance(manager: stt.ConnectionManager) -> stt.AsyncConnection:
    async with manager as conn:
        await conn.send_audio(HELLO)
        utterance = await conn.finalize(timeout=5 * SLACK)
        assert utterance.text == "Hello world."
    assert conn.transcript.text == "Hello world."
    return conn


def engine() -> ScriptedEngine:
    return ScriptedEngine([], by_audio={HELLO: ["Hello", " world."]})


async def until(predicate: Callable[[], bool], seconds: float) -> bool:
    """Whether ``predicate`` holds within ``seconds * SLACK`` (polled)."""
    deadline = asyncio.get_running_loop().time() + seconds * SLACK
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def assert_not_in(text: str, *secrets: str) -> None:
    """No secret in ``text``, in any case (``urlsplit`` lower-cases what it takes for a
    scheme, which may be a user name)."""
    for secret in secrets:
        assert secret.lower() not in text.lower(), f"{secret!r} in {text!r}"


# -- 5: a proxy that never answers ------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_silent_proxy_times_out_and_the_socket_to_it_is_closed(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    async with bounded(10), HostileProxy(["silent"]).running() as proxy:
        for _ in range(3):
            manager = open_ws("http://127.0.0.1:9", proxy=proxy.url(), open_timeout=0.2)
            with pytest.raises(stt.APITimeoutError) as info:
                async with manager:
                    pass
            assert f"through the proxy {proxy.url()}" in str(info.value)
        assert proxy.accepted == 3 and len(proxy.requests) == 3
        # Closed by the client, not left open until the proxy gives up.
        assert await until(lambda: not proxy.open, 1.0), f"still open: {proxy.open}"


@pytest.mark.asyncio
async def test_a_silent_proxy_from_the_environment_is_named_with_the_bypass(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    async with bounded(10), HostileProxy(["silent"]).running() as proxy:
        proxy_env.setenv("HTTPS_PROXY", proxy.url())
        with pytest.raises(stt.APITimeoutError) as info:
            async with open_ws(f"http://{ALIAS}:9", open_timeout=0.2):
                pass
        assert proxy.accepted == 1  # the environment's proxy was used (ALIAS is not loopback)
        assert await until(lambda: not proxy.open, 1.0), f"still open: {proxy.open}"
    assert str(info.value) == (
        f"opening the WebSocket through the proxy {proxy.url()} (from HTTPS_PROXY) took longer "
        f"than 0.2 s; to connect to {ALIAS} directly, set NO_PROXY={ALIAS} or pass proxy=False"
    )


@pytest.mark.asyncio
async def test_reconnects_through_a_proxy_gone_silent_close_every_socket(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    drop = Faults([Fault("close", connection=0, after_frames=1, code=1011)])
    async with (
        bounded(15),
        serve(engine(), faults=drop) as twin,
        HostileProxy(["tunnel", "silent"]).running() as proxy,
    ):
        manager = open_ws(twin.base_url, proxy=proxy.url(), open_timeout=0.2, max_retries=2)
        with pytest.raises(stt.ReconnectError) as info:
            async with manager as conn:
                await conn.send_audio(HELLO)
                await conn.finalize(timeout=10 * SLACK)
        assert isinstance(info.value.__cause__, stt.APITimeoutError)
        assert f"through the proxy {proxy.url()} took longer than 0.2 s" in str(info.value)
        assert proxy.accepted == 3  # the tunnel, then one per reconnect attempt
        assert await until(lambda: not proxy.open, 1.0), f"still open: {proxy.open}"


# -- 11: a proxy that closes without answering ------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["close", "partial"])
async def test_a_proxy_closing_without_an_answer_is_a_proxy_error_and_nothing_else(
    proxy_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with bounded(10), HostileProxy([mode]).running() as proxy:
        for _ in range(2):
            with pytest.raises(stt.ProxyError) as info:
                async with open_ws("http://127.0.0.1:9", proxy=proxy.url("user9:pass9@")):
                    pass
            text = str(info.value)
            assert f"through the proxy http://***@127.0.0.1:{proxy.port}" in text
            assert_not_in(text + caplog.text, "user9", "pass9")
        await asyncio.sleep(0.05)  # a late callback error would be logged by now
    assert proxy.accepted == 2
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


# -- 7: reserved and non-ASCII characters in the credentials ----------------------------------

USER, PASSWORD = "a@b", "p:ss/wörd%"
ENCODED = "a%40b:p%3Ass%2Fw%C3%B6rd%25"  # both, percent-encoded as a URL must carry them


@pytest.mark.asyncio
@pytest.mark.parametrize("userinfo", [ENCODED, "a%40b:p%3Ass%2Fwörd%25"])
async def test_encoded_credentials_work_for_sessions_and_http_alike(
    proxy_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, userinfo: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        bounded(15),
        serve(engine()) as twin,
        Proxy(credentials=(USER, PASSWORD)).running() as proxy,
    ):
        url = f"http://{userinfo}@127.0.0.1:{proxy.port}"
        await one_utterance(open_ws(twin.base_url, proxy=url))
        async with stt.AsyncCartesia(api_key=CANARY, base_url=twin.base_url, proxy=url) as client:
            await (await client.tts.generate(**TTS_BODY)).read()
    assert proxy.refused == 0
    assert proxy.tunnels == [f"127.0.0.1:{twin.port}"]
    assert proxy.forwarded == [f"POST {twin.base_url}/tts/bytes"]
    assert_not_in(caplog.text, "a%40b", "p%3Ass", "p:ss/w", "wörd", "w%C3%B6rd")


# -- 6: a proxy URL without a scheme, and short credentials -----------------------------------

SHORT_USER, SHORT_PASSWORD = "Qx", "Zj9"  # too short for substring redaction


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", [str.upper, str.lower])
async def test_a_proxy_without_a_scheme_in_the_environment_is_http(
    proxy_env: pytest.MonkeyPatch, spelling: Callable[[str], str]
) -> None:
    async with (
        bounded(15),
        serve(engine()) as twin,
        Proxy(credentials=(SHORT_USER, SHORT_PASSWORD)).running() as proxy,
    ):
        bare = f"{SHORT_USER}:{SHORT_PASSWORD}@127.0.0.1:{proxy.port}"
        proxy_env.setenv(spelling("HTTPS_PROXY"), bare)  # sessions (ws:// and wss://)
        proxy_env.setenv(spelling("HTTP_PROXY"), bare)  # plain http:// requests
        base_url = aliased(twin)  # not loopback: the environment is consulted
        await one_utterance(open_ws(base_url))
        async with stt.AsyncCartesia(api_key=CANARY, base_url=base_url) as client:
            await (await client.tts.generate(**TTS_BODY)).read()
        # The option takes it the same way.
        proxy_env.delenv(spelling("HTTPS_PROXY"))
        proxy_env.delenv(spelling("HTTP_PROXY"))
        await one_utterance(open_ws(base_url, proxy=bare))
    assert proxy.refused == 0
    assert proxy.tunnels == [f"{ALIAS}:{twin.port}"] * 2
    assert proxy.forwarded == [f"POST {base_url}/tts/bytes"]


async def _failures(
    base_url: str, proxy: str | None, *, http: bool = True
) -> list[stt.CartesiaSTTError]:
    """What a session and an HTTP request raise through this proxy (``None``: the env); no
    request with ``http=False`` (its timeout is a minute)."""
    errors: list[stt.CartesiaSTTError] = []
    try:
        async with open_ws(base_url, proxy=proxy, open_timeout=0.3 * SLACK):
            pass
    except stt.CartesiaSTTError as exc:
        errors.append(exc)
    if not http:
        return errors
    async with stt.AsyncCartesia(api_key=CANARY, base_url=base_url, proxy=proxy) as client:
        try:
            await client.tts.generate(**TTS_BODY)
        except stt.CartesiaSTTError as exc:
            errors.append(exc)
    return errors


@pytest.mark.asyncio
@pytest.mark.parametrize("scheme", ["http://", ""])
@pytest.mark.parametrize("from_env", [False, True])
async def test_short_credentials_never_appear_in_a_message(
    proxy_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    scheme: str,
    from_env: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    userinfo = f"{SHORT_USER}:{SHORT_PASSWORD}@"
    errors: list[stt.CartesiaSTTError] = []
    async with (
        bounded(30),
        serve(engine()) as twin,
        Proxy(credentials=("someone", "else")).running() as strict,
        HostileProxy(["close"]).running() as closing,
        HostileProxy(["silent"]).running() as silent,
    ):
        with socket_port() as closed:
            hosts = [
                f"127.0.0.1:{strict.port}",  # 407
                f"127.0.0.1:{closing.port}",  # closes
                f"127.0.0.1:{silent.port}",  # never answers
                f"127.0.0.1:{closed}",  # refused
                "127.0.0.1:99999",  # bad port
                "127.0.0.1:abc",  # bad port
            ]
            for host in hosts:
                url = f"{scheme}{userinfo}{host}"
                http = host != f"127.0.0.1:{silent.port}"
                if from_env:  # a target that is not loopback, so the environment is consulted
                    proxy_env.setenv("HTTPS_PROXY", url)
                    proxy_env.setenv("HTTP_PROXY", url)
                    errors += await _failures(aliased(twin), None, http=http)
                else:
                    try:
                        errors += await _failures(aliased(twin), url, http=http)
                    except stt.ConfigurationError as exc:  # the option: when the client is made
                        errors.append(exc)
    assert len(errors) >= len(hosts)
    assert all(isinstance(e, stt.APIConnectionError | stt.ConfigurationError) for e in errors)
    for error in errors:
        text = f"{error} {error!r} {error.__cause__!r}"
        assert_not_in(text, SHORT_USER, SHORT_PASSWORD, f"{SHORT_USER}:", f":{SHORT_PASSWORD}")
    assert_not_in(caplog.text, f"{SHORT_USER}:{SHORT_PASSWORD}")


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, not listening, while the block runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- 10: a bad port in the environment --------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("port", ["99999", "abc", "-1"])
@pytest.mark.parametrize("spelling", [str.upper, str.lower])
async def test_a_bad_proxy_port_in_the_environment_is_a_configuration_error_naming_it(
    proxy_env: pytest.MonkeyPatch, port: str, spelling: Callable[[str], str]
) -> None:
    url = f"http://envuser:envpassword@127.0.0.1:{port}"
    proxy_env.setenv(spelling("HTTPS_PROXY"), url)
    proxy_env.setenv(spelling("HTTP_PROXY"), url)
    target = f"http://{ALIAS}:9"  # not loopback: the environment is consulted (no I/O happens)
    async with bounded(10):
        with pytest.raises(stt.ConfigurationError) as ws_info:
            async with open_ws(target):
                pass
        async with stt.AsyncCartesia(api_key=CANARY, base_url=target) as client:
            with pytest.raises(stt.ConfigurationError) as http_info:
                await client.tts.generate(**TTS_BODY)
    for error, variable in ((ws_info.value, "HTTPS_PROXY"), (http_info.value, "HTTP_PROXY")):
        text = str(error)
        assert spelling(variable) in text and "port" in text, text
        assert f"set NO_PROXY={ALIAS} or pass proxy=False" in text, text
        assert error.__cause__ is None and error.__context__ is None
        assert_not_in(text + repr(error), "envuser", "envpassword")
