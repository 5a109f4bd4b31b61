"""The seed's async manual-finalize example (shared/seed/realtime-stt-manual.md, from
cartesia-python v3.2.0 ``examples/async_examples.py``), kept to its original flow so the
conformance test can run it with either client. Only ``typing_extensions.Literal`` became
``typing.Literal``; the client type is left open (``Any``) because both clients are passed in.
"""

from __future__ import annotations

from typing import Any


async def stt_manual_finalize_websocket_async(client: Any, *args: str) -> None:
    """Async realtime STT (manual finalize), as the seed documents it.

    Generates test audio via TTS, pushes it into the STT WebSocket in real-time 100ms chunks,
    then sends `finalize` to trigger transcription of the buffered audio. Sends audio and
    receives events concurrently via ``asyncio.gather``. Prints the full transcript last.
    """
    import asyncio
    import re
    from typing import Literal

    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate: Literal[16000] = 16000

    input_text = (
        " ".join(args)
        if args
        else "The quick brown fox jumps over the lazy dog. Sandy sells seashells on the sea shore."
    )
    print(f"Generating audio for: {input_text!r}")

    full_transcript = ""

    async with client.stt.manual_finalize.websocket(
        encoding=encoding,
        model="ink-2",
        sample_rate=sample_rate,
    ) as connection:

        async def generate_audio_and_push(utterance: str) -> None:
            tts_response = await client.tts.generate(
                model_id="sonic-latest",
                transcript=utterance,
                voice={"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},
                output_format={
                    "container": "raw",
                    "encoding": encoding,
                    "sample_rate": sample_rate,
                },
                language="en",
            )
            audio = await tts_response.read()
            chunk_bytes = (sample_rate * 2) // 10  # 100ms of pcm_s16le (2 bytes/sample)
            for i in range(0, len(audio), chunk_bytes):
                await connection.send_raw(audio[i : i + chunk_bytes])
                await asyncio.sleep(0.1)  # each chunk is 100ms of audio: real-time pace
            # Triggers transcription of buffered audio.
            await connection.send("finalize")

        async def send_audio() -> None:
            # Split the transcript on full stops to simulate multiple user utterances.
            for utterance in (u for u in input_text.split(".") if re.search(r"\w", u)):
                await generate_audio_and_push(utterance)
            # Flush remaining audio, get a `done` ack, then close the socket.
            await connection.send("close")

        async def receive_events() -> None:
            nonlocal full_transcript
            async for event in connection:
                if event.type == "transcript":
                    if event.is_final:
                        print(f"transcript | {event.text}")
                        full_transcript += event.text
                elif event.type == "flush_done":
                    print("flush_done |")
                elif event.type == "done":
                    print("done       |")
                elif event.type == "error":
                    print(f"error    | {event.message}")

        await asyncio.gather(send_audio(), receive_events())

    print(f"\nFull transcript: {full_transcript!r}")
