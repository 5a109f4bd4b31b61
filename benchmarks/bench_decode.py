"""Event decoding: cartesia_stt_async.parse_event vs the official SDK's parse path.

What is measured: seconds to decode a realistic mix of server messages (transcript chunks with
and without words, flush_done, done), N times each, in one process, one after the other:

* ours: ``cartesia_stt_async.parse_event`` (one msgspec decoder, tagged union);
* official: what ``AsyncManualFinalizeResourceConnection.parse_event`` runs in the official
  ``cartesia`` package (``json.loads`` + ``construct_type_unchecked`` into its pydantic union).

Reported as a ratio official/ours (> 1 means we are faster). Needs the official package:
``pip install 'cartesia[websockets]==3.2.0'``. Run: ``python benchmarks/bench_decode.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import cartesia_stt_async as stt

WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog."]
MESSAGES: list[bytes] = [
    json.dumps(m).encode()
    for m in [
        {"type": "transcript", "is_final": False, "text": "the quick", "request_id": "r" * 36},
        {
            "type": "transcript",
            "is_final": True,
            "text": " The quick brown fox jumps over the lazy dog.",
            "request_id": "r" * 36,
            "duration": 2.3,
            "language": "en",
            "words": [
                {"word": w, "start": i * 0.2, "end": i * 0.2 + 0.18} for i, w in enumerate(WORDS)
            ],
        },
        {"type": "flush_done", "request_id": "r" * 36},
        {"type": "done", "request_id": "r" * 36},
    ]
]


def bench(fn: Callable[[bytes], Any], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        for message in MESSAGES:
            fn(message)
    return time.perf_counter() - start


def main() -> int:
    try:
        from cartesia._models import construct_type_unchecked
        from cartesia.types.stt.stt_manual_finalize_websocket_response import (
            STTManualFinalizeWebsocketResponse,
        )
    except ImportError:
        print("needs the official SDK: pip install 'cartesia[websockets]==3.2.0'", file=sys.stderr)
        return 2

    def official(data: bytes) -> Any:
        return construct_type_unchecked(
            value=json.loads(data),
            type_=STTManualFinalizeWebsocketResponse,  # type: ignore[arg-type, unused-ignore]
        )

    def ours(data: bytes) -> Any:
        # .words too: the official path builds word objects eagerly.
        event = stt.parse_event(data)
        if isinstance(event, stt.TranscriptEvent):
            event.words  # noqa: B018 - decoding words is part of the work
        return event

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    bench(ours, 1000)
    bench(official, 1000)
    # Best of several runs each (ours is short, so more of them: one scheduler hiccup is a
    # large share of 0.1 s), interleaved so that both see the same machine.
    t_ours, t_official = float("inf"), float("inf")
    for i in range(9):
        t_ours = min(t_ours, bench(ours, rounds))
        if i % 3 == 0:
            t_official = min(t_official, bench(official, rounds))
    n = rounds * len(MESSAGES)
    print(f"messages decoded per run: {n}")
    print(f"ours:     {t_ours:.3f} s  ({n / t_ours:,.0f} msg/s)")
    print(f"official: {t_official:.3f} s  ({n / t_official:,.0f} msg/s)")
    print(f"ratio official/ours: {t_official / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
