"""Steady state: many real-time sessions in one process; ours vs the official SDK vs a bare loop.

What is measured (docs/performance.md explains each figure). One minimal server process
(``_steady_server.py``) serves every client; each measurement runs one client process
(``_steady_client.py``) with one of these clients:

* ``ours-relay``: ``cartesia_stt_async`` as a live relay uses it (each 100 ms frame forwarded
  with ``send_audio`` when it arrives, speed 1.0; ``finalize_nowait()`` every 2.5 s);
* ``ours-stream``: ``cartesia_stt_async``'s ``conn.stream(utterances, speed=1.0)``;
* ``official``: the official ``cartesia`` package (pinned 3.2.0), one shared ``AsyncCartesia``,
  ``send_raw`` + sleep to the deadline, a reader task on ``async for event in conn``;
* ``bare``: ``websockets`` without deflate, sleep to the deadline, ``ws.send(frame)``: the floor;
* ``official-deflate`` (full run only): ``official`` against the server port that accepts the
  permessage-deflate the official client offers by default;
* ``bare``, ``ours-relay`` and ``ours-stream`` again with the suffix ``-uvloop`` (the client
  process runs on ``uvloop.run``), ``-tls`` (``wss://`` to the server's TLS port, a
  self-signed certificate made at startup with ``trustme``, trusted through an
  ``ssl.SSLContext``) and ``-uvloop-tls``: the same session code, so that one run compares
  ours with the bare loop on both loops and over TLS. In the default plan these run at
  N >= 100 only, two runs each, with no search for the largest N, no throughput and no
  one-session latency; ``--quick`` leaves out ``-uvloop-tls``.

Workload: N concurrent sessions of 16 kHz pcm_s16le in 100 ms frames at real time (phases spread
over one frame period), ``--seconds`` of audio each (10 s), a ``finalize`` every 2.5 s (its
``flush_done`` awaited or handled), then ``close`` and ``done``. Reported per client and N:

* client-process CPU (user + sys) during the streaming window / audio seconds sent;
* frame lateness p50/p99/max: when each binary frame's bytes reach the connection's transport
  (every websockets connection's ``transport`` is a stand-in whose ``write`` stamps and
  forwards, installed in ``connection_made`` for every client, on either loop; over TLS it
  is the SSL layer's application-side ``write``), minus (the session's first frame + n x
  100 ms);
* RSS per open idle session and per streaming session (peak), reported at every N >= 100;
* finalize -> flush_done as the caller sees it, split into the server's own time and the rest;
* the server's CPU in the window (it must stay far from one core) and the machine's load;

and, once per client: the largest N with p99 lateness under 20 ms (a short search; full run
only), unpaced throughput of one connection (MB/s), and finalize latency of one idle session.

Output: ``<out>/steady_state[_quick][_loops].json`` (machine, CPU, versions, date, git commit,
every run), ``.md`` (tables: every run of the default-loop clients; every run of the uvloop/TLS
clients; ours against the bare loop by loop and transport, with the ratio to the bare loop's
run of the same repetition; RSS per session; one connection), and a plot of CPU per audio
second and p99 lateness against N for the default-loop clients (``docs/img/steady_state.png``
for a full run of the whole suite into the default ``--out``).

``--suite main`` runs only the five default-loop clients (the run before the uvloop/TLS
clients existed); ``--suite loops`` runs only bare, ours-relay and ours-stream on the four
loop/transport combinations at N = 100 and 500 (steady runs only).

``--workload turns`` runs the same harness on the turn-detection endpoint,
``/stt/turns/websocket``: the same server process decides a turn every ``--finalize-every``
seconds of audio by counting frames (``turn.start`` on a turn's first frame, ``turn.update``
every 500 ms, ``turn.eager_end``, ``turn.end`` on its last frame; ``close`` ends an open turn,
then close 1000), and nobody sends ``finalize``. Clients (``_steady_client.py``): ``bare``,
``ours-relay`` (``client.stt.auto_finalize.websocket(..., speed=1.0)``, ``send_audio`` per
frame), ``ours-stream`` (its ``stream([audio], speed=1.0)``), both with a task on
``conn.signals()``, and ``official``: the official client's ``auto_finalize``, which needs
cartesia 4.x (3.2.0, the ``bench`` extra's, has none) and so runs in that SDK's own virtual
environment (``tests/official.py``, ``cartesia[websockets]==4.2.0`` with websockets 15).
At N = 100 and 500 (``--quick``: 10 and 100), steady runs only; the uvloop/TLS variants run
when named in ``--kinds``. Reported as above, with the delivery of ``turn.start`` (from the
server handing it to its socket to the caller's code having it) in place of the finalize round
trip; every ``turn.end`` must be seen for a run to be ok. Output:
``<out>/steady_state_turns[_quick].json`` and ``.md``.

The official client runs in this interpreter when it has the version a workload needs
(3.2.0 for manual, 4.2.0 for turns), otherwise in that version's own virtual environment,
made on first use from the package registry (``tests/official.py``). Needs ``uvloop`` and
``trustme`` (both in the ``bench`` extra), and matplotlib for the plot (skipped with a note
when missing). Linux only (/proc).

Run: ``python benchmarks/steady_state.py --quick`` (about 3 minutes),
``python benchmarks/steady_state.py --suite loops`` (about 10 minutes),
``python benchmarks/steady_state.py`` (the full run, about 20 minutes) or
``python benchmarks/steady_state.py --workload turns`` (about 4 minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENT = HERE / "_steady_client.py"
SERVER = HERE / "_steady_server.py"
TICK = os.sysconf("SC_CLK_TCK")
LATENESS_LIMIT_MS = 20.0
SERVER_BOUND = 0.8  # server busy fraction of one core above which a probe is not trusted

KINDS = ["bare", "official", "ours-relay", "ours-stream"]
# ours vs bare on other event loops and transports: the same session code, the client process
# on uvloop and/or over TLS (see _steady_client.py).
LOOP_BASES = ["bare", "ours-relay", "ours-stream"]
VARIANTS = {"": "default loop", "-uvloop": "uvloop", "-tls": "TLS", "-uvloop-tls": "uvloop + TLS"}
VARIANT_KINDS = [base + v for v in VARIANTS if v for base in LOOP_BASES]
QUICK_VARIANT_KINDS = [k for k in VARIANT_KINDS if not k.endswith("-uvloop-tls")]
VARIANT_MIN_N = 100  # in the default plans, the variant kinds run at N >= 100 only
# The official SDK each workload runs: 3.2.0 (the ``bench`` extra) has no ``auto_finalize``.
OFFICIAL = {"manual": "3.2.0", "turns": "4.2.0"}
TURN_KINDS = ["bare", "official", "ours-relay", "ours-stream"]
ONE_CONNECTION = ["bare", "official", "ours"]
THROUGHPUT = [*ONE_CONNECTION, "ours-10s-utterances"]
LABELS = {
    "bare": "bare websockets loop (no deflate)",
    "official": "official cartesia 3.2.0, one shared client",
    "official-deflate": "official cartesia 3.2.0, deflate negotiated",
    "ours-relay": "cartesia_stt_async, send_audio relay",
    "ours-relay-unpaced": "cartesia_stt_async, send_audio relay, speed=None",
    "ours-stream": "cartesia_stt_async, stream()",
}


ALL_KINDS = [
    *(
        base + v
        for base in ["bare", "official", "ours-relay", "ours-relay-unpaced", "ours-stream"]
        for v in VARIANTS
        if not (base == "official" and "tls" in v)
    ),
    "official-deflate",
]


def is_variant(kind: str) -> bool:
    """Runs on uvloop or over TLS."""
    return kind.endswith(("-uvloop", "-tls"))


# -- machine and versions ------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def machine() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "packages": {
            d: version(d) for d in ["cartesia-stt-async", "cartesia", "websockets", "msgspec"]
        },
        "git_commit": git_commit(),
        "ulimit_n": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "loadavg_start": loadavg(),
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (all CPUs)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / TICK, total / TICK


@dataclass
class Sample:
    """What is sampled outside the client at the start and end of its window."""

    wall: float
    server_cpu: float
    system_busy: float
    loadavg: list[float]

    @classmethod
    def take(cls, server_pid: int) -> Sample:
        return cls(time.monotonic(), proc_cpu(server_pid), system_cpu()[0], loadavg())


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


# -- the server and the clients ------------------------------------------------------------


class Server:
    """The server process, its three ports (plain, deflate, TLS) and its stdin/stdout control
    channel; the CA that signed its TLS certificate is in ``self.ca`` (a PEM file)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="steady-state-")
        self.ca = str(Path(self._tmp.name) / "ca.pem")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--ca", self.ca],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._readline()
        if not line.startswith("PORTS "):
            raise RuntimeError(f"the server did not start: {line!r}")
        plain, deflate, tls = line.split()[1:]
        self.plain = f"ws://127.0.0.1:{plain}"
        self.deflate = f"ws://127.0.0.1:{deflate}"
        self.tls = f"wss://127.0.0.1:{tls}"

    def url(self, kind: str) -> str:
        """The port a client kind connects to."""
        if kind == "official-deflate":
            return self.deflate
        return self.tls if kind.endswith("-tls") else self.plain

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def stats(self, run: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"stats {run}\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self._readline())
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()


def official_interpreter(wanted: str) -> str:
    """A Python with the official SDK ``cartesia==wanted``: this one if it has that version,
    else the SDK's own virtual environment (``tests/official.py``, made on first use).

    Raises:
        RuntimeError: If that environment cannot be made.
    """
    if version("cartesia") == wanted:
        return sys.executable
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.official import official_python

    return str(official_python(wanted))


def official_versions(python: str) -> dict[str, str]:
    """The official SDK's and websockets' versions in ``python``'s environment."""
    code = "import cartesia, websockets; print(cartesia.__version__, websockets.__version__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    sdk, ws = out.stdout.split()
    path = Path(python)
    shown = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else python
    return {"cartesia": sdk, "websockets": ws, "python": shown}


class Bench:
    """Runs client processes against the server and collects what they and it measured."""

    def __init__(
        self,
        server: Server,
        seconds: float,
        finalize_every: float,
        workload: str = "manual",
        profile: Path | None = None,
    ) -> None:
        self.server = server
        self.profile = profile
        self.seconds = seconds
        self.finalize_every = finalize_every
        self.workload = workload
        self.turns = workload == "turns"
        self.counter = 0
        self._official: str | None = None

    def python(self, kind: str) -> str:
        """The interpreter of a client process: the official SDK's for ``official*``."""
        if not kind.startswith("official"):
            return sys.executable
        if self._official is None:
            self._official = official_interpreter(OFFICIAL[self.workload])
        return self._official

    def _run_id(self, kind: str) -> str:
        self.counter += 1
        return f"r{self.counter}{kind.replace('-', '')}"

    def _client(
        self, mode: str, kind: str, url: str, extra: list[str]
    ) -> tuple[dict[str, Any], dict[str, Sample], str]:
        run = self._run_id(kind)
        client_kind = {
            "official-deflate": "official",
            "ours": "ours-relay",
            "ours-10s-utterances": "ours-stream",
        }.get(kind, kind)
        cmd = [self.python(kind), str(CLIENT), mode, "--kind", client_kind, "--url", url]
        workload = self.workload if mode == "steady" else "manual"
        cmd += ["--run", run, "--workload", workload, *extra]
        if kind.endswith("-tls"):
            cmd += ["--ca", self.server.ca]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        samples: dict[str, Sample] = {}
        result: dict[str, Any] = {}
        stdout: IO[str] | None = proc.stdout
        assert stdout is not None
        for line in stdout:
            if line.startswith("MARK "):
                samples[line.split()[1]] = Sample.take(self.server.proc.pid)
            elif line.strip():
                result = json.loads(line)
        if proc.wait() != 0 and not result:
            result = {"kind": client_kind, "errors": [f"client exited {proc.returncode}"]}
            result["error_count"] = 1
        return result, samples, run

    def steady(self, kind: str, n: int, observer: str = "none") -> dict[str, Any]:
        url = self.server.url(kind)
        extra = ["--n", str(n), "--seconds", str(self.seconds)]
        extra += ["--finalize-every", str(self.finalize_every), "--observer", observer]
        if self.profile is not None:
            self.profile.mkdir(parents=True, exist_ok=True)
            name = f"{self.workload}_{kind}_n{n}_{self.counter + 1}.pstats"
            extra += ["--profile", str(self.profile / name)]
        result, samples, run = self._client("steady", kind, url, extra)
        result["kind"] = kind
        server = self.server.stats(run)
        result["server"] = summarize_server(server, samples)
        if "start" in samples and "end" in samples:
            result["machine_load"] = machine_load(samples, result)
        answers = answer_latency(result.pop("finalize", {}), server)
        result["turn_start_latency" if self.turns else "finalize_latency"] = answers
        result["ok"] = ok(result, server)
        return result

    def throughput(self, kind: str, mb: float) -> dict[str, Any]:
        cpu0 = proc_cpu(self.server.proc.pid)
        result, _, run = self._client("throughput", kind, self.server.plain, ["--mb", str(mb)])
        result["kind"] = kind
        server = self.server.stats(run)
        sessions = server["sessions"]
        received = sessions["0"]["audio_bytes"] if "0" in sessions else 0
        result["server_finalizes"] = len(sessions["0"]["answers"]) if "0" in sessions else 0
        result["server_received_bytes"] = received
        result["server_cpu_s"] = proc_cpu(self.server.proc.pid) - cpu0
        result["ok"] = received == result.get("bytes") and not result.get("errors")
        return result

    def latency(self, kind: str, count: int) -> dict[str, Any]:
        result, _, run = self._client("latency", kind, self.server.plain, ["--count", str(count)])
        server = self.server.stats(run)
        return {"kind": kind, **answer_latency(result.get("finalize", {}), server)}


def summarize_server(server: dict[str, Any], samples: dict[str, Sample]) -> dict[str, Any]:
    sessions = server["sessions"].values()
    out: dict[str, Any] = {
        "frames": sum(s["frames"] for s in sessions),
        "audio_bytes": sum(s["audio_bytes"] for s in sessions),
        "closed": sum(bool(s["closed"]) for s in sessions),
        "deflate_sessions": sum(bool(s["deflate"]) for s in sessions),
        "arrival_lateness_ms": server["arrival_lateness_ms"],
    }
    if "start" in samples and "end" in samples:
        a, b = samples["start"], samples["end"]
        out["cpu_busy"] = (b.server_cpu - a.server_cpu) / max(b.wall - a.wall, 1e-9)
    return out


def machine_load(samples: dict[str, Sample], result: dict[str, Any]) -> dict[str, Any]:
    """Cores busy on the whole machine in the window, and how many were neither client nor
    server (other work on a shared machine)."""
    a, b = samples["start"], samples["end"]
    wall = max(b.wall - a.wall, 1e-9)
    busy = (b.system_busy - a.system_busy) / wall
    client = result.get("cpu_s", 0.0) / wall
    server = (b.server_cpu - a.server_cpu) / wall
    return {
        "busy_cores": busy,
        "other_cores": max(0.0, busy - client - server),
        "loadavg_start": a.loadavg,
        "loadavg_end": b.loadavg,
    }


def answer_latency(client: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """Split each answer's round trip: the caller's total, the server's own time, the rest.

    Manual: a finalize, from the caller's call to its ``flush_done`` in the caller's code.
    Turns: a ``turn.start``, from the server reading the frame that started the turn to the
    caller's code having the signal (no call: ``total`` stays empty, and the part after the
    server's write is the barge-in signal's delivery).

    ``client`` maps session index -> [call times, answer seen times, SDK latencies];
    ``server`` has, per session, ``answers``: [(request read, answer written)] on the same
    clock.
    """
    total: list[float] = []
    own: list[float] = []
    outside: list[float] = []
    to_server: list[float] = []
    from_server: list[float] = []
    sdk: list[float] = []
    for index, (calls, seen, sdk_latency) in client.items():
        sdk.extend(sdk_latency)
        records = server["sessions"].get(index, {}).get("answers", [])
        for k, (read, written) in enumerate(records):
            own.append(written - read)
            if k < len(seen):
                from_server.append(seen[k] - written)
            if k < len(seen) and k < len(calls):
                total.append(seen[k] - calls[k])
                outside.append(total[-1] - own[-1])
                to_server.append(read - calls[k])

    def ms(values: list[float]) -> dict[str, float]:
        return {
            "p50": percentile(values, 0.5) * 1000,
            "p99": percentile(values, 0.99) * 1000,
            "count": len(values),
        }

    out = {
        "total_ms": ms(total),
        "server_own_ms": ms(own),
        "outside_server_ms": ms(outside),
        "call_to_server_read_ms": ms(to_server),
        "server_write_to_seen_ms": ms(from_server),
    }
    if sdk:
        out["sdk_reported_ms"] = ms(sdk)
    return out


def ok(result: dict[str, Any], server: dict[str, Any]) -> bool:
    """The run is valid: no error, every frame written and received, every session done,
    and (turns) every turn's end seen."""
    if result.get("error_count", 1) or "frames_expected" not in result:
        return False
    srv = result["server"]
    return bool(
        result["frames_written"] == result["frames_expected"] == srv["frames"]
        and result["sessions_done"] == result["n"] == srv["closed"]
        and result.get("turn_ends_seen") == result.get("turn_ends_expected")
    )


# -- the plan --------------------------------------------------------------------------------


def rotate(kinds: list[str], k: int) -> list[str]:
    """The clients in a different order for each N, so none always runs first or last."""
    k %= len(kinds)
    return kinds[k:] + kinds[:k]


def search(
    bench: Bench, kind: str, known: dict[int, dict[str, Any]], probes: int
) -> dict[str, Any]:
    """The largest N whose p99 lateness is under the limit: grow by 1.6x, then bisect."""
    tried = dict(known)

    def good(n: int) -> bool:
        r = tried[n]
        return bool(r["ok"] and r["lateness_ms"]["p99"] < LATENESS_LIMIT_MS)

    steps: list[dict[str, Any]] = []
    for _ in range(probes):
        goods = [n for n in tried if good(n)]
        bads = [n for n in tried if not good(n)]
        lo = max(goods, default=0)
        hi = min((n for n in bads if n > lo), default=None)
        if hi is None:
            n = int(max(lo, 50) * 1.6)
        elif hi / max(lo, 1) <= 1.15:
            break
        else:
            n = (lo + hi) // 2
        if 2 * n + 200 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
            break
        print(f"  search {kind} N={n}", flush=True)
        tried[n] = bench.steady(kind, n)
        steps.append(brief(tried[n]))
    goods = [n for n in tried if good(n)]
    bads = [n for n in tried if not good(n)]
    lo = max(goods, default=0)
    hi = min((n for n in bads if n > lo), default=None)
    server_busy = max(
        (tried[n]["server"].get("cpu_busy", 0.0) for n in tried if n in (lo, hi)), default=0.0
    )
    return {
        "max_n": lo,
        "first_failing_n": hi,
        "server_busy_max": server_busy,
        "server_bound": server_busy > SERVER_BOUND,
        "probes": steps,
    }


def brief(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "n": r.get("n"),
        "ok": r.get("ok"),
        "cpu_ms_per_audio_s": r.get("cpu_ms_per_audio_s"),
        "lateness_ms": r.get("lateness_ms"),
        "server_cpu_busy": r.get("server", {}).get("cpu_busy"),
        "errors": r.get("errors"),
    }


def raise_fd_limit(ns: Iterable[int]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * max(ns) + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, 4096)), hard))


# -- reporting -------------------------------------------------------------------------------


def fmt_range(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    if lo == hi:
        return lo
    return f"{lo} to {hi}" if lo.startswith("-") or hi.startswith("-") else f"{lo}-{hi}"


def load_line(report: dict[str, Any]) -> str:
    """How busy the machine was with other work during the measured windows."""
    loads = [r["machine_load"] for r in report["steady"] if "machine_load" in r]
    if not loads:
        return ""
    other = [x["other_cores"] for x in loads]
    avg = [x["loadavg_start"][0] for x in loads] + [x["loadavg_end"][0] for x in loads]
    note = f" Note: {report['note']}." if report.get("note") else ""
    return (
        f"Other work on the machine during the windows (all CPUs busy minus client and "
        f"server): {min(other):.2f}-{max(other):.2f} cores, mean "
        f"{statistics.mean(other):.2f}; 1-minute load average {min(avg):.2f}-{max(avg):.2f}." + note
    )


def runs_of(report: dict[str, Any], kind: str, n: int) -> list[dict[str, Any]]:
    """The steady runs of ``kind`` at ``n`` that produced figures."""
    return [
        r
        for r in report["steady"]
        if r["kind"] == kind and r.get("n") == n and "cpu_ms_per_audio_s" in r
    ]


def steady_table(report: dict[str, Any], kinds: list[str]) -> list[str]:
    """One row per client and N: every figure of the steady runs."""
    turns = report.get("workload") == "turns"
    answer = "turn.start, server write -> caller" if turns else "finalize total"
    lines = [
        "| client | N | CPU ms per audio s | lateness p50 / p99 / max ms | server CPU | "
        f"other load (cores) | {answer} p50 / p99 ms | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        stream = kind.startswith("ours-stream") and not turns
        for n in report["ns"]:
            runs = [r for r in report["steady"] if r["kind"] == kind and r.get("n") == n]
            if not runs:
                continue
            good = [r for r in runs if "cpu_ms_per_audio_s" in r]
            late = [r["lateness_ms"] for r in good]
            fin = [
                r["turn_start_latency"]["server_write_to_seen_ms"]
                if turns
                else r["finalize_latency"]["total_ms"]
                for r in good
            ]
            if stream:
                fin = [r["finalize_latency"].get("sdk_reported_ms", {}) for r in good]
            other = [r.get("machine_load", {}).get("other_cores", 0) for r in good]
            lines.append(
                f"| {kind} | {n} | {fmt_range([r['cpu_ms_per_audio_s'] for r in good])} | "
                f"{fmt_range([x['p50'] for x in late], 1)} / "
                f"{fmt_range([x['p99'] for x in late], 1)} / "
                f"{fmt_range([x['max'] for x in late], 1)} | "
                f"{fmt_range([r['server'].get('cpu_busy', 0) * 100 for r in good], 0)} % | "
                f"{fmt_range(other, 2)} | "
                f"{fmt_range([f.get('p50', 0) for f in fin])} / "
                f"{fmt_range([f.get('p99', 0) for f in fin])}"
                f"{' (SDK-reported)' if stream else ''} | "
                f"{'yes' if all(r['ok'] for r in runs) else 'NO'} |"
            )
    return lines


def rss_ns(report: dict[str, Any]) -> list[int]:
    """The N at which memory per session is reported: 100 and up (else the largest)."""
    return [n for n in report["ns"] if n >= 100] or [max(report["ns"])]


def rss_table(report: dict[str, Any]) -> list[str]:
    """Memory per open idle session and per streaming session (peak), per client and N."""
    columns = rss_ns(report)
    lines = [
        "| client | "
        + " | ".join(f"RSS KiB per session, N = {n}: idle / streaming peak" for n in columns)
        + " |",
        "|---|" + "---|" * len(columns),
    ]
    for kind in report["kinds"]:
        cells = []
        for n in columns:
            runs = [r for r in runs_of(report, kind, n) if "idle_kib_per_session" in r]
            cells.append(
                f"{fmt_range([r['idle_kib_per_session'] for r in runs], 0)} / "
                f"{fmt_range([r['stream_kib_per_session'] for r in runs], 0)}"
                if runs
                else "-"
            )
        if any(c != "-" for c in cells):
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def paired(
    report: dict[str, Any],
    kind: str,
    bare: str,
    n: int,
    figure: Callable[[dict[str, Any]], float],
) -> tuple[list[float], list[float]]:
    """``figure`` of each run of ``kind`` at ``n``, and its ratio to the run of ``bare`` (the
    bare loop on the same loop and transport) of the same repetition of the same benchmark."""

    def by_rep(k: str) -> dict[int, dict[str, Any]]:
        return {r.get("rep", i): r for i, r in enumerate(runs_of(report, k, n))}

    ours, floor = by_rep(kind), by_rep(bare)
    values = [figure(r) for r in ours.values()]
    ratios = [
        figure(r) / figure(floor[i]) for i, r in ours.items() if i in floor and figure(floor[i])
    ]
    return values, ratios


def cpu_ms(r: dict[str, Any]) -> float:
    return float(r["cpu_ms_per_audio_s"])


def p99_ms(r: dict[str, Any]) -> float:
    return float(r["lateness_ms"]["p99"])


def stream_kib(r: dict[str, Any]) -> float:
    return float(r["stream_kib_per_session"])


def loops_table(report: dict[str, Any], bases: list[str] = LOOP_BASES) -> list[str]:
    """Each of ``bases`` (the bare loop first) against the bare loop on each event loop and
    transport, at N >= 100."""
    lines: list[str] = []
    for suffix, label in VARIANTS.items():
        for n in rss_ns(report):
            kinds = [base + suffix for base in bases]
            if not runs_of(report, kinds[0], n):
                continue
            runs = [r for r in report["steady"] if r["kind"] in kinds and r.get("n") == n]
            cells = []
            for figure, digits in ((cpu_ms, 2), (p99_ms, 1), (stream_kib, 0)):
                parts = [fmt_range([figure(r) for r in runs_of(report, kinds[0], n)], digits)]
                for kind in kinds[1:]:
                    values, ratios = paired(report, kind, kinds[0], n, figure)
                    ratio = f" ({fmt_range(ratios)}x)" if ratios else ""
                    parts.append(fmt_range(values, digits) + ratio)
                cells.append(" / ".join(parts))
            busy = [r["server"].get("cpu_busy", 0) * 100 for r in runs if "server" in r]
            trust = {r.get("tls_trust") for r in runs} - {None, "ssl"}
            note = " (ours trusted the CA via SSL_CERT_FILE)" if trust else ""
            lines.append(
                f"| {label}{note} | {n} | {cells[0]} | {cells[1]} | {cells[2]} | "
                f"{fmt_range(busy, 0)} % | {'yes' if all(r['ok'] for r in runs) else 'NO'} |"
            )
    if not lines:
        return []
    names = " / ".join(b.removeprefix("ours-") for b in bases)
    return [
        "against the bare loop by event loop and transport; the ratio (x bare) pairs each "
        "run with the bare loop's run of the same repetition.",
        "",
        f"| loop, transport | N | CPU ms per audio s: {names} | "
        f"p99 lateness ms: {names} | "
        f"RSS KiB per streaming session: {names} | server CPU | ok |",
        "|---|---|---|---|---|---|---|",
        *lines,
    ]


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    dirty = " (dirty)" if "uncommitted" in m["git_commit"] else ""
    official = report.get("official")
    packages = ", ".join(
        f"{k} {v}" for k, v in m["packages"].items() if not (official and k == "cartesia")
    )
    main_kinds = [k for k in report["kinds"] if not is_variant(k)]
    variant_kinds = [k for k in report["kinds"] if is_variant(k)]
    turns = report.get("workload") == "turns"
    if turns:
        what = (
            f"/stt/turns/websocket, a turn every {report['finalize_every']:g} s decided by the "
            "server (turn.start, turn.update x3, turn.eager_end, turn.end)"
        )
    else:
        what = f"finalize every {report['finalize_every']:g} s"
    lines = [
        f"Run {m['date']} ({report['mode']} mode), {m['cpu_model']}, {m['cpus']} CPUs, "
        f"Python {m['python']}, {packages}, commit {m['git_commit'][:12]}{dirty}.",
        *(
            [
                f"The official client: cartesia {official['cartesia']} with websockets "
                f"{official['websockets']} ({official['python']})."
            ]
            if official
            else []
        ),
        f"Load average at start {m['loadavg_start']}, at end {report['loadavg_end']}; "
        f"{report['seconds']:.0f} s of audio per session, {what}, {report['repeats']} run(s) "
        "per cell (ranges are min-max over runs).",
        load_line(report),
        "",
    ]
    if main_kinds:
        lines += [*steady_table(report, main_kinds), ""]
    if variant_kinds:
        lines += [
            "The same on uvloop and over TLS (client process on uvloop; wss:// to the "
            "server's TLS port):",
            "",
            *steady_table(report, variant_kinds),
            "",
        ]
    loops = loops_table(
        report, ["bare", "ours-relay", "ours-stream", "official"] if turns else LOOP_BASES
    )
    if loops:
        lines += [*loops, ""]
    lines += rss_table(report)
    one = [
        "",
        "| client | unpaced MB/s, one connection | client CPU s | server CPU s | "
        "finalize -> flush_done, one idle session: total p50 / p99 ms | server's own p50 ms | "
        "outside the server p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in THROUGHPUT:
        tp = [r for r in report["throughput"] if r["kind"] == kind]
        lat = [r for r in report["latency"] if r["kind"] == kind]
        if not tp and not lat:
            continue
        row = f"| {kind} | {fmt_range([r['mb_per_s'] for r in tp if 'mb_per_s' in r], 1)} | "
        row += f"{fmt_range([r['cpu_s'] for r in tp if 'cpu_s' in r])} | "
        row += f"{fmt_range([r['server_cpu_s'] for r in tp])} | "
        row += f"{fmt_range([r['total_ms']['p50'] for r in lat])} / "
        row += f"{fmt_range([r['total_ms']['p99'] for r in lat])} | "
        row += f"{fmt_range([r['server_own_ms']['p50'] for r in lat], 3)} | "
        row += f"{fmt_range([r['outside_server_ms']['p50'] for r in lat])} |"
        one.append(row)
    if report["throughput"] or report["latency"]:
        lines += one
    if report["search"]:
        lines += [
            "",
            f"| client | largest N with p99 lateness < {LATENESS_LIMIT_MS:.0f} ms | "
            "first N over | server CPU there |",
            "|---|---|---|---|",
        ]
        for kind, s in report["search"].items():
            bound = " (server-bound)" if s["server_bound"] else ""
            lines.append(
                f"| {kind} | {s['max_n']} | {s['first_failing_n'] or '-'} | "
                f"{s['server_busy_max'] * 100:.0f} %{bound} |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> str | None:
    try:
        # Imported by name: matplotlib is optional (the ``bench`` extra), typed or not.
        importlib.import_module("matplotlib").use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    kinds = [k for k in report["kinds"] if not is_variant(k)]  # default loop, plain
    if not kinds:
        return "no default-loop plain client in this run: no plot"
    fig, (ax_cpu, ax_late) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in kinds:
        xs, cpu, p99 = [], [], []
        for n in report["ns"]:
            runs = [
                r
                for r in report["steady"]
                if r["kind"] == kind and r.get("n") == n and "cpu_ms_per_audio_s" in r
            ]
            if runs:
                xs.append(n)
                cpu.append(statistics.median(r["cpu_ms_per_audio_s"] for r in runs))
                p99.append(statistics.median(r["lateness_ms"]["p99"] for r in runs))
        style = "--" if kind.startswith("official") else "-"
        sdk = report.get("official", {}).get("cartesia", "3.2.0")
        label = LABELS.get(kind, kind).replace("3.2.0", sdk)
        ax_cpu.plot(xs, cpu, style, marker="o", label=label)
        ax_late.plot(xs, p99, style, marker="o", label=label)
    for ax, title in (
        (ax_cpu, "client CPU per audio second (ms)"),
        (ax_late, "frame lateness p99 (ms)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("concurrent real-time sessions in one process (N)")
        ax.set_title(title)
        ax.set_xticks(report["ns"], [str(n) for n in report["ns"]])
        ax.grid(True, alpha=0.3)
    ax_cpu.set_ylim(bottom=0)
    ax_late.set_yscale("log")
    ax_late.axhline(LATENESS_LIMIT_MS, color="grey", linewidth=0.8, linestyle=":")
    ax_cpu.legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(
        f"{m['date'][:10]}, {m['cpu_model']} x{m['cpus']}, Python {m['python']}, "
        f"{report['seconds']:.0f} s sessions, median of {report['repeats']}"
        + (f"; {report['note']}" if report.get("note") else ""),
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="N = 10, 100; one run; about 3 min")
    parser.add_argument(
        "--suite",
        choices=["all", "main", "loops"],
        default="all",
        help="main: the five default-loop clients; loops: bare, ours-relay and ours-stream on "
        "the default loop, uvloop, TLS and uvloop + TLS (N = 100, 500; steady runs only); "
        "all (default): both, the uvloop/TLS clients at N >= 100 only",
    )
    parser.add_argument(
        "--workload",
        choices=["manual", "turns"],
        default="manual",
        help="manual (default): /stt/websocket with a finalize every --finalize-every s; "
        "turns: /stt/turns/websocket, the server deciding a turn every --finalize-every s "
        "(bare, official 4.2.0, ours-relay, ours-stream at N = 100, 500; steady runs only)",
    )
    parser.add_argument("--ns", help="comma-separated N values (default 10,100,500)")
    parser.add_argument(
        "--kinds",
        help=f"comma-separated clients, each at every N (default {','.join(KINDS)}, "
        "official-deflate and, for --suite all, the uvloop and TLS variants: "
        f"{','.join(VARIANT_KINDS)})",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per session (>= 10)")
    parser.add_argument("--finalize-every", type=float, default=2.5, help="seconds of audio")
    parser.add_argument("--repeats", type=int, help="runs per client and N (full: 2)")
    parser.add_argument("--no-search", action="store_true", help="skip the search for max N")
    parser.add_argument(
        "--steady-only", action="store_true", help="skip throughput and one-session latency"
    )
    parser.add_argument("--note", default="", help="free text kept with the results")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run each steady client process's measured window under cProfile and write "
        "DIR/<workload>_<kind>_n<N>_<run>.pstats (CPU figures then include the profiler)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    parser.add_argument("--plot", type=Path, help="PNG path (full: docs/img/steady_state.png)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only redo the tables and plot of a results file",
    )
    args = parser.parse_args()
    if args.render:
        done: dict[str, Any] = json.loads(args.render.read_text())
        table = markdown(done)
        args.render.with_suffix(".md").write_text(table)
        path = args.plot or (
            args.render.with_suffix(".png")
            if done["mode"] == "quick" or done.get("workload", "manual") != "manual"
            else ROOT / "docs" / "img" / "steady_state.png"
        )
        print(table)
        print(plot(done, path) or f"plot: {path}")
        return 0
    quick, suite = args.quick, args.suite
    turns = args.workload == "turns"
    if turns and suite != "all":
        parser.error("--workload turns runs its own plan: leave out --suite")
    if args.ns:
        ns = [int(x) for x in args.ns.split(",")]
    elif suite == "loops" or turns:
        ns = ([10, 100] if turns else [100]) if quick else [100, 500]
    else:
        ns = [10, 100] if quick else [10, 100, 500]
    if args.kinds:
        kinds = args.kinds.split(",")
        unknown = [k for k in kinds if k not in ALL_KINDS]
        if unknown:
            parser.error(f"unknown clients {unknown}; known: {', '.join(ALL_KINDS)}")
    elif turns:
        kinds = list(TURN_KINDS)
    elif suite == "loops":
        kinds = LOOP_BASES + VARIANT_KINDS
    else:
        kinds = KINDS + ([] if quick else ["official-deflate"])
        kinds += (QUICK_VARIANT_KINDS if quick else VARIANT_KINDS) if suite == "all" else []
    if turns and "official-deflate" in kinds:
        parser.error("official-deflate is a manual-endpoint client")
    big = [n for n in ns if n >= VARIANT_MIN_N] or ns

    def runs_at(kind: str) -> list[int]:
        """The N a client runs at: every N, but the variants of a default plan at N >= 100."""
        return big if is_variant(kind) and not args.kinds else ns

    steady_only = args.steady_only or suite == "loops" or turns
    no_search = args.no_search or suite == "loops" or turns
    repeats = args.repeats or (1 if quick else 2)
    name = "steady_state" + ("_turns" if turns else "") + ("_quick" if quick else "")
    if suite == "loops":
        name += "_loops"
    recorded = not quick and suite == "all" and not turns and args.out == HERE / "results"
    plot_path = args.plot or (
        ROOT / "docs" / "img" / "steady_state.png" if recorded else args.out / f"{name}.png"
    )
    raise_fd_limit(ns)
    started = time.monotonic()
    report: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "suite": suite,
        "workload": args.workload,
        "machine": machine(),
        "ns": ns,
        "kinds": kinds,
        "runs_at": {kind: runs_at(kind) for kind in kinds},
        "seconds": args.seconds,
        "finalize_every": args.finalize_every,
        "repeats": repeats,
        "note": args.note,
        "steady": [],
        "throughput": [],
        "latency": [],
        "search": {},
    }
    server = Server()
    try:
        bench = Bench(server, args.seconds, args.finalize_every, args.workload, args.profile)
        if any(k.startswith("official") for k in kinds):
            try:
                report["official"] = official_versions(bench.python("official"))
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                print(f"no official client: {exc}", file=sys.stderr)
                return 2
            print(f"official client: {json.dumps(report['official'])}")
        print(
            f"server on {server.plain} (deflate on {server.deflate}, TLS on {server.tls}), "
            f"pid {server.proc.pid}"
        )
        bench.throughput("bare", 1.0)  # warm the server up; not recorded
        for rep in range(repeats):
            for i, n in enumerate(ns):
                for kind in rotate([k for k in kinds if n in runs_at(k)], i + rep):
                    r = bench.steady(kind, n)
                    r["rep"] = rep
                    report["steady"].append(r)
                    print(f"steady {kind:16s} N={n:4d} {json.dumps(brief(r))}", flush=True)
        for kind in [] if steady_only else THROUGHPUT:
            for _ in range(1 if quick else 3):
                r = bench.throughput(kind, 32.0 if quick else 128.0)
                report["throughput"].append(r)
                print(f"throughput {kind:9s} {r.get('mb_per_s', 0):.1f} MB/s ok={r['ok']}")
        # One connection, ours once: send_audio(speed=None) then finalize() in both ours-*.
        for kind in [] if steady_only else ONE_CONNECTION:
            r = bench.latency(kind, 50 if quick else 200)
            report["latency"].append(r)
            print(f"latency {kind:9s} {json.dumps(r['total_ms'])}", flush=True)
        if not quick and not no_search:
            for kind in [k for k in kinds if k != "official-deflate" and not is_variant(k)]:
                known = {r["n"]: r for r in report["steady"] if r["kind"] == kind and "n" in r}
                report["search"][kind] = search(bench, kind, known, probes=5)
                print(f"search {kind}: {json.dumps(report['search'][kind])}", flush=True)
    finally:
        server.close()
    report["loadavg_end"] = loadavg()
    report["elapsed_s"] = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    (args.out / f"{name}.md").write_text(table)
    note = plot(report, plot_path)
    print(table)
    print(note or f"plot: {plot_path}")
    print(f"results: {args.out / (name + '.json')} ({report['elapsed_s']:.0f} s)")
    return 0 if all(r["ok"] for r in report["steady"]) else 1


if __name__ == "__main__":
    sys.exit(main())
