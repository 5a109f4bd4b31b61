"""How well and how fast the twin's offline recognizer works, through the real client.

Speech is synthesized by the twin's ``/tts/bytes`` (Pico), streamed unpaced through
``cartesia_stt_async`` into the twin's pocketsphinx engine, one ``finalize`` per sentence.

Reports:
* word error rate over the sentences (pooled), and per sentence with ``--verbose``; also for
  the same sentences as 8 kHz mu-law (telephone) audio;
* real-time factor: decoding wall time over audio time (unpaced streaming + finalize);
* resident memory of the recognizer process with 0 to 4 sessions open (the first session
  takes the pooled decoder; each further one builds its own).

Run: ``python benchmarks/twin_quality.py`` (needs the ``twin`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import cartesia_stt_async as stt
from cartesia_stt_async.twin import SphinxEngine, serve
from cartesia_stt_async.twin.wer import word_error_rate

SENTENCES = [
    "The quick brown fox jumps over the lazy dog",
    "Sandy sells seashells on the sea shore",
    "Please call me back when you get home",
    "The weather is nice today",
    "I would like to book a table for two",
    "What time does the train leave",
    "Turn off the lights in the kitchen",
    "My phone number is five five five one two three four",
    "Can you help me find my keys",
    "The meeting has been moved to Friday afternoon",
    "She bought three apples and a loaf of bread",
    "How much does it cost to fly to London",
    "We are going to the park this weekend",
    "Open the door and let the dog out",
    "The children played in the garden all day",
    "I need to send an email to my manager",
    "Set an alarm for seven in the morning",
    "He reads the newspaper every morning",
    "The store closes at nine o'clock tonight",
    "Thank you very much for your help",
    "Where is the nearest gas station",
    "Play some music in the living room",
]

VOICE = {"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"}
FORMAT = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}


async def main(verbose: bool) -> None:
    engine = SphinxEngine(max_sessions=4, interims=False)
    try:
        async with serve(engine=engine) as twin:
            client = stt.AsyncCartesia(api_key="bench", base_url=twin.base_url)
            clips = []
            for sentence in SENTENCES:
                response = await client.tts.generate(
                    model_id="sonic-latest",
                    transcript=sentence,
                    voice=VOICE,
                    output_format=FORMAT,
                    language="en",
                )
                clips.append(await response.read())
            await engine.prewarm(1)
            (idle,) = await engine.stats()

            texts: list[str] = []
            audio_seconds = sum(len(c) for c in clips) / 32000
            started = time.perf_counter()
            async with client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
            ) as conn:
                for clip in clips:
                    await conn.send_audio(clip)
                    texts.append((await conn.finalize(timeout=60)).text)
            wall = time.perf_counter() - started

            # Telephone audio: 8 kHz mu-law straight from /tts/bytes.
            phone_texts: list[str] = []
            async with client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_mulaw", sample_rate=8000, speed=None
            ) as conn:
                for sentence in SENTENCES:
                    response = await client.tts.generate(
                        model_id="sonic-latest",
                        transcript=sentence,
                        voice=VOICE,
                        output_format={**FORMAT, "encoding": "pcm_mulaw", "sample_rate": 8000},
                        language="en",
                    )
                    await conn.send_audio(await response.read())
                    phone_texts.append((await conn.finalize(timeout=60)).text)

            rss = {0: idle["rss_kib"]}
            managers = [
                client.stt.manual_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
                )
                for _ in range(4)
            ]
            conns = []
            for count, manager in enumerate(managers, 1):
                conn = await manager.enter()
                await conn.send_audio(clips[0])
                await conn.finalize(timeout=60)
                conns.append(conn)
                (stats,) = await engine.stats()
                rss[count] = stats["rss_kib"]
            for conn in conns:
                await conn.aclose()
            await client.close()
    finally:
        await engine.aclose()

    if verbose:
        for sentence, text in zip(SENTENCES, texts, strict=True):
            print(f"  {word_error_rate(sentence, text):5.2f}  {sentence!r} -> {text!r}")
    print(f"sentences: {len(SENTENCES)}, words: {sum(len(s.split()) for s in SENTENCES)}")
    print(f"word error rate (pooled): {word_error_rate(SENTENCES, texts):.3f}")
    print(f"word error rate, 8 kHz mu-law: {word_error_rate(SENTENCES, phone_texts):.3f}")
    rtf = wall / audio_seconds
    print(f"audio: {audio_seconds:.1f} s, decoded in {wall:.2f} s: real-time factor {rtf:.3f}")
    print(f"recognizer process RSS, one pooled decoder, no session: {rss[0] / 1024:.0f} MiB")
    for count in (1, 2, 3, 4):
        step = (rss[count] - rss[count - 1]) / 1024
        print(f"  with {count} session(s) open: {rss[count] / 1024:.0f} MiB (+{step:.0f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every sentence")
    asyncio.run(main(parser.parse_args().verbose))
