"""Bounded buffers with a named policy, lag and queue depth, slow consumers, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import ScriptedEngine
from cartesia_stt_async.twin.faults import Fault, Faults

from . import conftest
from .conftest import SLACK, TwinFactory, client_for, other_tasks, pcm

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

# A stuck server must not hold a test up: leaving waits at most half a second for 'done'.
ws = functools.partial(conftest.ws, close_timeout=0.5 * SLACK)


@pytest.mark.asyncio
async def test_drop_oldest_never_waits_and_counts_what_it_dropped(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(
        engine=ScriptedEngine([]), faults=Faults([Fault("stop_reading", after_frames=2)])
    ) as twin:
        conn = await ws(client_for(twin), buffer_policy="drop_oldest", max_buffered_ms=500).enter()
        try:
            async with asyncio.timeout(5 * SLACK):  # never blocks, although nothing drains
                for _ in range(2000):
                    await conn.send_audio(pcm(0.1))
            limit = 16_000  # 500 ms of 16 kHz s16le
            assert conn.stats.queued_bytes <= limit
            assert conn.stats.dropped_audio_bytes > 0
            stats = conn.stats  # every byte is accounted for: written, waiting or dropped
            total = stats.audio_bytes_sent + stats.queued_bytes + stats.dropped_audio_bytes
            assert total == 2000 * 3200
            assert 0 < conn.lag <= 0.5
            assert conn.stats.queued_items == conn.stats.queued_bytes // 3200
        finally:
            await conn.close()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_block_policy_waits_and_exposes_depth_and_lag(twin_factory: TwinFactory) -> None:
    async with twin_factory(
        engine=ScriptedEngine([]), faults=Faults([Fault("stop_reading", after_frames=2)])
    ) as twin:
        conn = await ws(client_for(twin), max_buffered_ms=500).enter()
        try:
            pusher = asyncio.create_task(_push(conn, 50_000))  # 160 MB: more than the kernel holds
            await asyncio.sleep(0.5 * SLACK)
            assert not pusher.done()  # blocked: the queue is full and nothing drains
            assert conn.stats.queued_bytes >= 16_000 - 3200
            assert conn.lag == pytest.approx(conn.stats.queued_bytes / 32_000)
            assert conn.stats.dropped_audio_bytes == 0
            pusher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pusher
        finally:
            await conn.close()
    assert not other_tasks()


async def _push(conn: stt.AsyncConnection, n: int) -> None:
    for _ in range(n):
        await conn.send_audio(pcm(0.1))


@pytest.mark.asyncio
async def test_paced_audio_shows_lag_behind_real_time(twin_factory: TwinFactory) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([[" x"]])) as twin,
        ws(client_for(twin), speed=1.0) as conn,
    ):
        await conn.send_audio(pcm(1.0))  # queued at once, written over ~1 s
        assert conn.lag > 0.5
        assert conn.stats.queued_items >= 5
        await conn.finalize(timeout=5 * SLACK)
        assert conn.lag == 0 and conn.stats.queued_items == 0
    assert not other_tasks()


@pytest.mark.asyncio
async def test_a_stuck_handler_never_stalls_finalize(twin_factory: TwinFactory) -> None:
    engine = ScriptedEngine([[" one"], [" two"], [" three"]])
    async with twin_factory(engine=engine) as twin:
        async with ws(client_for(twin)) as conn:
            release = asyncio.Event()
            calls = 0

            async def stuck(event: stt.Event) -> None:
                nonlocal calls
                calls += 1
                await release.wait()

            conn.on("transcript", stuck)
            dispatcher = asyncio.create_task(conn.dispatch_events())
            texts = []
            for _ in range(3):
                await conn.send_audio(pcm(0.1))
                texts.append((await conn.finalize(timeout=5 * SLACK)).text)
            assert texts == [" one", " two", " three"]
            assert calls == 1  # the handler is still stuck on the first event
            release.set()
        await asyncio.wait_for(dispatcher, 5 * SLACK)
        assert calls == 3
    assert not other_tasks()


@pytest.mark.asyncio
async def test_a_failing_handler_does_not_touch_the_session(twin_factory: TwinFactory) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([[" one"], [" two"]])) as twin,
        ws(client_for(twin)) as conn,
    ):
        conn.on("transcript", lambda e: 1 / 0)
        dispatcher = asyncio.create_task(conn.dispatch_events())
        await conn.send_audio(pcm(0.1))
        await conn.finalize(timeout=5 * SLACK)
        with pytest.raises(ZeroDivisionError):
            await dispatcher
        await conn.send_audio(pcm(0.1))
        assert (await conn.finalize(timeout=5 * SLACK)).text == " two"
    assert not other_tasks()


# -- cancellation ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelling_a_blocked_send_audio_then_leaving_is_prompt(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(
        engine=ScriptedEngine([]), faults=Faults([Fault("stop_reading", after_frames=2)])
    ) as twin:
        client = client_for(twin)

        async def session() -> None:
            async with ws(client, max_buffered_ms=300) as conn:
                await _push(conn, 10_000)

        task = asyncio.create_task(session())
        await asyncio.sleep(0.3 * SLACK)
        task.cancel()
        async with asyncio.timeout(3 * SLACK):  # the server never answers: still bounded
            with pytest.raises(asyncio.CancelledError):
                await task
    gc.collect()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_leaving_normally_is_bounded_when_the_server_never_answers(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(
        engine=ScriptedEngine([]), faults=Faults([Fault("stop_reading", after_frames=1)])
    ) as twin:
        with pytest.raises(stt.APITimeoutError):
            async with asyncio.timeout(5 * SLACK):
                async with ws(client_for(twin), close_timeout=0.3) as conn:
                    await conn.send_audio(pcm(0.3))
    assert not other_tasks()


@pytest.mark.asyncio
async def test_cancelling_a_finalize_leaves_the_connection_usable(
    twin_factory: TwinFactory,
) -> None:
    faults = Faults(flush_done_delay=0.3)
    async with twin_factory(engine=ScriptedEngine([[" a"], [" b"]]), faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(pcm(0.1))
            waiter = asyncio.create_task(conn.finalize(timeout=5 * SLACK))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await conn.send_audio(pcm(0.1))
            assert (await conn.finalize(timeout=5 * SLACK)).text == " b"
        assert conn.transcript.text == " a b"
    assert not other_tasks()


@pytest.mark.asyncio
async def test_cancelling_iteration_leaves_no_task(twin_factory: TwinFactory) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([[" a"]])) as twin,
        ws(client_for(twin)) as conn,
    ):

        async def consume() -> None:
            async for _ in conn:
                pass

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await conn.send_audio(pcm(0.1))
        await conn.finalize(timeout=5 * SLACK)
    assert not other_tasks()


@pytest.mark.asyncio
async def test_cancelling_during_reconnect_backoff_is_prompt(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("abort", after_frames=1)])
    async with twin_factory(engine=ScriptedEngine([]), faults=faults) as twin:
        client = client_for(twin)

        async def session() -> None:
            async with ws(client, initial_delay=30.0, max_delay=30.0) as conn:
                await conn.send_audio(pcm(0.1))
                await conn.finalize(timeout=None)

        task = asyncio.create_task(session())
        await asyncio.sleep(0.3 * SLACK)
        task.cancel()
        async with asyncio.timeout(3 * SLACK):
            with pytest.raises(asyncio.CancelledError):
                await task
    gc.collect()
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", [0.0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.04, 0.08])
async def test_cancelling_the_whole_block_at_any_point_leaves_nothing(
    twin_factory: TwinFactory, delay: float
) -> None:
    """Cancel a session that streams through drops and reconnects at a range of moments."""
    table = {pcm(0.2, value=k + 1): [f" u{k}"] for k in range(3)}
    faults = Faults(
        [Fault("abort", connection=0, after_frames=3), Fault("close", connection=1, after_events=2)]
    )
    async with twin_factory(engine=ScriptedEngine([], by_audio=table), faults=faults) as twin:
        client = client_for(twin)

        async def session() -> None:
            async with ws(client, initial_delay=0.001, max_delay=0.002) as conn:
                await conn.stream(list(table), speed=None)

        task = asyncio.create_task(session())
        await asyncio.sleep(delay)
        task.cancel()
        async with asyncio.timeout(3 * SLACK):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A handshake cancelled at once leaves the twin's accept in flight; closing the
        # server during it makes asyncio itself leak the accepted socket. Let it land.
        await asyncio.sleep(0.05)
    gc.collect()
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.virtual_time  # 3.5 s of real-time pacing, in-loop twin: the clock jumps
@pytest.mark.parametrize("catch_up", [1.5, 1.0])
async def test_a_network_stall_is_made_up_at_the_catch_up_speed(
    twin_factory: TwinFactory, catch_up: float
) -> None:
    """A live source (one 100 ms frame as it happens) and a 0.5 s network stall: with
    catch-up the frames are back on time within about a second; without, they stay late.

    The stall is the transport's own flow control: asyncio calls ``pause_writing()`` on the
    socket's protocol when the kernel stops taking data and ``resume_writing()`` when it
    takes data again; the test makes those two calls itself.
    """
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        async with ws(client_for(twin), speed=1.0, catch_up_speed=catch_up) as conn:
            loop = asyncio.get_running_loop()
            start = loop.time()
            socket_protocol = conn._link.ws  # the websockets connection is the asyncio protocol
            for n in range(35):
                await asyncio.sleep(max(0.0, start + n * 0.1 - loop.time()))
                if n == 10:
                    socket_protocol.pause_writing()
                    loop.call_later(0.5, socket_protocol.resume_writing)
                await conn.send_audio(pcm(0.1, value=n + 1))
            await conn.finalize(timeout=10 * SLACK)
        arrivals = [t for t, _ in twin.sessions[0].frames]
    lateness = [t - (start + n * 0.1) for n, t in enumerate(arrivals)]
    assert len(lateness) == 35
    assert max(lateness[11:15]) > 0.3  # the stall held frames back
    if catch_up > 1.0:
        assert max(lateness[25:]) < 0.1 * SLACK  # made up within ~1 s (10 frames)
    else:
        assert min(lateness[25:]) > 0.2  # never made up (made up: < 0.1, above)
