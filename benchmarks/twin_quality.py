"""How well and how fast the twin's offline recognizer works, through the real client.

Speakers: the twin's own voice (``/tts/bytes``, SVOX Pico, 16 kHz), and, when installed, other
synthetic voices: espeak-ng (``apt-get install espeak-ng``) and Flite (``apt-get install
flite``; its ``kal`` voice is an 8 kHz voice). Each speaker's sentences are converted to each
rate and encoding the way a phone line or a browser would (libsoxr, G.711), streamed unpaced
through ``cartesia_stt_async`` into the twin's default engine (interims on, as ``serve()``
runs it), one session per speaker and format (``--session-per-sentence``: one per sentence,
as separate phone calls), one ``finalize`` per sentence; ``--rates 8000,16000`` limits the
formats measured.

Reports:
* word error rate by speaker, sample rate and encoding, and the mean over speakers other than
  the twin's own voice (per sentence with ``--verbose``);
* real-time factor: decoding wall time over audio time (the twin's voice, 16 kHz);
* resident memory of the recognizer process with 0 to 4 sessions open (the first session
  takes the pooled decoder; each further one builds its own).

Run: ``python benchmarks/twin_quality.py`` (needs the ``twin`` extra; with ``--sentences 11``
about 15 minutes on a busy 2-core machine). It measures the ``cartesia_stt_async`` that
Python imports: from a checkout, put it first with ``PYTHONPATH=.``. ``--sentences N`` uses
the first N sentences only. ``--cmn-priors`` prints the narrowband cepstral mean the worker
starts live normalisation from (``_sphinx_worker.NARROWBAND_CMN``), measured on the twin's
voice.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import statistics
import subprocess
import tempfile
import time
import wave

import numpy as np

import cartesia_stt_async as stt
from cartesia_stt_async.twin import SphinxEngine, _dsp, serve
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
TWIN = "twin (Pico)"
ESPEAK_VOICES = ("en-us+klatt2", "en-us+klatt4")
FLITE_VOICES = ("kal16", "awb", "rms", "slt", "kal")
CONDITIONS = (
    (16000, "pcm_s16le"),
    (16000, "pcm_mulaw"),
    (24000, "pcm_s16le"),
    (11025, "pcm_s16le"),
    (8000, "pcm_s16le"),
    (8000, "pcm_mulaw"),
)

Clip = tuple[np.ndarray, int]  # float32 samples and their rate


def _wav(data: bytes) -> Clip:
    with wave.open(io.BytesIO(data)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32768, rate


def espeak(voice: str, text: str) -> Clip:
    """``text`` spoken by espeak-ng's ``voice`` (22050 Hz)."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True
    )
    return _wav(out.stdout)


def flite(voice: str, text: str) -> Clip:
    """``text`` spoken by Flite's ``voice`` (16 kHz; ``kal``: 8 kHz)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", f.name], check=True)
        with open(f.name, "rb") as wav_file:
            return _wav(wav_file.read())


def convert(clip: Clip, rate: int, encoding: str) -> bytes:
    """A clip as wire bytes at ``rate`` in ``encoding``."""
    samples, source = clip
    if source != rate:
        resampler = _dsp.Resampler(source, rate)
        samples = np.concatenate([resampler.process(samples), resampler.process(samples[:0], True)])
    return _dsp.encode(samples, encoding)


async def speakers(client: stt.AsyncCartesia, sentences: list[str]) -> dict[str, list[Clip]]:
    """Every available speaker's clips of ``sentences``."""
    out: dict[str, list[Clip]] = {TWIN: []}
    for sentence in sentences:
        response = await client.tts.generate(
            model_id="sonic-latest",
            transcript=sentence,
            voice=VOICE,
            output_format=FORMAT,
            language="en",
        )
        out[TWIN].append((_dsp.decode(await response.read(), "pcm_s16le"), 16000))
    if shutil.which("espeak-ng"):
        for voice in ESPEAK_VOICES:
            out[f"espeak-ng {voice}"] = [espeak(voice, s) for s in sentences]
    else:
        print("espeak-ng not found: its voices are skipped")
    if shutil.which("flite"):
        for voice in FLITE_VOICES:
            out[f"flite {voice}"] = [flite(voice, s) for s in sentences]
    else:
        print("flite not found: its voices are skipped")
    return out


async def transcribe(
    client: stt.AsyncCartesia, clips: list[bytes], rate: int, encoding: str, each: bool
) -> list[str]:
    """One session (``each``: one per clip); each clip streamed unpaced and finalized; the
    finals' texts."""
    if each:
        return [(await transcribe(client, [clip], rate, encoding, False))[0] for clip in clips]
    texts = []
    async with client.stt.manual_finalize.websocket(
        model="ink-2", encoding=encoding, sample_rate=rate, speed=None
    ) as conn:
        for clip in clips:
            await conn.send_audio(clip)
            texts.append((await conn.finalize(timeout=120)).text)
    return texts


async def main(
    verbose: bool, count: int, each: bool, conditions: tuple[tuple[int, str], ...]
) -> None:
    sentences = SENTENCES[:count]
    engine = SphinxEngine(max_sessions=4)
    try:
        async with serve(engine=engine) as twin:
            client = stt.AsyncCartesia(api_key="bench", base_url=twin.base_url)
            voices = await speakers(client, sentences)
            await engine.prewarm(1)
            (idle,) = await engine.stats()

            wers: dict[tuple[str, int, str], float] = {}
            wall = 0.0
            for rate, encoding in conditions:
                for voice, clips in voices.items():
                    started = time.perf_counter()
                    data = [convert(c, rate, encoding) for c in clips]
                    texts = await transcribe(client, data, rate, encoding, each)
                    if (voice, rate, encoding) == (TWIN, 16000, "pcm_s16le"):
                        wall = time.perf_counter() - started
                    wers[voice, rate, encoding] = word_error_rate(sentences, texts)
                    if verbose:
                        print(f"{voice}, {rate} Hz {encoding}: {wers[voice, rate, encoding]:.3f}")
                        for sentence, text in zip(sentences, texts, strict=True):
                            wer = word_error_rate(sentence, text)
                            print(f"  {wer:5.2f}  {sentence!r} -> {text!r}")

            rss = {0: idle["rss_kib"]}
            twin_clip = convert(voices[TWIN][0], 16000, "pcm_s16le")
            managers = [
                client.stt.manual_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
                )
                for _ in range(4)
            ]
            conns = []
            for n, manager in enumerate(managers, 1):
                conn = await manager.enter()
                await conn.send_audio(twin_clip)
                await conn.finalize(timeout=60)
                conns.append(conn)
                (stats,) = await engine.stats()
                rss[n] = stats["rss_kib"]
            for conn in conns:
                await conn.aclose()
            await client.close()
    finally:
        await engine.aclose()

    words = sum(len(s.split()) for s in sentences)
    print(f"sentences: {len(sentences)}, words: {words}; word error rate per speaker:")
    heads = [f"{rate / 1000:g}k {encoding[4:]}" for rate, encoding in conditions]
    print(f"{'':24s}" + "".join(f"{h:>12s}" for h in heads))
    for voice in voices:
        row = "".join(f"{wers[voice, r, e]:12.3f}" for r, e in conditions)
        print(f"{voice:24s}{row}")
    others = [v for v in voices if v != TWIN]
    if others:
        means = [statistics.mean(wers[v, r, e] for v in others) for r, e in conditions]
        print(f"{'mean, other speakers':24s}" + "".join(f"{m:12.3f}" for m in means))
    audio_seconds = sum(len(s) / r for s, r in voices[TWIN])
    if wall:
        rtf = wall / audio_seconds
        print(f"audio: {audio_seconds:.1f} s, decoded in {wall:.2f} s: real-time factor {rtf:.3f}")
    print(f"recognizer process RSS, one pooled decoder, no session: {rss[0] / 1024:.0f} MiB")
    for n in (1, 2, 3, 4):
        step = (rss[n] - rss[n - 1]) / 1024
        print(f"  with {n} session(s) open: {rss[n] / 1024:.0f} MiB (+{step:.0f} MiB)")


def cmn_priors() -> None:
    """Print the mean cepstrum of the twin's voice converted to 8 kHz and back."""
    from pocketsphinx import Decoder

    from cartesia_stt_async.twin._tts import Synthesizer, TTSRequest

    synthesizer = Synthesizer()
    decoder = Decoder(samprate=16000, loglevel="FATAL")
    for rate in (8000,):
        means = []
        for sentence in SENTENCES[1::2]:
            audio = synthesizer.synthesize(TTSRequest(sentence, "raw", "pcm_s16le", 16000, "en"))
            clip = (_dsp.decode(audio, "pcm_s16le"), 16000)
            back = (_dsp.decode(convert(clip, rate, "pcm_s16le"), "pcm_s16le"), rate)
            decoder.reinit_feat()
            decoder.start_utt()
            decoder.process_raw(convert(back, 16000, "pcm_s16le"), False, True)
            decoder.end_utt()
            means.append([float(v) for v in decoder.get_cmn(True).split(",")])
        print(rate, ",".join(f"{v:.2f}" for v in np.mean(means, axis=0)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every sentence")
    parser.add_argument("--sentences", type=int, default=len(SENTENCES), help="use the first N")
    parser.add_argument("--cmn-priors", action="store_true", help="print the narrowband priors")
    parser.add_argument(
        "--session-per-sentence", action="store_true", help="a new session for every sentence"
    )
    parser.add_argument(
        "--rates", help="only these sample rates (comma-separated), e.g. 8000,16000"
    )
    args = parser.parse_args()
    chosen: tuple[tuple[int, str], ...] = CONDITIONS
    if args.rates:
        rates = {int(r) for r in args.rates.split(",")}
        chosen = tuple(c for c in CONDITIONS if c[0] in rates)
    if args.cmn_priors:
        cmn_priors()
    else:
        asyncio.run(main(args.verbose, args.sentences, args.session_per_sentence, chosen))
