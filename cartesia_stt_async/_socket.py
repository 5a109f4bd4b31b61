"""The client socket: websockets' asyncio connection, with server messages handed over inline.

websockets' :class:`~websockets.asyncio.client.ClientConnection` puts each received data frame
in an assembler queue, and a reader task takes it out with ``recv()``: a future and a task
wake-up per batch of messages, and a queue hop per message. This package has exactly one
consumer of server messages (the link, which decodes each and feeds the session), and what
it does per message never waits. So :class:`Socket` hands every complete message to that
consumer from inside ``data_received``, the moment websockets' sans-I/O protocol has parsed
it. This is websockets' documented extension point for the client class
(``connect(create_connection=...)``) overriding the method websockets itself overrides in
``ClientConnection`` for the handshake (``process_event``).

What stays websockets' own: the handshake, parsing and limits (``max_size`` applies to a
fragmented message as a whole, in the protocol), pings and pongs, the closing handshake,
``close_exc``, flow control of writes. What changes:

* A fragmented message is joined here (the protocol has checked its size as it grew).
* A text message that is not valid UTF-8 fails the connection with 1007, as websockets'
  ``recv()`` does (the link then sees a :class:`~cartesia_stt_async.errors.ProtocolError`).
* Messages that arrive before a consumer is attached (in the same read as the handshake
  response) are kept and handed over on :meth:`Socket.attach`, in order.
* The consumer must not raise; whatever it raises is caught, logged and reported through
  ``on_error`` (a bug: the link fails the session), never thrown into asyncio's transport.

:class:`ws_connect` is websockets' ``connect`` with one change: the ``CONNECT`` tunnel through
an ``http://`` proxy is opened here (:func:`open_tunnel`), on a socket of our own, which
websockets then uses as a given ``sock`` (TLS to the server and the WebSocket handshake stay
websockets'). websockets' own tunnel (``connect_http_proxy``) does three things a session
must not (the first two in 15.0.1 to 16.1.1, the third up to 17.0.1 at least):

* a proxy that never answers: when ``open_timeout`` cancels the wait for its answer, the
  socket to the proxy is never closed (only an ``Exception`` closes it, and a cancellation is
  not one), so one file descriptor per attempt stays open until the proxy closes it;
* a proxy that closes without answering: ``HTTPProxyConnection.connection_lost`` feeds EOF to
  a reader that already had it, and an ``EOFError`` is raised inside an event-loop callback
  (logged by asyncio as an error) besides the right exception;
* credentials: ``Proxy-Authorization`` is built from the user name and password as written in
  the URL, still percent-encoded (``a%40b``), where HTTP clients (aiohttp) decode them first.

``https://`` and SOCKS proxies (from the environment only) still go through websockets.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import (
    InvalidHandshake,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidURI,
    SecurityError,
)
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Event, State
from websockets.uri import WebSocketURI, parse_uri

from ._network import proxy_authorization

__all__ = ["Socket", "open_tunnel", "ws_connect"]

logger = logging.getLogger("cartesia_stt_async")

OnMessage = Callable[[str | bytes], None]
"""Called with each complete message: ``str`` for text, ``bytes`` for binary."""


def _ignore(message: str | bytes) -> None:
    """The consumer of a detached socket."""


class Socket(ClientConnection):
    """A client connection that hands complete messages to one consumer inline.

    Made by ``websockets.asyncio.client.connect(create_connection=Socket)``; see the module
    docstring. Its ``recv()`` and ``async for`` are not used (nothing reaches them).
    """

    # Set on the instance by __init__ (websockets passes its own arguments through).
    _on_message: OnMessage | None
    _on_error: Callable[[Exception], None] | None
    _early: list[str | bytes] | None
    _fragments: list[bytes | bytearray | memoryview] | None
    _fragment_text: bool

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._on_message = None
        self._on_error = None
        self._early = None
        self._fragments = None
        self._fragment_text = False

    def attach(self, on_message: OnMessage, on_error: Callable[[Exception], None]) -> None:
        """Hand every message to ``on_message`` from now on (and those that came before).

        ``on_error`` gets whatever ``on_message`` raises.
        """
        self._on_message, self._on_error = on_message, on_error
        early, self._early = self._early, None
        for message in early or ():
            self._deliver(message)

    def detach(self) -> None:
        """Stop handing messages over (later ones are dropped: the socket is done with)."""
        self._on_message, self._on_error = _ignore, None
        self._early = None

    # Through an https:// proxy (ours opens http:// tunnels itself: ws_connect below),
    # websockets (15.0.1 to 17.0.1) hands the tunnel to the connection
    # and then runs ``loop.start_tls``; when that fails (a certificate that does not verify),
    # asyncio calls ``connection_lost`` on a connection whose ``connection_made`` never ran,
    # which raises ``AttributeError`` inside an event-loop callback (logged by asyncio as an
    # error; python-websockets/websockets#1629). The handshake's own error (the ``SSLError``)
    # still reaches us; there is nothing to tear down.

    def connection_lost(self, exc: Exception | None) -> None:
        if not hasattr(self, "transport"):  # never made
            return
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if not hasattr(self, "transport"):  # never made
            return
        super().eof_received()

    def start_closing(self, code: int, reason: str) -> None:
        """Send a close frame now, from synchronous code (``await close()`` then waits for the
        closing handshake)."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self.send_data()

    def process_event(self, event: Event) -> None:
        """websockets calls this for each parsed event, inside ``data_received``."""
        if self.response is None or type(event) is not Frame:
            super().process_event(event)  # the handshake response
            return
        opcode = event.opcode
        data: bytes | bytearray | memoryview
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            text = opcode is Opcode.TEXT
            if not event.fin:
                self._fragments = [event.data]
                self._fragment_text = text
                return
            data = event.data
        elif opcode is Opcode.CONT:
            fragments = self._fragments
            if fragments is None:  # pragma: no cover - the protocol rejects this first
                return
            fragments.append(event.data)
            if not event.fin:
                return
            self._fragments = None
            data, text = b"".join(fragments), self._fragment_text
        else:
            super().process_event(event)  # ping, pong, close: websockets' own handling
            return
        # A whole message (one call less per message than a helper for this part).
        if not text:
            self._deliver(bytes(data))
            return
        try:
            message = bytes(data).decode()
        except UnicodeDecodeError as exc:
            # What websockets' recv() does: fail the connection with 1007.
            self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.send_data()
            return
        self._deliver(message)

    def _deliver(self, message: str | bytes) -> None:
        on_message = self._on_message
        if on_message is None:
            if self._early is None:
                self._early = []
            self._early.append(message)
            return
        try:
            on_message(message)
        except Exception as exc:  # a bug in the consumer: never raise into the transport
            on_error = self._on_error
            if on_error is None:  # pragma: no cover - detached while running
                raise
            on_error(exc)


# -- the tunnel through an http:// proxy ----------------------------------------------------------

# The proxy's answer to CONNECT: a status line and headers, nothing more (no body on 2xx).
_MAX_ANSWER: Final = 16384
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: ([^\r\n]*))?")


async def open_tunnel(
    proxy: str, uri: WebSocketURI, user_agent: str | None = None
) -> socket.socket:
    """A socket connected through the ``http://`` proxy to ``uri``'s host and port.

    Sends ``CONNECT host:port`` (with ``Proxy-Authorization`` when the URL has credentials,
    :func:`~._network.proxy_authorization`) and reads the answer. The socket is closed
    whenever this does not return it, cancellation included.

    Raises:
        OSError: The proxy could not be reached (``ConnectionRefusedError``, ``gaierror``).
        websockets.exceptions.InvalidProxyStatus: The proxy refused (407, 403, ...).
        websockets.exceptions.InvalidProxyMessage: It closed without an answer, or its answer
            was not HTTP, too long, or followed by data.
    """
    loop = asyncio.get_running_loop()
    parts = urlsplit(proxy)
    infos = await loop.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    sock: socket.socket | None = None
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        candidate = socket.socket(family, kind, proto)
        try:
            candidate.setblocking(False)
            await loop.sock_connect(candidate, address)
        except OSError as exc:
            candidate.close()
            error = exc
            continue
        except BaseException:
            candidate.close()
            raise
        sock = candidate
        break
    if sock is None:
        raise error or OSError("the proxy's host name has no address")
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = f"[{uri.host}]" if ":" in uri.host else uri.host
        target = f"{host}:{uri.port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if user_agent is not None:
            lines.append(f"User-Agent: {user_agent}")
        authorization = proxy_authorization(proxy)
        if authorization is not None:
            lines.append(f"Proxy-Authorization: {authorization}")
        await loop.sock_sendall(sock, "\r\n".join([*lines, "", ""]).encode("ascii"))
        await _read_answer(loop, sock)
    except BaseException:
        sock.close()
        raise
    return sock


async def _read_answer(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Read the proxy's answer to CONNECT; return on 2xx, raise websockets' exceptions."""
    answer = bytearray()
    while (end := answer.find(b"\r\n\r\n")) < 0:
        if len(answer) > _MAX_ANSWER:
            raise InvalidProxyMessage(f"the proxy's answer is over {_MAX_ANSWER} bytes")
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise InvalidProxyMessage(
                "the proxy closed the connection in the middle of its answer"
                if answer
                else "the proxy closed the connection without answering"
            )
        answer += data
    match = _STATUS_LINE.fullmatch(answer[: answer.find(b"\r\n")])
    if match is None:
        raise InvalidProxyMessage("the proxy's answer is not an HTTP/1.x status line")
    status = int(match[1])
    if not 200 <= status < 300:
        reason = (match[2] or b"").decode("ascii", "replace")
        raise InvalidProxyStatus(Response(status, reason, Headers()))
    if len(answer) > end + 4:
        raise InvalidProxyMessage("the proxy sent data through the tunnel before the client")


class ws_connect(connect):  # used as websockets' connect(), in its place
    """websockets' ``connect``, with the tunnel through an ``http://`` proxy opened by
    :func:`open_tunnel` (see the module docstring), and redirects followed only within the
    origin; everything else is websockets' own."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        """Follow a redirect only to the same scheme, host and port.

        websockets follows one to any origin and sends the same headers there: the API key
        and every extra header would go to a host the answering server chose. A ``Location``
        that is no URL (websockets' parser raises a bare ``ValueError`` quoting it) is refused
        too. The refusals name no URL (it may echo a credential).
        """
        try:
            target = super().process_redirect(exc)
        except ValueError:
            return InvalidHandshake("the server redirected the handshake to an invalid URL")
        if isinstance(target, str):
            try:
                old, new = parse_uri(self.uri), parse_uri(target)
            except (ValueError, InvalidURI):
                return InvalidHandshake("the server redirected the handshake to an invalid URL")
            if (old.secure, old.host, old.port) != (new.secure, new.host, new.port):
                return SecurityError(
                    "the server redirected the handshake to another origin; not followed, "
                    "since the API key would go there (if the new address is right, set "
                    "base_url to it)"
                )
        return target

    async def create_connection(self) -> ClientConnection:
        proxy = self.proxy
        if not isinstance(proxy, str) or urlsplit(proxy).scheme.lower() != "http":
            return await super().create_connection()
        sock = await open_tunnel(proxy, parse_uri(self.uri), self.user_agent_header)
        # websockets ignores the proxy when given a socket. Only for this call: a redirect
        # (websockets follows them) opens a new tunnel to the new host.
        self.connection_kwargs["sock"] = sock
        try:
            return await super().create_connection()
        except BaseException:
            sock.close()  # a no-op once a transport has closed it
            raise
        finally:
            del self.connection_kwargs["sock"]
