"""Reconnect with replay against the fault-injecting twin: nothing lost, nothing repeated."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Reply, ScriptedEngine
from cartesia_stt_async.twin.faults import Fault, Faults

from . import conftest
from .conftest import SLACK, TwinFactory, client_for, other_tasks, pcm

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops


def audio(k: int, seconds: float = 0.25) -> bytes:
    """Utterance k's audio: distinct content, so the twin answers it by content."""
    return pcm(seconds, value=k + 1)


def engine_for(
    replies: Sequence[Sequence[str]], seconds: float = 0.25, **kw: object
) -> ScriptedEngine:
    table = {audio(k, seconds): list(r) for k, r in enumerate(replies)}
    return ScriptedEngine([], by_audio=table, **kw)  # type: ignore[arg-type]


ws = functools.partial(conftest.ws, close_timeout=5 * SLACK)


REPLIES = [["Hello", " world."], [" Second", " one,", " here."], [" Third."]]
FULL = "Hello world. Second one, here. Third."


@pytest.mark.asyncio
async def test_drop_mid_utterance_replays_it_and_finalize_resolves(
    twin_factory: TwinFactory,
) -> None:
    engine = engine_for(REPLIES)
    faults = Faults([Fault("abort", connection=0, after_frames=2)])
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(audio(0))
            first = await conn.finalize(timeout=5 * SLACK)
            assert conn.stats.reconnects == 1
        assert first.text == "Hello world."
        assert conn.transcript.text == "Hello world."
        assert len(twin.sessions) == 2
        # The whole utterance (3 frames) was replayed on the new session.
        assert twin.sessions[1].audio_bytes == len(audio(0))
        assert conn.stats.replayed_bytes == len(audio(0))  # unpaced: all of it was written
        assert conn.request_id == twin.sessions[1].request_id
    assert not other_tasks()


@pytest.mark.asyncio
async def test_acknowledged_utterance_is_never_replayed(twin_factory: TwinFactory) -> None:
    engine = engine_for(REPLIES)
    # Connection 0: utterance 0 is 3 frames; drop after frame 5 (inside utterance 1).
    faults = Faults([Fault("abort", connection=0, after_frames=5)])
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            texts = []
            for k in range(3):
                await conn.send_audio(audio(k))
                texts.append((await conn.finalize(timeout=5 * SLACK)).text)
        assert texts == ["Hello world.", " Second one, here.", " Third."]
        assert conn.transcript.text == FULL
        assert [u.text for u in conn.transcript.utterances] == texts
        # Session 1 heard utterance 1 from its start (not utterance 0), then utterance 2.
        assert engine.utterance_bytes[1] == [len(audio(1)), len(audio(2))]
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ["finals_first", "flush_first"])
async def test_finals_received_before_a_drop_are_not_duplicated(
    twin_factory: TwinFactory, order: str
) -> None:
    engine = engine_for(REPLIES, order=order)
    # Events on connection 0: utterance 0 → 3 events; drop after the first final of
    # utterance 1 (flush_first: after its flush_done and first final).
    after = 4 if order == "finals_first" else 5
    faults = Faults([Fault("abort", connection=0, after_events=after)])
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin), final_order=order) as conn:
            for k in range(3):
                await conn.send_audio(audio(k))
                await conn.send("finalize")
        assert conn.transcript.text == FULL
        assert [u.text for u in conn.transcript.utterances] == [
            "Hello world.",
            " Second one, here.",
            " Third.",
        ]
        assert conn.stats.reconnects == 1
        assert len(twin.sessions) == 2
    assert not other_tasks()


@pytest.mark.asyncio
async def test_drop_after_close_replays_the_tail_and_gets_done(twin_factory: TwinFactory) -> None:
    engine = engine_for(REPLIES)
    faults = Faults([Fault("close", connection=0, after_events=3, code=1011)])
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(audio(0))
            await conn.send("finalize")
            await conn.send_audio(audio(1))  # no finalize: answered on close
        assert conn.state == "done"
        assert conn.transcript.text == "Hello world. Second one, here."
        assert [c for _, c in twin.sessions[1].commands] == ["close"]
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [1001, 1006, 1011, 1012, 1013])
async def test_recoverable_codes_reconnect(twin_factory: TwinFactory, code: int) -> None:
    fault = (
        Fault("abort", connection=0, after_frames=1)
        if code == 1006
        else Fault("close", connection=0, after_frames=1, code=code, reason="going away")
    )
    async with twin_factory(engine=engine_for(REPLIES), faults=Faults([fault])) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(audio(0))
            assert (await conn.finalize(timeout=5 * SLACK)).text == "Hello world."
        assert conn.stats.reconnects == 1
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [1000, 1003, 1008, 1011])
async def test_unrecoverable_codes_and_max_retries_zero_do_not_reconnect(
    twin_factory: TwinFactory, code: int
) -> None:
    retries = 0 if code == 1011 else 5
    fault = Fault("close", connection=0, after_frames=1, code=code)
    async with twin_factory(engine=engine_for(REPLIES), faults=Faults([fault])) as twin:
        conn = await ws(client_for(twin), max_retries=retries).enter()
        try:
            await conn.send_audio(audio(0))
            with pytest.raises(stt.ConnectionClosedError) as info:
                await conn.finalize(timeout=5 * SLACK)
            assert info.value.code == code
            assert not isinstance(info.value, stt.ReconnectError)
        finally:
            await conn.close()
        assert len(twin.sessions) == 1
        assert conn.stats.reconnects == 0
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error"),
    [(400, stt.BadRequestError), (401, stt.AuthenticationError), (403, stt.PermissionDeniedError)],
)
async def test_permanent_refusal_on_reconnect_is_never_retried(
    twin_factory: TwinFactory, status: int, error: type[Exception]
) -> None:
    faults = Faults([Fault("abort", connection=0, after_frames=1)], refuse={1: status})
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        conn = await ws(client_for(twin)).enter()
        try:
            await conn.send_audio(audio(0))
            with pytest.raises(error):
                await conn.finalize(timeout=5 * SLACK)
        finally:
            await conn.close()
        assert twin.handshakes == 2  # one refused attempt, no retry
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_refusals_are_retried(twin_factory: TwinFactory, status: int) -> None:
    faults = Faults([Fault("abort", connection=0, after_frames=1)], refuse={1: status, 2: status})
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(audio(0))
            assert (await conn.finalize(timeout=10 * SLACK)).text == "Hello world."
        assert twin.handshakes == 4
        assert conn.stats.reconnects == 1
    assert not other_tasks()


@pytest.mark.asyncio
async def test_a_socket_that_dies_after_every_handshake_gives_up_clearly(
    twin_factory: TwinFactory,
) -> None:
    faults = Faults([Fault("abort", after_frames=1)])  # every connection
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        conn = await ws(client_for(twin), max_retries=3).enter()
        try:
            await conn.send_audio(audio(0))
            async with asyncio.timeout(10 * SLACK):
                with pytest.raises(stt.ReconnectError, match="right after its handshake") as info:
                    await conn.finalize(timeout=None)
            assert info.value.attempts == 3
            assert info.value.code == 1006
        finally:
            await conn.close()
        assert len(twin.sessions) == 4  # the first and three attempts
    assert not other_tasks()


@pytest.mark.asyncio
async def test_on_reconnecting_sees_each_attempt_and_can_replace_headers(
    twin_factory: TwinFactory,
) -> None:
    events: list[stt.ReconnectingEvent] = []

    async def on_reconnecting(event: stt.ReconnectingEvent) -> dict[str, object]:
        events.append(event)
        return {"extra_headers": {"X-Attempt": str(event.attempt)}}

    faults = Faults([Fault("close", connection=0, after_frames=1, code=1012)], refuse={1: 503})
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        async with ws(client_for(twin), on_reconnecting=on_reconnecting) as conn:
            await conn.send_audio(audio(0))
            await conn.finalize(timeout=5 * SLACK)
        assert [(e.attempt, e.max_attempts, e.close_code) for e in events] == [
            (1, 5, 1012),
            (2, 5, None),
        ]
        assert all(0 < e.delay <= 0.005 for e in events)
        assert twin.sessions[1].headers["x-attempt"] == "2"
    assert not other_tasks()


@pytest.mark.asyncio
async def test_on_reconnecting_can_abort(twin_factory: TwinFactory) -> None:
    faults = Faults([Fault("abort", connection=0, after_frames=1)])
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        conn = await ws(client_for(twin), on_reconnecting=lambda e: {"abort": True}).enter()
        try:
            await conn.send_audio(audio(0))
            with pytest.raises(stt.ReconnectError, match="aborted"):
                await conn.finalize(timeout=5 * SLACK)
        finally:
            await conn.close()
        assert twin.handshakes == 1
    assert not other_tasks()


@pytest.mark.asyncio
async def test_pending_finalizes_are_resent_and_all_resolve(twin_factory: TwinFactory) -> None:
    engine = engine_for(REPLIES)
    # flush_done is withheld on connection 0: every finalize is pending at the drop, and
    # finals that did arrive for them must not be kept (the replay says them again).
    faults = Faults(
        [Fault("close", connection=0, after_frames=9, code=1011)], withhold_flush_done={0}
    )
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            waiters = []
            for k in range(3):
                await conn.send_audio(audio(k))
                waiters.append(asyncio.ensure_future(conn.finalize(timeout=5 * SLACK)))
                await asyncio.sleep(0)  # let it queue its finalize before the next audio
            results = await asyncio.gather(*waiters)
        assert [u.text for u in results] == ["Hello world.", " Second one, here.", " Third."]
        assert conn.transcript.text == FULL
        assert conn.stats.reconnects == 1
        assert [c for _, c in twin.sessions[1].commands] == ["finalize"] * 3 + ["close"]
    assert not other_tasks()


@pytest.mark.asyncio
async def test_interim_and_reply_objects_survive_a_replay(twin_factory: TwinFactory) -> None:
    table = {audio(0): Reply(finals=[" a", " b"], interims=["x"])}
    engine = ScriptedEngine([], by_audio=table)
    faults = Faults([Fault("abort", connection=0, after_events=2)])  # interim + first final
    async with twin_factory(engine=engine, faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(audio(0))
            assert (await conn.finalize(timeout=5 * SLACK)).text == " a b"
        assert conn.transcript.text == " a b"
        assert len(twin.sessions) == 2


@pytest.mark.asyncio
@pytest.mark.virtual_time  # idle timeouts and sleeps of the in-loop twin: the clock jumps
async def test_idle_close_is_routine_and_repaired_lazily(twin_factory: TwinFactory) -> None:
    engine = engine_for(REPLIES)
    async with twin_factory(engine=engine, idle_timeout=0.2 * SLACK) as twin:
        # One retry only: three idle closes must not use it up.
        async with ws(client_for(twin), max_retries=1) as conn:
            texts = []
            for k in range(3):
                await conn.send_audio(audio(k))
                texts.append((await conn.finalize(timeout=5 * SLACK)).text)
                await asyncio.sleep(0.5 * SLACK)  # the twin closes the idle socket
                assert conn.reconnecting  # down, waiting for the next send
                assert conn.state == "open"
                assert len(twin.sessions) == k + 1  # lazily: no new socket yet
        assert texts == ["Hello world.", " Second one, here.", " Third."]
        assert conn.stats.idle_closes == 3
        assert conn.stats.reconnects == 2
        assert conn.stats.replayed_bytes == 0
        assert conn.state == "done"
        # Leaving after the last idle close owed nothing: no socket was opened for 'done'.
        assert twin.handshakes == 3
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.virtual_time  # idle timeouts and sleeps of the in-loop twin: the clock jumps
async def test_keepalive_keeps_an_idle_socket_open(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([]), idle_timeout=0.3 * SLACK) as twin:
        async with ws(client_for(twin), keepalive=0.1 * SLACK) as conn:
            await conn.send_audio(pcm(0.1))
            await asyncio.sleep(1.0 * SLACK)
            assert conn.stats.keepalives_sent >= 3
            await conn.finalize(timeout=5 * SLACK)
        assert conn.stats.idle_closes == 0
        assert len(twin.sessions) == 1
        assert twin.sessions[0].close_code == 1000
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.virtual_time  # idle timeouts and sleeps of the in-loop twin: the clock jumps
async def test_without_keepalive_the_same_socket_is_idle_closed(twin_factory: TwinFactory) -> None:
    # The control for the keepalive test: the twin really does close idle sockets.
    async with twin_factory(engine=ScriptedEngine([]), idle_timeout=0.3 * SLACK) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(pcm(0.1))
            await asyncio.sleep(1.0 * SLACK)
            assert conn.stats.idle_closes == 1
            await conn.finalize(timeout=5 * SLACK)
        assert len(twin.sessions) == 2
    assert not other_tasks()


@pytest.mark.asyncio
async def test_a_late_window_does_not_close_while_the_socket_is_down(
    twin_factory: TwinFactory,
) -> None:
    # flush_first: flush_done, then " Second", then the drop. The backoff (0.2 s) outlasts
    # the late window (0.05 s): the utterance must still be replayed, not sealed half-said.
    engine = engine_for(REPLIES[1:], order="flush_first")
    faults = Faults([Fault("abort", connection=0, after_events=2)])
    async with twin_factory(engine=engine, faults=faults) as twin:
        options = {
            "initial_delay": 0.2,
            "max_delay": 0.2,
            "late_final_grace": 0.05,
            "final_order": "flush_first",
        }
        async with ws(client_for(twin), **options) as conn:
            await conn.send_audio(audio(0))
            await conn.send("finalize")
        assert conn.transcript.text == " Second one, here."
        assert [u.text for u in conn.transcript.utterances] == [" Second one, here."]
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stream_runs_through_drops_to_done(twin_factory: TwinFactory) -> None:
    faults = Faults(
        [
            Fault("abort", connection=0, after_frames=4),
            Fault("close", connection=1, after_events=1, code=1011),
            Fault("close", connection=2, after_events=3, code=1013),
        ]
    )
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        async with ws(client_for(twin)) as conn:
            transcript = await conn.stream([audio(k) for k in range(3)], speed=None)
        assert transcript.text == FULL
        assert [u.text for u in transcript.utterances] == [
            "Hello world.",
            " Second one, here.",
            " Third.",
        ]
        assert conn.stats.reconnects == 3
    assert not other_tasks()


@pytest.mark.asyncio
async def test_giving_up_ends_iteration_with_the_error(twin_factory: TwinFactory) -> None:
    # Even when the last close was a 1001 (a clean code for iteration), giving up is an error.
    faults = Faults([Fault("close", after_frames=1, code=1001, reason="going away")])
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        conn = await ws(client_for(twin), max_retries=2).enter()
        try:
            await conn.send_audio(audio(0))
            await conn.send("finalize")
            with pytest.raises(stt.ReconnectError):
                async with asyncio.timeout(10 * SLACK):
                    async for _ in conn:
                        pass
        finally:
            await conn.close()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_an_idle_close_right_after_every_handshake_uses_the_budget(
    twin_factory: TwinFactory,
) -> None:
    faults = Faults([Fault("close", after_frames=1, code=1001, reason="Idle timeout")])
    async with twin_factory(engine=engine_for(REPLIES), faults=faults) as twin:
        conn = await ws(client_for(twin), max_retries=2).enter()
        try:
            await conn.send_audio(audio(0))
            async with asyncio.timeout(10 * SLACK):
                with pytest.raises(stt.ReconnectError):
                    await conn.finalize(timeout=None)
        finally:
            await conn.close()
        assert len(twin.sessions) == 3
    assert not other_tasks()


@pytest.mark.asyncio
async def test_an_on_reconnecting_that_raises_ends_with_a_clear_reconnect_error(
    twin_factory: TwinFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(event: stt.ReconnectingEvent) -> None:
        raise RuntimeError("token service down")

    faults = Faults([Fault("abort", connection=0, after_frames=2)])
    async with twin_factory(engine=engine_for([["a"]]), faults=faults) as twin:
        conn = await ws(client_for(twin), on_reconnecting=callback).enter()
        try:
            await conn.send_audio(audio(0))
            with pytest.raises(
                stt.ReconnectError, match="on_reconnecting raised RuntimeError"
            ) as info:
                await conn.finalize(timeout=10 * SLACK)
        finally:
            await conn.aclose()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.records
    assert not other_tasks()
