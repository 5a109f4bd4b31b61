"""Lifetimes of the clients (review 3, issue 20): a forked child, a sync client left to the
garbage collector, an async client reused under a second event loop.

Each test drives the real client against a real twin on 127.0.0.1, running on its own event
loop in a background thread (``start_twin``), so the client's loops come and go around it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async._sync import Cartesia
from cartesia_stt_async.twin import ScriptedEngine, TwinServer, start_twin

from .conftest import API_KEY, SLACK, pcm

MODEL: dict[str, Any] = {"model": "ink-2", "encoding": "pcm_s16le", "sample_rate": 16000}
VOICE = {"mode": "id", "id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"}
RAW = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}


@pytest.fixture
def twin() -> Iterator[TwinServer]:
    with start_twin(ScriptedEngine([["Hello", " world."], [" Again."]])) as server:
        yield server


def client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cartesia-stt-sync")]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10 * SLACK) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still not so after {timeout} s")
        time.sleep(0.01)


def wait_closed(twin: TwinServer) -> None:
    """Every session the twin saw has ended, with a close code recorded."""
    wait_for(lambda: all(s.close_code is not None for s in twin.sessions), "sessions open")


# -- a client left to the garbage collector -------------------------------------------------


def test_a_dropped_client_with_an_open_session_is_closed_when_collected(twin: TwinServer) -> None:
    client = Cartesia(api_key=API_KEY, base_url=twin.base_url)
    connection = client.stt.manual_finalize.websocket(**MODEL).enter()
    connection.send_raw(pcm(0.1))
    assert client.access_token.create(expires_in=60).token  # the HTTP pool is open too
    assert len(client_threads()) == 1
    del client, connection  # neither closed
    gc.collect()
    wait_closed(twin)  # the socket was closed, not left open on a stopped loop
    assert not client_threads()
    assert twin.sessions[0].close_code == 1000


def test_a_client_whose_last_reference_dies_on_its_own_thread_is_closed(
    twin: TwinServer,
) -> None:
    client = Cartesia(api_key=API_KEY, base_url=twin.base_url)
    connection = client.stt.manual_finalize.websocket(**MODEL).enter()
    connection.send_raw(pcm(0.1))
    holder: list[object] = [client, connection]
    call = client._runtime.portal().call
    del client, connection

    async def drop() -> None:
        holder.clear()  # the client is collected here, on its own loop thread
        gc.collect()

    call(drop)
    del call
    wait_closed(twin)
    wait_for(lambda: not client_threads(), "the client's thread is alive")
    assert twin.sessions[0].close_code == 1000


# -- a forked child -------------------------------------------------------------------------


def fork_and_wait(child: Callable[[], None], timeout: float = 30 * SLACK) -> None:
    """Run ``child()`` in a forked child; fail with its traceback, or if it hangs.

    The child never returns into pytest: it leaves through ``os._exit``.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock the child; the
        # client is built to survive it (the test twin's thread is there too).
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            child()
            code = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    status = None
    while status is None:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            status = None
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(read_end)
                pytest.fail(f"the forked child hung (killed after {timeout} s)")
            time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, report or f"child status {status}"


def test_a_forked_child_has_a_working_client_and_leaves_the_parents_alone(
    twin: TwinServer,
) -> None:
    client = Cartesia(api_key=API_KEY, base_url=twin.base_url)
    connection = client.stt.manual_finalize.websocket(**MODEL).enter()
    connection.send_raw(pcm(0.1))
    assert client.access_token.create(expires_in=60).token

    def child() -> None:
        # A new client works.
        with (
            Cartesia(api_key=API_KEY, base_url=twin.base_url) as fresh,
            fresh.stt.manual_finalize.websocket(**MODEL) as session,
        ):
            session.send_raw(pcm(0.1))
            assert session.finalize(timeout=10 * SLACK).text == "Hello world."
        # So does the inherited one, on a thread of its own, with a pool of its own.
        assert client.access_token.create(expires_in=60).token
        with client.stt.manual_finalize.websocket(**MODEL) as session:
            session.send_raw(pcm(0.1))
            assert session.finalize(timeout=10 * SLACK).text == "Hello world."
        # The parent's session is the parent's: a clear error, and closing it is a no-op.
        with pytest.raises(stt.ConnectionStateError, match=r"os\.fork"):
            connection.send_raw(pcm(0.1))
        connection.close()
        client.close()
        assert not client_threads()
        client._finalizer()  # what interpreter exit runs

    fork_and_wait(child)
    # The parent's session and pool were not disturbed by the child.
    connection.send_raw(pcm(0.1))
    assert connection.finalize(timeout=10 * SLACK).text == "Hello world."
    assert client.access_token.create(expires_in=60).token
    connection.close()
    client.close()
    wait_closed(twin)


@pytest.mark.parametrize(
    "in_child",
    ["pass", "client.access_token.create(expires_in=60)"],
    ids=["unused", "used"],
)
def test_a_forked_child_exits_normally_and_the_parent_keeps_working(
    twin: TwinServer, in_child: str
) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys, time, warnings
        from cartesia_stt_async._sync import Cartesia
        client = Cartesia(api_key="k", base_url={twin.base_url!r})
        connection = client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000
        ).enter()
        connection.send_raw(bytes(3200))
        client.access_token.create(expires_in=60)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")
            pid = os.fork()
        if pid == 0:
            {in_child}
            sys.exit(0)  # a normal exit: atexit, the client's finalizer, module teardown
        deadline = time.monotonic() + {20 * SLACK}
        while os.waitpid(pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                print("child hung", flush=True)
                sys.exit(3)
            time.sleep(0.02)
        # The parent's socket and pooled HTTP connection still work (the child's exit did
        # not close them, nor unregister them from the loop's selector, which it shares).
        import threading
        call = threading.Thread(target=client.access_token.create, daemon=True)
        call.start()
        call.join({10 * SLACK})
        if call.is_alive():
            print("the parent's pool is stuck", flush=True)
            os._exit(4)
        connection.send_raw(bytes(3200))
        connection.close()
        print("ok", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60 * SLACK,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "ok\n"
    for bad in ("Traceback", "Exception ignored", "Unclosed", "unclosed"):
        assert bad not in done.stderr, done.stderr


# -- an async client under a second event loop ----------------------------------------------


def test_an_async_client_works_under_a_second_event_loop(twin: TwinServer) -> None:
    pytest.importorskip("py_nanotts")
    client = stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url)

    async def use() -> tuple[str, int, str]:
        token = await client.access_token.create(grants={"stt": True}, expires_in=60)
        speech = await client.tts.generate(
            model_id="sonic-latest",
            transcript="Hi.",
            voice=VOICE,
            output_format=RAW,
            language="en",
        )
        async with client.stt.manual_finalize.websocket(**MODEL) as connection:
            await connection.send_raw(pcm(0.1))
            text = (await connection.finalize(timeout=10 * SLACK)).text
        return token.token, len(await speech.read()), text

    first = asyncio.run(use())
    second = asyncio.run(use())  # a new loop: the pool of the first one is gone with it
    assert first[0] and second[0]
    assert first[1] == second[1] > 16000
    assert first[2] == second[2] == "Hello world."
    asyncio.run(client.close())
    gc.collect()  # nothing left of either loop's pool that would warn when collected


def test_an_async_client_alternates_between_two_open_loops(twin: TwinServer) -> None:
    client = stt.AsyncCartesia(api_key=API_KEY, base_url=twin.base_url)
    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        for loop in loops + loops:
            token = loop.run_until_complete(client.access_token.create(expires_in=60))
            assert token.token
        for loop in loops:  # close() releases the pool of the loop it runs on
            loop.run_until_complete(client.close())
    finally:
        for loop in loops:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    gc.collect()
