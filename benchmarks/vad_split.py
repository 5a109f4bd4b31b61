"""VAD finalize on the twin with real synthesized speech: where it splits, and how late.

Sentences are synthesized by the twin's ``/tts/bytes`` (Pico) and joined with pauses of
``--pause`` seconds, over faint Gaussian noise. The stream is fed as a microphone would
deliver it: one 100 ms chunk every 100 ms of wall time. Each chunk goes through
:class:`~cartesia_stt_async.vad.VadFinalizer`; the audio up to each offset it returns is sent
with ``send_audio`` (unpaced: it is sent as it is "captured"), then ``finalize``. The twin's
offline recognizer (pocketsphinx) transcribes each utterance.

Reports, per classifier (webrtc, energy), ``silence_ms`` and noise level:

* splits: finalizes that land in a pause (after the voice of sentence i stops, before sentence
  i + 1 starts) out of the number of pauses; extra finalizes (inside a sentence) and missed
  pauses;
* decision point: how far into the stream after the end of the voice (the last sample above
  200/32768) the finalize offset lies, mean, in ms of audio;
* finalize latency: wall time from the end of the voice (on the capture clock) to the
  ``send("finalize")`` call, mean and max, in ms (the decision point plus the wait for the
  100 ms chunk that holds it): what the VAD costs;
* the server's part, for scale: that call to the utterance's ``flush_done`` (the twin's offline
  recognizer, slower than real time on a loaded machine: it depends on the load, not on the
  VAD);
* WER of the utterances against their sentences (when the split is right);
* and the classifier's CPU cost: seconds of CPU per second of audio, per encoding.

Run: ``python benchmarks/vad_split.py`` (needs the ``twin`` extra; the ``vad`` extra for
webrtc). Takes about two minutes (the streams run in real time).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import random
import statistics
import time
from dataclasses import dataclass

import cartesia_stt_async as stt
from cartesia_stt_async.twin import SphinxEngine, serve
from cartesia_stt_async.twin._dsp import Resampler, decode, encode
from cartesia_stt_async.twin.wer import word_error_rate
from cartesia_stt_async.vad import VadBackend, VadFinalizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog",
    "Please call me back when you get home",
    "The meeting has been moved to Friday afternoon",
    "Turn off the lights in the kitchen",
]
RATE = 16000
CHUNK_S = 0.1
AUDIBLE = 200  # |sample| above this is voice (Pico's output is digital silence between words)


@dataclass
class Stream:
    audio: bytes
    spans: list[tuple[float, float]]  # where the voice is audible, seconds


@dataclass
class Result:
    in_pause: int
    pauses: int
    extra: int
    missed: int
    decision_ms: list[float]
    finalize_ms: list[float]
    server_ms: list[float]
    wer: float | None


async def synthesize(client: stt.AsyncCartesia) -> list[bytes]:
    clips = []
    for text in SENTENCES:
        response = await client.tts.generate(
            model_id="sonic-latest",
            transcript=text,
            voice="any",
            output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
            language="en",
        )
        clips.append(await response.read())
    return clips


def build(clips: list[bytes], pause: float, noise_db: float, seed: int = 0) -> Stream:
    audio: array.array[int] = array.array("h")
    spans = []
    for clip in clips:
        samples = array.array("h", clip)
        loud = [i for i, v in enumerate(samples) if abs(v) > AUDIBLE]
        spans.append(((len(audio) + loud[0]) / RATE, (len(audio) + loud[-1] + 1) / RATE))
        audio.extend(samples)
        audio.extend([0] * int(pause * RATE))
    r = random.Random(seed)
    sigma = 32767 * 10 ** (noise_db / 20)
    mixed = array.array("h", (max(-32768, min(32767, v + int(r.gauss(0, sigma)))) for v in audio))
    return Stream(mixed.tobytes(), spans)


async def run(
    client: stt.AsyncCartesia, stream: Stream, backend: VadBackend, silence_ms: int
) -> Result:
    vad = VadFinalizer("pcm_s16le", RATE, backend=backend, silence_ms=silence_ms)
    chunk_bytes = int(CHUNK_S * RATE) * 2
    offsets: list[float] = []
    issued: list[float] = []  # loop time each finalize was handed to the connection
    async with client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=RATE, speed=None, close_timeout=120
    ) as conn:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(0, len(stream.audio), chunk_bytes):
            chunk = stream.audio[i : i + chunk_bytes]
            captured = t0 + (i + len(chunk)) / 2 / RATE  # the mic hands over the chunk now
            await asyncio.sleep(max(0.0, captured - loop.time()))
            start = 0
            for offset in vad.feed(chunk):
                await conn.send_audio(chunk[start:offset])
                await conn.send("finalize")
                issued.append(loop.time())
                offsets.append((i + offset) / 2 / RATE)
                start = offset
            await conn.send_audio(chunk[start:])
    utterances = conn.transcript.utterances
    total = len(stream.audio) / 2 / RATE
    pauses = [
        (end, nxt)
        for (_, end), (nxt, _) in zip(
            stream.spans, [*stream.spans[1:], (total, total)], strict=True
        )
    ]
    in_pause = 0
    decision_ms: list[float] = []
    finalize_ms: list[float] = []
    server_ms: list[float] = []
    matched: list[int] = []
    for end, nxt in pauses:
        hits = [k for k, at in enumerate(offsets) if end < at <= nxt]
        if hits:
            in_pause += 1
            k = hits[0]
            matched.append(k)
            decision_ms.append((offsets[k] - end) * 1000)
            finalize_ms.append((issued[k] - (t0 + end)) * 1000)
            utterance = utterances[k] if k < len(utterances) else None
            if utterance is not None and utterance.flushed_at is not None:
                server_ms.append((utterance.flushed_at - issued[k]) * 1000)
    wer = None
    if in_pause == len(pauses) and len(offsets) == len(pauses):
        wer = word_error_rate(" ".join(SENTENCES), " ".join(u.text for u in utterances))
    return Result(
        in_pause=in_pause,
        pauses=len(pauses),
        extra=len(offsets) - len(set(matched)),
        missed=len(pauses) - in_pause,
        decision_ms=decision_ms,
        finalize_ms=finalize_ms,
        server_ms=server_ms,
        wer=wer,
    )


def cpu_cost(audio: bytes) -> list[tuple[str, str, float]]:
    """CPU seconds per audio second of ``feed`` in 100 ms chunks."""
    samples = decode(audio, "pcm_s16le")
    rows: list[tuple[str, str, float]] = []
    for encoding, rate in (("pcm_s16le", 16000), ("pcm_mulaw", 8000), ("pcm_f32le", 44100)):
        if rate == RATE:
            data = encode(samples, encoding)
        else:
            resampler = Resampler(RATE, rate)
            data = encode(resampler.process(samples), encoding)
        width = len(data) / (len(samples) * rate / RATE)
        chunk = int(CHUNK_S * rate) * round(width)
        backends: tuple[VadBackend, ...] = ("webrtc", "energy")
        for backend in backends:
            vad = VadFinalizer(encoding, rate, backend=backend)
            started = time.process_time()
            for i in range(0, len(data), chunk):
                vad.feed(data[i : i + chunk])
            seconds = time.process_time() - started
            rows.append((backend, f"{encoding}/{rate}", seconds / (len(samples) / RATE)))
    return rows


def fmt_ms(values: list[float], how: str) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values) if how == 'mean' else max(values):.0f}"


async def main(pause: float, silences: list[int], noises: list[float]) -> None:
    engine = SphinxEngine(max_sessions=2, interims=False)
    try:
        async with (
            serve(engine=engine) as twin,
            stt.AsyncCartesia(api_key="bench", base_url=twin.base_url) as client,
        ):
            clips = await synthesize(client)
            print(f"{len(SENTENCES)} sentences, {pause:.1f} s pauses, 100 ms chunks in real time")
            print(
                "| backend | silence_ms | noise dBFS | splits in pauses | extra | missed "
                "| decision after voice ends, ms audio | finalize called after voice ends, "
                "mean / max ms | finalize → flush_done, mean ms | WER |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            for noise_db in noises:
                stream = build(clips, pause, noise_db)
                backends: tuple[VadBackend, ...] = ("webrtc", "energy")
                for backend in backends:
                    for silence_ms in silences:
                        r = await run(client, stream, backend, silence_ms)
                        wer = "-" if r.wer is None else f"{r.wer:.2f}"
                        print(
                            f"| {backend} | {silence_ms} | {noise_db:.0f} | "
                            f"{r.in_pause}/{r.pauses} | {r.extra} | {r.missed} | "
                            f"{fmt_ms(r.decision_ms, 'mean')} | "
                            f"{fmt_ms(r.finalize_ms, 'mean')} / {fmt_ms(r.finalize_ms, 'max')}"
                            f" | {fmt_ms(r.server_ms, 'mean')} | {wer} |",
                            flush=True,
                        )
            print("\nclassifier CPU per audio second (100 ms chunks):")
            for name, fmt, cost in cpu_cost(build(clips, pause, -60).audio):
                print(f"  {name:6} {fmt:16} {cost * 1000:.2f} ms/s ({1 / cost:.0f}x real time)")
    finally:
        await engine.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between sentences")
    parser.add_argument("--silence-ms", type=int, nargs="+", default=[300, 600])
    parser.add_argument("--noise-db", type=float, nargs="+", default=[-60.0, -40.0])
    args = parser.parse_args()
    asyncio.run(main(args.pause, args.silence_ms, args.noise_db))
