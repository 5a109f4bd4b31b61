"""``conn.stream(...)``: a sender task and a receiver task joined by ``asyncio.gather``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Protocol

from ._sources import AudioSource, iter_audio
from .errors import UsageError
from .vad import VadFinalizer

if TYPE_CHECKING:
    from ._link import Link

__all__ = ["Sender", "run_stream"]


class Sender(Protocol):
    """What :func:`run_stream` sends through: a connection's public send methods."""

    async def send_audio(
        self, chunk: bytes | bytearray | memoryview, *, speed: float | None
    ) -> None: ...

    async def send(self, command: str) -> None: ...


async def run_stream(
    conn: Sender,
    link: Link,
    utterances: Iterable[AudioSource] | AsyncIterable[AudioSource],
    *,
    speed: float | None,
    finalize_each: bool,
    vad: VadFinalizer | None = None,
) -> None:
    """Stream ``utterances`` on ``conn`` (see :meth:`AsyncConnection.stream`).

    The sender queues each utterance's audio (paced at ``speed``), a ``finalize`` wherever
    ``vad`` says silence followed speech, and a ``finalize`` after each utterance (unless
    ``finalize_each`` is false), then ``close``, and gives the server ``close_timeout`` seconds
    from when it is written to end the session; the receiver waits until the link settles:
    the session's clean end (success), or its failure (raised). If either task fails, or the
    caller is cancelled, the other is cancelled, the socket is closed and the error propagates.
    The turn endpoint has no ``finalize``: its connection passes ``finalize_each=False``.
    """
    if not isinstance(finalize_each, bool):
        raise UsageError(f"finalize_each must be a bool, got {finalize_each!r}")
    if vad is not None and not isinstance(vad, VadFinalizer):
        raise UsageError(f"vad must be a VadFinalizer, got {type(vad).__name__}")
    link.check_usable()
    session = link.session
    fmt = session.format

    async def sender() -> None:
        async def one(source: AudioSource) -> None:
            async for chunk in iter_audio(source, fmt):
                if vad is None:
                    await conn.send_audio(chunk, speed=speed)
                    continue
                for piece, finalize in vad.split(chunk):
                    await conn.send_audio(piece, speed=speed)
                    if finalize:
                        await conn.send("finalize")
            if finalize_each:
                await conn.send("finalize")

        if isinstance(utterances, AsyncIterable):
            async for source in utterances:
                await one(source)
        else:
            for source in utterances:
                await one(source)
        await conn.send("close")
        # Bounded as aclose() is: a server that never ends the session fails the stream
        # (APITimeoutError) instead of hanging it.
        await link.wait_closed_answer()

    async def receiver() -> None:
        await link.wait_done()

    tasks = [
        asyncio.create_task(sender(), name="cartesia-stt-sender"),
        asyncio.create_task(receiver(), name="cartesia-stt-receiver"),
    ]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        link.failure.mark_told()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await link.abort()
        raise
