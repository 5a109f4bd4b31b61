"""Run one of the seed's examples with the official ``cartesia`` client (``tests/official.py``).

Runs in the official SDK's own virtual environment, never in the test environment::

    python tests/official_run.py async|sync BASE_URL
    python tests/official_run.py token BASE_URL API_KEY

The example prints its events and ``Full transcript: '...'``; the test reads that output.
"""

from __future__ import annotations

import asyncio
import sys
from importlib import import_module
from pathlib import Path

import cartesia  # the official SDK, from this interpreter's environment

# The seed's examples, beside this file (imported by name: this runs outside the test package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
stt_manual_finalize_websocket_async = import_module(
    "seed_example"
).stt_manual_finalize_websocket_async
stt_manual_finalize_websocket = import_module("seed_sync_example").stt_manual_finalize_websocket


async def run_async(base_url: str) -> None:
    client = cartesia.AsyncCartesia(api_key="twin-key", base_url=base_url)
    try:
        await stt_manual_finalize_websocket_async(client)
    finally:
        await client.close()


def run_sync(base_url: str) -> None:
    client = cartesia.Cartesia(api_key="twin-key", base_url=base_url)
    try:
        stt_manual_finalize_websocket(client)
    finally:
        client.close()


async def run_token(base_url: str, api_key: str) -> None:
    """Mint an access token with the official client, print it; then check that a client
    holding only that token (``token=``) cannot mint another (prints the error's type)."""
    async with cartesia.AsyncCartesia(api_key=api_key, base_url=base_url, max_retries=0) as c:
        created = await c.access_token.create(grants={"stt": True}, expires_in=120)
    print(created.token)
    async with cartesia.AsyncCartesia(token=created.token, base_url=base_url) as as_token:
        try:
            await as_token.access_token.create(grants={"stt": True})
        except cartesia.AuthenticationError as exc:
            print(type(exc).__name__)


if __name__ == "__main__":
    flavour, url = sys.argv[1], sys.argv[2]
    print(f"official cartesia {cartesia.__version__}", file=sys.stderr)
    if flavour == "async":
        asyncio.run(run_async(url))
    elif flavour == "token":
        asyncio.run(run_token(url, sys.argv[3]))
    else:
        run_sync(url)
