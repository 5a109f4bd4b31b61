"""``cartesia-stt mic``: push-to-talk (or VAD finalize) from the local microphone.

Push-to-talk: Enter starts talking (the microphone's audio goes out), Enter again sends
``finalize`` (the audio stops going out until the next Enter). With ``vad``, the audio always
goes out and :class:`~cartesia_stt_async.vad.VadFinalizer` sends ``finalize`` after a pause.
Ctrl-C (or end of input, in push-to-talk) ends the session cleanly: ``close``, every final
transcript, then the full transcript.

The microphone is reached through a stream factory (sounddevice by default, the ``mic``
extra), and Enter presses through a key source (a thread reading standard input by default),
so tests can drive both. Audio blocks and key presses reach the event loop through one queue,
in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ._cli_turns import show_signal
from ._install import install_hint
from .errors import UsageError
from .protocol.events import TranscriptEvent
from .vad import VadBackend, VadFinalizer

if TYPE_CHECKING:
    from ._client import AsyncCartesia

__all__ = [
    "InputStream",
    "MicOptions",
    "Microphone",
    "StreamFactory",
    "run_mic",
    "sounddevice_stream",
    "stdin_keys",
]

BLOCK_MS = 100


class InputStream(Protocol):
    """What the session needs of a microphone stream (sounddevice's ``RawInputStream``)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


StreamFactory = Callable[[int, int, "str | int | None", Callable[[bytes], None]], InputStream]
"""``factory(sample_rate, blocksize, device, on_audio)``: an unstarted mono 16-bit stream that
calls ``on_audio(pcm_s16le_bytes)`` from its own thread for every block.

Raises:
    UsageError: When no microphone can be opened (no library, no device), in one line.
"""

KeySource = Callable[[Callable[[str | None], None]], None]
"""``keys(post)``: runs in a daemon thread; calls ``post(line)`` per Enter, ``post(None)`` at the
end of input."""


@dataclass(frozen=True)
class MicOptions:
    """The ``mic`` command's options."""

    sample_rate: int = 16000
    device: str | int | None = None
    vad: bool = False
    silence_ms: int = 600
    vad_backend: VadBackend = "auto"
    model: str = "ink-2"
    language: str | None = None
    turns: bool = False


class Microphone:
    """An opened (not yet started) input stream; its blocks go to the current listener.

    Opened before connecting, so that a missing microphone is reported at once.

    Raises:
        UsageError: From the factory, when no microphone can be opened.
    """

    def __init__(self, factory: StreamFactory, options: MicOptions) -> None:
        self.blocksize = options.sample_rate * BLOCK_MS // 1000
        self._listener: Callable[[bytes], None] | None = None
        self.stream = factory(options.sample_rate, self.blocksize, options.device, self._deliver)

    def _deliver(self, data: bytes) -> None:
        listener = self._listener
        if listener is not None:
            listener(data)

    def listen(self, listener: Callable[[bytes], None] | None) -> None:
        """Send every block to ``listener`` from now on (``None``: drop them)."""
        self._listener = listener


def sounddevice_stream(
    sample_rate: int, blocksize: int, device: str | int | None, on_audio: Callable[[bytes], None]
) -> InputStream:
    """The default :data:`StreamFactory`: a sounddevice ``RawInputStream`` (the ``mic`` extra).

    Raises:
        UsageError: Without sounddevice, without the PortAudio library, or without an input
            device, with what to do about it.
    """
    try:
        sd = importlib.import_module("sounddevice")
    except ImportError:
        raise UsageError(
            f"the microphone needs the sounddevice package: {install_hint('mic')}"
        ) from None
    except OSError as exc:  # sounddevice raises OSError when PortAudio is missing
        raise UsageError(
            f"the microphone needs the PortAudio library ({exc}): "
            "install it (Debian/Ubuntu: apt install libportaudio2)"
        ) from None

    def callback(indata: Any, frames: int, time: Any, status: Any) -> None:
        on_audio(bytes(indata))

    try:
        sd.query_devices(device, kind="input")
        stream: InputStream = sd.RawInputStream(
            samplerate=sample_rate,
            blocksize=blocksize,
            device=device,
            channels=1,
            dtype="int16",
            callback=callback,
        )
    except (sd.PortAudioError, ValueError) as exc:
        where = f" {device!r}" if device is not None else ""
        raise UsageError(f"no usable input device{where}: {exc}") from None
    return stream


def stdin_keys(post: Callable[[str | None], None]) -> None:
    """The default :data:`KeySource`: lines of standard input."""
    for line in sys.stdin:
        post(line)
    post(None)


class _Inbox:
    """The event loop's side of one microphone session.

    Audio blocks (from the sound card's thread) and key presses (from the key source's
    thread) arrive in one queue, in the order they happened; the first Ctrl-C sets
    :attr:`stop` (a second one interrupts the clean ending too).

    Attributes:
        microphone: The opened microphone; started and stopped by :meth:`run`.
        keys: Delivers Enter presses (from :meth:`run` on).
        note: Where prompts and status go.
    """

    def __init__(self, microphone: Microphone, keys: KeySource, note: TextIO) -> None:
        self.microphone = microphone
        self.keys = keys
        self.note = note
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, bytes | str | None]] = asyncio.Queue()
        self.stop = asyncio.Event()

    def post_audio(self, data: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the session is over
            self.loop.call_soon_threadsafe(self.queue.put_nowait, ("audio", data))

    def post_key(self, line: str | None) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, ("key", line))

    def on_sigint(self) -> None:
        self.loop.remove_signal_handler(signal.SIGINT)
        self.stop.set()

    @contextlib.contextmanager
    def sigint(self) -> Iterator[None]:
        """Route Ctrl-C to :meth:`on_sigint` while inside (where the platform allows it)."""
        handled = _install_sigint(self.loop, self.on_sigint)
        try:
            yield
        finally:
            if handled:
                with contextlib.suppress(ValueError, RuntimeError):
                    self.loop.remove_signal_handler(signal.SIGINT)

    async def run(
        self, show: Coroutine[Any, Any, None], pump: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """Run one session's tasks: ``show`` (the server's side) and ``pump`` (the queue to
        the server) with the microphone on, until Ctrl-C, ``pump`` ends or fails, or ``show``
        ends (the session is over).

        Returns:
            The ``show`` task, still running: await it after leaving the session's
            ``async with`` (which drains the last events).

        Raises:
            CartesiaSTTError: A send failed (from ``pump``).
        """
        microphone = self.microphone
        shower = asyncio.create_task(show)
        pumper = asyncio.create_task(pump)
        try:
            threading.Thread(target=self.keys, args=(self.post_key,), daemon=True).start()
            microphone.listen(self.post_audio)
            microphone.stream.start()
            stopped = asyncio.create_task(self.stop.wait())
            try:
                # Ctrl-C; a send that failed; or the session over (the server ended it).
                await asyncio.wait({stopped, pumper, shower}, return_when=asyncio.FIRST_COMPLETED)
                if pumper.done():
                    pumper.result()  # a send failed: raise it
            finally:
                microphone.stream.stop()
                microphone.listen(None)
                stopped.cancel()
                pumper.cancel()
                await asyncio.gather(stopped, pumper, return_exceptions=True)
            print("closing: waiting for the last transcript...", file=self.note, flush=True)
        except BaseException:
            shower.cancel()
            await asyncio.gather(shower, return_exceptions=True)
            raise
        return shower


async def run_mic(
    client: AsyncCartesia,
    options: MicOptions,
    microphone: Microphone,
    *,
    keys: KeySource,
    out: TextIO,
    note: TextIO,
) -> str:
    """Run one microphone session until Ctrl-C (or end of input in push-to-talk).

    Args:
        client: The client to open the session with.
        options: Sample rate, VAD, turns and model options.
        microphone: The opened microphone; started and stopped here (the caller closes it).
        keys: Delivers Enter presses.
        out: Where the transcript goes.
        note: Where prompts and status go.

    Returns:
        The full transcript.

    Raises:
        UsageError: For VAD options that cannot work (``--vad-backend webrtc`` without the
            ``vad`` extra, ...).
        CartesiaSTTError: If the session fails.
    """
    inbox = _Inbox(microphone, keys, note)
    with inbox.sigint():
        session = _hands_free if options.turns else _push_to_talk
        text = await session(client, options, inbox, out)
    print(f"\nFull transcript: {text!r}", file=out, flush=True)
    return text


async def _push_to_talk(
    client: AsyncCartesia, options: MicOptions, inbox: _Inbox, out: TextIO
) -> str:
    """Push-to-talk (Enter, Enter) or ``--vad``, on ``manual_finalize``; the transcript."""
    note = inbox.note
    vad = (
        VadFinalizer(
            "pcm_s16le",
            options.sample_rate,
            silence_ms=options.silence_ms,
            backend=options.vad_backend,
        )
        if options.vad
        else None
    )
    async with client.stt.manual_finalize.websocket(
        model=options.model,
        encoding="pcm_s16le",
        sample_rate=options.sample_rate,
        language=options.language,
        speed=None,  # the microphone paces the audio
    ) as conn:

        async def show() -> None:
            async for event in conn:
                if isinstance(event, TranscriptEvent) and event.is_final:
                    print(f"transcript | {event.text}", file=out, flush=True)

        async def pump() -> None:
            talking = False
            while True:
                kind, item = await inbox.queue.get()
                if kind == "key":
                    if item is None:  # end of input
                        if vad is None:
                            inbox.stop.set()
                        continue
                    if vad is not None:
                        continue
                    talking = not talking
                    if talking:
                        print("talking... (Enter to finalize)", file=note, flush=True)
                    else:
                        await conn.send("finalize")
                        print("finalized (Enter to talk again)", file=note, flush=True)
                    continue
                assert isinstance(item, bytes)
                if vad is None:
                    if talking:
                        await conn.send_audio(item)
                    continue
                for piece, finalize in vad.split(item):
                    await conn.send_audio(piece)
                    if finalize:
                        await conn.send("finalize")

        if vad is None:
            hint = "Press Enter to talk, Enter again to finalize; Ctrl-C to quit."
        else:
            hint = f"Listening: finalize after {options.silence_ms} ms of silence "
            hint += f"({vad.backend} VAD); Ctrl-C to quit."
        print(hint, file=note, flush=True)
        shower = await inbox.run(show(), pump())
    await shower  # leaving the block drained to 'done': the events have ended
    return conn.transcript.text


async def _hands_free(
    client: AsyncCartesia, options: MicOptions, inbox: _Inbox, out: TextIO
) -> str:
    """``mic --turns``: every block goes out; the server decides the turns (no key needed).

    Prints ``barge-in | turn N`` when a turn starts and ``turn N | TEXT`` when it ends
    (:func:`~cartesia_stt_async._cli_turns.show_signal`); Enter is ignored, Ctrl-C closes
    the session (an open turn still gets its ``turn.end``). Returns the transcript.
    """
    async with client.stt.auto_finalize.websocket(
        model=options.model,
        encoding="pcm_s16le",
        sample_rate=options.sample_rate,
        speed=None,  # the microphone paces the audio
        fill_silence=False,  # and keeps it flowing, silence included
    ) as conn:

        async def show() -> None:
            # The first task inbox.run starts: it listens before the first block goes out.
            async with contextlib.aclosing(conn.signals()) as signals:
                # signals() ends by raising a server error event that ended the session.
                async for item in signals:
                    show_signal(item, out, inbox.note)

        async def pump() -> None:
            while True:
                kind, item = await inbox.queue.get()
                if kind == "audio":
                    assert isinstance(item, bytes)
                    await conn.send_audio(item)

        hint = "Listening hands-free: the server detects the turns; Ctrl-C to quit."
        print(hint, file=inbox.note, flush=True)
        shower = await inbox.run(show(), pump())
    await shower  # the signals end with the session
    return conn.transcript.text


def _install_sigint(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> bool:
    """Route Ctrl-C to ``handler`` (only possible on the main thread, off Windows)."""
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True
