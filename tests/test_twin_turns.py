"""The twin's ``/stt/turns/websocket`` (turn detection), driven by a raw websockets client.

Audio is built from loud and silent stretches (``loud(ms)``, ``quiet(ms)``: 10 ms windows, so
every decision falls on a known window) and sent unpaced: the twin decides in audio time, so
the event sequences are exact whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from cartesia_stt_async.testing import TwinFactory
from cartesia_stt_async.twin import (
    Fault,
    Faults,
    RawTurn,
    ScriptedEngine,
    Turn,
    TurnSettings,
    Twin,
    TwinServer,
    serve,
)
from cartesia_stt_async.twin._params import ParamError, validate_turn_params
from cartesia_stt_async.twin._turns import extend_text, settle_text

from .conftest import API_KEY, SLACK, pcm

QUERY = "model=ink-2&encoding=pcm_s16le&sample_rate=16000"
FRAME = 3200  # 100 ms


def loud(ms: int) -> bytes:
    return pcm(ms / 1000, value=3000)  # -21 dBFS: speech to the detector


def quiet(ms: int) -> bytes:
    return pcm(ms / 1000)


@asynccontextmanager
async def turns(
    twin: Twin, query: str = QUERY, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    hdrs = {"X-API-Key": API_KEY} if headers is None else headers
    async with connect(f"{twin.turns_url}?{query}", additional_headers=hdrs) as conn:
        yield conn


async def send_audio(conn: ClientConnection, audio: bytes, frame: int = FRAME) -> None:
    for i in range(0, len(audio), frame):
        await conn.send(audio[i : i + frame])


async def until_closed(conn: ClientConnection, timeout: float = 10) -> list[dict[str, Any]]:
    """Every event until the twin closes the socket (within ``timeout`` seconds × SLACK)."""
    out = []
    async with asyncio.timeout(timeout * SLACK):
        with contextlib.suppress(ConnectionClosedError):  # any code but 1000 and 1001
            async for message in conn:
                assert isinstance(message, str)
                out.append(json.loads(message))
    return out


async def session(
    twin: Twin, audio: bytes, *, frame: int = FRAME, commands: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Send ``commands``, ``audio``, then ``{"type": "close"}``; every event, in order."""
    async with turns(twin) as conn:
        for command in commands:
            await conn.send(command)
        await send_audio(conn, audio, frame)
        await conn.send('{"type": "close"}')
        events = await until_closed(conn)
        assert conn.close_code == 1000
    return events


def brief(events: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """``(type,)`` or ``(type, transcript)`` per event, ``connected`` left out."""
    return [
        (e["type"], e["transcript"]) if "transcript" in e else (e["type"],)
        for e in events
        if e["type"] != "connected"
    ]


# -- scripted turns --------------------------------------------------------------------------

HELLO = Turn(updates=["Hel", "Hello"], eager_end="Hello", end="Hello world")


@pytest.mark.asyncio
async def test_a_scripted_turn_goes_out_verbatim_with_one_request_id() -> None:
    engine = ScriptedEngine(turns=[HELLO])
    async with serve(engine) as twin, turns(twin) as conn:
        assert conn.response is not None
        rid = conn.response.headers["X-Request-Id"]
        await send_audio(conn, loud(500) + quiet(1000))
        await conn.send('{"type":"close"}')
        events = await until_closed(conn)
    assert events[0] == {"type": "connected", "request_id": rid}
    assert brief(events) == [
        ("turn.start",),
        ("turn.update", "Hel"),
        ("turn.update", "Hello"),
        ("turn.eager_end", "Hello"),
        ("turn.end", "Hello world"),
    ]
    assert {e["request_id"] for e in events} == {rid}
    assert twin.sessions[0].close_code == 1000


@pytest.mark.asyncio
async def test_scripted_updates_spread_over_frames_and_flush_before_the_end() -> None:
    # One update per frame while speaking: with 100 ms frames the first goes out with the
    # frame that brought the onset, the second with the next frame; whatever is left goes
    # out before the eager end.
    many = Turn(updates=["a", "a b", "a b c", "a b c d", "a b c d e"], end="a b c d e f")
    engine = ScriptedEngine(turns=[many])
    async with serve(engine) as twin:
        events = await session(twin, loud(200) + quiet(800))
    assert brief(events) == [
        ("turn.start",),
        *[("turn.update", t) for t in many.updates],
        ("turn.eager_end", "a b c d e"),
        ("turn.end", "a b c d e f"),
    ]


@pytest.mark.asyncio
async def test_eager_end_resume_and_the_resumed_updates() -> None:
    turn = Turn(updates=["one"], eager_end="one", resumed=["one two"], end="one two three")
    engine = ScriptedEngine(turns=[turn, Turn(end="next")])
    audio = loud(300) + quiet(500) + loud(300) + quiet(1000) + loud(300)
    async with serve(engine) as twin:
        events = await session(twin, audio)
    assert brief(events) == [
        ("turn.start",),
        ("turn.update", "one"),
        ("turn.eager_end", "one"),
        ("turn.resume",),
        ("turn.update", "one two"),
        ("turn.eager_end", "one"),  # the scripted eager end, each time
        ("turn.end", "one two three"),
        ("turn.start",),
        ("turn.end", "next"),  # the close ends the open turn
    ]


@pytest.mark.asyncio
async def test_raw_turns_send_any_events_at_the_decisions() -> None:
    raw = RawTurn(
        start=[{"type": "turn.start"}, {"type": "turn.update", "transcript": "x"}],
        eager_end=[{"type": "turn.update", "transcript": "revised!", "request_id": "other"}],
        end=[],
    )
    engine = ScriptedEngine(turns=[raw])
    async with serve(engine) as twin:
        events = await session(twin, loud(300) + quiet(1000))
    rid = twin.sessions[0].request_id
    assert events[1:] == [
        {"type": "turn.start", "request_id": rid},
        {"type": "turn.update", "transcript": "x", "request_id": rid},
        {"type": "turn.update", "transcript": "revised!", "request_id": "other"},
    ]


@pytest.mark.asyncio
async def test_replies_answer_phrases_and_utterances_are_cut_at_the_decisions() -> None:
    # Without turn scripts a turn's text is the recognizer's: here ScriptedEngine replies,
    # one per phrase. The utterance ends 250 ms into the pause (the phrase pause), so the
    # engine gets exactly 500 + 250 ms of audio; later silence goes to the next utterance.
    engine = ScriptedEngine([["Hello"], [" there"], [" again"]])
    audio = loud(500) + quiet(1000) + loud(400) + quiet(300) + loud(400) + quiet(800)
    async with serve(engine) as twin:
        events = await session(twin, audio)
    assert brief(events) == [
        ("turn.start",),
        ("turn.update", "Hello"),
        ("turn.eager_end", "Hello"),
        ("turn.end", "Hello"),
        ("turn.start",),
        ("turn.update", " there"),
        ("turn.update", " there again"),
        ("turn.eager_end", " there again"),
        ("turn.end", " there again"),
    ]
    ms = 32  # bytes per millisecond
    assert engine.utterance_bytes == [[750 * ms, (750 + 650) * ms, (50 + 650) * ms]]


@pytest.mark.parametrize("frame", [FRAME, 2, 1234, 10**6])
@pytest.mark.asyncio
async def test_the_same_audio_in_any_frames_gives_the_same_events(frame: int) -> None:
    engine = ScriptedEngine([["Hi"], [" you"]], turns=[HELLO])
    audio = loud(500) + quiet(450) + loud(300) + quiet(1000) + loud(200) + quiet(100)
    async with serve(engine) as twin:
        events = await session(twin, audio, frame=frame)
    assert brief(events) == [
        ("turn.start",),
        ("turn.update", "Hel"),
        ("turn.update", "Hello"),
        ("turn.eager_end", "Hello"),
        ("turn.resume",),
        ("turn.eager_end", "Hello"),
        ("turn.end", "Hello world"),
        ("turn.start",),
        ("turn.end", "Hi"),  # unscripted: the recognizer's first reply, at the close
    ]
    # Scripted turns end no utterance: the first finalize takes all the audio.
    assert engine.utterance_bytes == [[len(audio)]]


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_timeout_parameter_ends_turns_sooner() -> None:
    # A 620 ms pause, then speech: with the default 700 ms end the speech resumes the turn
    # (the 70 ms onset counts as pause until it completes: 690 ms); a 640 ms timeout ends
    # the turn 20 ms into the speech, which then starts a second turn.
    audio = loud(300) + quiet(620) + loud(300) + quiet(100)
    async with serve(ScriptedEngine()) as twin:
        default = brief(await session(twin, audio))
        async with turns(twin, QUERY + "&turn_end_timeout_ms=640") as conn:
            await send_audio(conn, audio)
            await conn.send('{"type": "close"}')
            timed = brief(await until_closed(conn))
    assert default == [
        ("turn.start",),
        ("turn.eager_end", ""),
        ("turn.resume",),
        ("turn.end", ""),
    ]
    assert [e[0] for e in timed] == [
        "turn.start",
        "turn.eager_end",
        "turn.end",
        "turn.start",
        "turn.end",
    ]
    assert twin.sessions[1].turn_settings == TurnSettings(end_timeout_ms=640.0)


@pytest.mark.parametrize(
    ("query", "code", "words"),
    [
        ("encoding=pcm_s16le&sample_rate=16000", "invalid_parameter", "model is required"),
        (
            "model=ink-whisper&encoding=pcm_s16le&sample_rate=16000",
            "model_not_found",
            "'ink-whisper' is not valid",
        ),
        ("model=ink-2&encoding=mp3&sample_rate=16000", "invalid_parameter", "'mp3'"),
        ("model=ink-2&encoding=pcm_s16le&sample_rate=16k", "invalid_parameter", "sample_rate"),
        (QUERY + "&turn_start_threshold=0.95", "invalid_parameter", "turn_start_threshold"),
        (QUERY + "&turn_start_threshold=0.49", "invalid_parameter", "between 0.5 and 0.9"),
        (QUERY + "&turn_eager_end_threshold=0.29", "invalid_parameter", "0.3 and 0.6"),
        (QUERY + "&turn_eager_end_threshold=0.61", "invalid_parameter", "eager_end"),
        (QUERY + "&turn_end_threshold=0.04", "invalid_parameter", "0.05 and 0.5"),
        (QUERY + "&turn_end_threshold=0.51", "invalid_parameter", "turn_end_threshold"),
        (QUERY + "&turn_end_timeout_ms=639", "invalid_parameter", "640.0 and 11200.0"),
        (QUERY + "&turn_end_timeout_ms=11201", "invalid_parameter", "turn_end_timeout_ms"),
        (QUERY + "&turn_end_timeout_ms=soon", "invalid_parameter", "must be a number"),
        (QUERY + "&turn_end_threshold=nan", "invalid_parameter", "turn_end_threshold"),
        (
            QUERY + "&turn_eager_end_threshold=0.5&turn_end_threshold=0.5",
            "invalid_parameter",
            "must be ordered",
        ),
        (
            QUERY + "&turn_start_threshold=0.55&turn_eager_end_threshold=0.6",
            "invalid_parameter",
            "must be ordered",
        ),
        (QUERY + "&keyterm=a" * 101, "invalid_parameter", "at most 100 keyterms"),
        (QUERY + "&keyterm=" + "x" * 1201, "invalid_parameter", "1200 characters"),
    ],
)
@pytest.mark.asyncio
async def test_bad_parameters_get_one_error_event_then_1008(
    query: str, code: str, words: str
) -> None:
    async with serve(ScriptedEngine()) as twin, turns(twin, query) as conn:
        events = await until_closed(conn)
        assert conn.close_code == 1008
    (error,) = events
    assert error["type"] == "error"
    assert error["error_code"] == code
    assert words in error["message"]
    assert error["status_code"] == 400
    assert error["title"] and error["done"] is True
    assert error["request_id"] == twin.sessions[0].request_id
    assert twin.sessions[0].params is None


@pytest.mark.asyncio
async def test_parameters_at_their_bounds_are_accepted_and_unknown_ones_ignored() -> None:
    query = (
        QUERY + "&turn_start_threshold=0.9&turn_eager_end_threshold=0.6"
        "&turn_end_threshold=0.5&turn_end_timeout_ms=11200.0&language=fr&cartesia_client=js"
        "&keyterm=" + "k" * 12 + "&keyterm=k" * 99
    )
    async with serve(ScriptedEngine()) as twin, turns(twin, query) as conn:
        assert json.loads(await conn.recv())["type"] == "connected"
    assert twin.sessions[0].turn_settings == TurnSettings(0.9, 0.6, 0.5, 11200.0)
    params, settings = validate_turn_params(
        [("model", "ink-2"), ("encoding", "pcm_mulaw"), ("sample_rate", "8000"),
         ("turn_start_threshold", "0.5"), ("turn_eager_end_threshold", "0.3"),
         ("turn_end_threshold", "0.05"), ("turn_end_timeout_ms", "640")],
        "2026-08-14",
    )  # fmt: skip
    assert (params.encoding, params.sample_rate, params.version) == (
        "pcm_mulaw",
        8000,
        "2026-08-14",
    )
    assert settings == TurnSettings(0.5, 0.3, 0.05, 640.0)
    with pytest.raises(ParamError, match="model"):
        validate_turn_params([("encoding", "pcm_s16le")], None)


@pytest.mark.asyncio
async def test_keyterms_decode_plus_and_percent_20_alike() -> None:
    query = QUERY + "&keyterm=New+York&keyterm=San%20Francisco&keyterm=a%2Bb"
    async with serve(ScriptedEngine()) as twin, turns(twin, query) as conn:
        assert json.loads(await conn.recv())["type"] == "connected"
    params = twin.sessions[0].params
    assert params is not None
    assert params.keyterms == ("New York", "San Francisco", "a+b")


@pytest.mark.asyncio
async def test_the_version_query_wins_over_the_header() -> None:
    headers = {"X-API-Key": API_KEY, "Cartesia-Version": "2026-03-01"}
    async with serve(ScriptedEngine()) as twin:
        async with turns(twin, QUERY, headers) as conn:
            await conn.recv()
        async with turns(twin, QUERY + "&cartesia_version=2026-08-14", headers) as conn:
            await conn.recv()
    versions = [s.params.version for s in twin.sessions if s.params is not None]
    assert versions == ["2026-03-01", "2026-08-14"]


# -- commands ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_config_applies_to_later_decisions() -> None:
    # A 350 ms pause: one turn with the defaults (eager end at 400 ms); after the config
    # (eager end 230 ms, end 300 ms) the same audio makes two turns.
    phrase = loud(300) + quiet(350) + loud(300) + quiet(100)
    config = {"type": "config", "turn": {"eager_end_threshold": 0.6, "end_threshold": 0.5}}
    engine = ScriptedEngine()
    async with serve(engine) as twin, turns(twin) as conn:
        await send_audio(conn, phrase + quiet(1000))
        await conn.send(json.dumps(config))
        await send_audio(conn, phrase)
        await conn.send('{"type":"close"}')
        events = brief(await until_closed(conn))
    kinds = [e[0] for e in events if e[0] != "turn.update"]
    assert kinds == [
        "turn.start",
        "turn.eager_end",
        "turn.end",  # the first phrase pair: one turn
        "turn.start",
        "turn.eager_end",
        "turn.end",
        "turn.start",
        "turn.end",  # after the config: two
    ]
    assert twin.sessions[0].turn_settings == TurnSettings(0.8, 0.6, 0.5, 5600.0)


@pytest.mark.parametrize(
    ("turn", "words"),
    [
        ({"end_threshold": 0.7}, "between 0.05 and 0.5"),
        ({"eager_end_threshold": 0.3, "end_threshold": 0.3}, "must be ordered"),
        ({"end_timeout_ms": "soon"}, "must be a number"),
        ({"start_threshold": True}, "must be a number"),
        ([0.5], "must be a JSON object"),
    ],
)
@pytest.mark.asyncio
async def test_a_bad_config_gets_an_error_and_changes_nothing(turn: object, words: str) -> None:
    async with serve(ScriptedEngine()) as twin, turns(twin) as conn:
        await conn.recv()  # connected
        await conn.send(json.dumps({"type": "config", "turn": turn}))
        error = json.loads(await conn.recv())
        await conn.send(json.dumps({"type": "config", "turn": {"end_timeout_ms": 1000}}))
        await conn.send('{"type": "close"}')
        assert await until_closed(conn) == []
    assert error["type"] == "error" and error["error_code"] == "invalid_config"
    assert words in error["message"] and error["done"] is False and error["status_code"] == 400
    assert twin.sessions[0].turn_settings == TurnSettings(end_timeout_ms=1000.0)


@pytest.mark.parametrize(
    "command", ["finalize", "close", '{"type": "finalize"}', "[1]", '{"type": "config"'], ids=repr
)
@pytest.mark.asyncio
async def test_unknown_commands_get_an_error_and_the_session_goes_on(command: str) -> None:
    engine = ScriptedEngine(turns=[Turn(end="still here")])
    async with serve(engine) as twin, turns(twin) as conn:
        await conn.recv()
        await conn.send(command)
        error = json.loads(await conn.recv())
        await send_audio(conn, loud(200))
        await conn.send('{"type": "close"}')
        events = await until_closed(conn)
        assert conn.close_code == 1000
    assert error["error_code"] == "invalid_command" and error["done"] is False
    assert '{"type": "close"}' in error["message"]
    assert brief(events) == [("turn.start",), ("turn.end", "still here")]


@pytest.mark.parametrize("close", ['{"type":"close"}', '{ "type" : "close" }\n'], ids=repr)
@pytest.mark.asyncio
async def test_close_ends_the_open_turn_then_closes_1000(close: str) -> None:
    engine = ScriptedEngine(turns=[Turn(updates=["a"], end="a b")])
    async with serve(engine) as twin, turns(twin) as conn:
        await send_audio(conn, loud(300))
        await conn.send(close)
        events = await until_closed(conn)
        assert conn.close_code == 1000
    assert brief(events) == [("turn.start",), ("turn.update", "a"), ("turn.end", "a b")]


@pytest.mark.asyncio
async def test_audio_after_close_is_dropped_and_idle_close_is_plain() -> None:
    async with serve(ScriptedEngine()) as twin, turns(twin) as conn:
        await conn.send(quiet(100))
        await conn.send('{"type": "close"}')
        await conn.send(loud(500))
        assert brief(await until_closed(conn)) == []
        assert conn.close_code == 1000
    assert twin.sessions[0].audio_bytes == len(quiet(100))


@pytest.mark.asyncio
async def test_the_idle_timeout_closes_1001() -> None:
    async with serve(ScriptedEngine(), idle_timeout=0.2) as twin, turns(twin) as conn:
        assert [e["type"] for e in await until_closed(conn)] == ["connected"]
        assert conn.close_code == 1001


# -- auth, CORS, limits, faults ------------------------------------------------------------


@pytest.mark.asyncio
async def test_credentials_are_checked_as_on_the_manual_route() -> None:
    async with serve(ScriptedEngine(), api_keys=[API_KEY]) as twin:
        for headers in ({}, {"X-API-Key": "wrong"}):
            with pytest.raises(InvalidStatus) as refused:
                async with turns(twin, headers=headers):
                    pass
            assert refused.value.response.status_code == 401
        stt_token = twin.mint_token({"stt": True})
        async with turns(twin, f"{QUERY}&access_token={stt_token}", {}) as conn:
            assert json.loads(await conn.recv())["type"] == "connected"
        async with turns(twin, headers={"Authorization": f"Bearer {stt_token}"}) as conn:
            assert json.loads(await conn.recv())["type"] == "connected"
        tts_only = twin.mint_token({"tts": True})
        with pytest.raises(InvalidStatus) as refused:
            async with turns(twin, f"{QUERY}&access_token={tts_only}", {}):
                pass
        assert refused.value.response.status_code == 401
        assert tts_only not in refused.value.response.body.decode()


@pytest.mark.asyncio
async def test_a_browser_origin_may_open_the_socket() -> None:
    # Browsers do not preflight WebSocket handshakes: the route takes any Origin, as
    # /stt/websocket does, and answers without CORS headers.
    headers = {"X-API-Key": API_KEY, "Origin": "https://app.example.com"}
    async with serve(ScriptedEngine()) as twin, turns(twin, headers=headers) as conn:
        assert json.loads(await conn.recv())["type"] == "connected"
        assert conn.response is not None
        assert "Access-Control-Allow-Origin" not in conn.response.headers


@pytest.mark.asyncio
async def test_refusals_and_the_session_cap_apply() -> None:
    async with serve(ScriptedEngine(), faults=Faults(refuse={0: 503}), max_sessions=1) as twin:
        with pytest.raises(InvalidStatus) as refused:
            async with turns(twin):
                pass
        assert refused.value.response.status_code == 503
        async with turns(twin) as first:
            await first.recv()
            with pytest.raises(InvalidStatus) as limited:
                async with turns(twin):
                    pass
            assert limited.value.response.status_code == 429


@pytest.mark.asyncio
async def test_a_scheduled_drop_aborts_the_connection() -> None:
    plan = Faults(schedule=[Fault("abort", after_frames=2)])
    async with serve(ScriptedEngine(turns=[HELLO]), faults=plan) as twin, turns(twin) as conn:
        await send_audio(conn, loud(1000))
        events = await until_closed(conn)
        assert conn.close_code == 1006
    assert brief(events) == [("turn.start",), ("turn.update", "Hel"), ("turn.update", "Hello")]


@pytest.mark.asyncio
async def test_a_scheduled_error_event_closes_1011() -> None:
    plan = Faults(schedule=[Fault("error_event", after_events=2, code=503)])
    async with serve(ScriptedEngine(turns=[HELLO]), faults=plan) as twin, turns(twin) as conn:
        await send_audio(conn, loud(1000))
        events = await until_closed(conn)
        assert conn.close_code == 1011
    assert [e["type"] for e in events] == ["connected", "turn.start", "error"]
    assert events[-1]["status_code"] == 503 and events[-1]["done"] is True


@pytest.mark.asyncio
async def test_a_slow_close_waits_after_the_last_event() -> None:
    plan = Faults(close_delay=0.4 * SLACK)
    async with serve(ScriptedEngine(turns=[HELLO]), faults=plan) as twin, turns(twin) as conn:
        await send_audio(conn, loud(300))
        await conn.send('{"type": "close"}')
        started = time.monotonic()
        events = await until_closed(conn)
        waited = time.monotonic() - started
        assert conn.close_code == 1000
    assert brief(events)[-1] == ("turn.end", "Hello world")
    assert waited >= 0.4 * SLACK


# -- the pytest plugin -------------------------------------------------------------------------


@pytest.mark.cartesia_twin(turns=[Turn(updates=["Hel", "Hello"], end="Hello world")])
@pytest.mark.asyncio
async def test_the_plugin_twin_serves_scripted_turns(cartesia_twin: TwinServer) -> None:
    assert cartesia_twin.turns_url == cartesia_twin.ws_base_url + "/stt/turns/websocket"
    url = f"{cartesia_twin.turns_url}?{QUERY}"
    async with connect(url, additional_headers={"X-API-Key": API_KEY}) as conn:
        await send_audio(conn, loud(300))
        await conn.send('{"type": "close"}')
        events = await until_closed(conn)
    assert brief(events) == [
        ("turn.start",),
        ("turn.update", "Hel"),
        ("turn.update", "Hello"),
        ("turn.end", "Hello world"),
    ]


def test_the_plugin_factory_takes_turns_and_refuses_mixing(
    cartesia_twin_factory: TwinFactory,
) -> None:
    server = cartesia_twin_factory(turns=[RawTurn(start=[{"type": "turn.start"}])])
    engine = server.engine
    assert isinstance(engine, ScriptedEngine) and len(engine.turns) == 1
    with pytest.raises(TypeError, match="turns"):
        cartesia_twin_factory(turns=[Turn()], speech=True)


def test_text_only_grows() -> None:
    assert extend_text("", "a") == "a"
    assert extend_text("a b", "a b c") == "a b c"
    assert extend_text("a b", "a b") is None  # nothing new
    assert extend_text("a b", "a c d") is None  # a revision
    assert settle_text(" a b", " a b c") == " a b c"
    # A revised word keeps its sent form; the final's later words follow it.
    assert settle_text(" the crew", " the quick brown fox") == " the crew brown fox"
    assert settle_text("", "") == ""
