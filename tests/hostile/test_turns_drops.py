"""Reconnect with replay on the turn endpoint: a drop (TCP abort, the client sees 1006) at every
point of a turn, and what the user sees across it (docs/turns.md, "Across a reconnect").

The client sends 1.5 s of speech; the first socket answers up to the drop point and aborts.
The second socket must hear the replay (the newest 500 ms of audio while no turn was open,
nothing once a turn ended: protocol/turns.py rule 9), then answers the rest of the turn.
Across the drop: ``turns()`` yields every turn once, a barge-in is signalled once per turn, a
preflight standing at the drop is not issued twice, and the transcript holds each ``turn.end``
text once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

import cartesia_stt_async as stt

from .conftest import bounded, pcm
from .turns_peer import TurnsConn, open_turns, turns_server

pytestmark = [pytest.mark.both_loops, pytest.mark.asyncio]

_T = TypeVar("_T")

SPEECH = b"".join(pcm(3200, v) for v in range(1, 16))  # 1.5 s, each 100 ms frame distinct
PREROLL = 16000  # 500 ms of pcm_s16le at 16 kHz
Events = tuple[tuple[str, str | None] | str, ...]


@dataclass(frozen=True)
class Drop:
    """One drop point: what the first socket says before it drops, what the second says."""

    name: str
    before: Events
    after: Events
    texts: list[str]
    preflights: list[tuple[str, str]]
    close_first: bool = False
    replay: bytes = SPEECH[-PREROLL:]  # the newest 500 ms: the open turn's onset


DROPS = [
    Drop("before_start", (), ("turn.start", ("turn.end", "A.")), ["A."], [("A.", "confirmed")]),
    Drop(
        "mid_update",
        ("turn.start", ("turn.update", "a")),
        ("turn.start", ("turn.update", "a"), ("turn.update", "a b"), ("turn.end", "a b")),
        ["a b"],
        [("a b", "confirmed")],
    ),
    Drop(
        "after_eager_end",
        ("turn.start", ("turn.eager_end", "e")),
        ("turn.start", ("turn.eager_end", "e"), ("turn.end", "e")),
        ["e"],
        [("e", "confirmed")],
    ),
    Drop(
        "after_resume",
        ("turn.start", ("turn.eager_end", "r"), "turn.resume"),
        ("turn.start", ("turn.update", "r s"), ("turn.end", "r s")),
        ["r s"],
        [("r", "withdrawn"), ("r s", "confirmed")],
    ),
    Drop(
        "after_end",
        ("turn.start", ("turn.end", "x")),
        (),
        ["x"],
        [("x", "confirmed")],
        replay=b"",  # all of it was answered by turn.end: replaying it could end it twice
    ),
    Drop(
        "during_close",
        ("turn.start", ("turn.update", "z")),
        ("turn.start", ("turn.end", "z.")),
        ["z."],
        [("z.", "confirmed")],
        close_first=True,
    ),
]


async def collect(items: AsyncIterator[_T]) -> list[_T]:
    return [item async for item in items]


@pytest.mark.parametrize("drop", DROPS, ids=[d.name for d in DROPS])
async def test_a_drop_loses_no_turn_and_repeats_none(drop: Drop) -> None:
    async def first(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(len(SPEECH))
        if drop.close_first:
            await conn.command("close")
        await conn.events(*drop.before)
        await asyncio.sleep(0.05)  # the events reach the client before the drop
        conn.abort()

    async def second(conn: TurnsConn) -> None:
        await conn.event("connected")
        await conn.heard(len(drop.replay))
        if drop.close_first:
            await conn.command("close")
        await conn.events(*drop.after)
        if not drop.close_first:
            await conn.command("close")
        await conn.close(1000)

    async with bounded(15), turns_server(first, second) as server:
        async with open_turns(server.base_url) as c:
            turns = asyncio.create_task(collect(c.turns()))
            signals = asyncio.create_task(collect(c.signals()))
            preflights = asyncio.create_task(collect(c.preflights()))
            await asyncio.sleep(0)
            await c.send_audio(SPEECH)
            if not drop.close_first:
                # Close only once the replayed turn has ended (or, after 'turn.end', once the
                # new socket heard the replay).
                await server.until(
                    lambda: (
                        len(server.conns) > 1 and server.conns[1].audio_bytes >= len(drop.replay)
                    )
                )
                if drop.texts and drop.after:
                    await anext(aiter(c.turns()))
        assert [t.text for t in await turns] == drop.texts
        assert c.transcript.text == "".join(drop.texts)
        starts = [s for s in await signals if s.kind == "start"]
        assert len(starts) == len(drop.texts)  # one barge-in per turn, never repeated
        assert [(p.text, p.state) for p in await preflights] == drop.preflights
        assert c.stats.reconnects == 1
        assert c.state == "done"
    assert b"".join(server.conns[1].audio) == drop.replay
    closes = [m for m in server.conns[1].received if isinstance(m, str)]
    assert closes == ['{"type":"close"}']


async def test_raw_iteration_shows_the_replayed_events() -> None:
    """The documented difference: ``async for event in conn`` is the wire, replays included."""
    drop = DROPS[1]  # mid_update

    async def first(conn: TurnsConn) -> None:
        await conn.heard(len(SPEECH))
        await conn.events(*drop.before)
        await asyncio.sleep(0.05)
        conn.abort()

    async def second(conn: TurnsConn) -> None:
        await conn.heard(PREROLL)
        await conn.events(*drop.after)
        await conn.command("close")
        await conn.close(1000)

    async with bounded(15), turns_server(first, second) as server:
        async with open_turns(server.base_url) as c:
            events = asyncio.create_task(collect(aiter(c)))
            await c.send_audio(SPEECH)
            await anext(aiter(c.turns()))
        kinds = [e.type for e in await events]
        assert kinds == [
            "turn.start",
            "turn.update",
            "turn.start",
            "turn.update",
            "turn.update",
            "turn.end",
        ]


async def test_a_turn_longer_than_max_replay_ms_is_not_replayed_inexactly() -> None:
    async def first(conn: TurnsConn) -> None:
        await conn.heard(3200)
        await conn.events("turn.start")
        await conn.heard(len(SPEECH))
        conn.abort()

    async with bounded(15), turns_server(first) as server:
        c = await open_turns(server.base_url, max_replay_ms=500).enter()
        await c.send_audio(SPEECH[:3200])
        await c.wait_barge_in()
        await c.send_audio(SPEECH[3200:])
        with pytest.raises(stt.ConnectionClosedError, match="cannot be replayed exactly") as err:
            await anext(aiter(c.turns()))
        assert err.value.unanswered == (0,)
        await c.close()
        assert len(server.conns) == 1
