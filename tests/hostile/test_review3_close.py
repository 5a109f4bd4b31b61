"""Issue 20 #1: a clean close (1000, or 1001 with reconnecting off) while work is owed.

A server that closes with 1000 while a finalized turn (or the answer to ``close``) is still
unanswered has not ended the session: the text the caller asked for never came. Every way of
consuming the session must say so with a :class:`ConnectionClosedError` naming the lost turns:
``async for event``, ``finals()``, ``recv()``, an awaited ``finalize()``, the future of
``finalize_nowait()``, the next send, and leaving ``async with`` when no other path has told
the caller. A clean close with nothing owed stays a clean end.

Each test failed before the fix: iteration and ``finals()`` ended as if the session had
finished, and leaving ``async with`` raised nothing once they had.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import cartesia_stt_async as stt

from .conftest import SLACK, bounded, open_ws, pcm
from .peer import Fault, Peer

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

A, B = pcm(3200, 1), pcm(3200, 2)

# Count-mode peer: each client message counts (audio frames and commands alike). With A (one
# frame) + finalize answered (2 events) and B (one frame), the 4th message is B's finalize.
CLEAN_CLOSES = [
    pytest.param(1000, {}, id="1000"),
    pytest.param(1001, {"max_retries": 0}, id="1001-no-retries"),
]


def lost_error(exc: BaseException) -> stt.ConnectionClosedError:
    """``exc``, checked to be the close naming turn #1 as lost."""
    assert isinstance(exc, stt.ConnectionClosedError), repr(exc)
    assert not isinstance(exc, stt.ReconnectError)
    assert exc.unanswered == (1,), exc.unanswered
    assert "#1" in str(exc)
    assert "unanswered" in str(exc)
    return exc


@pytest.mark.asyncio
@pytest.mark.parametrize(("code", "kw"), CLEAN_CLOSES)
async def test_events_and_exit_report_the_lost_turn(code: int, kw: dict[str, Any]) -> None:
    fault = Fault(0, "recv", 4, "close", code=code, reason="bye")
    seen: list[str] = []
    async with bounded(20), Peer(faults=[fault]) as peer:
        with pytest.raises(stt.ConnectionClosedError) as exit_info:
            async with open_ws(peer.base_url, **kw) as conn:
                await conn.send_audio(A)
                first = await conn.finalize(timeout=5 * SLACK)
                await conn.send_audio(B)
                conn.finalize_nowait()
                async for event in conn:  # the official SDK's receive loop
                    seen.append(event.type)
        assert peer.fired == [fault]
    assert first.text == " <3200>"
    assert seen == ["transcript", "flush_done"]
    # Iteration raised it, and it left `async with` (whose exit does not raise it twice).
    lost_error(exit_info.value)
    assert conn.transcript.text == " <3200>"


@pytest.mark.asyncio
@pytest.mark.parametrize(("code", "kw"), CLEAN_CLOSES)
async def test_finals_relay_and_futures_report_the_lost_turn(code: int, kw: dict[str, Any]) -> None:
    # The README's relay pattern: a forwarder reads finals(); the audio loop finalizes with
    # finalize_nowait() and never awaits.
    fault = Fault(0, "recv", 4, "close", code=code, reason="bye")
    forwarded: list[str] = []
    async with bounded(20), Peer(faults=[fault]) as peer:
        async with open_ws(peer.base_url, **kw) as conn:

            async def forward() -> None:
                async for delta in conn.finals():
                    forwarded.append(delta)

            forwarder = asyncio.create_task(forward())
            await conn.send_audio(A)
            first = conn.finalize_nowait()
            await conn.send_audio(B)
            second = conn.finalize_nowait()
            with pytest.raises(stt.ConnectionClosedError) as finals_info:
                await forwarder
            with pytest.raises(stt.ConnectionClosedError) as future_info:
                await second
            assert (await first).text == " <3200>"
            with pytest.raises(stt.ConnectionClosedError) as send_info:
                conn.finalize_nowait()
        assert peer.fired == [fault]
    assert forwarded == [" <3200>"]
    lost_error(finals_info.value)
    lost_error(future_info.value)
    lost_error(send_info.value)


@pytest.mark.asyncio
async def test_futures_alone_do_not_count_as_telling_the_caller() -> None:
    # Nobody awaits the finalize_nowait() futures ("not awaiting it is fine too"): leaving
    # `async with` raises.
    fault = Fault(0, "recv", 4, "close", code=1000, reason="bye")
    async with bounded(20), Peer(faults=[fault]) as peer:
        with pytest.raises(stt.ConnectionClosedError) as exit_info:
            async with open_ws(peer.base_url) as conn:
                await conn.send_audio(A)
                await conn.finalize_nowait()
                await conn.send_audio(B)
                future = conn.finalize_nowait()
                await asyncio.wait([future])
        assert peer.fired == [fault]
    lost_error(exit_info.value)


@pytest.mark.asyncio
async def test_awaited_finalize_and_recv_report_the_lost_turn() -> None:
    fault = Fault(0, "recv", 4, "close", code=1000, reason="bye")
    async with bounded(20), Peer(faults=[fault]) as peer:
        conn = await open_ws(peer.base_url).__aenter__()
        try:
            await conn.send_audio(A)
            await conn.finalize(timeout=5 * SLACK)
            await conn.send_audio(B)
            with pytest.raises(stt.ConnectionClosedError) as finalize_info:
                await conn.finalize(timeout=5 * SLACK)
            lost_error(finalize_info.value)
            types = []
            with pytest.raises(stt.ConnectionClosedError) as recv_info:
                while True:
                    types.append((await conn.recv()).type)
            lost_error(recv_info.value)
            assert types == ["transcript", "flush_done"]
            with pytest.raises(stt.ConnectionClosedError) as send_info:
                await conn.send_audio(A)
            lost_error(send_info.value)
        finally:
            await conn.__aexit__(None, None, None)  # already told: it does not raise again


@pytest.mark.asyncio
async def test_a_close_before_the_answer_to_close_reports_the_tail() -> None:
    # A answered; B sent as the tail and `close` queued; the server closes 1000 on `close`
    # without the tail's final or `done`.
    fault = Fault(0, "recv", 4, "close", code=1000, reason="bye")
    async with bounded(20), Peer(faults=[fault]) as peer:
        with pytest.raises(stt.ConnectionClosedError) as exit_info:
            async with open_ws(peer.base_url) as conn:
                await conn.send_audio(A)
                await conn.finalize(timeout=5 * SLACK)
                await conn.send_audio(B)
        assert peer.fired == [fault]
    lost_error(exit_info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(("code", "kw"), CLEAN_CLOSES)
async def test_a_clean_close_with_nothing_owed_is_still_a_clean_end(
    code: int, kw: dict[str, Any]
) -> None:
    # The answer to A arrives (events 1, 2), then the server closes: nothing is owed, so
    # iteration ends cleanly and leaving `async with` raises nothing; a later send says why.
    fault = Fault(0, "sent", 2, "close", code=code, reason="bye")
    async with bounded(20), Peer(faults=[fault]) as peer:
        async with open_ws(peer.base_url, **kw) as conn:
            await conn.send_audio(A)
            await conn.finalize(timeout=5 * SLACK)
            types = [event.type async for event in conn]
            assert types == ["transcript", "flush_done"]
            with pytest.raises(stt.ConnectionClosedError) as send_info:
                await conn.send_audio(B)
            assert send_info.value.unanswered == ()
        assert peer.fired == [fault]
    assert conn.transcript.text == " <3200>"


@pytest.mark.timeout(30)
def test_the_sync_client_reports_the_lost_turn_too() -> None:
    """The blocking client's iterator and finalize() raise the same error (its session runs
    on the async one); the peer serves from a loop of its own thread."""
    from anyio.from_thread import start_blocking_portal

    fault = Fault(0, "recv", 4, "close", code=1000, reason="bye")
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Peer(faults=[fault])) as peer,
        stt.Cartesia(api_key="sk_sync_test_key", base_url=peer.base_url) as client,
    ):
        manager = client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        )
        types: list[str] = []
        with pytest.raises(stt.ConnectionClosedError) as iter_info, manager as conn:
            conn.send_audio(A)
            assert conn.finalize(timeout=5 * SLACK).text == " <3200>"
            conn.send_audio(B)
            conn.send("finalize")
            for event in conn:  # the official sync loop: it ends in the error
                types.append(event.type)
        assert peer.fired == [fault]
    lost_error(iter_info.value)
    assert types == ["transcript", "flush_done"]
