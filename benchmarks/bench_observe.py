"""What the observer hooks cost: the steady-state relay with no observer, a no-op one, the
OpenTelemetry one and the Prometheus one, beside the bare websockets loop, in one run.

The harness is ``steady_state.py``'s (one server process, one client process per measurement,
``_steady_client.py``): N paced relay sessions (``ours-relay``: each 100 ms frame forwarded with
``send_audio`` at real time, ``finalize_nowait()`` every 2.5 s) of ``--seconds`` of audio,
client CPU per audio second in the streaming window. The client kinds, in a rotating order per
repetition (so drift in the machine's load spreads over all of them):

* ``bare``: websockets with nothing else (the floor);
* ``ours-relay``: no observer (``observers`` not given: the SDK builds no record);
* ``ours-relay+noop``: an observer overriding every method with nothing (records built and
  delivered);
* ``ours-relay+otel``: ``OpenTelemetryObserver`` on the OpenTelemetry SDK's providers (spans
  batched to an exporter that drops them, metrics in an in-memory reader);
* ``ours-relay+prometheus``: ``PrometheusObserver`` on a registry of its own.

Reported: CPU per audio second (ms) of every run, each run's ratio to the no-observer run of
the same repetition, and the ratio to bare. The hooks run a few times per utterance and never
per frame, so their cost is per finalize: at one finalize per 2.5 s it is expected within the
noise of a shared machine; the table says what was measured.

Run: ``python benchmarks/bench_observe.py`` (N = 100 and 500, three repetitions, about 8
minutes), or ``--ns 500 --repeats 2``. Output: ``<out>/bench_observe.json`` and ``.md``.
Needs the ``otel``/``prometheus`` observers' packages (``opentelemetry-sdk``,
``prometheus-client``: the ``test`` and ``examples`` extras). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from steady_state import (  # noqa: E402 - the harness lives next to this file
    Bench,
    Server,
    cpu_ms,
    git_commit,
    loadavg,
    machine,
    raise_fd_limit,
    rotate,
)

KINDS = [
    "bare",
    "ours-relay",
    "ours-relay+noop",
    "ours-relay+otel",
    "ours-relay+prometheus",
]


def run_one(bench: Bench, kind: str, n: int) -> dict[str, Any]:
    """One measurement: ``kind`` is a client kind, or ``ours-relay+OBSERVER``."""
    client, _, observer = kind.partition("+")
    result = bench.steady(client, n, observer or "none")
    result["kind"] = kind
    result["load"] = loadavg()
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The observer hooks' cost (bench_observe.py)",
        "",
        f"{report['date']} · commit {report['commit']} · {report['machine']['cpu_model']} · "
        f"N x {report['seconds']:.0f} s paced relay sessions, a finalize every "
        f"{report['finalize_every']} s · {report['repeats']} repetitions",
        "",
        "CPU per audio second (ms) in each repetition; in brackets, the ratio to the "
        "no-observer relay of the same repetition; last column, the mean ratio to bare.",
        "",
        "| N | client | CPU ms per audio s | vs no observer | mean vs bare |",
        "|---|---|---|---|---|",
    ]
    for n in report["ns"]:
        runs = [r for r in report["runs"] if r["n"] == n]
        by_rep: dict[int, dict[str, float]] = {}
        for r in runs:
            by_rep.setdefault(r["rep"], {})[r["kind"]] = cpu_ms(r)
        for kind in KINDS:
            cells, ratios, vs_bare = [], [], []
            for rep in sorted(by_rep):
                values = by_rep[rep]
                if kind not in values:
                    continue
                cpu = values[kind]
                base = values.get("ours-relay")
                ratio = cpu / base if base else float("nan")
                ratios.append(ratio)
                if values.get("bare"):
                    vs_bare.append(cpu / values["bare"])
                cells.append(f"{cpu:.3f} ({ratio:.2f}x)" if kind != "ours-relay" else f"{cpu:.3f}")
            mean_ratio = statistics.fmean(ratios) if ratios else float("nan")
            lines.append(
                f"| {n} | {kind} | {' / '.join(cells)} | "
                f"{mean_ratio:.2f}x | {statistics.fmean(vs_bare):.2f}x |"
            )
    lines += [
        "",
        "Load average (1 min) at the runs' ends: "
        + ", ".join(f"{r['load'][0]:.2f}" for r in report["runs"]),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ns", default="100,500", help="comma-separated N values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per session")
    parser.add_argument("--finalize-every", type=float, default=2.5, help="seconds of audio")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    ns = [int(x) for x in args.ns.split(",")]
    raise_fd_limit(ns)
    server = Server()
    bench = Bench(server, args.seconds, args.finalize_every)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for n in ns:
            for rep in range(args.repeats):
                for kind in rotate(KINDS, rep):
                    result = run_one(bench, kind, n)
                    result.update(n=n, rep=rep)
                    runs.append(result)
                    print(f"N={n} rep {rep} {kind}: {cpu_ms(result):.3f} ms/audio s", flush=True)
    finally:
        server.close()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "machine": machine(),
        "ns": ns,
        "repeats": args.repeats,
        "seconds": args.seconds,
        "finalize_every": args.finalize_every,
        "elapsed_s": time.monotonic() - started,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_observe.json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    (args.out / "bench_observe.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
