"""A user's async tests (pytest-asyncio) that use only the plugin's fixtures."""

from __future__ import annotations

import gc

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.testing import TwinFactory, TwinServer
from cartesia_stt_async.twin import Fault, Faults


def test_the_fixtures_come_from_the_plugin_not_a_conftest(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    assert manager.get_plugin("cartesia_stt_async") is not None  # the pytest11 entry point
    conftests = [p for p in manager.get_plugins() if "conftest" in getattr(p, "__name__", "")]
    assert conftests == []


@pytest.mark.asyncio
@pytest.mark.cartesia_twin(script=[["Hello", " world."]])
async def test_scripted_reply(
    cartesia_client: stt.AsyncCartesia, cartesia_twin: TwinServer
) -> None:
    async with cartesia_client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
    ) as conn:
        await conn.send_audio(bytes(3200))
        utterance = await conn.finalize()
    assert utterance.text == "Hello world."
    await cartesia_twin.idle()
    assert [s.close_code for s in cartesia_twin.sessions] == [1000]


HELLO, BYE = bytes(3200), b"\x01\x00" * 1600  # two utterances' audio (0.1 s each)


@pytest.mark.asyncio
@pytest.mark.cartesia_twin(
    # Replies keyed by each utterance's audio, as a recognizer would answer: a replayed
    # utterance gets the same text on the new connection.
    by_audio={HELLO: ["Hello", " world."], BYE: [" Bye."]},
    # The first connection closes with 1011 right after the first utterance's answer
    # (two finals and flush_done): the client reconnects; nothing is lost or repeated.
    faults=Faults([Fault("close", connection=0, after_events=3, code=1011)]),
)
async def test_a_drop_is_repaired(
    cartesia_client: stt.AsyncCartesia, cartesia_twin: TwinServer
) -> None:
    async with cartesia_client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None, initial_delay=0.01
    ) as conn:
        await conn.send_audio(HELLO)
        await conn.finalize()
        await conn.send_audio(BYE)
        await conn.finalize()
    assert conn.transcript.text == "Hello world. Bye."
    assert conn.stats.reconnects == 1
    assert len(cartesia_twin.sessions) == 2


@pytest.mark.asyncio
@pytest.mark.cartesia_twin(max_sessions=1)
async def test_session_limit(cartesia_client: stt.AsyncCartesia) -> None:
    manager = cartesia_client.stt.manual_finalize.websocket
    async with manager(model="ink-2", encoding="pcm_s16le", sample_rate=16000):
        with pytest.raises(stt.RateLimitError):
            async with manager(model="ink-2", encoding="pcm_s16le", sample_rate=16000):
                pass


@pytest.mark.asyncio
async def test_two_twins_from_the_factory(cartesia_twin_factory: TwinFactory) -> None:
    texts = []
    for twin in (cartesia_twin_factory([["one"]]), cartesia_twin_factory([["two"]])):
        async with (
            stt.AsyncCartesia(api_key="k", base_url=twin.base_url) as client,
            client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
            ) as conn,
        ):
            await conn.send_audio(bytes(320))
            texts.append((await conn.finalize()).text)
    assert texts == ["one", "two"]


@pytest.mark.asyncio
async def test_speech_twin_hears_what_it_says(cartesia_speech_twin: TwinServer) -> None:
    async with stt.AsyncCartesia(api_key="k", base_url=cartesia_speech_twin.base_url) as client:
        speech = await client.tts.generate(
            model_id="sonic-latest",
            transcript="Thank you very much for your help",
            voice="any",
            output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        )
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(await speech.read())
            utterance = await conn.finalize()
    assert utterance.text == "thank you very much for your help"


@pytest.mark.asyncio
async def test_client_http_pool_used_and_left_open(cartesia_client: stt.AsyncCartesia) -> None:
    # tts.generate opens the client's HTTP pool; the fixture closes it after the test.
    speech = await cartesia_client.tts.generate(
        model_id="sonic-latest",
        transcript="Hi",
        voice="any",
        output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
    )
    assert len(await speech.read()) > 0


def test_nothing_unclosed_was_left_by_the_previous_test() -> None:
    # Under -W error, an aiohttp session collected unclosed fails the test that collects it.
    gc.collect()
