"""Run the official ``cartesia`` client's turn-detection example flow against a twin.

Runs in the official SDK's own virtual environment (``tests/official.py``), never in the
test environment::

    python tests/official_turns_run.py BASE_URL WAV_PATH

It follows the SDK's ``stt_auto_finalize_websocket_async`` example (cartesia-python
``examples/async_examples.py``): a mono 16-bit WAV in 100 ms chunks at real-time pace through
``client.stt.auto_finalize.websocket(...)``, ``{"type": "close"}`` at the end, events received
concurrently (``asyncio.gather``), one line per event, and ``Full transcript: '...'``: the
``turn.end`` transcripts joined verbatim. The test reads that output.
"""

from __future__ import annotations

import asyncio
import sys
import wave

import cartesia  # the official SDK, from this interpreter's environment


def read_chunks(path: str) -> tuple[list[bytes], int]:
    """The WAV's 100 ms chunks and its sample rate (mono 16-bit PCM only)."""
    with wave.open(path, "rb") as wf:
        assert wf.getnchannels() == 1 and wf.getsampwidth() == 2, "mono 16-bit WAV only"
        rate = wf.getframerate()
        chunks = []
        while data := wf.readframes(rate // 10):
            chunks.append(data)
    return chunks, rate


async def run(base_url: str, path: str) -> None:
    chunks, rate = read_chunks(path)
    full_transcript = ""
    async with (
        cartesia.AsyncCartesia(api_key="twin-key", base_url=base_url) as client,
        client.stt.auto_finalize.websocket(
            encoding="pcm_s16le", model="ink-2", sample_rate=rate
        ) as connection,
    ):

        async def send_audio() -> None:
            for chunk in chunks:
                await connection.send_raw(chunk)
                await asyncio.sleep(0.1)  # real time, as the example paces it
            await connection.send({"type": "close"})

        async def receive_events() -> None:
            nonlocal full_transcript
            async for event in connection:
                transcript = getattr(event, "transcript", None)
                print(f"{event.type} | {transcript if transcript is not None else ''}")
                if event.type == "connected":
                    print(f"request_id | {event.request_id}")
                elif event.type == "turn.end":
                    full_transcript += event.transcript
                elif event.type == "error":
                    print(f"error message | {event.message}")

        await asyncio.gather(send_audio(), receive_events())
    print(f"Full transcript: {full_transcript!r}")


if __name__ == "__main__":
    print(f"official cartesia {cartesia.__version__}", file=sys.stderr)
    asyncio.run(run(sys.argv[1], sys.argv[2]))
