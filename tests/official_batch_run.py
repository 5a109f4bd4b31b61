"""Transcribe a file with ``client.stt.transcribe`` (tests/test_official_batch.py).

The same code for both SDKs; only the import differs, named on the command line::

    python tests/official_batch_run.py cartesia|cartesia_stt_async async|sync BASE_URL PATH

It runs in the official SDK's own virtual environment for ``cartesia`` (tests/official.py), in
the test environment for ``cartesia_stt_async``, and prints the result as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib import import_module
from typing import Any


def as_json(result: Any) -> str:
    words = [[w.word, w.start, w.end] for w in result.words or []]
    return json.dumps(
        {
            "text": result.text,
            "words": words,
            "duration": result.duration,
            "language": result.language,
            "request_id": result.request_id,
        }
    )


async def run_async(sdk: Any, base_url: str, path: str) -> str:
    async with sdk.AsyncCartesia(api_key="twin-key", base_url=base_url) as client:
        with open(path, "rb") as f:  # noqa: ASYNC230  # the official example's own form
            result = await client.stt.transcribe(
                file=f, model="ink-whisper", language="en", timestamp_granularities=["word"]
            )
    return as_json(result)


def run_sync(sdk: Any, base_url: str, path: str) -> str:
    with sdk.Cartesia(api_key="twin-key", base_url=base_url) as client, open(path, "rb") as f:
        result = client.stt.transcribe(
            file=f, model="ink-whisper", language="en", timestamp_granularities=["word"]
        )
    return as_json(result)


if __name__ == "__main__":
    name, flavour, url, file = sys.argv[1:5]
    sdk = import_module(name)
    label = "official cartesia" if name == "cartesia" else name  # what run_official checks
    print(f"{label} {getattr(sdk, '__version__', '?')}", file=sys.stderr)
    if flavour == "async":
        print(asyncio.run(run_async(sdk, url, file)))
    else:
        print(run_sync(sdk, url, file))
