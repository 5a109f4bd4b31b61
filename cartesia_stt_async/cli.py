"""The ``cartesia-stt`` command.

* ``cartesia-stt demo [TEXT ...]``: synthesize sentences, stream them in paced 100 ms frames,
  ``finalize`` after each, ``close``, print each final delta and the full transcript.
* ``cartesia-stt transcribe FILE.wav [--speed X] [--finalize-every S] [--json]``.
* ``cartesia-stt twin [--host H] [--port P]``: serve the local twin.

``demo`` and ``transcribe`` use the Cartesia API when ``CARTESIA_API_KEY`` is set, and
otherwise start the local twin in-process (offline recognizer) and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TextIO

from ._version import __version__
from .errors import CartesiaSTTError, UsageError

__all__ = ["main"]

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. Sandy sells seashells on the sea shore."
)
# The seed example's voice (a Cartesia voice id); the twin speaks with its offline voice.
DEMO_VOICE = {"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"}
TWIN_KEY = "local-twin"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartesia-stt",
        description="Cartesia realtime STT (manual finalize): asyncio client, local twin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    twin = sub.add_parser(
        "twin",
        help="serve the local twin of the Cartesia STT WebSocket API",
        description="Serve /stt/websocket and /tts/bytes locally. Point a client at it with "
        "base_url=http://HOST:PORT (or CARTESIA_BASE_URL).",
    )
    twin.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    twin.add_argument("--port", type=int, default=8765, help="port to bind (default 8765; 0 = any)")
    twin.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only this key (repeatable); default: any non-empty key",
    )
    twin.add_argument(
        "--max-sessions",
        type=int,
        default=4,
        help="concurrent recognition sessions, ~100 MiB each (default 4; more get HTTP 429)",
    )
    twin.add_argument(
        "--workers",
        type=int,
        default=1,
        help="recognizer processes, each up to one core (default 1)",
    )

    demo = sub.add_parser(
        "demo",
        help="synthesize sentences, stream them, finalize after each, print the transcript",
        description="The seed flow: text to speech, 100 ms frames at real-time pace, finalize "
        "after each sentence, close. Uses the Cartesia API when CARTESIA_API_KEY is set, "
        "otherwise the local twin (offline).",
    )
    demo.add_argument("text", nargs="*", help=f"text to speak (default: {DEFAULT_TEXT!r})")
    demo.add_argument(
        "--speed", type=float, default=1.0, help="pacing, 1.0 = real time (default), 0 = unpaced"
    )

    tr = sub.add_parser(
        "transcribe",
        help="stream a WAV file and print its transcript",
        description="Stream a WAV file (any common format: converted to mono PCM when needed), "
        "finalize at the end or every N seconds, print the text or JSON lines of events. Uses "
        "the Cartesia API when CARTESIA_API_KEY is set, otherwise the local twin (offline).",
    )
    tr.add_argument("file", help="a .wav file")
    tr.add_argument(
        "--speed", type=float, default=1.0, help="pacing, 1.0 = real time (default), 0 = unpaced"
    )
    tr.add_argument(
        "--finalize-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="send finalize after every SECONDS of audio (default: once, at the end)",
    )
    tr.add_argument("--json", action="store_true", help="print every event as a JSON line")
    tr.add_argument("--model", default="ink-2", help="model (default ink-2)")
    tr.add_argument("--language", default=None, help="language code (default: the server's)")
    return parser


def _speed(value: float) -> float | None:
    if value < 0 or value != value:
        raise UsageError(f"--speed must be 0 (unpaced) or positive, got {value}")
    return None if value == 0 else value


@contextlib.asynccontextmanager
async def _client(note: TextIO) -> AsyncIterator[object]:
    """The real API with ``CARTESIA_API_KEY``; otherwise an in-process twin (and say so)."""
    from ._client import AsyncCartesia

    if os.environ.get("CARTESIA_API_KEY"):
        client = AsyncCartesia()
        print(f"using the Cartesia API at {client.base_url}", file=note, flush=True)
        async with client:
            yield client
        return
    try:
        from .twin import serve

        twin_cm = serve()
        twin = await twin_cm.__aenter__()
    except ImportError as exc:
        raise UsageError(
            f"CARTESIA_API_KEY is not set and the local twin is not installed ({exc.name} "
            "is missing): pip install 'cartesia-stt-async[twin]', or set CARTESIA_API_KEY"
        ) from None
    try:
        print(
            f"CARTESIA_API_KEY is not set: using the local twin at {twin.base_url} "
            "(offline pocketsphinx recognizer, Pico voice)",
            file=note,
            flush=True,
        )
        async with AsyncCartesia(api_key=TWIN_KEY, base_url=twin.base_url) as client:
            yield client
    finally:
        await twin_cm.__aexit__(None, None, None)


async def _demo(texts: Sequence[str], speed: float | None, out: TextIO) -> int:
    from ._client import AsyncCartesia
    from .protocol.events import TranscriptEvent

    text = " ".join(texts) if texts else DEFAULT_TEXT
    utterances = [u for u in text.split(".") if re.search(r"\w", u)]
    print(f"Generating audio for: {text!r}", file=out, flush=True)
    async with _client(out) as client:
        assert isinstance(client, AsyncCartesia)
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=speed
        ) as conn:

            async def send_audio() -> None:
                for utterance in utterances:
                    response = await client.tts.generate(
                        model_id="sonic-latest",
                        transcript=utterance,
                        voice=DEMO_VOICE,
                        output_format={
                            "container": "raw",
                            "encoding": "pcm_s16le",
                            "sample_rate": 16000,
                        },
                        language="en",
                    )
                    await conn.send_audio(await response.read())
                    await conn.send("finalize")
                await conn.send("close")

            async def receive_events() -> None:
                async for event in conn:
                    if isinstance(event, TranscriptEvent) and event.is_final:
                        print(f"transcript | {event.text}", file=out, flush=True)
                    elif event.type == "flush_done":
                        print("flush_done |", file=out, flush=True)
                    elif event.type == "done":
                        print("done       |", file=out, flush=True)

            await asyncio.gather(send_audio(), receive_events())
        print(f"\nFull transcript: {conn.transcript.text!r}", file=out, flush=True)
    return 0


async def _transcribe(
    path: str,
    speed: float | None,
    every: float | None,
    as_json: bool,
    model: str,
    language: str | None,
    out: TextIO,
    note: TextIO,
) -> int:
    from ._client import AsyncCartesia
    from ._wavconvert import load_wav
    from .protocol.audio import AudioFormat
    from .protocol.events import UnknownEvent, encode_event

    if every is not None and not every > 0:
        raise UsageError(f"--finalize-every must be a positive number of seconds, got {every}")
    audio = load_wav(path)
    if audio.converted:
        print(f"converted {path}: {audio.converted}", file=note, flush=True)
    fmt = AudioFormat(audio.encoding, audio.sample_rate)
    step = len(audio.data) or fmt.sample_width
    if every is not None:
        step = max(1, int(every * fmt.sample_rate)) * fmt.sample_width
    async with _client(note) as client:
        assert isinstance(client, AsyncCartesia)
        async with client.stt.manual_finalize.websocket(
            model=model,
            encoding=audio.encoding,
            sample_rate=audio.sample_rate,
            language=language,
            speed=speed,
        ) as conn:

            async def send_audio() -> None:
                for i in range(0, len(audio.data), step):
                    await conn.send_audio(audio.data[i : i + step])
                    await conn.send("finalize")
                await conn.send("close")

            async def receive_events() -> None:
                async for event in conn:
                    if as_json:
                        line = (
                            json.dumps(event.data)
                            if isinstance(event, UnknownEvent)
                            else encode_event(event).decode()
                        )
                        out.write(line + "\n")
                        out.flush()

            await asyncio.gather(send_audio(), receive_events())
        if not as_json:
            print(conn.transcript.text, file=out, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "twin":
            from .twin import SphinxEngine, run_forever

            try:
                engine = SphinxEngine(max_sessions=args.max_sessions, workers=args.workers)
            except ImportError as exc:
                print(
                    f"cartesia-stt twin: the offline recognizer needs {exc.name}: "
                    "pip install 'cartesia-stt-async[twin]'",
                    file=sys.stderr,
                )
                return 1
            except ValueError as exc:
                print(f"cartesia-stt twin: {exc}", file=sys.stderr)
                return 2

            async def serve_twin() -> None:
                try:
                    await engine.prewarm(1)  # the first session need not wait for a decoder
                    await run_forever(args.host, args.port, engine, api_keys=args.api_keys)
                finally:
                    await engine.aclose()

            try:
                asyncio.run(serve_twin())
            except OSError as exc:
                print(
                    f"cartesia-stt twin: cannot serve on {args.host}:{args.port}: {exc}",
                    file=sys.stderr,
                )
                return 1
            return 0
        if args.command == "demo":
            return asyncio.run(_demo(args.text, _speed(args.speed), sys.stdout))
        if args.command == "transcribe":
            return asyncio.run(
                _transcribe(
                    args.file,
                    _speed(args.speed),
                    args.finalize_every,
                    args.json,
                    args.model,
                    args.language,
                    sys.stdout,
                    sys.stderr,
                )
            )
    except KeyboardInterrupt:
        return 130
    except (CartesiaSTTError, OSError) as exc:
        print(f"cartesia-stt {args.command}: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse enforces the sub-command
