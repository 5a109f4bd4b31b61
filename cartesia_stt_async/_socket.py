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
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State

__all__ = ["Socket"]

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

    # Through an HTTP proxy, websockets (15.0.1 to 17.0.1) hands the tunnel to the connection
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
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                self._message(event.data, opcode is Opcode.TEXT)
            else:
                self._fragments = [event.data]
                self._fragment_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            fragments = self._fragments
            if fragments is None:  # pragma: no cover - the protocol rejects this first
                return
            fragments.append(event.data)
            if event.fin:
                self._fragments = None
                self._message(b"".join(fragments), self._fragment_text)
        else:
            super().process_event(event)  # ping, pong, close: websockets' own handling

    def _message(self, data: bytes | bytearray | memoryview, text: bool) -> None:
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
