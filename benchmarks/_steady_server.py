"""The minimal server of ``steady_state.py``: cheap enough that it is never what is measured.

It speaks just enough of each realtime protocol for the benchmark, chosen by the path:

* ``/stt/websocket`` (manual finalize): it counts binary frames, answers ``finalize`` with one
  small final ``transcript`` and a ``flush_done``, and ``close`` with ``done`` followed by a
  close frame.
* ``/stt/turns/websocket`` (turn detection): ``connected`` first; then it decides turns by
  counting frames (audio time), as a turn-detection server would decide them from the audio:
  a turn every ``bench_turn`` frames (query parameter, default 25: 2.5 s), whose first frame
  brings ``turn.start``, every fifth frame a ``turn.update`` with a growing transcript, the
  fifth-last frame ``turn.eager_end`` and the last ``turn.end``; ``{"type":"close"}`` ends an
  open turn with ``turn.end``, then the server closes with 1000 (this endpoint has no
  ``done``). Other text frames are ignored.

There is no recognizer, no energy detector and no pacing check.

It is built on websockets' sans-I/O ``ServerProtocol`` driven from a plain
``asyncio.Protocol``: no task, future or queue per message, so thousands of frames per second
cost little CPU. It listens on two ports: one that declines permessage-deflate (like this
package's twin) and one that accepts it with websockets' default server settings (so the
official client's default offer is negotiated there). With ``--ca PATH`` it also listens with
TLS (no deflate): a self-signed CA and a certificate for ``127.0.0.1`` made at startup with
``trustme``; the CA's PEM is written to ``PATH`` for the clients to trust. The server runs on
asyncio's default loop for every port, so the TLS port adds the server's own decryption cost
(reported as its CPU).

It records, per session tagged with the query parameter ``bench=<run>-<index>``, the monotonic
time (``time.monotonic()``, system-wide on Linux, so comparable with the clients' stamps) each
frame arrived and its *answers*: for each ``finalize``, when it was read and when its
``flush_done`` was handed to the socket (the server's own share of the finalize round trip);
for each ``turn.start``, when the frame that started the turn was read and just before the event
is written to the socket (a client's barge-in signal is measured from there).

Control is on stdin, one command a line, answers one JSON line on stdout:
``stats <run>`` (the sessions of that run, then forgotten), ``quit``.
The first line printed is ``PORTS <plain> <deflate> <tls>`` (``<tls>`` is 0 without ``--ca``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

FRAME_SECONDS = 0.1
TURN_FRAMES = 25  # the default length of a turn on /stt/turns/websocket, in frames
UPDATE_EVERY = 5  # frames between turn.update events (and before the end: the eager end)


@dataclass
class Record:
    """What the server saw of one tagged session."""

    frames: list[float] = field(default_factory=list)  # arrival time of each binary frame
    audio_bytes: int = 0
    # (finalize read, flush_done written) or (turn's first frame read, turn.start written)
    answers: list[tuple[float, float]] = field(default_factory=list)
    closed: bool = False
    deflate: bool = False


RECORDS: dict[str, Record] = {}


class BenchProtocol(asyncio.Protocol):
    """One connection: feed bytes to the sans-I/O protocol, write what it produces."""

    def __init__(self, deflate: bool, counter: list[int]) -> None:
        extensions = enable_server_permessage_deflate(None) if deflate else None
        self.ws = ServerProtocol(extensions=extensions, max_size=16 << 20)
        self.transport: asyncio.Transport | None = None
        self.record: Record | None = None
        self.request_id = ""
        self.counter = counter
        self.finalized = 0
        self.turns = False  # the path is /stt/turns/websocket
        self.turn_frames = TURN_FRAMES
        self.frames = 0  # binary frames received (turns: the audio clock)
        self.open_turn = False
        self.turn_count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.BINARY:
                    read = time.monotonic()
                    if self.record is not None:
                        self.record.frames.append(read)
                        self.record.audio_bytes += len(event.data)
                    if self.turns:
                        self.turn_frame(read)
                elif event.opcode is Opcode.TEXT:
                    text = bytes(event.data).decode()
                    if self.turns:
                        self.turn_command(text)
                    else:
                        self.command(text)
            elif isinstance(event, Request):
                self.handshake(event)
        self.flush()

    def handshake(self, request: Request) -> None:
        ws = self.ws
        response = ws.accept(request)
        self.counter[0] += 1
        self.request_id = f"bench-{self.counter[0]}"
        response.headers["X-Request-Id"] = self.request_id
        ws.send_response(response)
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        tag = query.get("bench", [""])[0]
        if tag and response.status_code == 101:
            self.record = RECORDS.setdefault(tag, Record())
            self.record.deflate = bool(ws.extensions)
        if url.path == "/stt/turns/websocket" and response.status_code == 101:
            self.turns = True
            self.turn_frames = max(2 * UPDATE_EVERY, int(query.get("bench_turn", [TURN_FRAMES])[0]))
            self.event("connected")

    def event(self, kind: str, transcript: str | None = None) -> None:
        """Queue one turn-detection event (flushed by the caller)."""
        text = "" if transcript is None else f',"transcript":"{transcript}"'
        self.ws.send_text(f'{{"type":"{kind}","request_id":"{self.request_id}"{text}}}'.encode())

    def turn_frame(self, read: float) -> None:
        """One frame of audio on the turn endpoint: the turn decisions it brings."""
        j = self.frames % self.turn_frames
        self.frames += 1
        last = self.turn_frames - 1
        if j == 0:
            self.open_turn = True
            self.turn_count += 1
            self.event("turn.start")
            if self.record is not None:
                # Stamped before the write: on another core the client may have the event
                # before the write call returns here.
                self.record.answers.append((read, time.monotonic()))
            self.flush()
            return
        if not self.open_turn:
            return
        words = " ".join(f"w{k}" for k in range(j // UPDATE_EVERY + 1))
        text = f"{'' if self.turn_count == 1 else ' '}t{self.turn_count} {words}"
        if j == last:
            self.open_turn = False
            self.event("turn.end", text)
        elif j == last - UPDATE_EVERY + 1:
            self.event("turn.eager_end", text)
        elif j % UPDATE_EVERY == 0:
            self.event("turn.update", text)

    def turn_command(self, text: str) -> None:
        """A text frame on the turn endpoint: ``close`` ends an open turn, then the socket."""
        if '"close"' not in text:
            return
        if self.open_turn:
            self.open_turn = False
            self.event("turn.end", f"t{self.turn_count} closed")
        self.ws.send_close(1000)
        if self.record is not None:
            self.record.closed = True

    def command(self, text: str) -> None:
        ws, rid = self.ws, self.request_id
        if text == "finalize":
            read = time.monotonic()
            self.finalized += 1
            ws.send_text(
                (
                    f'{{"type":"transcript","is_final":true,"text":" u{self.finalized}",'
                    f'"request_id":"{rid}","duration":0.0,"language":"en"}}'
                ).encode()
            )
            ws.send_text(b'{"type":"flush_done","request_id":"%s"}' % rid.encode())
            self.flush()
            if self.record is not None:
                self.record.answers.append((read, time.monotonic()))
        elif text in ("close", "done"):
            ws.send_text(b'{"type":"done","request_id":"%s"}' % rid.encode())
            ws.send_close(1000)
            if self.record is not None:
                self.record.closed = True

    def flush(self) -> None:
        transport = self.transport
        assert transport is not None
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            else:
                transport.close()
        if self.ws.state is State.CLOSED:
            transport.close()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def stats(run: str) -> dict[str, Any]:
    """Summaries of the sessions tagged ``run-*``, which are then forgotten."""
    prefix = f"{run}-"
    sessions: dict[str, Any] = {}
    late: list[float] = []
    for tag in [t for t in RECORDS if t.startswith(prefix)]:
        rec = RECORDS.pop(tag)
        if rec.frames:
            first = rec.frames[0]
            late.extend(t - (first + n * FRAME_SECONDS) for n, t in enumerate(rec.frames))
        sessions[tag[len(prefix) :]] = {
            "frames": len(rec.frames),
            "audio_bytes": rec.audio_bytes,
            "answers": rec.answers,
            "closed": rec.closed,
            "deflate": rec.deflate,
        }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sessions": sessions,
        "arrival_lateness_ms": {
            "p50": percentile(late, 0.5) * 1000,
            "p99": percentile(late, 0.99) * 1000,
            "max": max(late, default=0.0) * 1000,
        },
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def tls_context(ca_path: str) -> ssl.SSLContext:
    """A server context with a fresh certificate for 127.0.0.1; its CA's PEM goes to
    ``ca_path``."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def main(ca_path: str | None) -> None:
    loop = asyncio.get_running_loop()
    counter = [0]
    plain = await loop.create_server(
        lambda: BenchProtocol(False, counter), "127.0.0.1", 0, backlog=4096
    )
    deflate = await loop.create_server(
        lambda: BenchProtocol(True, counter), "127.0.0.1", 0, backlog=4096
    )
    servers = [plain, deflate]
    if ca_path:
        servers.append(
            await loop.create_server(
                lambda: BenchProtocol(False, counter),
                "127.0.0.1",
                0,
                backlog=4096,
                ssl=tls_context(ca_path),
            )
        )
    ports = [s.sockets[0].getsockname()[1] for s in servers] + [0]
    print(f"PORTS {ports[0]} {ports[1]} {ports[2]}", flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "stats" and len(words) == 2:
            print(json.dumps(stats(words[1])), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)
    for server in servers:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ca", help="also listen with TLS; write the CA's PEM here")
    asyncio.run(main(parser.parse_args().ca))
