"""A proxy in the environment never gets loopback traffic (issue 21, "first hour" #1).

With ``HTTPS_PROXY``/``HTTP_PROXY`` (and ``WSS_PROXY``/``WS_PROXY``) pointing at a dead port,
everything that works offline still works: sessions and TTS against a twin at ``localhost``,
``127.0.0.1`` or ``[::1]``, the CLI demo, the pytest plugin's fixtures (a user's suite, run in a
subprocess) and the example app. The environment's proxy is skipped for loopback targets,
Go's rule (plus ``*.localhost``); an explicit ``proxy=`` still applies to every host.

A client pointed at ``twin.invalid`` (not loopback) shows that the dead proxy in the
environment is live: the client does take it for any other host.
"""

from __future__ import annotations

import re
import socket
import ssl
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme

import cartesia_stt_async as stt
from cartesia_stt_async._network import http_proxy, is_loopback, ws_proxy
from cartesia_stt_async.testing import TwinServer
from cartesia_stt_async.twin import ScriptedEngine, serve

from .conftest import API_KEY, SLACK, pcm, ws
from .proxies import clean_proxy_env
from .test_cli import run_cli
from .test_fastapi_app import ANSWERS, BYE, EXPECTED, HELLO, LAST, app_for, talk
from .test_testing_plugin import INI, run_pytest, summary
from .test_tls_proxy import ALIAS, TTS_BODY

# The variables a dead proxy is put in (both libraries read all of them for some scheme).
DEAD_IN = ("HTTPS_PROXY", "HTTP_PROXY", "WSS_PROXY", "WS_PROXY")


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dead_proxy(monkeypatch: pytest.MonkeyPatch) -> str:
    """A proxy environment (both spellings cleaned first) naming a dead proxy; its URL."""
    clean_proxy_env(monkeypatch)
    url = f"http://127.0.0.1:{dead_port()}"
    for name in DEAD_IN:
        monkeypatch.setenv(name, url)
    # Live: a host that is not loopback gets it, for sessions and requests alike.
    assert ws_proxy(f"ws://{ALIAS}:80/stt/websocket", None) == url
    assert http_proxy(f"http://{ALIAS}:80/tts/bytes", None) == url
    return url


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- the rule ---------------------------------------------------------------------------------

LOOPBACK = [
    "localhost",
    "LocalHost",
    "localhost.",
    "app.localhost",
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:127.9.9.9",
]
NOT_LOOPBACK = [
    ALIAS,
    "api.cartesia.ai",
    "localhost.example",
    "notlocalhost",
    "128.0.0.1",
    "10.0.0.1",
    "::2",
    "::ffff:10.0.0.1",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_never_take_the_environments_proxy(dead_proxy: str, host: str) -> None:
    assert is_loopback(host)
    netloc = f"[{host}]:8765" if ":" in host else f"{host}:8765"
    for scheme in ("ws", "wss"):
        assert ws_proxy(f"{scheme}://{netloc}/stt/websocket", None) is None
    for scheme in ("http", "https"):
        assert http_proxy(f"{scheme}://{netloc}/tts/bytes", None) is None
    # The option is what the user asked for: it applies to loopback too.
    option = "http://proxy.invalid:3128"
    assert ws_proxy(f"ws://{netloc}/stt/websocket", option) == option
    assert http_proxy(f"http://{netloc}/tts/bytes", option) == option


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_hosts_still_take_it(dead_proxy: str, host: str) -> None:
    assert not is_loopback(host)
    netloc = f"[{host}]:8765" if ":" in host else f"{host}:8765"
    assert ws_proxy(f"wss://{netloc}/stt/websocket", None) == dead_proxy
    assert http_proxy(f"https://{netloc}/tts/bytes", None) == dead_proxy


# -- sessions and TTS against a twin on loopback ----------------------------------------------

HELLO_PCM = pcm(0.2, value=300)


@pytest.fixture(scope="module")
def localhost_tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for localhost and 127.0.0.1, and a client context
    that trusts it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("bind", "name", "tls"),
    [
        ("127.0.0.1", "127.0.0.1", False),
        ("127.0.0.1", "localhost", False),
        ("127.0.0.1", "localhost", True),
        ("127.0.0.1", "127.0.0.1", True),
        pytest.param(
            "::1",
            "[::1]",
            False,
            marks=pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback"),
        ),
    ],
)
async def test_a_session_and_tts_on_loopback_ignore_a_dead_proxy_in_the_environment(
    dead_proxy: str,
    localhost_tls: tuple[ssl.SSLContext, ssl.SSLContext],
    bind: str,
    name: str,
    tls: bool,
) -> None:
    server, client_context = localhost_tls
    engine = ScriptedEngine([], by_audio={HELLO_PCM: ["Hello", " world."]})
    async with serve(engine, host=bind, ssl=server if tls else None) as twin:
        scheme = "https" if tls else "http"
        base_url = f"{scheme}://{name}:{twin.port}"
        options: dict[str, Any] = {"ssl": client_context} if tls else {}
        async with stt.AsyncCartesia(api_key=API_KEY, base_url=base_url, **options) as client:
            async with ws(client) as conn:
                await conn.send_audio(HELLO_PCM)
                assert (await conn.finalize(timeout=5 * SLACK)).text == "Hello world."
            assert conn.state == "done"
            audio = await (await client.tts.generate(**TTS_BODY)).read()
            token = await client.access_token.create(grants={"stt": True}, expires_in=60)
    assert len(audio) > 3200 and token
    assert len(twin.sessions) == 1


# -- the CLI demo, the plugin's fixtures, the example app -------------------------------------


@pytest.mark.speech
@pytest.mark.asyncio
async def test_the_demo_works_with_a_dead_proxy_in_the_environment(dead_proxy: str) -> None:
    code, out, err = await run_cli("demo", "--speed", "0", "Thank you very much.")
    assert code == 0, err
    assert "using the local twin at http://127.0.0.1:" in out
    assert re.findall(r"^transcript \| (.+)$", out, re.MULTILINE), out
    assert "done       |" in out and "Full transcript: " in out


USER_SUITE = """
import pytest

import cartesia_stt_async as stt

SPEECH = {
    "model_id": "sonic-latest",
    "transcript": "Hi",
    "voice": "any",
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
}


@pytest.mark.asyncio
@pytest.mark.cartesia_twin(script=[["Hello", " world."]])
async def test_async_fixtures(cartesia_client, cartesia_twin):
    async with cartesia_client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
    ) as conn:
        await conn.send_audio(bytes(3200))
        assert (await conn.finalize()).text == "Hello world."
    assert len(await (await cartesia_client.tts.generate(**SPEECH)).read()) > 0


@pytest.mark.cartesia_twin(script=[["Good", " morning."]])
def test_sync_client_and_threaded_twin(cartesia_twin):
    with (
        stt.Cartesia(api_key="k", base_url=cartesia_twin.base_url) as client,
        client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn,
    ):
        conn.send_audio(bytes(3200))
        assert conn.finalize().text == "Good morning."


def test_twin_factory(cartesia_twin_factory):
    twin = cartesia_twin_factory([["Bye."]])
    with stt.Cartesia(api_key="k", base_url=twin.base_url) as client:
        assert len(client.tts.generate(**SPEECH).read()) > 0
"""


@pytest.mark.timeout(300)
def test_the_plugins_fixtures_work_with_a_dead_proxy_in_the_environment(
    dead_proxy: str, tmp_path: Path
) -> None:
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_SUITE))
    code, out = run_pytest(cwd=tmp_path)  # inherits the environment, dead proxy included
    assert code == 0, out
    assert summary(out) == "3 passed", out


@pytest.mark.cartesia_twin(by_audio=ANSWERS)
def test_the_example_app_works_with_a_dead_proxy_in_the_environment(
    dead_proxy: str, cartesia_twin: TwinServer
) -> None:
    with app_for(cartesia_twin) as http:
        with http.websocket_connect("/ws/transcribe") as browser:
            got = talk(browser, HELLO, "finalize", BYE, "finalize", LAST, "close")
        token = http.post("/api/token")  # an HTTP request from the app to the twin
    assert got == EXPECTED
    assert token.status_code == 200, token.text
    assert token.json()["token"]
