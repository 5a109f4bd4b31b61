"""Markdown tables of the top frames of ``steady_state.py --profile`` runs (cProfile stats).

Each profile is one client process's measured window (``_steady_client.py --profile``), taken
with cProfile's default wall-clock timer: the event loop's idle wait (the selector's ``poll``)
is left out, and what remains ("busy") is the process's work, profiler overhead included (every
Python call costs more under cProfile, so compare shares between clients, not times with an
unprofiled run). Figures are per binary frame written (``--frames``, default 50000: N = 500
sessions x 100 frames).

Run: ``python benchmarks/profile_table.py OUT.md A.pstats B.pstats ... [--title T]
[--note TEXT] [--top 20]``.
"""

from __future__ import annotations

import argparse
import collections
import pstats
from pathlib import Path

IDLE = "<method 'poll' of 'select.epoll' objects>"
GROUPS = [
    ("cartesia_stt_async/protocol", "ours: protocol (pure)"),
    ("cartesia_stt_async", "ours: I/O layer"),
    ("websockets", "websockets"),
    ("benchmarks", "benchmark session code"),
    ("asyncio", "asyncio (loop, sleep, timers)"),
    ("contextlib", "contextlib"),
]


def label(key: tuple[str, int, str]) -> str:
    """``file:line(function)``, the file shortened to its package path."""
    fn, line, name = key
    if fn == "~":
        return name
    for marker in ("site-packages/", "perf-profile/", "lib/python3.11/"):
        if marker in fn:
            fn = fn.split(marker, 1)[1]
            break
    if "cartesia_stt_async/" in fn:
        fn = "cartesia_stt_async/" + fn.split("cartesia_stt_async/", 1)[1]
    return f"{fn}:{line}({name})"


def group(key: tuple[str, int, str]) -> str:
    fn, _, name = key
    if fn == "~":
        if "'send' of '_socket.socket'" in name:
            return "socket send (kernel)"
        if "'recv' of '_socket.socket'" in name:
            return "socket recv (kernel)"
        return "C built-ins"
    for marker, name_ in GROUPS:
        if marker in fn:
            return name_
    return "other Python"


def tables(path: Path, frames: int, top: int) -> list[str]:
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    idle = sum(v[2] for k, v in raw.items() if k[2] == IDLE)
    busy = stats.total_tt - idle  # type: ignore[attr-defined]
    per = 1e6 / frames
    out = [
        f"### {path.stem}",
        "",
        f"busy (CPU work under the profiler, idle poll excluded): {busy:.2f} s, "
        f"{busy * per:.1f} us per frame; idle poll {idle:.2f} s.",
        "",
        "| group | share of busy | us per frame |",
        "|---|---|---|",
    ]
    groups: collections.Counter[str] = collections.Counter()
    for key, (_, _, tt, _, _) in raw.items():
        if key[2] != IDLE:
            groups[group(key)] += tt
    for name, tt in groups.most_common():
        out.append(f"| {name} | {tt / busy * 100:.1f} % | {tt * per:.2f} |")
    out += [
        "",
        f"Top {top} by own time:",
        "",
        "| function | calls per frame | own us per frame | own share | cumulative us per frame |",
        "|---|---|---|---|---|",
    ]
    rows = [(k, v) for k, v in raw.items() if k[2] != IDLE]
    for key, (_, nc, tt, ct, _) in sorted(rows, key=lambda r: -r[1][2])[:top]:
        out.append(
            f"| `{label(key)}` | {nc / frames:.2f} | {tt * per:.2f} | {tt / busy * 100:.1f} % "
            f"| {ct * per:.2f} |"
        )
    out += [
        "",
        f"Top {top} by cumulative time (the loop's own frames and the idle poll left out):",
        "",
        "| function | calls per frame | cumulative us per frame | cumulative share of busy |",
        "|---|---|---|---|",
    ]
    loop = ("_run_once", "_run", "run", "select")
    cum = [(k, v) for k, v in rows if k[2] not in loop]
    for key, (_, nc, _, ct, _) in sorted(cum, key=lambda r: -r[1][3])[:top]:
        out.append(
            f"| `{label(key)}` | {nc / frames:.2f} | {ct * per:.2f} | {ct / busy * 100:.1f} % |"
        )
    return [*out, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("--frames", type=int, default=50000, help="binary frames per profile")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--title", default="Where the time goes")
    parser.add_argument("--note", default="", help="markdown put under the title")
    args = parser.parse_args()
    lines = [f"# {args.title}", ""]
    if args.note:
        lines += [args.note, ""]
    for path in args.profiles:
        lines += tables(path, args.frames, args.top)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
