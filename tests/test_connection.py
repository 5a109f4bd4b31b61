"""The asyncio connection against the real twin over loopback: transcripts, finalize, pacing,
backpressure, misuse, cancellation."""

from __future__ import annotations

import asyncio
import gc
import itertools
import tracemalloc
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import Fault, Faults, Reply, ScriptedEngine

from .conftest import SLACK, TwinFactory, client_for, other_tasks, pcm, ws

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops

TRICKY = [["Hello", " world,", " ", "", " naïve café ✓ 日本語"], [" Second", " one. "]]


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ["finals_first", "flush_first"])
async def test_finalize_returns_verbatim_deltas_in_both_orders(
    twin_factory: TwinFactory, order: str
) -> None:
    engine = ScriptedEngine(TRICKY, order=order)  # type: ignore[arg-type]
    async with twin_factory(engine=engine) as twin:
        async with ws(client_for(twin), final_order=order) as conn:
            await conn.send_audio(pcm(0.35))
            first = await conn.finalize(timeout=5 * SLACK)
            await conn.send_audio(pcm(0.2))
            second = await conn.finalize(timeout=5 * SLACK)
        assert first.text == "Hello world,  naïve café ✓ 日本語"
        assert second.text == " Second one. "
        assert first.index == 0 and second.index == 1
        assert first.final_chunks == 5
        assert conn.transcript.text == first.text + second.text
        assert [u.text for u in conn.transcript.utterances] == [first.text, second.text]
        assert first.latency is not None and 0 <= first.latency < 5 * SLACK
        assert first.request_id == conn.request_id != ""
        assert twin.sessions[0].audio_bytes == len(pcm(0.35)) + len(pcm(0.2))


@pytest.mark.asyncio
async def test_interim_chunks_are_not_in_the_transcript(twin_factory: TwinFactory) -> None:
    engine = ScriptedEngine([Reply(finals=[" final"], interims=["inter", "interim guess"])])
    async with twin_factory(engine=engine) as twin, ws(client_for(twin)) as conn:
        await conn.send_audio(pcm(0.1))
        utt = await conn.finalize(timeout=5 * SLACK)
        assert utt.text == " final"
        assert conn.transcript.text == " final"
        assert conn.transcript.interim == ""  # cleared by the final chunk
        seen = [e async for e in _drain_until(conn, "flush_done")]
        interims = [e.text for e in seen if isinstance(e, stt.TranscriptEvent) and not e.is_final]
        assert interims == ["inter", "interim guess"]


async def _drain_until(conn: stt.AsyncConnection, kind: str) -> AsyncIterator[stt.Event]:
    async for event in conn:
        yield event
        if event.type == kind:
            return


@pytest.mark.asyncio
async def test_finalize_resolves_without_anyone_iterating(twin_factory: TwinFactory) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([[" a"], [" b"], [" c"]])) as twin,
        ws(client_for(twin)) as conn,
    ):
        texts = []
        for _ in range(3):
            await conn.send_audio(pcm(0.05))
            texts.append((await conn.finalize(timeout=5 * SLACK)).text)
        assert texts == [" a", " b", " c"]
        assert conn.stats.events_received == 6  # 3 finals + 3 flush_done, all buffered


@pytest.mark.asyncio
async def test_concurrent_finalizes_match_flush_done_fifo(twin_factory: TwinFactory) -> None:
    async with (
        twin_factory(engine=ScriptedEngine([[" one"], [" two"], [" three"]])) as twin,
        ws(client_for(twin)) as conn,
    ):

        async def turn() -> stt.Utterance:
            await conn.send_audio(pcm(0.1))
            return await conn.finalize(timeout=5 * SLACK)

        results = [await turn(), await turn(), await turn()]
        assert [u.text for u in results] == [" one", " two", " three"]


@pytest.mark.asyncio
async def test_leaving_async_with_sends_close_and_keeps_last_transcript(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([[" first"], [" tail", " end"]])) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(pcm(0.1))
            await conn.finalize(timeout=5 * SLACK)
            await conn.send_audio(pcm(0.15))
            # no finalize, no close: leaving the block must still collect " tail end"
        assert conn.transcript.text == " first tail end"
        assert conn.state == "done"
        commands = [c for _, c in twin.sessions[0].commands]
        assert commands == ["finalize", "close"]
        assert twin.sessions[0].close_code == 1000
    assert not other_tasks()


@pytest.mark.asyncio
async def test_pacing_is_real_time_with_exact_frames(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([[" x"]])) as twin:
        async with ws(client_for(twin), speed=1.0) as conn:
            loop = asyncio.get_running_loop()
            start = loop.time()
            # 2.05 s of audio in odd-sized chunks: 20 full frames and a 50 ms remainder.
            audio = pcm(2.05, value=100)
            for i in range(0, len(audio), 4411):
                await conn.send_audio(audio[i : i + 4411])
            utt = await conn.finalize(timeout=5 * SLACK)
            elapsed = loop.time() - start
        assert utt.text == " x"
        frames = twin.sessions[0].frames
        sizes = [n for _, n in frames]
        assert sizes == [3200] * 20 + [1600]
        # Frame n is due at n * 100 ms: the last full frame leaves at ~1.9 s, the remainder
        # right after it with the finalize.
        assert 1.85 <= elapsed < 1.9 + 1.0 * SLACK
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(frames[:20])]
        assert sum(gaps) == pytest.approx(1.9, abs=0.15 * SLACK)
        assert min(gaps) > 0.05  # never a burst


@pytest.mark.asyncio
async def test_speed_factor_and_unpaced(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([[" a"], [" b"]])) as twin:
        async with ws(client_for(twin), speed=4.0) as conn:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await conn.send_audio(pcm(2.0))
            await conn.finalize(timeout=5 * SLACK)
            fast = loop.time() - start
            start = loop.time()
            await conn.send_audio(pcm(2.0), speed=None)
            await conn.finalize(timeout=5 * SLACK)
            unpaced = loop.time() - start
        assert 0.4 <= fast < 0.475 + 0.5 * SLACK  # 19 frames * 25 ms
        assert unpaced < 0.3 * SLACK


@pytest.mark.asyncio
async def test_backpressure_when_server_stops_reading(twin_factory: TwinFactory) -> None:
    """A server that stops reading blocks send_audio instead of growing client memory."""
    async with twin_factory(
        engine=ScriptedEngine([]), faults=Faults([Fault("stop_reading", after_frames=5)])
    ) as twin:
        conn = await ws(client_for(twin), close_timeout=0.3, max_buffered_ms=1000).enter()
        tracemalloc.start()
        try:
            chunk = pcm(1.0)  # 32 kB
            sent = 0

            async def push() -> None:
                nonlocal sent
                for _ in range(4000):  # 128 MB if nothing pushed back
                    await conn.send_audio(chunk, speed=None)
                    sent += len(chunk)

            pusher = asyncio.create_task(push())
            # Unbounded, the pusher would queue all 128 MB well within the first wait.
            await asyncio.sleep(0.5 * SLACK)
            before, _ = tracemalloc.get_traced_memory()
            await asyncio.sleep(0.5 * SLACK)
            after, _ = tracemalloc.get_traced_memory()
            assert not pusher.done()
            # Kernel socket buffers (4.6 MB seen here) + a 1 s queue, never 128 MB.
            assert sent < 24_000_000
            assert conn.stats.queued_bytes <= 32_000 + 32_000
            assert after - before < 1_000_000
            pusher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pusher
        finally:
            tracemalloc.stop()
            await conn.close()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stream_runs_sender_and_receiver_to_done(
    twin_factory: TwinFactory, tmp_path: Path
) -> None:
    wav_path = tmp_path / "u.wav"
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm(0.3, value=7))

    def chunks() -> Iterator[bytes]:
        yield pcm(0.1)
        yield pcm(0.05)

    async def achunks() -> AsyncIterator[bytes]:
        yield pcm(0.12)

    engine = ScriptedEngine([["One"], [" two"], [" three"], [" four"]])
    async with twin_factory(engine=engine) as twin:
        async with ws(client_for(twin)) as conn:
            transcript = await conn.stream([pcm(0.2), chunks(), achunks(), wav_path], speed=None)
        assert transcript.text == "One two three four"
        assert [u.text for u in transcript.utterances] == ["One", " two", " three", " four"]
        assert [list(x) for x in engine.utterance_bytes] == [[6400, 4800, 3840, 9600]]
        assert [c for _, c in twin.sessions[0].commands] == ["finalize"] * 4 + ["close"]
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stream_rejects_mismatched_wav_before_sending(
    twin_factory: TwinFactory, tmp_path: Path
) -> None:
    wav_path = tmp_path / "stereo8k.wav"
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(3200))
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        with pytest.raises(stt.InvalidAudioError, match=r"2 channels.*8000 Hz"):
            async with ws(client_for(twin)) as conn:
                await conn.stream([wav_path])
        assert twin.sessions[0].audio_bytes == 0
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stream_cancelled_closes_socket_and_leaks_nothing(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        async with ws(client_for(twin)) as conn:
            task = asyncio.create_task(conn.stream([pcm(30.0)], speed=1.0))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not {t for t in other_tasks() if t.get_name().startswith("cartesia-stt")}
            with pytest.raises(stt.ConnectionStateError):
                await conn.send_audio(pcm(0.1))
        await asyncio.sleep(0.05)
        assert twin.sessions[0].close_code is not None
    assert not other_tasks()


@pytest.mark.asyncio
async def test_cancelling_finalize_and_the_whole_block(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        client = client_for(twin)

        async def session() -> None:
            async with ws(client) as conn:
                await conn.send_audio(pcm(0.1))
                await conn.finalize(timeout=5)
                await asyncio.sleep(30)

        task = asyncio.create_task(session())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    gc.collect()
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stream_surfaces_server_error_and_cancels_sender(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        client = client_for(twin)
        mgr = client.stt.manual_finalize.websocket(
            model="no-such-model", encoding="pcm_s16le", sample_rate=16000
        )
        with pytest.raises(stt.BadRequestError) as info:
            async with mgr as conn:
                await conn.stream([pcm(5.0)], speed=1.0)
        assert info.value.status_code == 400
        assert "model" in str(info.value).lower()
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("action", "error"),
    [
        ("odd_raw", stt.InvalidAudioError),
        ("str_audio", stt.InvalidAudioError),
        ("bad_command", stt.InvalidCommandError),
        ("after_close", stt.ConnectionStateError),
        ("bad_speed", stt.UsageError),
    ],
)
async def test_misuse_raises_typed_errors(
    twin_factory: TwinFactory, action: str, error: type[Exception]
) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin, ws(client_for(twin)) as conn:
        with pytest.raises(error):
            if action == "odd_raw":
                await conn.send_raw(b"\x00\x01\x02")
            elif action == "str_audio":
                await conn.send_audio("not bytes")  # type: ignore[arg-type]
            elif action == "bad_command":
                await conn.send("flush")
            elif action == "after_close":
                await conn.send("close")
                await conn.send_audio(pcm(0.1))
            elif action == "bad_speed":
                await conn.send_audio(pcm(0.1), speed=-1.0)
        # The connection is still usable for a clean end after a local misuse error.
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stray_byte_at_finalize_is_an_error_not_garbage(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin, ws(client_for(twin)) as conn:
        await conn.send_audio(pcm(0.1) + b"\x01")
        with pytest.raises(stt.InvalidAudioError, match="stray byte"):
            await conn.finalize(timeout=5 * SLACK)


@pytest.mark.asyncio
async def test_finalize_timeout_is_typed(twin_factory: TwinFactory) -> None:
    # The twin stops reading after 1 frame, so the finalize is never answered.
    async with twin_factory(
        engine=ScriptedEngine([]), faults=Faults([Fault("stop_reading", after_frames=1)])
    ) as twin:
        conn = await ws(client_for(twin), close_timeout=0.5).enter()
        try:
            await conn.send_audio(pcm(0.2))
            with pytest.raises(stt.APITimeoutError, match="no flush_done"):
                await conn.finalize(timeout=0.3)
            with pytest.raises(stt.APITimeoutError, match="done"):
                await conn.aclose(timeout=0.3)
        finally:
            await conn.close()
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("encoding", "rate", "frame"),
    [
        ("pcm_s16le", 16000, 3200),
        ("pcm_s32le", 16000, 6400),
        ("pcm_f16le", 24000, 4800),
        ("pcm_f32le", 16000, 6400),
        ("pcm_mulaw", 8000, 800),
        ("pcm_alaw", 8000, 800),
    ],
)
async def test_every_encoding_is_reframed_exactly(
    twin_factory: TwinFactory, encoding: str, rate: int, frame: int
) -> None:
    async with twin_factory(engine=ScriptedEngine([[" ok"]])) as twin:
        client = client_for(twin)
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding=encoding, sample_rate=rate, speed=None
        ) as conn:
            width = frame * 10 // rate
            audio = bytes(range(256)) * (frame * 25 // 256 + 1)
            audio = audio[: frame * 2 + frame // 2 + width]  # 2.5 frames and one sample
            for i in range(0, len(audio), 333):  # odd chunks split samples
                await conn.send_audio(audio[i : i + 333])
            utt = await conn.finalize(timeout=5 * SLACK)
        assert utt.text == " ok"
        rec = twin.sessions[0]
        assert [n for _, n in rec.frames] == [frame, frame, frame // 2 + width]
        assert rec.audio_bytes == len(audio)
        assert utt.audio_seconds == pytest.approx(len(audio) / (rate * width))


@pytest.mark.asyncio
async def test_close_with_a_stray_byte_still_ends_the_session(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([[" kept"]])) as twin:
        async with ws(client_for(twin), close_timeout=5 * SLACK) as conn:
            await conn.send_audio(pcm(0.1) + b"\x01")
            with pytest.raises(stt.InvalidAudioError, match="stray byte"):
                await conn.send("close")
        assert conn.state == "done"
        assert conn.transcript.text == " kept"
        assert twin.sessions[0].audio_bytes == 3200
        assert [c for _, c in twin.sessions[0].commands] == ["close"]


@pytest.mark.asyncio
async def test_typed_memoryview_audio_is_counted_in_bytes(twin_factory: TwinFactory) -> None:
    import array

    samples = array.array("h", [1000] * 4800)  # 0.3 s of int16
    async with twin_factory(engine=ScriptedEngine([["x"]])) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_audio(memoryview(samples))
            await conn.send_raw(memoryview(array.array("h", [1, 2, 3])))
            await conn.finalize(timeout=5 * SLACK)
        assert [n for _, n in twin.sessions[0].frames] == [3200, 3200, 3200, 6]


@pytest.mark.asyncio
async def test_recv_and_parse_event_like_the_official_connection(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([[" one"]])) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send_raw(pcm(0.1))
            await conn.send("finalize")
            await conn.send("close")
            received = [await conn.recv() for _ in range(3)]
            with pytest.raises(stt.ConnectionClosedError, match="no more events"):
                await conn.recv()
        assert [e.type for e in received] == ["transcript", "flush_done", "done"]
        first = received[0]
        assert isinstance(first, stt.TranscriptEvent) and first.text == " one" and first.is_final
        parsed = conn.parse_event('{"type":"flush_done","request_id":"r1"}')
        assert isinstance(parsed, stt.FlushDoneEvent) and parsed.request_id == "r1"
        with pytest.raises(stt.ProtocolError):
            conn.parse_event(b"{not json")
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stream_uses_the_connections_own_speed(twin_factory: TwinFactory) -> None:
    """``websocket(speed=None)`` then ``stream(...)`` without a speed: unpaced (it used to pace
    3 s of audio over 2.9 s, ignoring the connection's speed)."""
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        async with ws(client_for(twin), speed=None) as conn:
            await conn.stream([pcm(3.0)])
        arrivals = [t for t, _ in twin.sessions[0].frames]
    assert len(arrivals) == 30
    assert arrivals[-1] - arrivals[0] < 1.0 * SLACK  # paced, it would take 2.9 s


@pytest.mark.asyncio
async def test_sending_after_close_says_what_to_do_instead(twin_factory: TwinFactory) -> None:
    """Issue 21, first hour #7: the error says what happened and how to go on."""
    async with twin_factory(engine=ScriptedEngine([])) as twin:
        async with ws(client_for(twin)) as conn:
            await conn.send("close")
            with pytest.raises(stt.ConnectionStateError) as after_command:
                await conn.send_audio(pcm(0.1))
        with pytest.raises(stt.ConnectionStateError) as after_exit:
            await conn.send_audio(pcm(0.1))
        async with ws(client_for(twin)) as conn:
            await conn.close()
            with pytest.raises(stt.ConnectionStateError) as after_close:
                conn.finalize_nowait()
    assert "after 'close' was sent" in str(after_command.value)
    assert "the connection is closed" in str(after_close.value)
    for info in (after_command, after_exit, after_close):
        assert "open a new session (client.stt.manual_finalize.websocket(...))" in str(info.value)
