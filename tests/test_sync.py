"""The sync client (``cartesia_stt_async._sync``) against a real twin on 127.0.0.1.

The twin runs on its own event loop in a background thread (anyio's blocking portal), the
client on another (its own portal thread), and the test drives the client from the main
thread, as a sync program would.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

import cartesia_stt_async as stt
from cartesia_stt_async._sync import Cartesia, SyncConnection
from cartesia_stt_async.twin import Engine, Fault, Faults, ScriptedEngine, Twin, serve

from .conftest import API_KEY, SLACK, pcm

MODEL: dict[str, Any] = {"model": "ink-2", "encoding": "pcm_s16le", "sample_rate": 16000}


@contextlib.contextmanager
def twin_thread(engine: Engine | None = None, **options: Any) -> Iterator[Twin]:
    """A twin serving from its own event loop in a background thread."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(
            serve(engine=engine if engine is not None else ScriptedEngine([]), **options)
        ) as twin,
    ):
        yield twin


def client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cartesia-stt-sync")]


@pytest.fixture
def twin() -> Iterator[Twin]:
    with twin_thread(ScriptedEngine([["Hello", " world."], [" Again."]])) as server:
        yield server


@pytest.fixture
def client(twin: Twin) -> Iterator[Cartesia]:
    with Cartesia(api_key=API_KEY, base_url=twin.base_url) as c:
        yield c
    assert not client_threads()


def loop_tasks(client: Cartesia) -> list[str]:
    """The names of the coroutines running on the client's loop, but the one asking."""

    async def names() -> list[str]:
        me = asyncio.current_task()
        return sorted(t.get_name() for t in asyncio.all_tasks() if t is not me)

    return client._runtime.portal().call(names)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt) for the test, restored after it.

    A process started in the background by a non-interactive shell (``cmd &``, as CI runners
    and xdist workers under them may be) inherits SIGINT ignored, and Python keeps it so.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_main_after(seconds: float) -> threading.Timer:
    """Deliver SIGINT to the main thread (as Ctrl-C does) after ``seconds``."""
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    # Ctrl-C must reach this thread as KeyboardInterrupt (else the test would hang): see the
    # ``ctrl_c_raises`` fixture.
    handler = signal.getsignal(signal.SIGINT)
    assert handler is signal.default_int_handler, f"SIGINT handled by {handler!r}"
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.SIGINT not in blocked, f"SIGINT blocked in the main thread: {blocked}"
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


# -- the official surface ------------------------------------------------------------------


def test_seed_style_flow_collects_finals_and_done(client: Cartesia, twin: Twin) -> None:
    with client.stt.manual_finalize.websocket(**MODEL) as connection:
        assert isinstance(connection, SyncConnection)
        for i in range(0, 6400, 3200):
            connection.send_raw(pcm(1.0)[i : i + 3200])
        connection.send("finalize")
        connection.send("close")
        events = list(connection)
    assert [e.type for e in events] == ["transcript", "transcript", "flush_done", "done"]
    assert connection.transcript.text == "Hello world."
    assert connection.state == "done"
    assert connection.stats.frames_sent == 2
    (record,) = twin.sessions
    assert [t for _, t in record.commands] == ["finalize", "close"]
    assert [size for _, size in record.frames] == [3200, 3200]


def test_one_thread_per_client_shared_by_its_connections(twin: Twin) -> None:
    assert not client_threads()
    client = Cartesia(api_key=API_KEY, base_url=twin.base_url)
    assert not client_threads()  # started on first use
    with (
        client.stt.manual_finalize.websocket(**MODEL) as a,
        client.stt.manual_finalize.websocket(**MODEL) as b,
    ):
        a.send_audio(pcm(0.2), speed=None)
        b.send_audio(pcm(0.2), speed=None)
        assert a.finalize().text == "Hello world."
        assert b.finalize().text == "Hello world."
        assert len(client_threads()) == 1
    client.close()
    assert not client_threads()
    client.close()  # idempotent


def test_recv_finalize_send_audio_and_properties(client: Cartesia) -> None:
    manager = client.stt.manual_finalize.websocket(**MODEL, speed=None)
    assert "127.0.0.1" in manager.url and API_KEY not in repr(manager)
    with manager as connection:
        assert connection.speed is None
        connection.speed = 2.0
        assert connection.speed == 2.0
        connection.send_audio(pcm(0.3), speed=None)
        utterance = connection.finalize(timeout=10 * SLACK)
        assert utterance.text == "Hello world."
        assert connection.recv().type == "transcript"
        assert connection.request_id and connection.lag == 0.0 and not connection.reconnecting
        assert "SyncConnection" in repr(connection)
    assert connection.state == "done"
    assert connection.transcript.text == "Hello world."
    assert connection.parse_event('{"type": "done", "request_id": "r"}').type == "done"


def test_enter_and_close_like_the_official_client(client: Cartesia, twin: Twin) -> None:
    connection = client.stt.manual_finalize.websocket(**MODEL).enter()
    connection.send_raw(pcm(0.1))
    connection.close()
    with pytest.raises(stt.ConnectionStateError):
        connection.send("finalize")
    (record,) = twin.sessions
    assert record.commands == []  # close() closes the socket at once: no close command


def test_finish_drains_to_done(client: Cartesia) -> None:
    connection = client.stt.manual_finalize.websocket(**MODEL).enter()
    connection.send_raw(pcm(0.1))
    connection.send("finalize")
    connection.finish()
    assert connection.state == "done"
    assert connection.transcript.text == "Hello world."


# -- typed errors: the async client's classes ------------------------------------------------


def test_errors_are_the_async_clients_classes(client: Cartesia) -> None:
    with client.stt.manual_finalize.websocket(**MODEL) as connection:
        with pytest.raises(stt.InvalidCommandError):
            connection.send("flush")
        with pytest.raises(stt.InvalidAudioError):
            connection.send_raw(b"\x00")  # half a sample
        connection.send("close")
        with pytest.raises(stt.ConnectionStateError):
            connection.send_raw(pcm(0.1))
    with pytest.raises(stt.UsageError):
        client.stt.manual_finalize.websocket(model="ink-2", encoding="pcm_s17", sample_rate=16000)


def test_refused_handshake_is_authentication_error() -> None:
    with (
        twin_thread(api_keys=["right"]) as twin,
        Cartesia(api_key="wrong-key-SECRET", base_url=twin.base_url) as client,
    ):
        with pytest.raises(stt.AuthenticationError) as info:
            client.stt.manual_finalize.websocket(**MODEL).enter()
        assert "SECRET" not in str(info.value)
        assert "SECRET" not in repr(client)


def test_no_api_key_is_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(stt.ConfigurationError):
        Cartesia()


def test_unreachable_server_is_api_connection_error() -> None:
    with (
        Cartesia(api_key=API_KEY, base_url="http://127.0.0.1:9") as client,
        pytest.raises(stt.APIConnectionError),
    ):
        client.stt.manual_finalize.websocket(**MODEL, open_timeout=5 * SLACK).enter()


def test_dropped_connection_raises_from_iteration() -> None:
    faults = Faults([Fault("error_event", after_frames=1, code=503)])
    with (
        twin_thread(faults=faults) as twin,
        Cartesia(api_key=API_KEY, base_url=twin.base_url) as client,
        client.stt.manual_finalize.websocket(**MODEL, max_retries=0) as connection,
    ):
        connection.send_raw(pcm(0.1))
        events = list(connection)  # an error event is yielded, as the official SDK does
        assert events[-1].type == "error"
        with pytest.raises(stt.APIError):
            connection.send("finalize")


# -- handlers run in the calling thread ------------------------------------------------------


def test_handlers_run_in_the_dispatching_thread(client: Cartesia) -> None:
    seen: list[tuple[str, int]] = []
    manager = client.stt.manual_finalize.websocket(**MODEL)

    @manager.on("flush_done")
    def on_flush_done(event: Any) -> None:
        seen.append(("flush_done", threading.get_ident()))
        connection.send("close")  # a blocking call from a handler

    once_calls: list[str] = []
    manager.once("event", lambda event: once_calls.append(event.type))
    removed: list[str] = []

    def never(event: Any) -> None:
        removed.append(event.type)

    with manager as connection:
        connection.on("transcript", lambda e: seen.append((e.text, threading.get_ident())))
        connection.on("done", never).off("done", never)
        connection.send_raw(pcm(0.1))
        connection.send("finalize")
        connection.dispatch_events()
    me = threading.get_ident()
    assert seen == [("Hello", me), (" world.", me), ("flush_done", me)]
    assert once_calls == ["transcript"]
    assert removed == []
    assert connection.state == "done"


def test_handler_exception_stops_dispatch_and_propagates(client: Cartesia) -> None:
    class Boom(Exception):
        pass

    def explode(event: Any) -> None:
        raise Boom(event.type)

    with client.stt.manual_finalize.websocket(**MODEL) as connection:
        connection.on("transcript", explode)
        connection.send_raw(pcm(0.1))
        connection.send("finalize")
        with pytest.raises(Boom, match="transcript"):
            connection.dispatch_events()


def test_unhandled_error_event_raises_api_error() -> None:
    faults = Faults([Fault("error_event", after_frames=1, code=500)])
    with (
        twin_thread(faults=faults) as twin,
        Cartesia(api_key=API_KEY, base_url=twin.base_url) as client,
        pytest.raises(stt.APIError),
        client.stt.manual_finalize.websocket(**MODEL, max_retries=0) as connection,
    ):
        connection.on("transcript", print)
        connection.send_raw(pcm(0.1))
        connection.dispatch_events()


def test_blocking_call_on_the_clients_loop_is_usage_error(client: Cartesia) -> None:
    with client.stt.manual_finalize.websocket(**MODEL) as connection:

        async def on_loop(event: Any) -> None:  # async handlers run on the client's loop
            connection.send("close")

        connection.on("flush_done", on_loop)
        connection.send_raw(pcm(0.1))
        connection.send("finalize")
        with pytest.raises(stt.UsageError, match="own event loop"):
            connection.dispatch_events()


# -- Ctrl-C ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_cancels_the_blocked_call_and_the_connection_goes_on(
    client: Cartesia, twin: Twin
) -> None:
    with client.stt.manual_finalize.websocket(**MODEL) as connection:
        before = loop_tasks(client)
        timer = interrupt_main_after(0.3)
        with pytest.raises(KeyboardInterrupt):
            connection.recv()  # nothing comes before a finalize: blocked until Ctrl-C
        timer.join()
        assert loop_tasks(client) == before
        connection.send_raw(pcm(0.1))
        connection.send("finalize")
        connection.send("close")
        # Had the interrupted recv() gone on running, it would have taken the first event.
        assert [e.type for e in connection] == ["transcript", "transcript", "flush_done", "done"]


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_leaving_with_closes_the_socket_promptly(client: Cartesia, twin: Twin) -> None:
    started = time.monotonic()
    with (
        pytest.raises(KeyboardInterrupt),
        client.stt.manual_finalize.websocket(**MODEL, close_timeout=30) as connection,
    ):
        connection.send_raw(pcm(0.1))
        interrupt_main_after(0.3)
        for _ in connection:  # blocked: no event before a finalize
            pass
    assert time.monotonic() - started < 3 * SLACK  # not close_timeout: no drain
    assert connection.state == "closed"
    deadline = time.monotonic() + 5 * SLACK
    while twin.sessions[0].close_code is None and time.monotonic() < deadline:
        time.sleep(0.02)
    (record,) = twin.sessions
    assert record.commands == []  # no close command: the socket was closed at once
    assert record.close_code is not None


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_during_dispatch_events_cancels_it(client: Cartesia) -> None:
    with client.stt.manual_finalize.websocket(**MODEL) as connection:
        before = loop_tasks(client)
        connection.on("event", print)
        interrupt_main_after(0.3)
        with pytest.raises(KeyboardInterrupt):
            connection.dispatch_events()
        assert loop_tasks(client) == before  # the async dispatcher is gone
        connection.send_raw(pcm(0.1))
        assert connection.finalize(timeout=10 * SLACK).text == "Hello world."


# -- speech synthesis ------------------------------------------------------------------------


def test_tts_generate_read_iter_bytes_write_to_file(client: Cartesia, tmp_path: Path) -> None:
    pytest.importorskip("py_nanotts")
    response = client.tts.generate(
        model_id="sonic-latest",
        transcript="Hello there.",
        voice={"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},
        output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        language="en",
    )
    audio = response.read()
    assert len(audio) > 16000 and len(audio) % 2 == 0
    assert b"".join(response.iter_bytes(1000)) == audio
    assert max(len(c) for c in response.iter_bytes(1000)) == 1000
    response.write_to_file(tmp_path / "out.pcm")
    assert (tmp_path / "out.pcm").read_bytes() == audio
    assert "SyncSpeechResponse" in repr(response) and response.request_id
    with pytest.raises(stt.UsageError):
        list(response.iter_bytes(0))
    with pytest.raises(stt.UsageError):
        client.tts.generate(
            model_id="sonic-latest", transcript=" ", voice="v", output_format={"container": "raw"}
        )


# -- closing the client ----------------------------------------------------------------------


def test_closing_the_client_closes_its_connections_and_its_thread(twin: Twin) -> None:
    client = Cartesia(api_key=API_KEY, base_url=twin.base_url)
    connection = client.stt.manual_finalize.websocket(**MODEL).enter()
    connection.send_raw(pcm(0.1))
    assert len(client_threads()) == 1
    client.close()
    assert not client_threads()
    assert connection.state == "closed"
    with pytest.raises(stt.ConnectionStateError):
        connection.send("finalize")
    connection.close()  # a no-op now
    # The client itself can be used again: a new thread.
    with client.stt.manual_finalize.websocket(**MODEL) as again:
        again.send_raw(pcm(0.1))
        assert again.finalize().text == "Hello world."
    client.close()
    assert not client_threads()


def test_client_closed_inside_with_block_exits_quietly(twin: Twin) -> None:
    client = Cartesia(api_key=API_KEY, base_url=twin.base_url)
    with client.stt.manual_finalize.websocket(**MODEL) as connection:
        connection.send_raw(pcm(0.1))
        client.close()
    assert not client_threads()


def test_a_forgotten_client_stops_its_thread_when_collected(twin: Twin) -> None:
    client = Cartesia(api_key=API_KEY, base_url=twin.base_url)
    with client.stt.manual_finalize.websocket(**MODEL) as connection:
        connection.send_raw(pcm(0.1))
    assert len(client_threads()) == 1
    del client, connection
    gc.collect()
    assert not client_threads()


def test_a_forgotten_client_does_not_hold_up_interpreter_exit(twin: Twin) -> None:
    script = textwrap.dedent(
        f"""
        from cartesia_stt_async._sync import Cartesia
        client = Cartesia(api_key="k", base_url={twin.base_url!r})
        connection = client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000
        ).enter()
        connection.send_raw(bytes(3200))
        print("connected", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30 * SLACK,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "connected\n"
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr


def test_the_sync_client_mints_access_tokens(client: Cartesia) -> None:
    with client:
        token = client.access_token.create(grants={"stt": True}, expires_in=60)
        assert token.token and token.expires_in == 60
        with pytest.raises(stt.UsageError, match="expires_in"):
            client.access_token.create(expires_in=0)


@pytest.mark.asyncio
async def test_the_sync_client_refuses_at_once_inside_a_running_loop() -> None:
    """Issue 21, first hour #2: a twin on this very loop could never answer a blocking call
    (it timed out after 10 s with a misleading open timeout); refused at once, pointing at
    AsyncCartesia."""
    async with serve(engine=ScriptedEngine([])) as twin:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with Cartesia(api_key=API_KEY, base_url=twin.base_url) as client:
            with pytest.raises(stt.UsageError, match="use AsyncCartesia") as session_info:
                client.stt.manual_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000
                ).__enter__()
            with pytest.raises(stt.UsageError, match="running event loop"):
                client.access_token.create(grants={"stt": True})
        assert loop.time() - started < 2 * SLACK  # refused, not timed out
        assert twin.handshakes == 0
    assert "inside a running event loop" in str(session_info.value)
