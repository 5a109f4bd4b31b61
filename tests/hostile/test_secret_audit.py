"""Issue 21: a secrets audit of every failure a hostile peer or proxy can provoke.

A matrix: canary credentials (the API key as ``api_key``, an access token in ``extra_query``,
tokens in ``default_headers`` and ``extra_headers``, a proxy user name and password through
``proxy=`` and through ``HTTPS_PROXY``/``HTTP_PROXY``) crossed with every failure a hostile
WebSocket peer, HTTP peer or proxy can provoke: refused handshakes, in-band ``error`` events,
close frames, TCP aborts, malformed and oversize frames, reconnect give-up, TLS failures,
proxies refusing, closing, staying silent or answering garbage, and the HTTP routes
(``tts.generate``, ``access_token.create``). Every peer echoes the credentials it received in
every field it controls.

For each failure, everything the caller and an operator can see is searched: the exception
raised to the caller (``str``, ``repr``, ``args``, every attribute, the whole
``__cause__``/``__context__`` chain, walked by :func:`.test_secrets.reachable`), its formatted
traceback (``traceback.format_exception``), every log record of the process at DEBUG
(``cartesia_stt_async``, ``websockets``, ``asyncio``, ``aiohttp``: message, arguments as
``str`` and ``repr``, ``exc_info`` formatted and walked, string extras), and the reprs of the
client, manager and connection, and every observer record (issue 24: the clients run with an
observer that keeps each record; its repr and every string in it are searched, and each test
checks the record it expects was made). The blocking client (``stt.Cartesia``) gets a slice of the
matrix: the same exceptions, re-raised in the caller's thread.

A canary counts as found when any 10-character piece of it appears (a message cut in the
middle of a key leaks its first half), as written, percent-encoded, or as a hex dump; the proxy
pair also in its Basic-auth base64 forms. The 2-character proxy user name of the
``short-user`` route is not searched (it would match innocently).

Through a proxy the client is pointed at ``twin.invalid``, which only the test proxy resolves
(to 127.0.0.1): the environment's proxy is then the only way there, whatever rule exempts
loopback targets from it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import socket
import ssl
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import msgspec
import pytest
import trustme

import cartesia_stt_async as stt
from cartesia_stt_async.observe import RequestFinished, SessionClosed

from ..conftest import KeepRecords, RecordingObserver
from ..proxies import clean_proxy_env
from ..test_tls_proxy import TTS_BODY, Proxy
from .conftest import CANARY, FAST, SLACK, bounded, pcm
from .peer import Closed, Fault, Handler, Peer, PeerConn, Refusal
from .test_secrets import reachable

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

# -- the canaries -----------------------------------------------------------------------------

KEY = CANARY  # api_key
QTOKEN = "at_cnry_Q7vLx2-9Rk.dW_"  # extra_query access_token (URL-safe: see the test below)
ETOKEN = "at_cnry_E5tYh1+3Nb/qP="  # an access token that the URL carries percent-encoded
HTOKEN = "hk_cnry_H4mZp8Tq1sYe"  # default_headers X-Api-Key (sessions and HTTP)
XTOKEN = "xt_cnry_X6bNw3Jc5gUa"  # extra_headers X-Auth-Token (sessions)
PUSER = "pu_cnry_U2kRv8@corp"  # proxy user name (written percent-encoded in the URL)
PPASS = "pp:cnry_P9sV4kLm/x@W%z"  # proxy password (likewise)
SHORT_USER = "ab"  # the short-user route's name: too short to search

SEARCHED = {
    "api key": KEY,
    "query token": QTOKEN,
    "encoded query token": ETOKEN,
    "default-header token": HTOKEN,
    "extra-header token": XTOKEN,
    "proxy user": PUSER,
    "proxy password": PPASS,
}

# What the peers say back: everything they received, in every field they control.
WS_ECHO = f"Bearer {KEY} access_token={QTOKEN} {HTOKEN} {XTOKEN}"  # < 123 bytes: a close reason
HTTP_ECHO = f"Bearer {KEY} X-Api-Key={HTOKEN}"
# A close reason websockets logs whole (a frame's dump is cut at 75 characters: see the
# close-*-key-cut-in-the-frame-log cases).
SHORT_ECHO = f"{KEY} {XTOKEN}"


def echo_fields(echo: str) -> dict[str, str]:
    """Cartesia's error body, every field echoing ``echo``."""
    return {
        "message": f"invalid key {echo}",
        "title": f"Unauthorized {echo}",
        "error_code": echo,
        "request_id": echo,
    }


def echo_headers(echo: str) -> dict[str, str]:
    return {
        "X-Request-Id": echo,
        "X-Echo": echo,
        "WWW-Authenticate": f'Bearer realm="{echo}"',
        "Retry-After": echo,
    }


def straddling(secret: str, at: int) -> str:
    """Text that puts ``secret`` across position ``at``: a cut there keeps half of it."""
    return "x" * (at - len(secret) // 2) + secret + " tail"


# -- what counts as found -----------------------------------------------------------------------

FRAGMENT = 10  # characters of a canary that count as a leak


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


class Needles:
    """Every searched form of the canaries, with a cheap first pass over all texts at once."""

    def __init__(self) -> None:
        self.windows: dict[str, str] = {}  # a FRAGMENT-long piece -> what it is part of
        self.chunks: set[str] = set()  # aligned pieces half as long: every window holds one
        self.exact: dict[str, str] = {}  # base64 and hex forms, searched whole
        half = FRAGMENT // 2
        for label, secret in SEARCHED.items():
            for form in _forms(secret):
                for i in range(len(form) - FRAGMENT + 1):
                    self.windows.setdefault(form[i : i + FRAGMENT], label)
                self.chunks.update(form[i : i + half] for i in range(0, len(form) - half + 1, half))
            raw = secret.encode()
            for i in range(len(raw) - 7):  # websockets dumps binary frames as spaced hex
                self.exact[raw[i : i + 8].hex(" ")] = f"{label} (hex dump)"
        for user in (PUSER, quote(PUSER, safe=""), SHORT_USER):
            for password in (PPASS, quote(PPASS, safe="")):
                pair = base64.b64encode(f"{user}:{password}".encode()).decode()
                self.exact[pair] = "proxy user:password (Basic base64)"

    def find(self, texts: list[tuple[str, str]]) -> list[str]:
        """``where: what ... snippet`` for each text holding a canary."""
        everything = "\x00".join(text for _, text in texts)
        if not any(c in everything for c in self.chunks) and not any(
            e in everything for e in self.exact
        ):
            return []
        hits: list[str] = []
        for where, text in texts:
            for needle, label in self.exact.items():
                if needle in text:
                    at = text.index(needle)
                    hits.append(f"{label} in {where}: {text[max(0, at - 60) : at + 80]!r}")
            if not any(c in text for c in self.chunks):
                continue
            for i in range(len(text) - FRAGMENT + 1):
                found = self.windows.get(text[i : i + FRAGMENT])
                if found is not None:
                    hits.append(f"{found} in {where}: {text[max(0, i - 60) : i + 80]!r}")
                    break
        return hits


NEEDLES = Needles()


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception of its ``__cause__``/``__context__`` chain, to any depth."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        todo.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)


def error_texts(error: BaseException | None) -> list[tuple[str, str]]:
    if error is None:
        return []
    texts: list[tuple[str, str]] = []
    for exc in chain(error):
        name = type(exc).__name__
        texts += [(f"exception {name} (str)", str(exc)), (f"exception {name} (repr)", repr(exc))]
        texts += [(f"exception {name} (walk)", s) for s in reachable(exc)]
    texts.append(("traceback", "".join(traceback.format_exception(error))))
    return texts


_FORMATTER = logging.Formatter()


def record_texts(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for record in records:
        where = f"log {record.name} {record.levelname} {record.msg!r:.60}"
        try:
            texts.append((where, record.getMessage()))
        except Exception as exc:  # a record that cannot format: show what it holds
            texts.append((where + " (unformattable)", f"{exc!r}"))
        texts.append((where + " (msg)", str(record.msg)))
        # The arguments as a handler may format them (not their internals: a connection object
        # passed to asyncio's debug log legitimately holds the headers it sends).
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        texts += [(where + " (args)", f(a)) for a in args for f in (str, repr)]
        texts += [t for a in args if isinstance(a, BaseException) for t in error_texts(a)]
        if record.exc_info and record.exc_info[1] is not None:
            texts.append((where + " (exc_info)", _FORMATTER.formatException(record.exc_info)))
            texts += error_texts(record.exc_info[1])
        for name in ("exc_text", "stack_info"):
            value = getattr(record, name, None)
            if isinstance(value, str):
                texts.append((f"{where} ({name})", value))
        texts += [
            (f"{where} (extra {name})", value)
            for name, value in vars(record).items()
            if isinstance(value, str) and name not in ("msg", "exc_text", "stack_info")
        ]
    return texts


def assert_nothing_shown(
    error: BaseException | None, records: list[logging.LogRecord], shown: list[str]
) -> None:
    gc.collect()  # "exception never retrieved" and unclosed-transport records, if any
    texts = error_texts(error) + record_texts(records) + [("repr", s) for s in shown]
    hits = NEEDLES.find(texts)
    assert not hits, "canaries found:\n" + "\n".join(hits)


AUDIT = RecordingObserver()  # every client of the matrix reports to it


def observer_texts() -> list[str]:
    """Every record's repr and every string in it (the results' texts included)."""
    texts = []
    for record in AUDIT.records:
        texts.append(repr(record))
        builtins = msgspec.to_builtins(record, enc_hook=repr)
        texts += [json.dumps(builtins)]
    return texts


@pytest.fixture
def audit_logs() -> Iterator[list[logging.LogRecord]]:
    """Every log record of the process, at DEBUG, during the test."""
    names = ["", "cartesia_stt_async", "websockets", "asyncio", "aiohttp"]
    levels = {name: logging.getLogger(name).level for name in names}
    keep = KeepRecords()
    AUDIT.records.clear()
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(keep)
    try:
        yield keep.records
    finally:
        logging.getLogger().removeHandler(keep)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# -- TLS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    server: ssl.SSLContext  # a certificate for 127.0.0.1 and twin.invalid
    client: ssl.SSLContext  # trusts another CA only


@pytest.fixture(scope="module")
def certs() -> Certs:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1", "twin.invalid").configure_cert(server)
    client = ssl.create_default_context()
    trustme.CA().configure_trust(client)
    return Certs(server, client)


# -- hostile servers --------------------------------------------------------------------------


@dataclass
class RawPeer:
    """A TCP server that reads a request (or the first bytes) and then misbehaves.

    ``action``: ``"abort"`` (TCP abort), ``"silent"`` (read until the client goes), or bytes
    to answer (built from the request: ``answer(request)``) before closing.
    """

    action: str | Callable[[bytes], bytes]
    head: bool = True  # read an HTTP head (and its body); else the first bytes only
    tls: ssl.SSLContext | None = None
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.head:
                request = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in request.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                request += await reader.readexactly(length)
            else:
                request = await reader.read(65536)
            self.requests.append(request)
            if self.action == "abort":
                writer.transport.abort()
            elif self.action == "silent":
                while await reader.read(65536):
                    pass
            elif callable(self.action):
                writer.write(self.action(request))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RawPeer]:
        tasks: set[asyncio.Task[None]] = set()

        def start(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.create_task(self._serve(r, w))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(
            start, "127.0.0.1", 0, ssl=self.tls, ssl_handshake_timeout=2 if self.tls else None
        )
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()
            # asyncio's loop finishes a failed TLS handshake of the server side in a task of
            # its own, a moment after the client gave up: let it end.
            handshakes = [
                t for t in asyncio.all_tasks() if "_accept_connection2" in repr(t.get_coro())
            ]
            if handshakes:
                await asyncio.wait(handshakes, timeout=2 * SLACK)


def http_answer(status: int, reason: str, body: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1") + body


def refusal(status: int, echo: str) -> bytes:
    """An HTTP refusal echoing ``echo`` in its reason phrase, JSON body and headers."""
    body = json.dumps(echo_fields(echo)).encode()
    headers = {"Content-Type": "application/json", **echo_headers(echo)}
    return http_answer(status, f"Denied {echo}", body, headers)


def _proxy_echo(head: bytes) -> str:
    """What a hostile proxy repeats: the Proxy-Authorization it got, and its decoded pair."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "proxy-authorization":
            value = value.strip()
            pair = base64.b64decode(value.split(" ", 1)[-1]).decode("latin-1")
            return f"{value} {pair}"
    return "no credentials"


@dataclass
class AuditProxy(Proxy):
    """The TLS suite's CONNECT proxy, resolving ``twin.invalid`` to 127.0.0.1, and hostile on
    demand: ``modes`` by connection (the last repeats): ``"tunnel"`` (the real proxy:
    tunnels and forwarding, credentials checked), ``"refuse407"``/``"refuse403"``/
    ``"refuse502"`` (echoing the credentials in its reason phrase, headers and body),
    ``"close"`` (no answer), ``"silent"``, ``"garbage"`` (no HTTP, echoing), ``"early"``
    (a 200 followed by data, echoing)."""

    modes: tuple[str, ...] = ("tunnel",)
    heads: list[bytes] = field(default_factory=list)
    accepted: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.modes[min(self.accepted, len(self.modes) - 1)]
        self.accepted += 1
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        self.heads.append(head)
        if mode == "tunnel":
            await self._tunnel(head.replace(b"twin.invalid", b"127.0.0.1"), reader, writer)
            return
        echo = _proxy_echo(head)
        try:
            if mode.startswith("refuse"):
                writer.write(refusal(int(mode[-3:]), echo))
            elif mode == "garbage":
                writer.write(f"SSH-2.0-{echo}\r\n\r\n".encode("latin-1"))
            elif mode == "early":
                writer.write(f"HTTP/1.1 200 OK\r\n\r\n{echo}".encode("latin-1"))
            elif mode == "silent":
                while await reader.read(65536):
                    pass
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _tunnel(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """The real proxy, reading the rewritten head and then the rest of the client's bytes."""
        inner = asyncio.StreamReader()
        inner.feed_data(head)

        async def pump() -> None:
            try:
                while data := await reader.read(65536):
                    inner.feed_data(data)
            except OSError:
                pass
            finally:
                inner.feed_eof()

        task = asyncio.create_task(pump())
        try:
            await super()._handle(inner, writer)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proxy_url(user: str, port: int) -> str:
    return f"http://{quote(user, safe='')}:{quote(PPASS, safe='')}@127.0.0.1:{port}"


@dataclass
class Route:
    """How the client reaches the server: its host, its ``proxy=`` option, the proxy."""

    host: str
    option: str | None
    proxy: AuditProxy | None


@contextlib.asynccontextmanager
async def routed(
    route: str, modes: tuple[str, ...], env: pytest.MonkeyPatch
) -> AsyncIterator[Route]:
    """``direct`` (no proxy), ``option`` (``proxy=``), ``env`` (``HTTPS_PROXY`` and
    ``HTTP_PROXY``), ``short-user`` (``proxy=`` with a 2-character user name)."""
    clean_proxy_env(env)
    if route == "direct":
        yield Route("127.0.0.1", None, None)
        return
    user = SHORT_USER if route == "short-user" else PUSER
    async with contextlib.AsyncExitStack() as stack:
        proxy: AuditProxy | None = None
        if modes == ("unreachable",):
            url = proxy_url(user, closed_port())
        else:
            proxy = AuditProxy(credentials=(user, PPASS), modes=modes)
            await stack.enter_async_context(proxy.running())
            url = proxy_url(user, proxy.port)
        if route == "env":
            env.setenv("HTTPS_PROXY", url)
            env.setenv("HTTP_PROXY", url)
            yield Route("twin.invalid", None, proxy)
        else:
            yield Route("twin.invalid", url, proxy)


def client_kw(route: Route, port: int, tls: bool, certs: Certs) -> dict[str, Any]:
    """The client's options: the key, a credential header, the route's proxy option."""
    return {
        "api_key": KEY,
        "base_url": f"{'https' if tls else 'http'}://{route.host}:{port}",
        "default_headers": {"X-Api-Key": HTOKEN},
        "proxy": route.option,
        "ssl": certs.client,
        "observers": [AUDIT],
    }


def client_on(route: Route, port: int, tls: bool, certs: Certs) -> stt.AsyncCartesia:
    return stt.AsyncCartesia(**client_kw(route, port, tls, certs))


def session_kw(options: dict[str, Any]) -> dict[str, Any]:
    """A session's options: the access token in the query, a credential header."""
    return {
        "model": "ink-2",
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
        "speed": None,
        "close_timeout": 2 * SLACK,
        "extra_query": {"access_token": QTOKEN},
        "extra_headers": {"X-Auth-Token": XTOKEN},
        **FAST,
        **options,
    }


def shown_by(client: stt.AsyncCartesia | stt.Cartesia, *objs: object) -> list[str]:
    out = [repr(client), repr(client.tts), repr(client.access_token), *observer_texts()]
    for obj in objs:
        if obj is not None:
            out.append(repr(obj))
            out += [v for n in ("url", "request_id") if isinstance(v := getattr(obj, n, None), str)]
    return out


# -- the WebSocket failures -------------------------------------------------------------------

Action = Callable[[PeerConn], Awaitable[None]]


def at_finalize(action: Action) -> Handler:
    """A peer handler: read until ``finalize``, then ``action``."""

    async def handler(conn: PeerConn) -> None:
        while True:
            message = await conn.recv()
            if isinstance(message, Closed):
                await conn.close(message.code or 1000)
                return
            if message == "finalize":
                await action(conn)
                return

    return handler


def closing(code: int, reason: str = SHORT_ECHO) -> Action:
    async def act(conn: PeerConn) -> None:
        await conn.close(code, reason)

    return act


def sending(*frames: tuple[int, bytes, bool]) -> Action:
    """Write raw frames ``(opcode, payload, fin)``, then answer the client's close."""

    async def act(conn: PeerConn) -> None:
        for opcode, payload, fin in frames:
            await conn.send_frame(opcode, payload, fin=fin)
        await conn.answer_close()

    return act


def sending_raw(data: bytes) -> Action:
    async def act(conn: PeerConn) -> None:
        conn.writer.write(data)
        await conn.answer_close()

    return act


async def _silent(conn: PeerConn) -> None:
    await conn.answer_close()  # never answers finalize


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


# websockets dumps a frame's data (its close code and reason, a ping's payload in quotes) cut
# to its first 48 and last 24 characters when longer than 75: these put the key's middle on
# the cut, so that 13 of its characters are logged before the "...".
CUT_CLOSE = "k" * (48 - len("1008 (policy violation) ") - 13) + KEY + "z" * 40
CUT_PING = "k" * (48 - 1 - 13) + KEY + "z" * 40

_ERROR_EVENT = _json({"type": "error", **echo_fields(WS_ECHO)})
_SPLIT = _ERROR_EVENT.index(KEY.encode()) + len(KEY) // 2  # a fragment boundary inside the key


@dataclass(frozen=True)
class WSCase:
    """One failure of a session. ``server`` builds the peer (a :class:`Peer` or a
    :class:`RawPeer`); ``proxy`` is the proxy's behaviour by connection; ``expect`` the type
    the caller must get."""

    name: str
    expect: type[BaseException]
    server: Callable[[Certs], Peer | RawPeer] | None = None
    proxy: tuple[str, ...] = ("tunnel",)
    tls: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    finalize_timeout: float = 5.0
    routes: tuple[str, ...] = ("direct", "option", "env")
    logs: bool = True  # False: the exception and reprs only (a leak in the logs has a case)


def peer(handler: Handler | None = None, **kw: Any) -> Callable[[Certs], Peer]:
    """A :class:`Peer` whose accepted handshakes echo the credentials in ``X-Request-Id``."""
    return lambda certs: Peer(handler=handler, request_id=f"req-{WS_ECHO}", **kw)


def raw(action: str | Callable[[bytes], bytes], *, head: bool = True) -> Callable[[Certs], RawPeer]:
    return lambda certs: RawPeer(action, head=head)


def refused(status: int, body: bytes | None = None) -> Callable[[Certs], Peer]:
    content = body if body is not None else _json(echo_fields(WS_ECHO))
    answer = Refusal(status, content, echo_headers(WS_ECHO), f"Denied {WS_ECHO}")
    return peer(refuse={i: answer for i in range(3)})  # 429 and 5xx: retried, then raised


def _bad_accept(request: bytes) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {WS_ECHO}\r\nX-Request-Id: {WS_ECHO}\r\n\r\n"
    ).encode()


NO_RETRY = {"max_retries": 0}
BAD_PORT = Refusal(302, b"", {"Location": f"ws://127.0.0.1:{KEY}/stt/websocket"}, "Found")
PROXY_ROUTES = ("option", "env", "short-user")

WS_CASES = [
    # Refused handshakes, the key echoed in the reason phrase, the JSON body and the headers.
    WSCase("refused-401", stt.AuthenticationError, refused(401)),
    WSCase("refused-403", stt.PermissionDeniedError, refused(403)),
    WSCase("refused-429", stt.RateLimitError, refused(429)),
    WSCase("refused-500", stt.ServerError, refused(500)),
    WSCase("refused-503", stt.ServerError, refused(503)),
    WSCase("refused-401-text", stt.AuthenticationError, refused(401, WS_ECHO.encode())),
    WSCase(
        "refused-401-text-key-at-200",  # the message quotes 200 characters of the body
        stt.AuthenticationError,
        refused(401, straddling(KEY, 200).encode()),
    ),
    # A Location whose port is not a number: urllib's ValueError quotes it.
    # Every attempt: the first handshake is retried (a refused redirect is a failed connection).
    WSCase(
        "redirect-to-a-bad-port",
        stt.CartesiaSTTError,
        peer(refuse={i: BAD_PORT for i in range(3)}),
    ),
    WSCase(
        "reconnect-redirected-to-a-bad-port",
        stt.APIConnectionError,
        peer(at_finalize(closing(1011)), refuse={1: BAD_PORT}),
        options={"max_retries": 2},
    ),
    WSCase(
        "reconnect-redirected-to-a-bad-port-exception-only",  # what issue 21's fix is about
        stt.APIConnectionError,
        peer(at_finalize(closing(1011)), refuse={1: BAD_PORT}),
        options={"max_retries": 2},
        logs=False,
    ),
    WSCase(
        "redirect-to-a-bad-url",
        stt.ConfigurationError,
        peer(
            refuse={
                0: Refusal(
                    302,
                    b"",
                    {"Location": f"ftp://evil.invalid/{KEY}?t={QTOKEN}"},
                    f"Found {WS_ECHO}",
                )
            }
        ),
    ),
    # The handshake itself broken.
    WSCase("handshake-abort", stt.APIConnectionError, raw("abort")),
    WSCase("handshake-silent", stt.APITimeoutError, raw("silent"), options={"open_timeout": 0.3}),
    WSCase(
        "handshake-garbage",
        stt.APIConnectionError,
        raw(lambda request: f"{WS_ECHO}\r\n\r\n".encode()),
    ),
    WSCase("handshake-bad-accept", stt.APIConnectionError, raw(_bad_accept)),
    # In-band errors and close frames, the key in every field.
    WSCase(
        "error-event-400",
        stt.BadRequestError,
        peer(
            at_finalize(
                sending(
                    (
                        0x1,
                        _json({"type": "error", "status_code": 400, **echo_fields(WS_ECHO)}),
                        True,
                    )
                )
            )
        ),
    ),
    WSCase("error-event", stt.APIError, peer(at_finalize(sending((0x1, _ERROR_EVENT, True))))),
    WSCase("close-1000", stt.ConnectionClosedError, peer(at_finalize(closing(1000)))),
    WSCase("close-1008", stt.ConnectionClosedError, peer(at_finalize(closing(1008)))),
    WSCase(
        "close-1011", stt.ConnectionClosedError, peer(at_finalize(closing(1011))), options=NO_RETRY
    ),
    WSCase("close-4000", stt.ConnectionClosedError, peer(at_finalize(closing(4000)))),
    WSCase(
        "close-1008-key-cut-in-the-frame-log",  # websockets logs 48 + 24 characters of a frame
        stt.ConnectionClosedError,
        peer(at_finalize(closing(1008, CUT_CLOSE))),
    ),
    WSCase(
        "close-bad-code",
        stt.ProtocolError,
        peer(at_finalize(sending((0x8, (999).to_bytes(2, "big") + WS_ECHO.encode(), True)))),
    ),
    WSCase(
        "close-reason-not-utf8",
        stt.ProtocolError,
        peer(at_finalize(sending((0x8, (1011).to_bytes(2, "big") + KEY.encode() + b"\xff", True)))),
    ),
    # TCP aborts and silence.
    WSCase(
        "abort-mid-session",
        stt.ConnectionClosedError,
        peer(faults=[Fault(0, "recv", 1, "abort")]),
        options=NO_RETRY,
    ),
    WSCase(
        "silent-at-finalize",
        stt.APITimeoutError,
        peer(at_finalize(_silent)),
        finalize_timeout=0.3,
    ),
    # Malformed and oversize frames.
    WSCase(
        "reserved-opcode",
        stt.ProtocolError,
        peer(at_finalize(sending((0x3, WS_ECHO.encode(), True)))),
    ),
    WSCase(
        "text-not-utf8",
        stt.ProtocolError,
        peer(at_finalize(sending((0x1, WS_ECHO.encode() + b"\xff", True)))),
    ),
    WSCase(
        "text-not-json",
        stt.ProtocolError,
        peer(at_finalize(sending((0x1, WS_ECHO.encode(), True)))),
    ),
    WSCase(
        "malformed-transcript",
        stt.ProtocolError,
        peer(
            at_finalize(
                sending(
                    (
                        0x1,
                        _json(
                            {
                                "type": "transcript",
                                "is_final": WS_ECHO,
                                "text": WS_ECHO,
                                "request_id": WS_ECHO,
                            }
                        ),
                        True,
                    )
                )
            )
        ),
    ),
    WSCase(
        "malformed-words",  # a ProtocolError (it was "receiving failed" and an ERROR log)
        stt.ProtocolError,
        peer(
            at_finalize(
                sending(
                    (
                        0x1,
                        _json(
                            {"type": "transcript", "is_final": True, "text": "x", "words": WS_ECHO}
                        ),
                        True,
                    )
                )
            )
        ),
    ),
    WSCase(
        "binary-message",
        stt.ProtocolError,
        peer(at_finalize(sending((0x2, WS_ECHO.encode(), True)))),
    ),
    WSCase(
        "fragmented-error-event-split-in-the-key",
        stt.APIError,
        peer(
            at_finalize(
                sending((0x1, _ERROR_EVENT[:_SPLIT], False), (0x0, _ERROR_EVENT[_SPLIT:], True))
            )
        ),
    ),
    WSCase(
        "ping-key-cut-in-the-frame-log",
        stt.APIError,
        peer(at_finalize(sending((0x9, CUT_PING.encode(), True), (0x1, _ERROR_EVENT, True)))),
    ),
    WSCase(
        "masked-frame",
        stt.ProtocolError,
        peer(
            at_finalize(
                sending_raw(bytes([0x81, 0x80 | len(WS_ECHO)]) + b"\0\0\0\0" + WS_ECHO.encode())
            )
        ),
    ),
    WSCase(
        "oversize-message",
        stt.ConnectionClosedError,
        peer(at_finalize(sending((0x1, (WS_ECHO * 40).encode(), True)))),
        options={"max_message_size": 1024},
    ),
    # Reconnecting gives up: ReconnectError, its __cause__ the last failure.
    WSCase(
        "reconnect-refused-503",
        stt.ReconnectError,
        peer(
            at_finalize(closing(1011)),
            refuse={
                n: Refusal(
                    503, _json(echo_fields(WS_ECHO)), echo_headers(WS_ECHO), f"Busy {WS_ECHO}"
                )
                for n in (1, 2, 3)
            },
        ),
        options={"max_retries": 2},
    ),
    WSCase(
        "reconnect-closed-each-time",
        stt.ReconnectError,
        peer(faults=[Fault(n, "recv", 1, "close", 1011, SHORT_ECHO) for n in range(4)]),
        options={"max_retries": 2},
    ),
    WSCase(
        "reconnect-aborted-each-time",
        stt.ReconnectError,
        peer(at_finalize(closing(1011)), faults=[Fault(n, "recv", 0, "abort") for n in (1, 2, 3)]),
        options={"max_retries": 2},
    ),
    # TLS.
    WSCase(
        "tls-untrusted",
        stt.TLSError,
        lambda certs: RawPeer("silent", tls=certs.server),
        tls=True,
    ),
    WSCase(
        "tls-to-a-plain-server",
        stt.TLSError,
        raw(lambda request: f"HTTP/1.1 400 {WS_ECHO}\r\n\r\n".encode(), head=False),
        tls=True,
    ),
    # Proxies (their credentials echoed in the refusal's reason phrase, headers and body).
    WSCase("proxy-407", stt.ProxyError, peer(), proxy=("refuse407",), routes=PROXY_ROUTES),
    WSCase("proxy-403", stt.ProxyError, peer(), proxy=("refuse403",), routes=PROXY_ROUTES),
    WSCase("proxy-502", stt.ProxyError, peer(), proxy=("refuse502",), routes=PROXY_ROUTES),
    WSCase("proxy-closes", stt.ProxyError, peer(), proxy=("close",), routes=PROXY_ROUTES),
    WSCase(
        "proxy-silent",
        stt.APITimeoutError,
        peer(),
        proxy=("silent",),
        options={"open_timeout": 0.3},
        routes=PROXY_ROUTES,
    ),
    WSCase("proxy-garbage", stt.ProxyError, peer(), proxy=("garbage",), routes=PROXY_ROUTES),
    WSCase("proxy-early-data", stt.ProxyError, peer(), proxy=("early",), routes=PROXY_ROUTES),
    WSCase(
        "proxy-unreachable", stt.ProxyError, peer(), proxy=("unreachable",), routes=PROXY_ROUTES
    ),
    WSCase(
        "proxy-tls-untrusted",
        stt.TLSError,
        lambda certs: RawPeer("silent", tls=certs.server),
        tls=True,
        routes=PROXY_ROUTES,
    ),
    WSCase(
        "reconnect-proxy-502",
        stt.ReconnectError,
        peer(at_finalize(closing(1011))),
        proxy=("tunnel", "refuse502"),
        options={"max_retries": 2},
        routes=PROXY_ROUTES,
    ),
]

# Leaks found: case name -> where the canary comes from. Strict: a fix makes them fail.
WS_LEAKS: dict[str, str] = {}


def ws_params() -> list[Any]:
    params = []
    for case in WS_CASES:
        marks = []
        if case.name in WS_LEAKS:
            marks.append(pytest.mark.xfail(strict=True, reason=f"LEAK: {WS_LEAKS[case.name]}"))
        params += [
            pytest.param(case, route, id=f"{case.name}-{route}", marks=marks)
            for route in case.routes
        ]
    return params


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "route"), ws_params())
async def test_a_session_failure_shows_no_secret(
    case: WSCase,
    route: str,
    certs: Certs,
    audit_logs: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert case.server is not None
    server = case.server(certs)
    manager: stt.ConnectionManager | None = None
    conn: stt.AsyncConnection | None = None
    error: BaseException | None = None
    async with bounded(10), contextlib.AsyncExitStack() as stack:
        if isinstance(server, Peer):
            await stack.enter_async_context(server)
        else:
            await stack.enter_async_context(server.running())
        way = await stack.enter_async_context(routed(route, case.proxy, monkeypatch))
        client = client_on(way, server.port, case.tls, certs)
        manager = client.stt.manual_finalize.websocket(**session_kw(case.options))
        try:
            async with manager as conn:
                await conn.send_audio(pcm(3200, 1))
                await conn.finalize(timeout=case.finalize_timeout * SLACK)
                await conn.send_audio(pcm(3200, 1))
                await conn.finalize(timeout=case.finalize_timeout * SLACK)
        except Exception as exc:
            error = exc
        shown = shown_by(client, manager, conn)
        await client.close()
        if isinstance(server, Peer) and case.proxy[0] == "tunnel":  # the credentials reached...
            assert server.handshakes, "no handshake reached the peer"
            first = server.handshakes[0]
            assert KEY in first.headers["authorization"] and QTOKEN in unquote(first.target)
            heard = "\n".join(
                line.decode("latin-1") for shake in server.handshakes for line in shake.raw_lines
            )
            assert PPASS not in heard and quote(PPASS, safe="") not in heard  # ...not the proxy's
    assert_nothing_shown(error, audit_logs if case.logs else [], shown)
    assert isinstance(error, case.expect), f"expected {case.expect.__name__}, got {error!r}"
    assert AUDIT.of(SessionClosed), "no session record"
    if way.proxy is not None and case.proxy == ("tunnel",):
        assert way.proxy.tunnels, "the session did not go through the proxy"


# -- the HTTP routes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HTTPCase:
    """One failure of ``client.tts.generate`` / ``client.access_token.create`` /
    ``client.stt.transcribe``."""

    name: str
    expect: type[BaseException]
    action: str | Callable[[bytes], bytes] = "abort"
    proxy: tuple[str, ...] = ("tunnel",)
    tls: bool = False
    untrusted: bool = False  # the server presents a certificate the client does not trust
    surfaces: tuple[str, ...] = ("tts", "token", "stt")
    routes: tuple[str, ...] = ("direct", "option", "env")


def answering(data: bytes) -> Callable[[bytes], bytes]:
    return lambda request: data


def http_refusal(status: int) -> Callable[[bytes], bytes]:
    return answering(refusal(status, HTTP_ECHO))


HTTP_CASES = [
    HTTPCase("http-401", stt.AuthenticationError, http_refusal(401)),
    HTTPCase("http-403", stt.PermissionDeniedError, http_refusal(403)),
    HTTPCase("http-429", stt.RateLimitError, http_refusal(429)),
    HTTPCase("http-500", stt.ServerError, http_refusal(500)),
    HTTPCase("http-503", stt.ServerError, http_refusal(503)),
    HTTPCase(
        "http-401-text",
        stt.AuthenticationError,
        answering(http_answer(401, "Denied", HTTP_ECHO.encode(), {"X-Echo": HTTP_ECHO})),
    ),
    HTTPCase(
        "http-401-text-key-at-200",  # the message quotes 200 characters of the body
        stt.AuthenticationError,
        answering(http_answer(401, "Denied", straddling(KEY, 200).encode(), {})),
    ),
    HTTPCase("http-abort-before-answering", stt.APIConnectionError, "abort"),
    HTTPCase(
        "http-abort-mid-body",
        stt.APIConnectionError,
        answering(
            f"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\nX-Echo: {HTTP_ECHO}\r\n\r\n"
            f"{HTTP_ECHO}".encode()
        ),
    ),
    HTTPCase(
        "http-bad-status-line",
        stt.APIConnectionError,
        answering(f"HTTP/1.1 2x0 {HTTP_ECHO}\r\nContent-Length: 0\r\n\r\n".encode()),
    ),
    HTTPCase(
        "http-bad-header",
        stt.APIConnectionError,
        answering(
            f"HTTP/1.1 200 OK\r\nBad Header {HTTP_ECHO}\r\nContent-Length: 0\r\n\r\n".encode()
        ),
    ),
    HTTPCase(
        "http-redirect-to-a-bad-port",
        stt.CartesiaSTTError,
        answering(http_answer(307, "Moved", b"", {"Location": f"http://127.0.0.1:{KEY}/x"})),
    ),
    HTTPCase(
        "token-answer-not-json",
        stt.ProtocolError,
        answering(http_answer(200, "OK", HTTP_ECHO.encode(), {"X-Request-Id": HTTP_ECHO})),
        surfaces=("token",),
    ),
    HTTPCase(
        "token-answer-without-token",
        stt.ProtocolError,
        answering(http_answer(200, "OK", _json({"tokn": HTTP_ECHO}), {})),
        surfaces=("token",),
    ),
    HTTPCase("tls-untrusted", stt.TLSError, "silent", tls=True, untrusted=True),
    HTTPCase(
        "tls-to-a-plain-server",
        stt.TLSError,
        answering(f"HTTP/1.1 400 {HTTP_ECHO}\r\n\r\n".encode()),
        tls=True,
    ),
    # Proxies: plain http:// requests are forwarded (the refusal is the response); https://
    # ones go through a CONNECT tunnel.
    HTTPCase("proxy-407", stt.ProxyError, proxy=("refuse407",), routes=PROXY_ROUTES),
    HTTPCase("proxy-403", stt.PermissionDeniedError, proxy=("refuse403",), routes=PROXY_ROUTES),
    HTTPCase("proxy-502", stt.ServerError, proxy=("refuse502",), routes=PROXY_ROUTES),
    HTTPCase(
        "proxy-407-tunnel", stt.ProxyError, proxy=("refuse407",), tls=True, routes=PROXY_ROUTES
    ),
    HTTPCase(
        "proxy-502-tunnel", stt.ProxyError, proxy=("refuse502",), tls=True, routes=PROXY_ROUTES
    ),
    HTTPCase("proxy-closes", stt.APIConnectionError, proxy=("close",), routes=PROXY_ROUTES),
    HTTPCase("proxy-garbage", stt.APIConnectionError, proxy=("garbage",), routes=PROXY_ROUTES),
    HTTPCase("proxy-unreachable", stt.ProxyError, proxy=("unreachable",), routes=PROXY_ROUTES),
    HTTPCase(
        "proxy-tls-untrusted", stt.TLSError, "silent", tls=True, untrusted=True, routes=PROXY_ROUTES
    ),
]

# Leaks found: case name -> where the canary comes from.
HTTP_LEAKS: dict[str, str] = {}


def http_params() -> list[Any]:
    params = []
    for case in HTTP_CASES:
        marks = []
        if case.name in HTTP_LEAKS:
            marks.append(pytest.mark.xfail(strict=True, reason=f"LEAK: {HTTP_LEAKS[case.name]}"))
        params += [
            pytest.param(case, surface, route, id=f"{case.name}-{surface}-{route}", marks=marks)
            for surface in case.surfaces
            for route in case.routes
        ]
    return params


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "surface", "route"), http_params())
async def test_an_http_failure_shows_no_secret(
    case: HTTPCase,
    surface: str,
    route: str,
    certs: Certs,
    audit_logs: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = RawPeer(case.action, head=not case.tls or case.untrusted)
    if case.untrusted:
        server.tls = certs.server
    error: BaseException | None = None
    async with (
        bounded(10),
        server.running(),
        routed(route, case.proxy, monkeypatch) as way,
    ):
        client = client_on(way, server.port, case.tls, certs)
        try:
            if surface == "tts":
                await client.tts.generate(**TTS_BODY)
            elif surface == "stt":
                await client.stt.transcribe(file=b"RIFF", model="ink-whisper", language="en")
            else:
                await client.access_token.create(grants={"stt": True}, expires_in=60)
        except Exception as exc:
            error = exc
        shown = shown_by(client)
        await client.close()
        heard = b"\n".join(server.requests).decode("latin-1")
        if case.proxy[0] == "tunnel" and not case.tls:  # the credentials reached the server...
            assert KEY in heard and HTOKEN in heard, heard
        assert PPASS not in heard and quote(PPASS, safe="") not in heard  # ...not the proxy's
    assert isinstance(error, case.expect), f"expected {case.expect.__name__}, got {error!r}"
    assert_nothing_shown(error, audit_logs, shown)
    assert AUDIT.of(RequestFinished), "no request record"


# -- beyond the matrix ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_percent_encoded_access_token_is_not_shown(
    audit_logs: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    echo = f"bad request /stt/websocket?access_token={quote(ETOKEN, safe='')}"
    answer = Refusal(400, _json(echo_fields(echo)), {"X-Request-Id": echo})
    error: BaseException | None = None
    async with bounded(10), Peer(refuse={0: answer}) as server:
        clean_proxy_env(monkeypatch)
        client = stt.AsyncCartesia(api_key=KEY, base_url=server.base_url)
        manager = client.stt.manual_finalize.websocket(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            extra_query={"access_token": ETOKEN},
        )
        try:
            async with manager:
                pass
        except Exception as exc:
            error = exc
        assert quote(ETOKEN, safe="") in server.handshakes[0].target
    assert isinstance(error, stt.BadRequestError)
    assert_nothing_shown(error, audit_logs, shown_by(client, manager))


@pytest.mark.asyncio
async def test_a_redirect_to_another_origin_does_not_get_the_credentials(
    audit_logs: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_proxy_env(monkeypatch)
    async with bounded(10), Peer(refuse={0: Refusal(401, b"{}")}) as other:
        location = {"Location": f"ws://localhost:{other.port}/stt/websocket"}
        found = Refusal(302, b"", location, "Found")  # every attempt: the first one is retried
        async with Peer(refuse={i: found for i in range(3)}) as server:
            client = stt.AsyncCartesia(
                api_key=KEY, base_url=server.base_url, default_headers={"X-Api-Key": HTOKEN}
            )
            manager = client.stt.manual_finalize.websocket(
                model="ink-2",
                encoding="pcm_s16le",
                sample_rate=16000,
                extra_headers={"X-Auth-Token": XTOKEN},
            )
            with pytest.raises(stt.CartesiaSTTError):
                async with manager:
                    pass
    heard = "\n".join(line.decode("latin-1") for s in other.handshakes for line in s.raw_lines)
    assert not [secret for secret in (KEY, HTOKEN, XTOKEN) if secret in heard], heard


@pytest.mark.asyncio
async def test_an_http_redirect_to_another_origin_does_not_get_the_credentials(
    certs: Certs, audit_logs: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = RawPeer(answering(http_answer(401, "Denied", b"{}", {})))
    async with bounded(10), other.running(), routed("direct", ("tunnel",), monkeypatch) as way:
        location = f"http://localhost:{other.port}/tts/bytes"
        server = RawPeer(answering(http_answer(307, "Moved", b"", {"Location": location})))
        async with server.running():
            client = client_on(way, server.port, False, certs)
            with pytest.raises(stt.CartesiaSTTError):
                await client.tts.generate(**TTS_BODY)
            await client.close()
    assert server.requests
    heard = b"\n".join(other.requests).decode("latin-1")
    assert not [secret for secret in (KEY, HTOKEN) if secret in heard], heard


# The blocking client (its own loop in a thread) over the same peers: the same exceptions,
# re-raised in the caller's thread.
SYNC_WS = ("refused-401", "close-1008", "error-event", "reconnect-refused-503", "proxy-407")
SYNC_HTTP = ("http-401", "token-answer-without-token", "proxy-407")


def sync_params() -> list[Any]:
    params = []
    for kind, names, cases in (("ws", SYNC_WS, WS_CASES), ("http", SYNC_HTTP, HTTP_CASES)):
        for case in cases:
            if case.name in names:
                route = "option" if case.proxy != ("tunnel",) else "direct"
                params.append(pytest.param(kind, case, route, id=f"{kind}-{case.name}-{route}"))
    return params


@pytest.mark.asyncio
@pytest.mark.parametrize(("kind", "case", "route"), sync_params())
async def test_the_blocking_client_shows_no_secret(
    kind: str,
    case: WSCase | HTTPCase,
    route: str,
    certs: Certs,
    audit_logs: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if isinstance(case, WSCase):
        assert case.server is not None
        server: Peer | RawPeer = case.server(certs)
    else:
        server = RawPeer(case.action)
    async with bounded(10), contextlib.AsyncExitStack() as stack:
        if isinstance(server, Peer):
            await stack.enter_async_context(server)
        else:
            await stack.enter_async_context(server.running())
        way = await stack.enter_async_context(routed(route, case.proxy, monkeypatch))

        def body() -> tuple[BaseException | None, list[str]]:
            with stt.Cartesia(**client_kw(way, server.port, False, certs)) as client:
                try:
                    if isinstance(case, HTTPCase):
                        client.access_token.create(grants={"stt": True})
                        return None, []
                    assert isinstance(case, WSCase)
                    manager = client.stt.manual_finalize.websocket(**session_kw(case.options))
                    with manager as conn:
                        conn.send_audio(pcm(3200, 1))
                        conn.finalize(timeout=case.finalize_timeout * SLACK)
                except Exception as exc:
                    return exc, shown_by(client)
            return None, []

        error, shown = await asyncio.to_thread(body)
    assert isinstance(error, case.expect), f"expected {case.expect.__name__}, got {error!r}"
    assert_nothing_shown(error, audit_logs, shown)
