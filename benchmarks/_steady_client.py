"""One client process of ``steady_state.py``: N real-time sessions with one client library.

Run by ``steady_state.py`` (one process per measurement, so each client's CPU and memory are
its own); it prints ``MARK start`` and ``MARK end`` around the measured window (so the
orchestrator can sample the server's CPU and the machine's load then), and one JSON line with
the results last. Kinds:

* ``ours-relay``: ``cartesia_stt_async``, a live relay: each 100 ms frame "arrives" at its
  deadline (the caller sleeps to it) and is forwarded with ``await conn.send_audio(frame)`` at
  the default speed 1.0; every ``finalize_every`` frames ``conn.finalize_nowait()`` queues the
  finalize in order with the audio (the relay pattern; its future resolves when the answer is
  complete); leaving ``async with`` sends ``close`` and drains to ``done``. Nobody iterates
  events.
* ``ours-relay-unpaced``: the same with ``speed=None`` (the source is already real time);
  not in the default set: it tells what the SDK's own pacing adds.
* ``ours-stream``: ``cartesia_stt_async``, ``await conn.stream(utterances, speed=1.0)``: the
  SDK paces every utterance, finalizes after each, closes and reads to ``done``.
* ``official``: the official ``cartesia`` package (3.2.0), ONE shared ``AsyncCartesia``;
  per session ``async with client.stt.manual_finalize.websocket(...)``, frames sent with
  ``await conn.send_raw(frame)`` after sleeping to the deadline, ``await conn.send("finalize")``
  every ``finalize_every`` frames, ``send("close")``; a reader task runs
  ``async for event in conn`` until ``done``.
* ``bare``: ``websockets.asyncio.client.connect(url, compression=None)``, sleep to the
  deadline, ``await ws.send(frame)``, ``ws.send("finalize")``, ``ws.send("close")``; a reader
  task runs ``async for message in ws`` with ``json.loads`` until ``done``. The floor.

Any kind but ``official`` can take the suffix ``-uvloop`` (this process runs on
``uvloop.run(...)`` instead of ``asyncio.run(...)``), ``-tls`` (``wss://`` to the server's TLS
port, trusting its certificate through an ``ssl.SSLContext`` made from ``--ca``: ``bare``
passes ``ssl=ctx`` to ``connect``, ours passes ``ssl=ctx`` to ``AsyncCartesia``, or, if the
installed package has no such argument, sets ``SSL_CERT_FILE``), or both
(``-uvloop-tls``); ``official-uvloop`` also exists. The code of each session is the same.

Frame lateness is measured the same way for every kind and loop: websockets'
``Connection.connection_made`` is wrapped once, at class level, so every connection's
``transport`` attribute is a :class:`StampingTransport` that stamps each binary WebSocket
frame (opcode 2 in the first byte; one ``write`` per frame) with ``time.monotonic()`` and
forwards it. Every client here writes through ``connection.transport.write`` looked up at
write time (websockets' ``send_data``; this package's writer), so the stamp is where the
frame's bytes reach the transport: asyncio's socket transport, uvloop's C ``TCPTransport``
(which cannot be patched at class level), or, over TLS, the SSL layer's application-side
``write`` (before encryption). Lateness of frame n of a session = its stamp - (stamp of the
session's first frame + n x 100 ms).

``--workload turns`` runs the same clients against the turn-detection endpoint
(``/stt/turns/websocket``; steady mode only), where the server decides the turns (one every
``--finalize-every`` seconds of audio, see ``_steady_server.py``) and nobody finalizes: the
same paced frames; ``ours-relay`` is ``client.stt.auto_finalize.websocket(..., speed=1.0)``
with ``send_audio`` per frame, ``ours-stream`` its ``stream([audio], speed=1.0)``, both with a
task on ``conn.signals()`` (as a voice agent watches for barge-in); ``official`` the official
client's ``auto_finalize`` (4.x; run with that SDK's interpreter) with ``send_raw`` and a reader
task on ``async for event in conn``; ``bare`` the websockets loop on the same path with a
``json.loads`` reader. Each stamps when ``turn.start`` reaches the caller's code and counts
``turn.end``; at the end it sends ``{"type":"close"}`` and reads until the server's close 1000
(the endpoint has no ``done``).

Modes: ``steady`` (the above), ``throughput`` (one connection, unpaced), ``latency`` (one
connection, one frame then a timed ``finalize``, repeated). Arguments are documented in
``main``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import inspect
import json
import math
import os
import random
import resource
import ssl
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

RATE = 16000
FRAME_BYTES = 3200  # 100 ms of 16 kHz pcm_s16le
FRAME_S = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE")

# the stamps of each connection's binary frames, one list per connection
STAMPS: list[list[float]] = []


class StampingTransport:
    """Stands in for a WebSocket connection's transport: stamps each binary frame handed to
    ``write`` with ``time.monotonic()``, then forwards it; everything else is the transport's.

    It wraps whatever transport the connection was given: asyncio's socket transport, uvloop's
    ``TCPTransport`` (a C type, whose ``write`` cannot be replaced), or, over TLS, the SSL
    protocol's application-side transport (so the stamped bytes are the frame before
    encryption, on both loops).
    """

    def __init__(self, transport: Any) -> None:
        self._network = transport
        self._stamps: list[float] = []
        STAMPS.append(self._stamps)
        self._write: Callable[[bytes], None] = transport.write
        # Looked up on every frame by this package's writer: the transport's own bound method.
        self.is_closing: Callable[[], bool] = transport.is_closing

    def write(self, data: bytes, _now: Callable[[], float] = time.monotonic) -> None:
        """Stamp a binary frame (opcode 2 in the first byte; one ``write`` per frame in
        websockets and in this package), then hand ``data`` to the transport."""
        if data and data[0] & 0x0F == 2:  # FIN/RSV bits aside, opcode 2: a binary frame
            self._stamps.append(_now())
        self._write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)


def install_write_hook() -> None:
    """Give every websockets asyncio connection a :class:`StampingTransport`.

    ``Connection.connection_made`` (websockets' asyncio implementation, which every client
    here uses) is wrapped once, at class level: the connection keeps the stand-in as its
    ``transport`` from the start, and both websockets (``self.transport.write`` in
    ``send_data``) and this package's writer (``ws.transport.write``) look the attribute up
    at each write, so every frame of every client passes through it, on any event loop.
    """
    from websockets.asyncio.connection import Connection

    original = Connection.connection_made

    def connection_made(self: Connection, transport: asyncio.BaseTransport) -> None:
        original(self, cast(asyncio.BaseTransport, StampingTransport(transport)))

    Connection.connection_made = connection_made  # type: ignore[method-assign]


def make_audio(seconds: float) -> bytes:
    """Deterministic speech-like 16 kHz pcm_s16le: voiced harmonics at a syllable rhythm + noise.

    Not silence, so that a deflate-negotiating client pays what it would pay for speech.
    """
    rng = random.Random(7)
    samples = array("h")
    two_pi = 2 * math.pi
    for i in range(int(seconds * RATE)):
        t = i / RATE
        f0 = 120 + 30 * math.sin(two_pi * 0.7 * t)
        envelope = 0.5 * (1 + math.sin(two_pi * 3.1 * t))
        voiced = (
            3000 * math.sin(two_pi * f0 * t)
            + 1400 * math.sin(two_pi * 2 * f0 * t)
            + 700 * math.sin(two_pi * 3 * f0 * t)
        )
        value = envelope * voiced + rng.gauss(0, 250)
        samples.append(max(-32768, min(32767, int(value))))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu() -> float:
    """User + system CPU seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def minor_faults() -> int:
    """Minor page faults of this process so far (memory first touched, counted as sys CPU)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def sys_cpu() -> float:
    """System (kernel) CPU seconds of this process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


async def sleep_until(deadline: float) -> None:
    """Sleep until the loop's monotonic clock reaches ``deadline``."""
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


@dataclass
class Plan:
    """The workload shared by every session of a run."""

    url: str  # ws://host:port (the plain or the deflate port) or wss://host:port (TLS)
    run: str
    n: int
    frames: int
    # frames between finalizes (manual); the length of the server's turns in frames (turns)
    finalize_every: int
    audio: bytes
    ssl: ssl.SSLContext | None = None  # trusts the server's certificate (TLS kinds)
    turns: bool = False  # the turn-detection endpoint
    observer: str = "none"  # ours: the observers the client gets (observers_for)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    start: asyncio.Event = field(default_factory=asyncio.Event)
    t0: float = 0.0
    open_count: int = 0
    handshakes: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(64))
    _utterances: list[bytes] = field(default_factory=list)

    @property
    def utterances(self) -> list[bytes]:
        """The audio cut at each finalize (turns: all of it in one piece), shared by every
        session (made once)."""
        if not self._utterances:
            # turns: the server decides the turns; the audio is one piece
            per = (self.frames if self.turns else self.finalize_every) * FRAME_BYTES
            total = self.frames * FRAME_BYTES
            self._utterances = [self.audio[a : min(a + per, total)] for a in range(0, total, per)]
        return self._utterances

    def tag(self, i: int) -> str:
        return f"{self.run}-{i}"

    def first_frame_at(self, i: int) -> float:
        # Sessions are spread evenly over one frame period, as independent callers would be.
        return self.t0 + FRAME_S * i / self.n

    def frame(self, k: int) -> bytes:
        return self.audio[k * FRAME_BYTES : (k + 1) * FRAME_BYTES]

    async def ready(self) -> None:
        """Count this session as open; wait for the common start."""
        self.open_count += 1
        if self.open_count == self.n:
            self.opened.set()
        await self.start.wait()


@dataclass
class SessionLog:
    """What one session measured: each finalize's call time and when its flush_done was seen."""

    tag: str
    finalize_calls: list[float] = field(default_factory=list)  # manual only
    # when each answer reached the caller's code: flush_done (manual), turn.start (turns)
    answer_seen: list[float] = field(default_factory=list)
    sdk_latency: list[float] = field(default_factory=list)  # ours-stream: Utterance.latency
    turn_ends: int = 0  # turns: turn.end events the caller saw
    done: bool = False


Session = Callable[[Plan, int, SessionLog], Awaitable[None]]


@contextlib.asynccontextmanager
async def opened(plan: Plan, manager: Any) -> AsyncIterator[Any]:
    """``async with manager as conn``, its handshake holding one of the plan's handshake slots
    (released once open); then wait for the common start."""
    async with contextlib.AsyncExitStack() as stack:
        async with plan.handshakes:
            conn = await stack.enter_async_context(manager)
        await plan.ready()
        yield conn


# -- the four clients ---------------------------------------------------------------------


def http_base(url: str) -> str:
    """``ws://`` -> ``http://``, ``wss://`` -> ``https://`` (the clients' ``base_url``)."""
    return "http" + url[2:]


def ours_trust() -> str:
    """How this package's client is made to trust the bench server's certificate.

    ``ssl=ctx`` when ``AsyncCartesia`` takes an ``ssl`` argument; otherwise (an older
    package) ``SSL_CERT_FILE``, which ``ssl.create_default_context()`` reads: then every
    connection makes its own context (more memory per session than one shared context).
    """
    import cartesia_stt_async as stt

    return "ssl" if "ssl" in inspect.signature(stt.AsyncCartesia).parameters else "SSL_CERT_FILE"


def observers_for(name: str) -> list[Any]:
    """The observers of ``--observer``: ``none``; ``noop`` (an observer overriding every
    method with nothing: the records are built and delivered); ``otel`` (the OpenTelemetry
    observer on the SDK's providers, spans batched to an exporter that drops them, metrics
    kept in memory); ``prometheus`` (the Prometheus observer on a registry of its own)."""
    if name == "none":
        return []
    if name == "noop":
        from cartesia_stt_async.observe import Observer

        class Noop(Observer):
            def session_opened(self, record: Any) -> None:
                pass

            utterance_answered = turn_ended = reconnected = session_closed = session_opened
            request_finished = session_opened

        return [Noop()]
    if name == "otel":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from cartesia_stt_async.otel import OpenTelemetryObserver

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracer = TracerProvider()
        tracer.add_span_processor(BatchSpanProcessor(Drop()))
        meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
        return [OpenTelemetryObserver(tracer_provider=tracer, meter_provider=meter)]
    if name == "prometheus":
        from prometheus_client import CollectorRegistry

        from cartesia_stt_async.prometheus import PrometheusObserver

        return [PrometheusObserver(CollectorRegistry())]
    raise ValueError(f"unknown observer {name!r}")


def ours_client(plan: Plan) -> Any:
    import cartesia_stt_async as stt

    options: dict[str, Any] = {}
    if plan.ssl is not None and ours_trust() == "ssl":
        options["ssl"] = plan.ssl
    if plan.observer != "none":
        options["observers"] = observers_for(plan.observer)
    return stt.AsyncCartesia(api_key="bench-key", base_url=http_base(plan.url), **options)


async def ours_relay(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    await _ours_relay(client, plan, i, log, speed=1.0)


async def ours_relay_unpaced(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    await _ours_relay(client, plan, i, log, speed=None)


async def _ours_relay(
    client: Any, plan: Plan, i: int, log: SessionLog, *, speed: float | None
) -> None:
    manager = client.stt.manual_finalize.websocket(
        model="ink-2",
        encoding="pcm_s16le",
        sample_rate=RATE,
        extra_query={"bench": log.tag},
        speed=speed,
    )
    async with opened(plan, manager) as conn:
        start = plan.first_frame_at(i)
        pending: list[asyncio.Future[Any]] = []

        def answered(_: asyncio.Future[Any]) -> None:
            log.answer_seen.append(time.monotonic())

        for k in range(plan.frames):
            await sleep_until(start + k * FRAME_S)
            await conn.send_audio(plan.frame(k))
            if (k + 1) % plan.finalize_every == 0:
                # The relay pattern: finalize now, in order with the audio; the answer
                # arrives later (a relay forwards conn.finals()).
                log.finalize_calls.append(time.monotonic())
                fut = conn.finalize_nowait()
                fut.add_done_callback(answered)
                pending.append(fut)
        await asyncio.gather(*pending)
    log.done = conn.state == "done"


async def ours_stream(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    manager = client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=RATE, extra_query={"bench": log.tag}
    )
    async with opened(plan, manager) as conn:
        await sleep_until(plan.first_frame_at(i))
        transcript = await conn.stream(plan.utterances, speed=1.0)
        log.sdk_latency = [u.latency for u in transcript.utterances if u.latency is not None]
    log.done = conn.state == "done"


def official_client(plan: Plan) -> Any:
    from cartesia import AsyncCartesia

    if plan.ssl is not None:
        raise SystemExit("the official client is not run over TLS here")
    return AsyncCartesia(api_key="bench-key", base_url=http_base(plan.url))


async def official(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    manager = client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=RATE, extra_query={"bench": log.tag}
    )
    async with opened(plan, manager) as conn:

        async def reader() -> None:
            async for event in conn:
                if event.type == "flush_done":
                    log.answer_seen.append(time.monotonic())
                elif event.type == "done":
                    log.done = True
                    return

        task = asyncio.create_task(reader())
        start = plan.first_frame_at(i)
        for k in range(plan.frames):
            await sleep_until(start + k * FRAME_S)
            await conn.send_raw(plan.frame(k))
            if (k + 1) % plan.finalize_every == 0:
                log.finalize_calls.append(time.monotonic())
                await conn.send("finalize")
        await conn.send("close")
        await task


def bare_client(plan: Plan) -> Any:
    return None


def bare_connect(plan: Plan, path: str, query: str) -> Any:
    """websockets' ``connect`` (no deflate) to ``path`` with the session's audio format."""
    from websockets.asyncio.client import connect

    url = f"{plan.url}{path}?model=ink-2&encoding=pcm_s16le&sample_rate={RATE}&{query}"
    tls: dict[str, Any] = {} if plan.ssl is None else {"ssl": plan.ssl}
    return connect(url, compression=None, **tls)


async def bare(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    async with opened(plan, bare_connect(plan, "/stt/websocket", f"bench={log.tag}")) as ws:

        async def reader() -> None:
            async for message in ws:
                event = json.loads(message)
                kind = event["type"]
                if kind == "flush_done":
                    log.answer_seen.append(time.monotonic())
                elif kind == "done":
                    log.done = True
                    return

        task = asyncio.create_task(reader())
        start = plan.first_frame_at(i)
        for k in range(plan.frames):
            await sleep_until(start + k * FRAME_S)
            await ws.send(plan.frame(k))
            if (k + 1) % plan.finalize_every == 0:
                log.finalize_calls.append(time.monotonic())
                await ws.send("finalize")
        await ws.send("close")
        await task


# -- the four clients on the turn-detection endpoint (/stt/turns/websocket) -------------------
# The server decides the turns (one every ``plan.finalize_every`` frames, see
# _steady_server.py); each client streams the same paced audio, watches for ``turn.start`` (the
# barge-in signal, stamped when the caller's code has it) and counts ``turn.end``, then sends
# ``close`` and reads until the server's close 1000 (this endpoint has no ``done``).


async def send_paced(plan: Plan, i: int, send: Callable[[bytes], Awaitable[Any]]) -> None:
    """Session ``i``'s frames, each sent with ``send`` at its deadline."""
    start = plan.first_frame_at(i)
    for k in range(plan.frames):
        await sleep_until(start + k * FRAME_S)
        await send(plan.frame(k))


def turn_query(plan: Plan, log: SessionLog) -> dict[str, str]:
    return {"bench": log.tag, "bench_turn": str(plan.finalize_every)}


async def ours_watch(conn: Any, log: SessionLog) -> None:
    """A voice agent's signal loop: barge-in on ``start``, the turn's text on ``end``."""
    async for signal in conn.signals():
        if signal.kind == "start":
            log.answer_seen.append(time.monotonic())
        elif signal.kind == "end":
            log.turn_ends += 1


def ours_turns(client: Any, plan: Plan, log: SessionLog, speed: float | None = 1.0) -> Any:
    return client.stt.auto_finalize.websocket(
        model="ink-2",
        encoding="pcm_s16le",
        sample_rate=RATE,
        extra_query=turn_query(plan, log),
        speed=speed,
    )


async def ours_relay_turns(
    client: Any, plan: Plan, i: int, log: SessionLog, *, speed: float | None
) -> None:
    async with opened(plan, ours_turns(client, plan, log, speed)) as conn:
        watcher = asyncio.create_task(ours_watch(conn, log))
        await send_paced(plan, i, conn.send_audio)
    await watcher  # leaving ``async with`` sent close and waited for the server's close
    log.done = conn.state == "done"


async def ours_stream_turns(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    async with opened(plan, ours_turns(client, plan, log)) as conn:
        watcher = asyncio.create_task(ours_watch(conn, log))
        await sleep_until(plan.first_frame_at(i))
        await conn.stream([plan.utterances[0]], speed=1.0)  # turns: one utterance, all of it
    await watcher
    log.done = conn.state == "done"


async def official_turns(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    manager = client.stt.auto_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=RATE, extra_query=turn_query(plan, log)
    )
    async with opened(plan, manager) as conn:

        async def reader() -> None:
            async for event in conn:  # ends on the server's close 1000
                if event.type == "turn.start":
                    log.answer_seen.append(time.monotonic())
                elif event.type == "turn.end":
                    log.turn_ends += 1

        task = asyncio.create_task(reader())
        await send_paced(plan, i, conn.send_raw)
        await conn.send({"type": "close"})
        await task
        log.done = True


async def bare_turns(client: Any, plan: Plan, i: int, log: SessionLog) -> None:
    query = f"bench={log.tag}&bench_turn={plan.finalize_every}"
    async with opened(plan, bare_connect(plan, "/stt/turns/websocket", query)) as ws:

        async def reader() -> None:
            async for message in ws:  # ends on the server's close 1000
                kind = json.loads(message)["type"]
                if kind == "turn.start":
                    log.answer_seen.append(time.monotonic())
                elif kind == "turn.end":
                    log.turn_ends += 1

        task = asyncio.create_task(reader())
        await send_paced(plan, i, ws.send)
        await ws.send('{"type":"close"}')
        await task
        log.done = ws.close_code == 1000


SessionCode = Callable[[Any, Plan, int, SessionLog], Any]
BASES: dict[str, tuple[Callable[[Plan], Any], SessionCode]] = {
    "ours-relay": (ours_client, ours_relay),
    "ours-relay-unpaced": (ours_client, ours_relay_unpaced),
    "ours-stream": (ours_client, ours_stream),
    "official": (official_client, official),
    "bare": (bare_client, bare),
}
# The same clients on the turn-detection endpoint (``--workload turns``).
TURN_SESSIONS: dict[str, SessionCode] = {
    "ours-relay": functools.partial(ours_relay_turns, speed=1.0),
    "ours-relay-unpaced": functools.partial(ours_relay_turns, speed=None),
    "ours-stream": ours_stream_turns,
    "official": official_turns,
    "bare": bare_turns,
}
# A kind is a base, optionally run on uvloop and/or over TLS: "ours-relay-uvloop-tls".
VARIANTS = ["", "-uvloop", "-tls", "-uvloop-tls"]
KINDS = [base + v for base in BASES for v in VARIANTS if not (base == "official" and "tls" in v)]


def split_kind(kind: str) -> tuple[str, bool, bool]:
    """``kind`` -> (base, runs on uvloop, over TLS)."""
    tls = kind.endswith("-tls")
    base = kind.removesuffix("-tls")
    uvloop = base.endswith("-uvloop")
    return base.removesuffix("-uvloop"), uvloop, tls


async def close_client(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            await result


# -- modes -----------------------------------------------------------------------------------


def mark(what: str) -> None:
    print(f"MARK {what} {time.monotonic():.6f}", flush=True)


def start_profile(path: str | None) -> Any:
    """A running ``cProfile.Profile`` when ``path`` is given (``--profile``), else None."""
    if path is None:
        return None
    import cProfile

    # The default (wall-clock) timer: a CPU-time timer costs a system call per event and
    # changes the run; the loop's idle wait is the selector's ``poll``, left out when reading.
    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def stop_profile(profiler: Any, path: str | None) -> None:
    """Stop ``profiler`` (if any) and write its stats to ``path`` (pstats format)."""
    if profiler is None or path is None:
        return
    profiler.disable()
    profiler.dump_stats(path)


async def steady(args: argparse.Namespace) -> dict[str, Any]:
    base, _, tls = split_kind(args.kind)
    make, session = BASES[base]
    turns = args.workload == "turns"
    if turns:
        session = TURN_SESSIONS[base]
    frames = round(args.seconds / FRAME_S)
    context: ssl.SSLContext | None = None
    trust = None
    if tls:
        if not args.ca:
            raise SystemExit(f"{args.kind} needs --ca")
        context = ssl.create_default_context(cafile=args.ca)
        trust = "ssl"
        if base.startswith("ours") and ours_trust() != "ssl":
            os.environ["SSL_CERT_FILE"] = args.ca  # read by each connection's default context
            trust = "SSL_CERT_FILE"
            print(
                "note: AsyncCartesia takes no ssl argument yet: trusting the bench CA through "
                "SSL_CERT_FILE (one SSL context per connection)",
                file=sys.stderr,
            )
    plan = Plan(
        url=args.url,
        run=args.run,
        n=args.n,
        frames=frames,
        finalize_every=max(1, round(args.finalize_every / FRAME_S)),
        audio=make_audio(frames * FRAME_S),
        ssl=context,
        turns=turns,
        observer=args.observer,
    )
    client = make(plan)
    plan.utterances  # noqa: B018 - shared audio is made before the memory baseline
    # Every kind imports what its first connection would import lazily, before the baseline.
    import websockets.asyncio.client  # noqa: F401

    install_write_hook()
    logs = [SessionLog(plan.tag(i)) for i in range(plan.n)]
    gc.collect()
    rss_base = rss()
    cpu_open = cpu()
    t_open = time.monotonic()
    tasks = [asyncio.create_task(session(client, plan, i, logs[i])) for i in range(plan.n)]
    errors: list[str] = []
    opened = asyncio.create_task(plan.opened.wait())
    await asyncio.wait([opened, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if not opened.done():  # a session failed before all were open
        opened.cancel()
        for t in tasks:
            t.cancel()
        for r in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                errors.append(repr(r))
        await close_client(client)
        return {"kind": args.kind, "n": args.n, "errors": errors[:5], "error_count": len(errors)}
    open_s, open_cpu = time.monotonic() - t_open, cpu() - cpu_open
    await asyncio.sleep(1.0)
    gc.collect()
    rss_idle = rss()
    samples: list[int] = []
    loop = asyncio.get_running_loop()
    plan.t0 = loop.time() + 0.3
    await sleep_until(plan.t0 - 0.05)
    mark("start")
    profiler = start_profile(args.profile)
    faults0 = minor_faults()
    cpu0, sys0 = cpu(), sys_cpu()
    plan.start.set()

    async def sample_rss() -> None:
        while True:
            await asyncio.sleep(0.5)
            samples.append(rss())

    sampler = asyncio.create_task(sample_rss())
    try:
        async with asyncio.timeout(args.seconds * 3 + 60):
            await asyncio.wait(tasks)
    except TimeoutError:
        errors.append("timeout: the sessions did not finish")
        for t in tasks:
            t.cancel()
    cpu1, sys1 = cpu(), sys_cpu()
    faults1 = minor_faults()
    t_end = time.monotonic()
    stop_profile(profiler, args.profile)
    mark("end")
    sampler.cancel()
    for r in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(r, BaseException):
            errors.append(repr(r))
    await close_client(client)

    late: list[float] = []
    written = 0
    for stamps in STAMPS:
        if not stamps:
            continue
        written += len(stamps)
        first = stamps[0]
        late.extend(t - (first + k * FRAME_S) for k, t in enumerate(stamps))
    audio_s = plan.n * frames * FRAME_S
    window = t_end - (plan.t0 - 0.05)
    result: dict[str, Any] = {
        "kind": args.kind,
        "workload": args.workload,
        "n": plan.n,
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "tls": tls,
        "tls_trust": trust,
        "seconds": frames * FRAME_S,
        "finalize_every_s": plan.finalize_every * FRAME_S,
        "frames_expected": plan.n * frames,
        "frames_written": written,
        "sessions_done": sum(log.done for log in logs),
        "errors": errors[:5],
        "error_count": len(errors),
        "audio_s": audio_s,
        "window_s": window,
        "cpu_s": cpu1 - cpu0,
        "cpu_ms_per_audio_s": (cpu1 - cpu0) / audio_s * 1000,
        "sys_cpu_s": sys1 - sys0,
        "minor_faults": faults1 - faults0,
        "cpu_busy": (cpu1 - cpu0) / window,
        "open_s": open_s,
        "open_cpu_ms_per_session": open_cpu / plan.n * 1000,
        "lateness_ms": {
            "p50": percentile(late, 0.5) * 1000,
            "p99": percentile(late, 0.99) * 1000,
            "max": max(late, default=0.0) * 1000,
        },
        "rss_base": rss_base,
        "rss_idle": rss_idle,
        "rss_stream_max": max(samples, default=rss_idle),
        "idle_kib_per_session": (rss_idle - rss_base) / plan.n / 1024,
        "stream_kib_per_session": (max(samples, default=rss_idle) - rss_base) / plan.n / 1024,
        "finalize": {
            log.tag.rsplit("-", 1)[1]: [log.finalize_calls, log.answer_seen, log.sdk_latency]
            for log in logs
        },
    }
    if turns:
        result["turn_ends_expected"] = plan.n * (frames // plan.finalize_every)
        result["turn_ends_seen"] = sum(log.turn_ends for log in logs)
    return result


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """One connection, ``args.mb`` MB in 100 ms frames as fast as it goes, then one finalize.

    ``ours-relay`` here is ``send_audio(all of it, speed=None)`` then ``finalize()``;
    ``ours-stream`` is ``stream(10 s utterances, speed=None)`` (a finalize every 10 s of audio,
    then close and done), which keeps the replay journal short.
    """
    base = make_audio(12.0)
    total = int(args.mb * 1e6) // FRAME_BYTES * FRAME_BYTES
    audio = (base * (total // len(base) + 1))[:total]
    frames = [audio[k : k + FRAME_BYTES] for k in range(0, total, FRAME_BYTES)]
    tag = f"{args.run}-0"
    query = {"bench": tag}
    t0 = c0 = 0.0
    if args.kind in ("ours-relay", "ours-stream"):
        import cartesia_stt_async as stt

        client: Any = stt.AsyncCartesia(
            api_key="bench-key", base_url=args.url.replace("ws://", "http://", 1)
        )
        per = 10 * RATE * 2
        utterances = [audio[k : k + per] for k in range(0, total, per)]
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=RATE, extra_query=query
        ) as conn:
            t0, c0 = time.monotonic(), cpu()
            if args.kind == "ours-relay":
                await conn.send_audio(audio, speed=None)
                await conn.finalize()
            else:
                await conn.stream(utterances, speed=None)
            t1, c1 = time.monotonic(), cpu()
    elif args.kind == "official":
        from cartesia import AsyncCartesia

        client = AsyncCartesia(api_key="bench-key", base_url=args.url.replace("ws://", "http://"))
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=RATE, extra_query=query
        ) as conn:
            t0, c0 = time.monotonic(), cpu()
            for frame in frames:
                await conn.send_raw(frame)
            await conn.send("finalize")
            async for event in conn:
                if event.type == "flush_done":
                    break
            t1, c1 = time.monotonic(), cpu()
        await client.close()
    else:
        from websockets.asyncio.client import connect

        url = f"{args.url}/stt/websocket?encoding=pcm_s16le&sample_rate={RATE}&bench={tag}"
        async with connect(url, compression=None) as ws:
            t0, c0 = time.monotonic(), cpu()
            for frame in frames:
                await ws.send(frame)
            await ws.send("finalize")
            async for message in ws:
                if json.loads(message)["type"] == "flush_done":
                    break
            t1, c1 = time.monotonic(), cpu()
    return {
        "kind": args.kind,
        "bytes": total,
        "seconds": t1 - t0,
        "mb_per_s": total / 1e6 / (t1 - t0),
        "cpu_s": c1 - c0,
        "audio_s_per_s": total / (RATE * 2) / (t1 - t0),
    }


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    """One connection: ``args.count`` times one frame, then a timed finalize, then 20 ms idle.

    The call time is taken just before the client's finalize call; the flush_done is "seen"
    when the caller's code has it: ``await conn.finalize()`` returning (ours), or the
    caller's own ``recv()`` returning it (official, bare), in the same task.
    """
    frame = make_audio(0.1)
    tag = f"{args.run}-0"
    query = {"bench": tag}
    calls: list[float] = []
    seen: list[float] = []
    if args.kind in ("ours-relay", "ours-stream"):
        import cartesia_stt_async as stt

        client: Any = stt.AsyncCartesia(
            api_key="bench-key", base_url=args.url.replace("ws://", "http://", 1)
        )
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=RATE, extra_query=query
        ) as conn:
            for _ in range(args.count):
                await conn.send_audio(frame, speed=None)
                calls.append(time.monotonic())
                await conn.finalize()
                seen.append(time.monotonic())
                await asyncio.sleep(0.02)
    elif args.kind == "official":
        from cartesia import AsyncCartesia

        client = AsyncCartesia(api_key="bench-key", base_url=args.url.replace("ws://", "http://"))
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=RATE, extra_query=query
        ) as conn:
            for _ in range(args.count):
                await conn.send_raw(frame)
                calls.append(time.monotonic())
                await conn.send("finalize")
                while (await conn.recv()).type != "flush_done":
                    pass
                seen.append(time.monotonic())
                await asyncio.sleep(0.02)
        await client.close()
    else:
        from websockets.asyncio.client import connect

        url = f"{args.url}/stt/websocket?encoding=pcm_s16le&sample_rate={RATE}&bench={tag}"
        async with connect(url, compression=None) as ws:
            for _ in range(args.count):
                await ws.send(frame)
                calls.append(time.monotonic())
                await ws.send("finalize")
                while json.loads(await ws.recv())["type"] != "flush_done":
                    pass
                seen.append(time.monotonic())
                await asyncio.sleep(0.02)
    return {"kind": args.kind, "finalize": {"0": [calls, seen, []]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mode", choices=["steady", "throughput", "latency"])
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT")
    parser.add_argument("--run", required=True, help="tag prefix the server files sessions by")
    parser.add_argument("--n", type=int, default=10, help="concurrent sessions (steady)")
    parser.add_argument("--seconds", type=float, default=12.0, help="audio per session (steady)")
    parser.add_argument(
        "--workload",
        choices=["manual", "turns"],
        default="manual",
        help="the endpoint: /stt/websocket (manual) or /stt/turns/websocket (turns; steady only)",
    )
    parser.add_argument(
        "--finalize-every",
        type=float,
        default=3.0,
        help="seconds between finalizes (manual) or the length of each turn (turns; steady)",
    )
    parser.add_argument("--mb", type=float, default=16.0, help="megabytes (throughput)")
    parser.add_argument(
        "--observer",
        choices=["none", "noop", "otel", "prometheus"],
        default="none",
        help="ours: observers given to the client (observers_for)",
    )
    parser.add_argument("--count", type=int, default=100, help="finalizes (latency)")
    parser.add_argument("--ca", help="PEM file of the CA that signed the server's certificate")
    parser.add_argument(
        "--profile",
        metavar="OUT",
        help="steady: run the measured window under cProfile and write its stats to OUT "
        "(the CPU figures then include the profiler's overhead: compare shares, not times)",
    )
    args = parser.parse_args()
    _, on_uvloop, tls = split_kind(args.kind)
    if args.mode != "steady" and (on_uvloop or tls):
        parser.error(f"{args.mode} runs the default-loop, plain kinds only")
    if args.mode != "steady" and args.workload != "manual":
        parser.error(f"{args.mode} runs the manual workload only")
    mode = {"steady": steady, "throughput": throughput, "latency": latency}[args.mode]
    if on_uvloop:
        import uvloop

        result = uvloop.run(mode(args))
    else:
        result = asyncio.run(mode(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
