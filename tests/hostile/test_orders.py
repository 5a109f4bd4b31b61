"""Both documented event orders for the flows that need no twin, the ``final_order`` option,
an unmatched ``flush_done``, and a transcript that never shrinks while a drop is repaired."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import cartesia_stt_async as stt

from .conftest import SLACK, bounded, final_order_kw, open_ws, pcm
from .peer import Fault, Order, Peer, PeerConn

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

UTTERANCES = [pcm(6400, 1), pcm(3200, 2), pcm(640, 0), pcm(9600, 3)]  # the third is silent
TEXTS = [" <6400>", " <3200>", "", " <9600>"]
ORDERS = ["finals_first", "flush_first"]


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ORDERS)
async def test_the_official_flow(order: Order) -> None:
    """The seed's flow: 100 ms binary chunks with send_raw, send("finalize") after each
    utterance, send("close"), and ``async for`` over the events concurrently."""
    async with bounded(20), Peer(order=order) as peer:
        finals: list[str] = []
        kinds: list[str] = []
        async with open_ws(peer.base_url, **final_order_kw(order)) as conn:

            async def send() -> None:
                for audio in UTTERANCES:
                    for i in range(0, len(audio), 3200):
                        await conn.send_raw(audio[i : i + 3200])
                    await conn.send("finalize")
                await conn.send("close")

            async def receive() -> None:
                async for event in conn:
                    kinds.append(event.type)
                    if isinstance(event, stt.TranscriptEvent) and event.is_final:
                        finals.append(event.text)

            await asyncio.gather(send(), receive())
        assert "".join(finals) == "".join(TEXTS)
        assert conn.transcript.text == "".join(TEXTS)
        assert kinds.count("flush_done") == len(UTTERANCES)
        assert kinds[-1] == "done"


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ORDERS)
async def test_the_awaited_flow(order: Order) -> None:
    """send_audio, then await finalize() for each utterance: each returns its own text."""
    async with bounded(20), Peer(order=order) as peer:
        async with open_ws(peer.base_url, **final_order_kw(order)) as conn:
            texts = []
            for audio in UTTERANCES:
                await conn.send_audio(audio)
                texts.append((await conn.finalize(timeout=5 * SLACK)).text)
        assert texts == TEXTS
        assert [u.text for u in conn.transcript.utterances] == TEXTS
        assert conn.transcript.text == "".join(TEXTS)


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ORDERS)
async def test_the_stream_flow(order: Order) -> None:
    """stream(): finalize after each utterance, close, wait for done."""
    async with bounded(20), Peer(order=order) as peer:
        async with open_ws(peer.base_url, **final_order_kw(order)) as conn:
            transcript = await conn.stream(UTTERANCES, speed=None)
        assert transcript.text == "".join(TEXTS)
        if order == "finals_first":
            assert [u.text for u in transcript.utterances] == TEXTS


# -- the final_order option ------------------------------------------------------------------


def test_final_order_is_an_option_checked_before_any_io() -> None:
    for value in ("finals_first", "flush_first", "auto"):
        open_ws("http://127.0.0.1:9", final_order=value)
    with pytest.raises(stt.UsageError, match="final_order"):
        open_ws("http://127.0.0.1:9", final_order="both")


@pytest.mark.asyncio
async def test_by_default_a_silent_utterance_never_takes_the_next_ones_finals() -> None:
    """The documented default (finals first): a silent first utterance, pipelined, keeps ''
    and the next keeps its own text, with no drop at all."""
    async with bounded(20), Peer(order="finals_first") as peer:
        async with open_ws(peer.base_url) as conn:
            await conn.send_audio(pcm(3200, 0))
            await conn.send("finalize")
            await conn.send_audio(pcm(3200, 1))
            second = await conn.finalize(timeout=5 * SLACK)
        assert second.text == " <3200>"
        assert [u.text for u in conn.transcript.utterances] == ["", " <3200>"]


# -- an unmatched flush_done -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_unmatched_flush_done_is_counted_visibly_or_raises() -> None:
    """A flush_done with no finalize outstanding is counted in ``stats.unmatched_flush_done``
    (errors.py and the code agree: it is a harmless server quirk, not a ProtocolError). The
    client waits until the stray event has arrived, so it is unambiguously unmatched."""

    async def handler(conn: PeerConn) -> None:
        await conn.send_json({"type": "flush_done", "request_id": "r"})  # no finalize sent
        await conn.peer.count_mode(conn)

    raised: stt.ProtocolError | None = None
    async with bounded(20), Peer(handler=handler) as peer:
        try:
            async with open_ws(peer.base_url) as conn:
                stray = await asyncio.wait_for(conn.recv(), 5 * SLACK)
                assert stray.type == "flush_done"
                await conn.send_audio(pcm(3200, 1))
                utt = await conn.finalize(timeout=5 * SLACK)
                assert utt.text == " <3200>"
        except stt.ProtocolError as exc:
            raised = exc
    assert raised is None
    assert conn.stats.unmatched_flush_done == 1


# -- during a repair: transcript.text may shrink, committed text never does ------------------


@pytest.mark.asyncio
async def test_during_a_repair_only_committed_text_is_monotonic() -> None:
    """A finals-first peer that sends an interim before each final; a drop between A's final
    and its flush_done. ``transcript.text`` holds every final delta received, so it shrinks
    while A is replayed (its delta is rolled back, then said again): that is documented. What
    ``finals()`` yields (committed text) only ever grows, and ends equal to the transcript."""
    # Events: interim(A) 1, final(A) 2, [drop], then on the new socket A is replayed: its
    # interim 1 comes first, and the peer pauses after it so that the observer, which may lag
    # behind the reader, sees that moment.
    fault = Fault(0, "sent", 2, "abort")
    stalls = {(0, 2): 0.2, (1, 1): 0.2}
    samples: list[str] = []
    committed: list[str] = []
    peer = Peer(order="finals_first", faults=[fault], interims=True, stalls=stalls)
    async with bounded(20), peer:
        async with open_ws(peer.base_url) as conn:

            async def observe() -> None:
                async for _ in conn:
                    samples.append(conn.transcript.text)

            async def relay() -> None:
                async for delta in conn.finals():
                    committed.append((committed[-1] if committed else "") + delta)

            async def talk() -> None:
                for k, size in enumerate((6400, 3200)):
                    await conn.send_audio(pcm(size, k + 1))
                    await conn.finalize(timeout=5 * SLACK)
                await conn.send("close")

            await asyncio.gather(observe(), relay(), talk())
        assert peer.fired == [fault]
        assert conn.transcript.text == " <6400> <3200>"
    shrinks = [(a, b) for a, b in itertools.pairwise(samples) if not b.startswith(a)]
    assert shrinks, f"the drop did not roll anything back: {samples}"  # the documented shrink
    assert all(b.startswith(a) for a, b in itertools.pairwise(committed))
    assert committed[-1] == " <6400> <3200>"
