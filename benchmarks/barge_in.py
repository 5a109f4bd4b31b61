"""Barge-in delay on the twin: from speech onset in the audio to the client's barge-in signal.

What is measured. A voice agent stops talking when the user starts: on this endpoint the
server's ``turn.start``, which this package hands over as ``await conn.wait_barge_in()``
returning. Here the server is the twin (``/stt/turns/websocket``, in a child process), whose
detector decides in audio time: ``turn.start`` once 70 ms of unbroken speech (its default
start threshold 0.8; 10 ms windows at or above -40 dBFS) have arrived. Each session's audio is
silence, then a 440 Hz tone burst (0.5 s, -23 dBFS RMS) starting at a known sample offset (drawn
at random, so it falls anywhere in a frame and in a window), then silence long enough for the
turn to end (at least 1 s), and again: ``--turns`` bursts per session, ``--sessions`` sessions at
once, 16 kHz pcm_s16le in 100 ms frames at speed 1.0.

Two sources, both paced at real time:

* ``live`` (a microphone or a relayed call): the frame holding audio [k x 100 ms, (k + 1) x
  100 ms) is handed over when it has been captured, at t0 + (k + 1) x 100 ms, and sent at once
  (ours: ``await conn.send_audio(frame)``, default ``speed=1.0``). The user's onset at sample S
  happens at t0 + S / rate on the wall clock.
* ``file`` (a recording streamed at speed 1.0): ours ``await conn.stream([audio], speed=1.0)``,
  whose pacing sends frame k at (first frame) + k x 100 ms, a frame *ahead* of the live case;
  the bare loop sleeps to the same deadlines. The onset's wall time is (first frame) + S / rate.

Clients: this package (``client.stt.auto_finalize.websocket``, a task looping on
``wait_barge_in()``) and a bare ``websockets`` loop on the same path (a reader task with
``json.loads``, stamping ``turn.start``), in alternating blocks (``--rounds``) of the same run,
on the same audio.

The delay, per burst, ``total`` = (when the caller's code has the signal) - (the onset's wall
time), split exactly into:

* ``detector``: what the twin's rule needs, in audio time: from the onset S to the end D of the
  window where the twin decides (found by running the twin's own detector,
  ``cartesia_stt_async.twin._detector``, over the same audio): 60-70 ms at the default
  threshold (7 windows of speech, the first of them the one the onset falls in, which counts
  as speech however little of it is tone);
* ``framing``: from the decision point D (as wall time) to when the frame holding it is
  handed over: live 0-100 ms (a frame is sent once captured whole), file -100-0 ms (sent
  ahead);
* ``rest`` = ``total`` - ``detector`` - ``framing``: the client's send path, loopback, the
  twin's processing, and the client's receive path to the caller's code; itself split at the
  moment the decisive frame's bytes reach the connection's transport (the stand-in transport
  of ``_steady_client.py``): ``send`` (handed over -> written) and ``answer`` (written ->
  signal in the caller's code: the twin and both ways of loopback included).

Reported per client and source: median, p90 and p99 of each part over every burst, and the
machine's load average. Output: ``results/barge_in.json`` and ``results/barge_in.md``.

Run: ``python benchmarks/barge_in.py`` (about 5 minutes; ``--quick`` about 1 minute). It
measures the checkout it is in (as ``steady_state.py`` does), twin included. Linux only
(``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _steady_client import (
    FRAME_BYTES,
    FRAME_S,
    RATE,
    STAMPS,
    install_write_hook,
    percentile,
    sleep_until,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed one
FRAME_SAMPLES = FRAME_BYTES // 2
BURST_S = 0.5
GAP_S = (1.0, 1.5)  # silence before each burst: more than the twin's 700 ms to end a turn
TONE = 0.1 * 32767  # amplitude (RMS -23 dBFS: far above the twin's -40 dBFS speech floor)
PARTS = ["total", "detector", "framing", "rest", "send", "answer"]


# -- the twin, in a child process ----------------------------------------------------------


async def serve_twin() -> None:
    """Run the twin (scripted turn texts; its detector decides when) until stdin closes."""
    from cartesia_stt_async.twin import ScriptedEngine, Turn, serve

    engine = ScriptedEngine(turns=[Turn(updates=["stop"], end="stop")] * 10_000)
    async with serve(engine=engine) as twin:
        print(twin.base_url, twin.turns_url, flush=True)
        await asyncio.to_thread(sys.stdin.read)


@contextlib.contextmanager
def twin_process() -> Iterator[tuple[str, str, int]]:
    """The twin in a child process: yields (base URL, turn-detection URL, pid)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, __file__, "--twin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base, turns = proc.stdout.readline().split()
        yield base, turns, proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the audio and the twin's decisions ----------------------------------------------------


@dataclass
class Script:
    """One session's audio, the onset of each burst and where the twin decides each start
    (sample offsets)."""

    audio: bytes
    onsets: list[int]
    decisions: list[int] = field(default_factory=list)


def make_script(rng: random.Random, turns: int) -> Script:
    """Silence, then ``turns`` x (tone burst + silence), cut into whole frames."""
    samples = array("h")
    onsets: list[int] = []
    burst = int(BURST_S * RATE)
    step = 2 * math.pi * 440 / RATE
    samples.extend([0] * int(rng.uniform(0.5, 1.0) * RATE))
    for _ in range(turns):
        onsets.append(len(samples))
        samples.extend(int(TONE * math.sin(step * i)) for i in range(burst))
        samples.extend([0] * int(rng.uniform(*GAP_S) * RATE))
    samples.extend([0] * (-len(samples) % FRAME_SAMPLES))
    if sys.byteorder != "little":
        samples.byteswap()
    script = Script(samples.tobytes(), onsets)
    script.decisions = twin_starts(script.audio)
    if len(script.decisions) != turns:
        raise SystemExit(f"the twin's detector finds {len(script.decisions)} starts, not {turns}")
    return script


def twin_starts(audio: bytes) -> list[int]:
    """Where the twin's detector decides ``turn.start`` in ``audio``: the end of the deciding
    window, in samples (the twin's own code, default settings)."""
    from cartesia_stt_async.twin._detector import (
        DEFAULT_SETTINGS,
        Decision,
        LevelMeter,
        TurnDetector,
    )

    detector = TurnDetector(DEFAULT_SETTINGS, RATE)
    meter = LevelMeter("pcm_s16le", detector.windows.samples)
    return [
        end // 2 for end, speech in meter.windows(audio) if detector.push(speech) is Decision.START
    ]


# -- the clients ---------------------------------------------------------------------------


@dataclass
class Session:
    """One session: its script, when each frame was handed over, when each signal was seen."""

    script: Script
    handed: list[float] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    origin: float = 0.0  # the wall time of sample 0
    error: str | None = None

    @property
    def frames(self) -> int:
        return len(self.script.audio) // FRAME_BYTES

    def frame(self, k: int) -> bytes:
        return self.script.audio[k * FRAME_BYTES : (k + 1) * FRAME_BYTES]


async def send_paced(session: Session, source: str, t0: float, send: Any) -> None:
    """Hand each frame over when a live source has it (after its capture) or when a file
    paced at speed 1.0 sends it (at its start), and send it."""
    lead = 1 if source == "live" else 0
    session.origin = t0
    for k in range(session.frames):
        due = t0 + (k + lead) * FRAME_S
        await sleep_until(due)
        session.handed.append(due)
        await send(session.frame(k))


async def ours(base_url: str, sessions: list[Session], source: str) -> None:
    import cartesia_stt_async as stt

    async with (
        stt.AsyncCartesia(api_key="bench-key", base_url=base_url) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        conns = []
        for _ in sessions:  # one at a time: the i-th connection's stamps are STAMPS[i]
            manager = client.stt.auto_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=RATE, speed=1.0
            )
            conns.append(await stack.enter_async_context(manager))

        async def watch(conn: stt.AsyncTurnConnection, s: Session) -> None:
            while True:
                await conn.wait_barge_in()
                s.seen.append(time.monotonic())

        async def run(conn: stt.AsyncTurnConnection, s: Session, t0: float) -> None:
            watcher = asyncio.create_task(watch(conn, s))
            if source == "live":
                await send_paced(s, source, t0, conn.send_audio)
                await conn.aclose()
            else:
                await sleep_until(t0)
                await conn.stream([s.script.audio], speed=1.0)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, stt.CartesiaSTTError):
                await watcher

        await run_all(
            sessions,
            [run(c, s, t) for c, s, t in zip(conns, sessions, starts(sessions), strict=True)],
        )


async def bare(turns_url: str, sessions: list[Session], source: str) -> None:
    from websockets.asyncio.client import ClientConnection, connect

    url = f"{turns_url}?model=ink-2&encoding=pcm_s16le&sample_rate={RATE}"
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for _ in sessions:
            manager = connect(url, compression=None, additional_headers={"X-API-Key": "bench"})
            sockets.append(await stack.enter_async_context(manager))

        async def run(ws: ClientConnection, s: Session, t0: float) -> None:
            async def reader() -> None:
                async for message in ws:
                    if json.loads(message)["type"] == "turn.start":
                        s.seen.append(time.monotonic())

            task = asyncio.create_task(reader())
            await send_paced(s, source, t0, ws.send)
            await ws.send('{"type":"close"}')
            await task

        await run_all(
            sessions,
            [run(w, s, t) for w, s, t in zip(sockets, sessions, starts(sessions), strict=True)],
        )


def starts(sessions: list[Session]) -> list[float]:
    """Each session's t0: soon, spread over one frame period as independent callers are."""
    t0 = time.monotonic() + 0.3
    return [t0 + FRAME_S * i / len(sessions) for i in range(len(sessions))]


async def run_all(sessions: list[Session], runs: list[Any]) -> None:
    """Run the sessions; keep each one's frame stamps (this block's connections, in order)."""
    results = await asyncio.gather(*runs, return_exceptions=True)
    for s, r, stamps in zip(sessions, results, STAMPS[-len(sessions) :], strict=True):
        s.stamps = stamps
        if isinstance(r, BaseException):
            s.error = repr(r)


# -- the split -----------------------------------------------------------------------------


def split(s: Session, source: str) -> list[dict[str, float]]:
    """Each burst's delay, in seconds, split into its parts (see the module doc)."""
    if (
        source == "file"
    ):  # the SDK's pacing (ours) or the loop's deadlines: first frame + k x 100 ms
        s.origin = s.stamps[0] if s.stamps else s.origin
        s.handed = [s.origin + k * FRAME_S for k in range(s.frames)]
    lead = 1 if source == "live" else 0
    out = []
    for onset, decision, seen in zip(s.script.onsets, s.script.decisions, s.seen, strict=False):
        k = (decision - 1) // FRAME_SAMPLES  # the frame holding the deciding window's end
        handed = s.handed[k]
        written = s.stamps[k]
        onset_wall = s.origin + onset / RATE
        detector = (decision - onset) / RATE
        framing = (k + lead) * FRAME_S - decision / RATE
        out.append(
            {
                "total": seen - onset_wall,
                "detector": detector,
                "framing": framing,
                "rest": seen - handed,
                "send": written - handed,
                "answer": seen - written,
            }
        )
    return out


async def block(
    client: str, source: str, urls: tuple[str, str], scripts: list[Script]
) -> dict[str, Any]:
    sessions = [Session(script) for script in scripts]
    if client == "ours":
        await ours(urls[0], sessions, source)
    else:
        await bare(urls[1], sessions, source)
    rows: list[dict[str, float]] = []
    errors = [s.error for s in sessions if s.error]
    for s in sessions:
        if len(s.seen) != len(s.script.onsets):
            errors.append(f"{len(s.seen)} barge-ins seen for {len(s.script.onsets)} bursts")
            continue
        rows.extend(split(s, source))
    # A file sends a frame ahead of its time: a signal may come before the onset's wall time.
    bad = [r for r in rows if not -FRAME_S < r["total"] < 1.0]
    if bad:
        errors.append(f"{len(bad)} signals outside (onset - 100 ms, onset + 1 s)")
    return {"client": client, "source": source, "delays": rows, "errors": errors}


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        part: {
            "median": statistics.median(r[part] for r in rows) * 1000,
            "p90": percentile([r[part] for r in rows], 0.9) * 1000,
            "p99": percentile([r[part] for r in rows], 0.99) * 1000,
            "min": min(r[part] for r in rows) * 1000,
            "max": max(r[part] for r in rows) * 1000,
        }
        for part in PARTS
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Run {m['date']}, {m['cpus']} CPUs, Python {m['python']}, commit {m['git_commit'][:12]}; "
        f"{report['sessions']} sessions at once x {report['turns']} bursts x {report['rounds']} "
        f"round(s) per client and source; load average at start {m['loadavg_start']}, at end "
        f"{report['loadavg_end']}.",
        "",
        "Milliseconds, median / p90 / p99 over every burst; total = detector + framing + rest, "
        "rest = send + answer.",
        "",
        "| client | source | bursts | total | detector (audio time) | framing | rest | "
        "of which send | of which answer | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, cell in report["summary"].items():
        client, source = key.split("/")
        parts = [
            f"{cell[p]['median']:.1f} / {cell[p]['p90']:.1f} / {cell[p]['p99']:.1f}" for p in PARTS
        ]
        errors = report["errors"].get(key, [])
        lines.append(
            f"| {client} | {source} | {report['bursts'][key]} | {' | '.join(parts)} | "
            f"{len(errors) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    install_write_hook()
    rng = random.Random(args.seed)
    report: dict[str, Any] = {
        "machine": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "git_commit": git_commit(),
            "loadavg_start": loadavg(),
        },
        "sessions": args.sessions,
        "turns": args.turns,
        "rounds": args.rounds,
        "seed": args.seed,
        "blocks": [],
    }
    with twin_process() as (base, turns_url, _):
        for rnd in range(args.rounds):
            for source in args.sources.split(","):
                clients = ["ours", "bare"] if rnd % 2 == 0 else ["bare", "ours"]
                # The same audio for both clients: only what follows the twin's decision differs.
                scripts = [make_script(rng, args.turns) for _ in range(args.sessions)]
                for client in clients:
                    result = await block(client, source, (base, turns_url), scripts)
                    result["round"] = rnd
                    result["loadavg"] = loadavg()
                    report["blocks"].append(result)
                    rows = result["delays"]
                    med = statistics.median(r["total"] for r in rows) * 1000 if rows else 0.0
                    print(
                        f"round {rnd} {client:4s} {source:4s}: {len(rows)} bursts, total median "
                        f"{med:.1f} ms, errors {result['errors'][:3]}",
                        flush=True,
                    )
    report["loadavg_end"] = loadavg()
    report["summary"], report["bursts"], report["errors"] = {}, {}, {}
    for b in report["blocks"]:
        key = f"{b['client']}/{b['source']}"
        report["bursts"][key] = report["bursts"].get(key, 0) + len(b["delays"])
        report["errors"].setdefault(key, []).extend(b["errors"])
    for key in report["bursts"]:
        rows = [
            r
            for b in report["blocks"]
            if f"{b['client']}/{b['source']}" == key
            for r in b["delays"]
        ]
        report["summary"][key] = summary(rows)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--twin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="4 sessions x 8 bursts, one round")
    parser.add_argument("--sessions", type=int, default=6, help="sessions at once")
    parser.add_argument("--turns", type=int, default=20, help="bursts per session")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per client and source")
    parser.add_argument("--sources", default="live,file", help="live, file or both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    args = parser.parse_args()
    if args.twin:
        asyncio.run(serve_twin())
        return 0
    if args.quick:
        args.sessions, args.turns, args.rounds = 4, 8, 1
    report = asyncio.run(measure(args))
    name = "barge_in_quick" if args.quick else "barge_in"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    (args.out / f"{name}.md").write_text(table)
    print(table)
    return 0 if not any(report["errors"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
