"""Logging: the handshake at DEBUG with Authorization redacted (also on reconnects), frame
counts and timings, and never transcript text unless asked for."""

from __future__ import annotations

import logging

import pytest

from cartesia_stt_async.twin import ScriptedEngine
from cartesia_stt_async.twin.faults import Fault, Faults

from .conftest import API_KEY, SLACK, TwinFactory, client_for, pcm, ws

SECRET_TEXT = "Zebra-quartz whispering"


async def run_session(twin_factory: TwinFactory, **kw: object) -> None:
    table = {pcm(0.25, value=1): [SECRET_TEXT]}
    faults = Faults([Fault("abort", connection=0, after_frames=2)])
    async with twin_factory(engine=ScriptedEngine([], by_audio=table), faults=faults) as twin:
        async with ws(client_for(twin), **kw) as conn:
            await conn.send_audio(pcm(0.25, value=1))
            assert (await conn.finalize(timeout=5 * SLACK)).text == SECRET_TEXT
        assert conn.stats.reconnects == 1


@pytest.mark.asyncio
async def test_debug_log_redacts_the_key_and_omits_transcripts(
    twin_factory: TwinFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cartesia_stt_async")
    await run_session(twin_factory)
    records = [r for r in caplog.records if r.name.startswith("cartesia_stt_async")]
    text = "\n".join(r.getMessage() for r in records)
    assert API_KEY not in text and API_KEY[-12:] not in text
    # Both handshakes (the first and the reconnect) are logged, Authorization redacted.
    auth = [m for m in text.splitlines() if m.lower().startswith("> authorization")]
    assert auth == ["> Authorization: [redacted]"] * 2
    assert SECRET_TEXT not in text
    assert "Zebra" not in text
    # Frame counts and timings are there.
    assert "frames" in text and "latency" in text
    assert "reconnected" in text and "replaying" in text
    ws_records = [r for r in records if r.name == "cartesia_stt_async.ws"]
    assert ws_records  # the websockets library's own handshake logs go through the redactor


@pytest.mark.asyncio
async def test_transcript_text_is_logged_only_when_asked(
    twin_factory: TwinFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cartesia_stt_async")
    await run_session(twin_factory, log_transcripts=True)
    text = caplog.text
    assert SECRET_TEXT in text
    assert API_KEY not in text


@pytest.mark.asyncio
async def test_nothing_is_logged_above_debug_on_a_repaired_drop(
    twin_factory: TwinFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cartesia_stt_async")
    await run_session(twin_factory)
    assert not [r for r in caplog.records if r.name.startswith("cartesia_stt_async")]
