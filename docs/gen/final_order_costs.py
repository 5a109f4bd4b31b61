"""What each ``final_order`` costs when the server uses the other order (docs/reliability.md).

Three turns through the twin (``ScriptedEngine`` with replies keyed by each turn's audio, so a
replayed turn gets the same text), for every combination of:

* the twin's order: ``finals_first`` or ``flush_first``;
* the client's ``final_order``: ``finals_first``, ``flush_first`` or ``auto``;
* finalizes awaited one at a time, or pipelined (all three queued with ``finalize_nowait()``);
* a first turn with text, or a silent one.

Each combination runs once without faults (are the turns' texts right? how long does the
slowest ``finalize`` take?) and then once per drop point: the first connection closed with
1011 after its k-th event, k = 1..11 (are ``transcript.text`` and ``finals()`` still exact?).

Run: ``python docs/gen/final_order_costs.py`` (about two minutes; loopback only).
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Fault, Faults, ScriptedEngine, serve

ServerOrder = Literal["finals_first", "flush_first"]
ClientOrder = Literal["finals_first", "flush_first", "auto"]
SERVER_ORDERS: tuple[ServerOrder, ...] = ("finals_first", "flush_first")
CLIENT_ORDERS: tuple[ClientOrder, ...] = ("finals_first", "flush_first", "auto")

AUDIO = [bytes([k, 0]) * 1600 for k in (1, 2, 3)]  # three turns, 0.1 s each, distinct
REPLIES = [["Hello", " world."], [" Second."], [" Third."]]
DROP_POINTS = range(1, 12)


async def run(
    server: ServerOrder,
    client: ClientOrder,
    pipelined: bool,
    silent_first: bool,
    drop_after: int | None,
) -> tuple[list[str], bool, float]:
    """One session: (the turns' texts, whether transcript and finals() are exact, max wait)."""
    replies: list[list[str]] = [[] if silent_first and k == 0 else r for k, r in enumerate(REPLIES)]
    full = "".join("".join(r) for r in replies)
    faults = (
        Faults([Fault("close", connection=0, after_events=drop_after, code=1011)])
        if drop_after
        else None
    )
    engine = ScriptedEngine(
        [],
        by_audio={a: r for a, r in zip(AUDIO, replies, strict=True)},
        order=server,
    )
    waits: list[float] = []
    async with (
        serve(engine=engine, faults=faults) as twin,
        stt.AsyncCartesia(api_key="any", base_url=twin.base_url) as http,
        http.stt.manual_finalize.websocket(
            model="ink-2",
            encoding="pcm_s16le",
            sample_rate=16000,
            speed=None,
            initial_delay=0.01,
            final_order=client,
        ) as conn,
    ):
        finals: list[str] = []

        async def collect() -> None:
            async for delta in conn.finals():
                finals.append(delta)

        collector = asyncio.create_task(collect())
        texts = []
        if pipelined:
            turns = []
            for audio in AUDIO:
                await conn.send_audio(audio)
                turns.append(conn.finalize_nowait())
            start = time.monotonic()
            texts = [(await turn).text for turn in turns]
            waits.append(time.monotonic() - start)
        else:
            for audio in AUDIO:
                await conn.send_audio(audio)
                start = time.monotonic()
                texts.append((await conn.finalize()).text)
                waits.append(time.monotonic() - start)
    await collector
    exact = conn.transcript.text == full and "".join(finals) == full
    return texts, exact, max(waits)


async def main() -> None:
    print(
        "| twin | final_order | finalizes | first turn | turns right | slowest finalize | "
        "drop points that lost or repeated text |"
    )
    print("|---|---|---|---|---|---|---|")
    for server in SERVER_ORDERS:
        for client in CLIENT_ORDERS:
            for pipelined in (False, True):
                for silent in (False, True):
                    texts, _, wait = await run(server, client, pipelined, silent, None)
                    expected = [
                        "" if silent and k == 0 else "".join(r) for k, r in enumerate(REPLIES)
                    ]
                    bad = [
                        k
                        for k in DROP_POINTS
                        if not (await run(server, client, pipelined, silent, k))[1]
                    ]
                    print(
                        f"| {server} | {client} | {'pipelined' if pipelined else 'awaited'} | "
                        f"{'silent' if silent else 'speech'} | {texts == expected} {texts} | "
                        f"{wait:.2f} s | {len(bad)} of {len(DROP_POINTS)} {bad} |",
                        flush=True,
                    )


if __name__ == "__main__":
    asyncio.run(main())
