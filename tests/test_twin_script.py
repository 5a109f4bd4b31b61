"""The default twin from any program: a script with no ``__main__`` guard, ``python -c``.

The recognizer's workers are programs of their own (``python -c`` running
``_sphinx_worker.main``), talking over stdin/stdout: nothing imports the user's script again.
Also here: a worker's death fails its sessions cleanly and is reported with how it ended,
nothing outlives the twin, a worker quits when its server dies, and nothing the model code
prints can reach the channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.twin import serve
from cartesia_stt_async.twin import sphinx as sphinx_module
from cartesia_stt_async.twin.sphinx import SphinxEngine
from cartesia_stt_async.twin.wer import word_error_rate

from .conftest import SLACK, client_for, ws
from .speech import speech

pytestmark = pytest.mark.speech

ROOT = Path(__file__).resolve().parent.parent
MAX_WER = 0.35
SENTENCE = "Thank you very much for your help"

# A user's program as it would be written at the top of a script, a notebook cell or a REPL:
# no function guarded by ``if __name__ == "__main__":``. ``max_retries=0`` turns a recognizer
# failure (close 1011) into an error instead of a reconnect.
PROGRAM = f"""\
import asyncio

from cartesia_stt_async import AsyncCartesia
from cartesia_stt_async.twin import serve


async def main() -> None:
    async with serve() as twin, AsyncCartesia(api_key="any", base_url=twin.base_url) as client:
        response = await client.tts.generate(
            model_id="sonic-latest",
            transcript={SENTENCE!r},
            voice="any-voice-id",
            output_format={{"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}},
        )
        audio = await response.read()
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None, max_retries=0
        ) as conn:
            await conn.send_audio(audio)
            utterance = await conn.finalize(timeout=60)
    print("transcript:", utterance.text)


asyncio.run(main())
"""


def child_env() -> dict[str, str]:
    """This environment with this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def worker_children() -> list[int]:
    """This process's children that are recognizer workers (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"_sphinx_worker" in cmdline:
            found.append(int(entry.name))
    return found


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.mark.parametrize("how", ["script", "-c"])
def test_a_program_without_main_guard_runs_the_default_twin(tmp_path: Path, how: str) -> None:
    """Before the workers were programs of their own, the script variant failed: the spawned
    worker re-ran the script, and the session closed with 1011 (recognizer failed)."""
    script = tmp_path / "transcribe.py"
    script.write_text(PROGRAM)
    argv = [sys.executable, script.name] if how == "script" else [sys.executable, "-c", PROGRAM]
    done = subprocess.run(
        argv,
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120 * SLACK,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "recognition failed" not in done.stderr and "1011" not in done.stderr, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("transcript:")]
    assert word_error_rate(SENTENCE, line.removeprefix("transcript:")) <= MAX_WER, line


@pytest.mark.asyncio
async def test_a_killed_worker_fails_its_session_and_the_next_session_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = SphinxEngine(max_sessions=2, interims=False)
    clip = speech(SENTENCE)
    try:
        async with serve(engine=engine) as twin:
            client = client_for(twin)
            with caplog.at_level(logging.WARNING, logger="cartesia_stt_async.twin"):
                with pytest.raises(stt.ConnectionClosedError) as info:
                    async with ws(client, max_retries=0) as conn:
                        async with asyncio.timeout(10 * SLACK):
                            while (await engine.stats())[0]["sessions"] < 1:  # noqa: ASYNC110
                                await asyncio.sleep(0.01)
                        first_pid = engine._workers[0].pid
                        await conn.send_audio(clip)
                        await engine._workers[0].kill()
                        await conn.finalize(timeout=30 * SLACK)
                async with ws(client, max_retries=0) as conn:
                    await conn.send_audio(clip)
                    utterance = await conn.finalize(timeout=30 * SLACK)
                second_pid = engine._workers[0].pid
    finally:
        await engine.aclose()
    assert info.value.code == 1011
    assert [s.close_code for s in twin.sessions] == [1011, 1000]
    assert word_error_rate(SENTENCE, utterance.text) <= MAX_WER
    assert first_pid is not None and second_pid not in (None, first_pid)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"recognizer process (pid {first_pid}) ended unexpectedly (killed by SIGKILL)" in m
        for m in messages
    ), messages
    assert any("recognition failed" in m and "killed by SIGKILL" in m for m in messages), messages


@pytest.mark.asyncio
async def test_a_worker_that_cannot_start_is_reported_with_its_output(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What a dying worker printed (stdout and stderr) reaches the twin's log."""
    monkeypatch.setattr(
        sphinx_module,
        "_BOOT",
        "import sys; print('loading the model...', flush=True); "
        "sys.stderr.write('Traceback: the model is missing\\n'); sys.exit(3)",
    )
    engine = SphinxEngine(max_sessions=1)
    try:
        async with serve(engine=engine) as twin:
            with (
                caplog.at_level(logging.WARNING, logger="cartesia_stt_async.twin"),
                pytest.raises(stt.ConnectionClosedError) as info,
            ):
                async with ws(client_for(twin), max_retries=0) as conn:
                    await conn.send_audio(speech(SENTENCE))
                    await conn.finalize(timeout=30 * SLACK)
    finally:
        await engine.aclose()
    assert info.value.code == 1011
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert (
        "ended unexpectedly (exit code 3); the end of its output:\n"
        "loading the model...\nTraceback: the model is missing"
    ) in messages, messages
    assert "recognition failed" in messages and "(exit code 3: Traceback" in messages, messages


@needs_proc
@pytest.mark.asyncio
async def test_no_process_thread_or_descriptor_outlives_the_twin() -> None:
    fds = set(os.listdir("/proc/self/fd"))
    threads = set(threading.enumerate())
    children = set(worker_children())  # other tests' engines (tests/speech.py) may run
    async with serve() as twin:  # the default engine, owned by the twin
        async with ws(client_for(twin), max_retries=0) as conn:
            await conn.send_audio(speech(SENTENCE))
            await conn.finalize(timeout=30 * SLACK)
        engine = twin.engine
        assert isinstance(engine, SphinxEngine)
        pids = [w.pid for w in engine._workers]
        assert pids and all(pid is not None and running(pid) for pid in pids)
        assert set(worker_children()) - children == set(pids)
    assert set(worker_children()) - children == set()
    for pid in pids:
        assert pid is not None and not running(pid)
        with pytest.raises(ChildProcessError):  # reaped: not even a zombie is left
            os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222  # WNOHANG: never blocks
    async with asyncio.timeout(5 * SLACK):  # the executor's idle threads exit on their own
        while set(threading.enumerate()) - threads:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert set(os.listdir("/proc/self/fd")) == fds


@needs_proc
def test_a_worker_quits_when_its_server_dies(tmp_path: Path) -> None:
    program = (
        "import asyncio, os, signal\n"
        "from cartesia_stt_async.twin.sphinx import SphinxEngine\n"
        "engine = SphinxEngine(workers=2)\n"
        "asyncio.run(engine.prewarm(2))\n"
        "print(*(w.pid for w in engine._workers), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60 * SLACK,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10 * SLACK
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(running(pid) for pid in pids)


@pytest.mark.asyncio
async def test_what_the_model_code_prints_never_reaches_the_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that prints on stdout (at start, and in every call: Python ``print``, raw
    writes to fd 1, something shaped like a frame) still answers every request."""
    noisy = (
        "import os, sys; sys.path[:] = sys.argv[3:]\n"
        "print('starting', flush=True)\n"
        "from cartesia_stt_async.twin import _sphinx_worker as w\n"
        "stats = w._Recognizer.stats\n"
        "def loud(self):\n"
        "    print('decoder stats follow', flush=True)\n"
        "    os.write(1, b'\\x00\\x00\\x00\\x05junk')\n"
        "    return stats(self)\n"
        "w._Recognizer.stats = loud\n"
        "w.main(int(sys.argv[1]), int(sys.argv[2]))\n"
    )
    monkeypatch.setattr(sphinx_module, "_BOOT", noisy)
    engine = SphinxEngine(max_sessions=1)
    try:
        for _ in range(3):
            (stats,) = await engine.stats()
            assert stats["sessions"] == 0 and stats["decoders_created"] == 0
    finally:
        await engine.aclose()
