"""Quick start against the local twin: no API key, no network."""

from __future__ import annotations

import asyncio

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine, serve


async def main() -> None:
    # The twin answers the 1st finalize with two final deltas.
    async with serve(engine=ScriptedEngine([["Hello", " world."]])) as twin:
        client = stt.AsyncCartesia(api_key="local-test-key", base_url=twin.base_url)
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000
        ) as conn:
            await conn.send_audio(bytes(16000 * 2))  # 1 s of audio, paced in 100 ms frames
            utterance = await conn.finalize()
            print(repr(utterance.text))  # 'Hello world.'
        print(repr(conn.transcript.text))  # 'Hello world.'


if __name__ == "__main__":
    asyncio.run(main())
