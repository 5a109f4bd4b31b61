"""The ``cartesia-stt`` command.

* ``cartesia-stt demo [TEXT ...]``: synthesize sentences, stream them in paced 100 ms frames,
  ``finalize`` after each, ``close``, print each final delta and the full transcript.
* ``cartesia-stt transcribe FILE|DIR ... [--format text|json|srt|vtt] [--out DIR] [--jobs N]``:
  every file through the batch endpoint, N at a time, each result written next to its file
  (or under ``--out``); a summary names the files that failed (``_cli_files``).
* ``cartesia-stt transcribe --realtime FILE.wav [--speed X] [--finalize-every S | --vad]
  [--json]``: stream one WAV file over the real-time socket and print its transcript
  (``--speed``, ``--finalize-every``, ``--vad`` and ``--json`` imply ``--realtime``).
  With ``--turns``, over the turn-detection socket: each turn printed as it ends (``_cli_turns``).
* ``cartesia-stt mic [--vad | --turns]``: push-to-talk from the microphone (the ``mic`` extra);
  ``--turns``: hands-free, the server detects the turns.
* ``cartesia-stt twin [--host H] [--port P] [--certfile F [--keyfile K]]``: serve the local twin
  (over TLS with a certificate).

``demo``, ``transcribe`` and ``mic`` use the Cartesia API when ``CARTESIA_API_KEY`` is set,
and otherwise start the local twin in-process (offline recognizer) and say so.

Exit codes: 0 done, 1 the session or the server failed (for ``transcribe FILE...``: any file
failed), 2 a usage error (bad arguments, a missing extra, no microphone), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from ._cli_files import FORMATS, BatchResult, Format
from ._cli_mic import KeySource, MicOptions, StreamFactory, sounddevice_stream, stdin_keys
from ._cli_turns import check_turn_options, json_line, stream_turns
from ._install import install_hint
from ._version import __version__
from .errors import CartesiaSTTError, InvalidAudioError, UsageError
from .protocol.checks import check_int, check_number, check_speed
from .vad import VadBackend, VadFinalizer

if TYPE_CHECKING:
    from .audio import WavAudio

__all__ = ["main"]

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. Sandy sells seashells on the sea shore."
)
# The seed example's voice (a Cartesia voice id); the twin speaks with its offline voice.
DEMO_VOICE = {"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"}
TWIN_KEY = "local-twin"


class _Parser(argparse.ArgumentParser):
    """argparse with errors that say what to do: the top level lists its commands."""

    commands: list[tuple[str, str]] | None = None

    def error(self, message: str) -> NoReturn:
        lines = [f"{self.prog}: error: {message}"]
        if self.commands:
            lines.append("commands:")
            width = max(len(name) for name, _ in self.commands)
            lines += [f"  {name:<{width}}  {text}" for name, text in self.commands]
            lines.append(f"run '{self.prog} COMMAND --help' for a command's options")
        else:
            lines.append(f"run '{self.prog} --help' for the options")
        self.print_usage(sys.stderr)
        self.exit(2, "\n".join(lines) + "\n")


def _parser() -> _Parser:
    parser = _Parser(
        prog="cartesia-stt",
        description="Cartesia realtime STT (manual finalize): asyncio client, local twin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: list[tuple[str, str]] = []

    def add(name: str, *, help: str, description: str) -> argparse.ArgumentParser:
        commands.append((name, help))
        return sub.add_parser(name, help=help, description=description)

    twin = add(
        "twin",
        help="serve the local twin of the Cartesia STT WebSocket API",
        description="Serve /stt/websocket and /tts/bytes locally. Point a client at it with "
        "base_url=http://HOST:PORT (or CARTESIA_BASE_URL); with --certfile, https://HOST:PORT.",
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
    twin.add_argument(
        "--certfile",
        default=None,
        help="serve TLS (https:// and wss://) with this PEM certificate chain",
    )
    twin.add_argument(
        "--keyfile",
        default=None,
        help="the certificate's private key (default: in --certfile)",
    )

    demo = add(
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

    tr = add(
        "transcribe",
        help="transcribe audio files (batch), or stream one WAV file (--realtime)",
        description="Send each audio file (and each one found under a directory) to the batch "
        "endpoint, a few at a time, and write its transcript next to it (or under --out) as "
        "text, JSON, SRT or WebVTT. With --realtime, stream one WAV file over the real-time "
        "socket instead and print its transcript. Uses the Cartesia API when CARTESIA_API_KEY "
        "is set, otherwise the local twin (offline). Exit status: 0 all done, 1 a file failed, "
        "2 a usage error, 130 interrupted.",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", help="audio files and directories")
    tr.add_argument(
        "--format",
        choices=list(FORMATS),
        default=None,
        help="what to write for each file: text (.txt, the default), json, srt or vtt",
    )
    tr.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write the results under DIR (default: next to each file)",
    )
    tr.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"files transcribed at once (default {DEFAULT_JOBS})",
    )
    tr.add_argument(
        "--realtime",
        action="store_true",
        help="stream one WAV file over the real-time socket and print its transcript "
        "(implied by --speed, --finalize-every, --vad and --json)",
    )
    tr.add_argument(
        "--speed",
        type=float,
        default=None,
        help="with --realtime: pacing, 1.0 = real time (default), 0 = unpaced",
    )
    tr.add_argument(
        "--finalize-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --realtime: finalize after every SECONDS of audio (default: once, at the end)",
    )
    tr.add_argument(
        "--vad",
        action="store_true",
        help="with --realtime: finalize after each pause in the speech (voice activity detection)",
    )
    _vad_options(tr)
    tr.add_argument(
        "--json", action="store_true", help="with --realtime: print every event as a JSON line"
    )
    tr.add_argument(
        "--turns",
        action="store_true",
        help="with --realtime: the server detects the turns (turn detection, English); print "
        "each turn as it ends, then the transcript",
    )
    tr.add_argument(
        "--model", default=None, help="model (default ink-whisper; ink-2 with --realtime)"
    )
    tr.add_argument("--language", default=None, help="language code (default: the server's)")

    mic = add(
        "mic",
        help="push-to-talk from the microphone: Enter to talk, Enter to finalize",
        description="Stream the microphone (needs the mic extra: "
        f"{install_hint('mic')}). Press Enter to start talking and Enter again to "
        "finalize; with --vad, finalize happens after each pause instead; with --turns, "
        "hands-free: the server detects each turn. Ctrl-C closes the "
        "session and prints the full transcript. Uses the Cartesia API when "
        "CARTESIA_API_KEY is set, otherwise the local twin (offline).",
    )
    mic.add_argument("--vad", action="store_true", help="finalize after each pause instead")
    mic.add_argument(
        "--turns",
        action="store_true",
        help="hands-free: the server detects the turns (turn detection, English); prints "
        "'barge-in' when a turn starts and its text when it ends",
    )
    _vad_options(mic)
    mic.add_argument(
        "--sample-rate", type=int, default=16000, help="capture rate in Hz (default 16000)"
    )
    mic.add_argument("--device", default=None, help="input device name or index (default: system)")
    mic.add_argument("--model", default="ink-2", help="model (default ink-2)")
    mic.add_argument("--language", default=None, help="language code (default: the server's)")

    parser.commands = commands
    return parser


def _vad_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--silence-ms",
        type=int,
        default=600,
        help="with --vad: silence that ends an utterance, in ms (default 600)",
    )
    parser.add_argument(
        "--vad-backend",
        choices=["auto", "webrtc", "energy"],
        default="auto",
        help="with --vad: webrtc (the vad extra), energy (no dependency) or auto (default)",
    )


def _speed(value: float) -> float | None:
    """``--speed``: 0 is unpaced (the command line's spelling of ``speed=None``)."""
    if value == 0:
        return None
    return check_speed(value, "--speed", wanted="0 (unpaced) or positive")


def _load_wav(path: str) -> WavAudio:
    """A WAV file as ``transcribe`` streams it: mono, in an encoding the API takes (see
    :func:`cartesia_stt_async.audio.load_wav`), at a sample rate the API takes.

    Raises:
        InvalidAudioError: Not a WAV file, an unreadable format, or a sample rate outside
            8000-48000 Hz.
    """
    from .audio import load_wav
    from .protocol.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    audio = load_wav(path)
    if not MIN_SAMPLE_RATE <= audio.sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"{path}: {audio.sample_rate} Hz is outside the {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} "
            "Hz the API takes; resample it first (cartesia_stt_async.audio.convert_wav)"
        )
    return audio


@contextlib.asynccontextmanager
async def _client(note: TextIO) -> AsyncIterator[object]:
    """The real API with ``CARTESIA_API_KEY``; otherwise an in-process twin (and say so)."""
    from ._client import AsyncCartesia
    from .protocol.commands import DEFAULT_BASE_URL

    if os.environ.get("CARTESIA_API_KEY"):
        client = AsyncCartesia()
        if client.base_url.rstrip("/") == DEFAULT_BASE_URL:
            where = "the Cartesia API"
        else:  # CARTESIA_BASE_URL: a twin, a proxy, a staging server: not "the Cartesia API"
            where = "the server from CARTESIA_BASE_URL"
        print(f"using {where} at {client.base_url}", file=note, flush=True)
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
            f"is missing): {install_hint('twin')}, or set CARTESIA_API_KEY"
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
    if not utterances:
        raise UsageError(
            f"nothing to say in {text!r}: give some words, or no TEXT for the default sentences"
        )
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
    vad: VadOptions | None = None,
    turns: bool = False,
) -> int:
    from ._client import AsyncCartesia
    from .protocol.audio import AudioFormat
    from .vad import VadFinalizer

    if turns:
        check_turn_options(**{"--finalize-every": every, "--vad": vad, "--language": language})
    if every is not None:
        check_number(
            "--finalize-every", every, low=0, strict=True, wanted="a positive number of seconds"
        )
    if every is not None and vad is not None:
        raise UsageError("--vad and --finalize-every are two ways to finalize: choose one")
    audio = _load_wav(path)
    finalizer = (
        VadFinalizer(
            audio.encoding, audio.sample_rate, silence_ms=vad.silence_ms, backend=vad.backend
        )
        if vad is not None
        else None
    )
    if audio.converted:
        print(f"converted {path}: {audio.converted}", file=note, flush=True)
    fmt = AudioFormat(audio.encoding, audio.sample_rate)
    step = len(audio.data) or fmt.sample_width
    if every is not None:
        step = max(1, int(every * fmt.sample_rate)) * fmt.sample_width
    async with _client(note) as client:
        assert isinstance(client, AsyncCartesia)
        if turns:
            text = await stream_turns(
                client, audio, model=model, speed=speed, as_json=as_json, out=out
            )
            if not as_json:
                print(text, file=out, flush=True)
            return _no_speech(text, path, fmt.duration(len(audio.data)), note)
        async with client.stt.manual_finalize.websocket(
            model=model,
            encoding=audio.encoding,
            sample_rate=audio.sample_rate,
            language=language,
            speed=speed,
        ) as conn:

            async def send_audio() -> None:
                if finalizer is None:
                    for i in range(0, len(audio.data), step):
                        await conn.send_audio(audio.data[i : i + step])
                        await conn.send("finalize")
                else:
                    # Feed the VAD as a live stream would (100 ms at a time); send the audio
                    # up to each offset it names, then finalize.
                    chunk = fmt.frame_bytes(100)
                    for i in range(0, len(audio.data), chunk):
                        for piece, finalize in finalizer.split(audio.data[i : i + chunk]):
                            await conn.send_audio(piece)
                            if finalize:
                                await conn.send("finalize")
                await conn.send("close")

            async def receive_events() -> None:
                async for event in conn:
                    if as_json:
                        out.write(json_line(event) + "\n")
                        out.flush()

            await asyncio.gather(send_audio(), receive_events())
        if not as_json:
            print(conn.transcript.text, file=out, flush=True)
    return _no_speech(conn.transcript.text, path, fmt.duration(len(audio.data)), note)


def _no_speech(text: str, path: str, seconds: float, note: TextIO) -> int:
    """Say so when a streamed file gave no text (exit code 0: not an error)."""
    if not text.strip():
        print(
            f"cartesia-stt transcribe: no speech was recognized in {path} "
            f"({seconds:.1f} s of audio)",
            file=note,
            flush=True,
        )
    return 0


DEFAULT_JOBS = 4
"""Files transcribed at once by default: under every plan's concurrency limit (Free: 8)."""


def _transcribe_command(args: argparse.Namespace) -> int:
    """``transcribe``: the batch run over many files, or ``--realtime`` over one.

    Raises:
        UsageError: Options of one path given to the other, or several files with --realtime.
    """
    realtime = (
        args.realtime
        or args.speed is not None
        or args.finalize_every is not None
        or args.vad
        or args.json
        or args.turns
    )
    if realtime:
        given = [
            name
            for name, value in (
                ("--format", args.format),
                ("--out", args.out),
                ("--jobs", args.jobs),
            )
            if value is not None
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)}: for the batch run; --realtime (or --speed, "
                "--finalize-every, --vad, --json, --turns) streams one file and prints its "
                "transcript"
            )
        if len(args.files) != 1:
            raise UsageError(
                f"--realtime streams one WAV file, got {len(args.files)}: leave out --realtime "
                "(and --speed, --finalize-every, --vad, --json, --turns) to transcribe many"
            )
        return asyncio.run(
            _transcribe(
                args.files[0],
                _speed(1.0 if args.speed is None else args.speed),
                args.finalize_every,
                args.json,
                args.model or "ink-2",
                args.language,
                sys.stdout,
                sys.stderr,
                VadOptions(args.silence_ms, args.vad_backend) if args.vad else None,
                args.turns,
            )
        )
    jobs = check_int("--jobs", DEFAULT_JOBS if args.jobs is None else args.jobs, low=1)
    return asyncio.run(
        _files(
            args.files,
            args.format or "text",
            None if args.out is None else Path(args.out),
            jobs,
            args.model or "ink-whisper",
            args.language,
            sys.stderr,
            tty=sys.stderr.isatty(),
        )
    )


async def _files(
    inputs: Sequence[str],
    fmt: Format,
    out: Path | None,
    jobs: int,
    model: str,
    language: str | None,
    note: TextIO,
    *,
    tty: bool,
) -> int:
    """``transcribe FILE...``: every file through the batch endpoint (see ``_cli_files``)."""
    from ._cli_files import Outcome, Progress, plan, run_jobs, summary
    from ._client import AsyncCartesia
    from .protocol.batch import check_transcribe

    # Word timings only when the format shows them (the text format does not).
    granularities = None if fmt == "text" else ["word"]
    # A bad --model or --language would fail every file the same way: a usage error, first.
    check_transcribe(model=model, language=language, timestamp_granularities=granularities)
    planned, empty = plan(inputs, fmt, out)
    for arg in empty:
        print(f"cartesia-stt transcribe: no audio files in {arg}", file=note, flush=True)
    outcome = Outcome(len(planned))
    async with _client(note) as client:
        assert isinstance(client, AsyncCartesia)

        async def transcribe(path: Path) -> BatchResult:
            return await client.stt.transcribe(
                file=path, model=model, language=language, timestamp_granularities=granularities
            )

        progress = Progress(note, len(planned), tty=tty)
        try:
            await run_jobs(
                planned, transcribe, fmt, concurrency=jobs, progress=progress, outcome=outcome
            )
        except asyncio.CancelledError:
            progress.close()
            for line in summary(outcome, planned, interrupted=True):
                print(line, file=note, flush=True)
            raise
        progress.close()
    for line in summary(outcome, planned, interrupted=False):
        print(line, file=note, flush=True)
    return 1 if outcome.failed else 0


@dataclass(frozen=True)
class VadOptions:
    """``--vad`` and its options."""

    silence_ms: int
    backend: VadBackend


async def _mic(
    options: MicOptions,
    factory: StreamFactory,
    keys: KeySource,
    out: TextIO,
    note: TextIO,
) -> int:
    from ._cli_mic import Microphone, run_mic
    from ._client import AsyncCartesia

    if options.turns:
        check_turn_options(**{"--vad": options.vad, "--language": options.language})
    if options.vad:  # check the VAD options before opening anything
        VadFinalizer(
            "pcm_s16le",
            options.sample_rate,
            silence_ms=options.silence_ms,
            backend=options.vad_backend,
        )
    microphone = Microphone(factory, options)  # no microphone: a usage error, before connecting
    try:
        async with _client(note) as client:
            assert isinstance(client, AsyncCartesia)
            await run_mic(client, options, microphone, keys=keys, out=out, note=note)
    finally:
        microphone.stream.close()
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    mic_stream: StreamFactory = sounddevice_stream,
    mic_keys: KeySource = stdin_keys,
) -> int:
    """Run the command line; return the process exit code.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        mic_stream: How ``mic`` opens the microphone (sounddevice; tests pass a fake).
        mic_keys: How ``mic`` reads Enter presses (standard input; tests pass their own).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a command is required")
    try:
        if args.command == "twin":
            return _twin(
                args.host,
                args.port,
                args.api_keys,
                args.max_sessions,
                args.workers,
                args.certfile,
                args.keyfile,
            )
        if args.command == "demo":
            return asyncio.run(_demo(args.text, _speed(args.speed), sys.stdout))
        if args.command == "transcribe":
            return _transcribe_command(args)
        if args.command == "mic":
            options = MicOptions(
                sample_rate=args.sample_rate,
                device=_device(args.device),
                vad=args.vad,
                silence_ms=args.silence_ms,
                vad_backend=args.vad_backend,
                model=args.model,
                language=args.language,
                turns=args.turns,
            )
            return asyncio.run(_mic(options, mic_stream, mic_keys, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        print(f"cartesia-stt {args.command}: {exc}", file=sys.stderr)
        return 2
    except (CartesiaSTTError, OSError) as exc:
        print(f"cartesia-stt {args.command}: {_for_the_shell(exc)}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse checks


# A certificate the CLI cannot verify: what a shell user can do (no Python argument to pass).
_SHELL_TRUST_HINT = (
    "If the server uses a private CA or a self-signed certificate, trust it with "
    "SSL_CERT_FILE=ca.pem in the environment (verification is never turned off)"
)


def _for_the_shell(exc: BaseException) -> str:
    """An error's text for a command-line user: a TLS failure's remedy is an environment
    variable there, not the ``ssl=`` argument the library's message names."""
    from ._translate import TRUST_HINT

    return str(exc).replace(TRUST_HINT, _SHELL_TRUST_HINT)


def _device(value: str | None) -> str | int | None:
    """``--device``: an index when it is a number, else a name."""
    if value is not None and value.isdigit():
        return int(value)
    return value


def _server_tls(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The twin's TLS context from ``--certfile``/``--keyfile``, or ``None`` (plain).

    Raises:
        UsageError: For ``--keyfile`` without ``--certfile``, or files that cannot be loaded
            as a certificate chain and its key (naming the file and why).
    """
    if certfile is None:
        if keyfile is not None:
            raise UsageError("--keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        if keyfile is None:
            # OpenSSL's "[SSL] PEM lib": the file has a certificate but no key beside it.
            why = "it holds no private key: pass the key with --keyfile (or one PEM with both)"
        else:
            why = f"the certificate and --keyfile {keyfile!r} do not load as a pair ({exc})"
        error = UsageError(f"cannot load --certfile {certfile!r}: {why}")
    except OSError as exc:
        error = UsageError(f"cannot load --certfile {certfile!r}: {exc}")
    else:
        return context
    raise error  # outside the except block: no foreign __context__


def _twin(
    host: str,
    port: int,
    api_keys: list[str] | None,
    max_sessions: int,
    workers: int,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> int:
    """``cartesia-stt twin``: serve until interrupted; one-line errors, never a traceback."""
    if not 0 <= port <= 65535:
        print(f"cartesia-stt twin: --port must be between 0 and 65535, got {port}", file=sys.stderr)
        return 2
    try:
        tls = _server_tls(certfile, keyfile)
    except UsageError as exc:
        print(f"cartesia-stt twin: {exc}", file=sys.stderr)
        return 2
    from .twin import SphinxEngine, run_forever

    try:
        engine = SphinxEngine(max_sessions=max_sessions, workers=workers)
    except ImportError as exc:
        print(
            f"cartesia-stt twin: the offline recognizer needs {exc.name}: {install_hint('twin')}",
            file=sys.stderr,
        )
        return 1
    except ValueError as exc:
        print(f"cartesia-stt twin: {exc}", file=sys.stderr)
        return 2

    async def serve_twin() -> None:
        try:
            await run_forever(host, port, engine, api_keys=api_keys, ssl=tls, prewarm=1)
        finally:
            await engine.aclose()

    try:
        asyncio.run(serve_twin())
    except (OSError, OverflowError) as exc:
        print(f"cartesia-stt twin: cannot serve on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
