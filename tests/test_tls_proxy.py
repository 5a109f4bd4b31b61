"""TLS (``ssl=``) and proxies (``proxy=``, the environment) against the twin over loopback.

The twin serves TLS with a certificate for 127.0.0.1 (and ``twin.invalid``) from a throwaway
CA (``trustme``, in memory). The proxy is a small HTTP proxy written here: ``CONNECT
host:port`` tunnels (what websockets and aiohttp use for sockets and ``https://``) and
absolute-form forwarding (what aiohttp uses for a plain ``http://`` request), with optional
Basic credentials. It records every tunnel and forwarded request, so a test knows the traffic
went through it.

The environment's proxy is never used for a loopback target, so a test of the environment
path points the client at ``twin.invalid`` (:func:`aliased`): a name only the test proxy
resolves (to 127.0.0.1), never looked up by the client.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

import cartesia_stt_async as stt
from cartesia_stt_async import _network
from cartesia_stt_async._network import http_proxy, ws_proxy
from cartesia_stt_async._redact import proxy_secrets
from cartesia_stt_async.cli import _server_tls, main
from cartesia_stt_async.twin import Fault, Faults, ScriptedEngine, Twin, serve, start_twin

from .conftest import API_KEY, SLACK, client_for, pcm, ws
from .proxies import LoopbackServer, clean_proxy_env, pipe

PROXY_USER = "proxyuser"
PROXY_PASSWORD = "s3cr3t-Proxy-Pass"

# A name for 127.0.0.1 that only the test proxies know (RFC 6761: .invalid never resolves):
# a client pointed at it consults the environment's proxy, which it skips for loopback.
ALIAS = "twin.invalid"


def upstream(host: str) -> str:
    """Where a test proxy connects for ``host``: 127.0.0.1 for :data:`ALIAS`."""
    return "127.0.0.1" if host == ALIAS else host


def aliased(twin: Twin) -> str:
    """The twin's base URL with :data:`ALIAS` for 127.0.0.1."""
    return twin.base_url.replace("127.0.0.1", ALIAS, 1)


TTS_BODY: dict[str, Any] = {
    "model_id": "sonic-latest",
    "transcript": "Hi",
    "voice": {"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
}


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    server: ssl.SSLContext  # serves a certificate for 127.0.0.1 and ALIAS from the test CA
    client: ssl.SSLContext  # trusts the test CA (and nothing else)
    server_cert: trustme.LeafCert  # that certificate
    untrusted: trustme.LeafCert  # a 127.0.0.1 certificate from another CA


@pytest.fixture(scope="module")
def certs() -> Certs:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", ALIAS)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Certs(server, client, cert, trustme.CA().issue_cert("127.0.0.1"))


# -- the test proxy ---------------------------------------------------------------------------


@dataclass
class Proxy(LoopbackServer):
    """An HTTP proxy on 127.0.0.1: CONNECT tunnels and absolute-form forwarding (to
    127.0.0.1 for :data:`ALIAS`)."""

    credentials: tuple[str, str] | None = None
    refuse_from: int | None = None  # tunnels from this index on get 407
    tunnels: list[str] = field(default_factory=list)  # CONNECT targets, in order
    forwarded: list[str] = field(default_factory=list)  # "POST http://..." request lines
    refused: int = 0
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def _authorized(self, head: list[str]) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return any(
            line.lower().startswith("proxy-authorization:")
            and line.split(":", 1)[1].strip() == f"Basic {expected}"
            for line in head[1:]
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            head = raw.decode("latin-1").split("\r\n")[:-2]
            method, target, _ = head[0].split(" ", 2)
            index = len(self.tunnels) + len(self.forwarded)
            refuse = self.refuse_from is not None and index >= self.refuse_from
            if refuse or not self._authorized(head):
                self.refused += 1
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                    b"Connection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                self.tunnels.append(target)
                up_reader, up_writer = await asyncio.open_connection(upstream(host), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                # Absolute form: "POST http://host:port/path HTTP/1.1" -> origin form.
                self.forwarded.append(f"{method} {target}")
                rest = target.split("://", 1)[1]
                hostport, _, path = rest.partition("/")
                host, port = hostport.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(upstream(host), int(port))
                kept = [h for h in head[1:] if not h.lower().startswith("proxy-")]
                request = "\r\n".join([f"{method} /{path} HTTP/1.1", *kept, "", ""])
                up_writer.write(request.encode("latin-1"))
            self._writers.add(up_writer)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean proxy environment (both spellings removed): a test sets what it needs."""
    return clean_proxy_env(monkeypatch)


# -- helpers ----------------------------------------------------------------------------------

HELLO = pcm(0.2, value=300)


def engine() -> ScriptedEngine:
    return ScriptedEngine([], by_audio={HELLO: ["Hello", " world."]})


async def session(client: stt.AsyncCartesia, **options: Any) -> stt.AsyncConnection:
    """One utterance: audio, finalize, the exact transcript, done."""
    async with ws(client, **options) as conn:
        await conn.send_audio(HELLO)
        utterance = await conn.finalize(timeout=5 * SLACK)
        assert utterance.text == "Hello world."
    assert conn.state == "done"
    assert conn.transcript.text == "Hello world."
    return conn


def tls_client(twin: Twin, certs: Certs, **kw: Any) -> stt.AsyncCartesia:
    return client_for(twin, ssl=certs.client, **kw)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_no_secret(text: str) -> None:
    basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    for secret in (API_KEY, PROXY_PASSWORD, PROXY_USER, basic):
        assert secret not in text


# -- TLS ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_session_over_tls_with_a_context_that_trusts_the_ca(certs: Certs) -> None:
    async with serve(engine(), ssl=certs.server) as twin:
        assert twin.base_url.startswith("https://") and twin.ws_url.startswith("wss://")
        async with tls_client(twin, certs) as client:
            await session(client)
    assert len(twin.sessions) == 1


@pytest.mark.asyncio
async def test_a_reconnect_over_tls_uses_the_same_context(certs: Certs) -> None:
    drop = Faults([Fault("close", connection=0, after_frames=1, code=1011)])
    async with (
        serve(engine(), ssl=certs.server, faults=drop) as twin,
        tls_client(twin, certs) as client,
    ):
        conn = await session(client)
    assert conn.stats.reconnects == 1
    assert twin.sessions[0].close_code == 1011
    assert len(twin.sessions) == 2


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_a_tls_error_at_once(certs: Certs) -> None:
    async with (
        serve(engine(), ssl=certs.server) as twin,
        client_for(twin) as client,  # the system trust store: not our test CA
    ):
        started = time.monotonic()
        with pytest.raises(stt.TLSError) as info:
            async with ws(client):
                pass
        elapsed = time.monotonic() - started
        with pytest.raises(stt.TLSError) as tts_info:
            await client.tts.generate(**TTS_BODY)
    assert elapsed < 2 * SLACK
    assert twin.handshakes == 0  # refused in TLS, before any HTTP
    for error in (info.value, tts_info.value):
        text = str(error)
        assert "certificate verification failed" in text and "ssl=" in text
        assert isinstance(error, stt.APIConnectionError)
        assert error.__cause__ is None and error.__context__ is None
        assert_no_secret(text)


@pytest.mark.asyncio
async def test_a_certificate_failure_on_reconnect_is_not_retried(certs: Certs) -> None:
    # A context of its own: swapping its certificate must not touch the module's.
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certs.server_cert.configure_cert(server)
    attempts: list[int] = []

    def swap_certificate(event: stt.ReconnectingEvent) -> None:
        # From now on the twin presents a certificate of a CA the client does not trust.
        attempts.append(event.attempt)
        certs.untrusted.configure_cert(server)

    drop = Faults([Fault("close", connection=0, after_frames=1, code=1011)])
    async with (
        serve(engine(), ssl=server, faults=drop) as twin,
        tls_client(twin, certs) as client,
    ):
        with pytest.raises(stt.TLSError):
            async with ws(client, on_reconnecting=swap_certificate, max_retries=5) as conn:
                await conn.send_audio(HELLO)
                await conn.finalize(timeout=5 * SLACK)
    assert attempts == [1]  # one attempt, no retries
    assert twin.handshakes == 1


@pytest.mark.asyncio
async def test_tts_over_https_with_the_context(certs: Certs) -> None:
    async with (
        serve(ScriptedEngine([]), ssl=certs.server) as twin,
        tls_client(twin, certs) as client,
    ):
        audio = await (await client.tts.generate(**TTS_BODY)).read()
    assert len(audio) > 3200


def test_ssl_false_with_a_tls_url_is_refused_before_any_io(proxy_env: pytest.MonkeyPatch) -> None:
    # Port 9 on loopback: nothing may try to connect anywhere.
    proxy_env.delenv("CARTESIA_BASE_URL", raising=False)
    urls: list[dict[str, Any]] = [
        {"base_url": "https://127.0.0.1:9"},
        {"base_url": "http://127.0.0.1:9", "websocket_base_url": "wss://127.0.0.1:9"},
        {},  # the default base URL is https://api.cartesia.ai
    ]
    for kw in urls:
        with pytest.raises(stt.ConfigurationError, match="verification"):
            stt.AsyncCartesia(api_key=API_KEY, ssl=False, **kw)
        with pytest.raises(stt.ConfigurationError, match="verification"):
            stt.Cartesia(api_key=API_KEY, ssl=False, **kw)
    with pytest.raises(stt.ConfigurationError, match="verification"):
        stt.connect(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            api_key=API_KEY,
            base_url="https://127.0.0.1:9",
            ssl=False,
        )
    # Plain URLs: False is allowed (there is no TLS to turn off).
    stt.AsyncCartesia(api_key=API_KEY, base_url="http://127.0.0.1:9", ssl=False)


@pytest.mark.parametrize("value", ["none", 1, ssl.PROTOCOL_TLS_CLIENT, object()])
def test_ssl_of_a_wrong_type_is_a_configuration_error(value: object) -> None:
    with pytest.raises(stt.ConfigurationError, match=r"ssl must be an ssl\.SSLContext"):
        stt.AsyncCartesia(api_key=API_KEY, ssl=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (8080, "proxy must be a URL string"),
        (True, "proxy must be a URL string"),
        ("socks5://127.0.0.1:1080", "http://"),
        ("ftp://127.0.0.1:21", "http://"),
        (f"{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:99999", "not a valid URL"),  # no scheme
        (f"http://{PROXY_USER}:{PROXY_PASSWORD}@[127.0.0.1:3128", "not a valid URL"),
        ("http://", "no host"),
        (f"http://{PROXY_USER}@127.0.0.1:3128", "no password"),
        (f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:3128/path", "host"),
        (f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:99999", "not a valid URL"),
    ],
)
def test_a_bad_proxy_option_is_a_configuration_error_without_its_secrets(
    value: object, match: str
) -> None:
    with pytest.raises(stt.ConfigurationError, match=match) as info:
        stt.AsyncCartesia(api_key=API_KEY, proxy=value)  # type: ignore[arg-type]
    assert_no_secret(str(info.value))


def test_the_threaded_twin_serves_tls(certs: Certs) -> None:
    with start_twin(ScriptedEngine([["Hi."]]), ssl=certs.server) as twin:
        assert twin.base_url.startswith("https://")
        client = stt.Cartesia(api_key=API_KEY, base_url=twin.base_url, ssl=certs.client)
        with (
            client,
            client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
            ) as conn,
        ):
            conn.send_audio(pcm(0.1))
            assert conn.finalize(timeout=5 * SLACK).text == "Hi."


# -- proxies ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_session_and_tts_through_the_proxy_option(proxy_env: pytest.MonkeyPatch) -> None:
    async with (
        serve(engine()) as twin,
        Proxy().running() as proxy,
        client_for(twin, proxy=proxy.url()) as client,
    ):
        await session(client)
        await (await client.tts.generate(**TTS_BODY)).read()
    target = f"127.0.0.1:{twin.port}"
    assert proxy.tunnels == [target]  # the socket, through a CONNECT tunnel
    assert proxy.forwarded == [f"POST {twin.base_url}/tts/bytes"]  # plain HTTP, forwarded


@pytest.mark.asyncio
async def test_wss_and_https_through_the_proxy(certs: Certs, proxy_env: pytest.MonkeyPatch) -> None:
    drop = Faults([Fault("close", connection=0, after_frames=1, code=1011)])
    async with (
        serve(engine(), ssl=certs.server, faults=drop) as twin,
        Proxy().running() as proxy,
        tls_client(twin, certs, proxy=proxy.url()) as client,
    ):
        conn = await session(client)  # TLS inside the tunnel, and a reconnect
        await (await client.tts.generate(**TTS_BODY)).read()
    assert conn.stats.reconnects == 1
    assert proxy.tunnels == [f"127.0.0.1:{twin.port}"] * 3  # two sockets, one HTTPS request


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", [str.upper, str.lower])
async def test_proxies_from_the_environment(
    certs: Certs, proxy_env: pytest.MonkeyPatch, spelling: Any
) -> None:
    async with (
        serve(engine()) as plain,
        serve(engine(), ssl=certs.server) as secure,
        Proxy().running() as http_proxy,
        Proxy().running() as https_proxy,
    ):
        proxy_env.setenv(spelling("HTTP_PROXY"), http_proxy.url())
        proxy_env.setenv(spelling("HTTPS_PROXY"), https_proxy.url())
        proxy_env.setenv(spelling("NO_PROXY"), "example.invalid")  # not twin.invalid
        plain_url, secure_url = aliased(plain), aliased(secure)
        async with stt.AsyncCartesia(api_key=API_KEY, base_url=plain_url) as client:
            # websockets prefers HTTPS_PROXY for ws:// too; aiohttp takes HTTP_PROXY for http://.
            await session(client)
            await (await client.tts.generate(**TTS_BODY)).read()
        async with stt.AsyncCartesia(
            api_key=API_KEY, base_url=secure_url, ssl=certs.client
        ) as client:
            await session(client)
            await (await client.tts.generate(**TTS_BODY)).read()
        assert http_proxy.forwarded == [f"POST {plain_url}/tts/bytes"]
        assert http_proxy.tunnels == []
        assert https_proxy.tunnels == [f"{ALIAS}:{plain.port}"] + [f"{ALIAS}:{secure.port}"] * 2

        # NO_PROXY exempts the host; proxy=False ignores the environment. (The client would
        # then connect to twin.invalid itself, which no resolver knows: the choice is checked
        # with the functions the client makes it with.)
        routes = [
            (_network.ws_proxy, plain_url.replace("http", "ws", 1) + "/stt/websocket"),
            (_network.ws_proxy, secure_url.replace("http", "ws", 1) + "/stt/websocket"),
            (_network.http_proxy, plain_url + "/tts/bytes"),
            (_network.http_proxy, secure_url + "/tts/bytes"),
        ]
        assert [choose(url, None) for choose, url in routes] == [
            https_proxy.url(),
            https_proxy.url(),
            http_proxy.url(),
            https_proxy.url(),
        ]
        proxy_env.setenv(spelling("NO_PROXY"), ALIAS)
        assert [choose(url, None) for choose, url in routes] == [None] * 4
        proxy_env.setenv(spelling("NO_PROXY"), "example.invalid")
        assert [choose(url, False) for choose, url in routes] == [None] * 4


@pytest.mark.asyncio
async def test_proxy_credentials_are_sent_and_never_shown(
    certs: Certs, proxy_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = Proxy(credentials=(PROXY_USER, PROXY_PASSWORD))
    async with serve(engine(), ssl=certs.server) as twin, good.running() as proxy:
        url = proxy.url(PROXY_USER, PROXY_PASSWORD)
        async with tls_client(twin, certs, proxy=url) as client:
            conn = await session(client)
            await (await client.tts.generate(**TTS_BODY)).read()
            assert_no_secret(repr(client) + repr(conn))
    assert len(proxy.tunnels) == 2 and proxy.refused == 0
    assert_no_secret(caplog.text)


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [False, True])
async def test_wrong_proxy_credentials_are_a_proxy_error_407(
    certs: Certs, proxy_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tls: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    strict = Proxy(credentials=("someone", "else-entirely"))
    async with (
        serve(engine(), ssl=certs.server if tls else None) as twin,
        strict.running() as proxy,
    ):
        url = proxy.url(PROXY_USER, PROXY_PASSWORD)
        async with client_for(twin, ssl=certs.client if tls else None, proxy=url) as client:
            with pytest.raises(stt.ProxyError) as ws_info:
                async with ws(client):
                    pass
            with pytest.raises(stt.ProxyError) as http_info:
                await client.tts.generate(**TTS_BODY)
    assert twin.handshakes == 0 and proxy.refused == 2
    for error in (ws_info.value, http_info.value):
        text = str(error)
        assert error.status_code == 407
        assert f"http://***@127.0.0.1:{proxy.port}" in text and "407" in text
        assert error.__cause__ is None and error.__context__ is None
        assert_no_secret(text + repr(error))
    assert_no_secret(caplog.text)


@pytest.mark.asyncio
async def test_a_proxy_refusing_on_reconnect_is_not_retried(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []
    drop = Faults([Fault("close", connection=0, after_frames=1, code=1011)])
    async with (
        serve(engine(), faults=drop) as twin,
        Proxy(refuse_from=1).running() as proxy,
        client_for(twin, proxy=proxy.url()) as client,
    ):
        with pytest.raises(stt.ProxyError) as info:
            async with ws(client, on_reconnecting=lambda e: attempts.append(e.attempt)) as c:
                await c.send_audio(HELLO)
                await c.finalize(timeout=5 * SLACK)
    assert info.value.status_code == 407
    assert attempts == [1] and proxy.refused == 1


@pytest.mark.asyncio
async def test_an_unreachable_proxy_is_a_proxy_error_naming_it(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    port = closed_port()
    url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}"
    async with serve(engine()) as twin, client_for(twin, proxy=url) as client:
        with pytest.raises(stt.ProxyError) as ws_info:
            async with ws(client):
                pass
        with pytest.raises(stt.ProxyError) as http_info:
            await client.tts.generate(**TTS_BODY)
    for error in (ws_info.value, http_info.value):
        assert error.status_code is None
        assert f"could not reach the proxy http://***@127.0.0.1:{port}: " in str(error)
        assert "NO_PROXY" not in str(error)  # the option's proxy: the user asked for it
        assert_no_secret(str(error))


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", [str.upper, str.lower])
async def test_a_proxy_error_from_the_environment_names_the_variable_and_the_bypass(
    proxy_env: pytest.MonkeyPatch, spelling: Any
) -> None:
    port = closed_port()
    dead = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}"
    strict = Proxy(credentials=("someone", "else-entirely"))
    errors: list[tuple[stt.ProxyError, str]] = []
    async with serve(engine()) as twin, strict.running() as proxy:
        for url in (dead, proxy.url(PROXY_USER, PROXY_PASSWORD)):  # unreachable, then 407
            proxy_env.setenv(spelling("HTTPS_PROXY"), url)  # sessions
            proxy_env.setenv(spelling("HTTP_PROXY"), url)  # plain http:// requests
            async with stt.AsyncCartesia(api_key=API_KEY, base_url=aliased(twin)) as client:
                with pytest.raises(stt.ProxyError) as ws_info:
                    async with ws(client):
                        pass
                with pytest.raises(stt.ProxyError) as http_info:
                    await client.tts.generate(**TTS_BODY)
            errors += [(ws_info.value, "HTTPS_PROXY"), (http_info.value, "HTTP_PROXY")]
    assert twin.handshakes == 0 and proxy.refused == 2
    assert [e.status_code for e, _ in errors] == [None, None, 407, 407]
    for error, variable in errors:
        text = str(error)
        port_seen = port if error.status_code is None else proxy.port
        assert f"http://***@127.0.0.1:{port_seen} (from {spelling(variable)})" in text, text
        assert text.endswith(
            f"; to connect to {ALIAS} directly, set NO_PROXY={ALIAS} or pass proxy=False"
        ), text
        assert_no_secret(text + repr(error))


@pytest.mark.asyncio
async def test_an_untrusted_certificate_through_the_proxy_is_a_tls_error(
    certs: Certs, proxy_env: pytest.MonkeyPatch
) -> None:
    async with (
        serve(engine(), ssl=certs.server) as twin,
        Proxy().running() as proxy,
        client_for(twin, proxy=proxy.url()) as client,
    ):
        with pytest.raises(stt.TLSError, match="certificate verification failed"):
            async with ws(client):
                pass
        with pytest.raises(stt.TLSError, match="certificate verification failed"):
            await client.tts.generate(**TTS_BODY)
    assert len(proxy.tunnels) == 2 and twin.handshakes == 0


@pytest.mark.asyncio
async def test_the_cli_loads_a_certificate_for_the_twin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "twin.pem", tmp_path / "twin.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server_context = _server_tls(str(cert), str(key))
    assert server_context is not None
    async with (
        serve(engine(), ssl=server_context) as twin,
        client_for(twin, ssl=client_context) as client,
    ):
        await session(client)
    # Refused before anything starts: one line on stderr, exit status 2.
    assert main(["twin", "--keyfile", str(key)]) == 2
    assert "--keyfile needs --certfile" in capsys.readouterr().err
    assert main(["twin", "--certfile", str(tmp_path / "missing.pem")]) == 2
    assert "cannot load --certfile" in capsys.readouterr().err
    assert main(["twin", "--certfile", str(key)]) == 2  # a key is no certificate
    assert "cannot load --certfile" in capsys.readouterr().err
    # A certificate without its key (it was "[SSL] PEM lib"): says to pass --keyfile.
    assert main(["twin", "--certfile", str(cert)]) == 2
    err = capsys.readouterr().err
    assert "holds no private key: pass the key with --keyfile" in err and "PEM lib" not in err


@pytest.mark.timeout(60)
def test_the_cli_tells_a_shell_user_how_to_trust_a_private_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21, first hour #6: the remedy is SSL_CERT_FILE, not a Python argument."""
    from anyio.from_thread import start_blocking_portal

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    audio = tmp_path / "turn.wav"
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(3200))
    clean_proxy_env(monkeypatch)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    # The twin on a loop of its own thread, out of asyncio's debug mode: in it, asyncio logs
    # each refused TLS handshake ("Error on transport creation"), which here is the point.
    with (
        start_blocking_portal(backend_options={"debug": False}) as portal,
        portal.wrap_async_context_manager(
            serve(engine=ScriptedEngine([["over TLS"]]), ssl=server)
        ) as twin,
    ):
        monkeypatch.setenv("CARTESIA_API_KEY", "cli-tls-key")
        monkeypatch.setenv("CARTESIA_BASE_URL", twin.base_url)
        assert main(["transcribe", str(audio), "--speed", "0"]) == 1
        err = capsys.readouterr().err
        assert "certificate verification failed" in err
        assert "SSL_CERT_FILE=ca.pem" in err and "ssl=" not in err
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # what the message says to do
        assert main(["transcribe", str(audio), "--speed", "0"]) == 0
        assert capsys.readouterr().out == "over TLS\n"


def test_proxy_resolution_from_the_environment(proxy_env: pytest.MonkeyPatch) -> None:
    api, sock = "https://api.cartesia.ai/tts/bytes", "wss://api.cartesia.ai/stt/websocket"
    proxy_env.setenv("HTTPS_PROXY", "https://proxy.invalid:443")
    assert http_proxy(api, None) is None  # aiohttp's rule: no https:// proxies from the env
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert http_proxy(api, None) == ws_proxy(sock, None) == "http://proxy.invalid:3128"
    assert http_proxy(api, False) is None and ws_proxy(sock, False) is None
    assert http_proxy(api, "http://other.invalid") == "http://other.invalid"
    proxy_env.setenv("NO_PROXY", "cartesia.ai")
    assert http_proxy(api, None) is None and ws_proxy(sock, None) is None
    # Credentials of a URL written without its scheme are still known secrets.
    assert PROXY_PASSWORD in proxy_secrets(f"{PROXY_USER}:{PROXY_PASSWORD}@proxy.invalid:3128")
    # Written without its scheme, a proxy is an http:// one (as curl, requests and urllib
    # take it), from the environment and in the option alike.
    proxy_env.delenv("NO_PROXY")
    proxy_env.setenv("HTTPS_PROXY", "proxy.invalid:3128")
    assert http_proxy(api, None) == ws_proxy(sock, None) == "http://proxy.invalid:3128"
    client = stt.AsyncCartesia(api_key=API_KEY, proxy="u:p@proxy.invalid:3128")
    assert ws_proxy(sock, client._settings.proxy) == "http://u:p@proxy.invalid:3128"
