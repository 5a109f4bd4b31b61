"""The fixtures users get from the registered pytest plugin (no conftest line needed).

``tests/plugin_user/`` is a user's test tree with no conftest: it is run here in a subprocess,
as its own pytest project (its pytest.ini makes it the rootdir, so this suite's conftest is
not loaded), with ``-W error``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.testing import TwinFactory, TwinServer, start_twin
from cartesia_stt_async.twin import ScriptedEngine

from .conftest import SLACK

ROOT = Path(__file__).resolve().parent.parent
USER_SUITE = ROOT / "tests" / "plugin_user"


def run_pytest(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str]:
    """Run pytest in a subprocess, importing this checkout of the package."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CARTESIA_API_KEY", "CARTESIA_BASE_URL", "PYTEST_ADDOPTS")
    }
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout * SLACK,
    )
    return proc.returncode, proc.stdout + proc.stderr


def summary(output: str) -> str:
    """The run's closing counts, e.g. ``13 passed``."""
    line = output.strip().splitlines()[-1]
    return re.sub(r" in [\d.]+s.*$", "", line).strip("= ")


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
USER_FILES = ["suite_async.py", "suite_sync.py", "suite_fastapi.py"]


@pytest.mark.speech  # the user suite runs the recognizing twin
@pytest.mark.timeout(300)
def test_user_suite_without_conftest_passes() -> None:
    assert not list(USER_SUITE.glob("conftest.py"))
    code, out = run_pytest(*(str(USER_SUITE / f) for f in USER_FILES), cwd=ROOT)
    assert code == 0, out
    assert f"rootdir: {USER_SUITE}" in out  # its own project: this suite's conftest is not loaded
    assert summary(out) == "13 passed", out


@pytest.mark.timeout(300)
def test_user_suite_fails_on_a_broken_expectation() -> None:
    code, out = run_pytest(
        str(USER_SUITE / "suite_sync.py"), cwd=ROOT, env={"PLUGIN_USER_BROKEN": "1"}
    )
    assert code == 1, out
    assert summary(out) == "1 failed, 2 passed", out
    assert "test_sync_code_against_the_twin" in out


@pytest.mark.timeout(300)
def test_marker_and_ini_mistakes_are_named(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(INI + "cartesia_recognizer_sessions = 2\n")
    (tmp_path / "test_mistakes.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.cartesia_twin(scirpt=[["typo"]])
            def test_unknown_option(cartesia_twin):
                pass

            @pytest.mark.cartesia_twin([["Hi"]])
            def test_script_for_the_speech_twin(cartesia_speech_twin):
                pass

            @pytest.mark.cartesia_twin(max_sessions=3)
            def test_more_sessions_than_the_recognizer(cartesia_speech_twin):
                pass

            @pytest.mark.cartesia_twin(max_sessions=2)
            def test_within_the_recognizer(cartesia_speech_twin):
                assert cartesia_speech_twin.engine.max_sessions == 2
            """
        )
    )
    code, out = run_pytest("-rE", cwd=tmp_path)
    assert code == 1, out
    assert summary(out) == "1 passed, 3 errors", out
    assert "unknown option(s) scirpt; use " in out
    assert "script do not apply to cartesia_speech_twin" in out
    assert "max_sessions=3 exceeds the test run's recognizer, sized for 2 sessions" in out

    (tmp_path / "pytest.ini").write_text(INI + "cartesia_recognizer_sessions = lots\n")
    code, out = run_pytest("-k", "within", cwd=tmp_path)
    assert code != 0
    assert "cartesia_recognizer_sessions must be a whole number of at least 1, got 'lots'" in out


@pytest.mark.asyncio
async def test_client_fixture_talks_to_twin_fixture(
    cartesia_client: stt.AsyncCartesia, cartesia_twin: TwinServer
) -> None:
    async with cartesia_client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
    ) as conn:
        await conn.send_audio(bytes(3200))
        utt = await conn.finalize(timeout=5)
    assert utt.text == ""
    await cartesia_twin.idle(timeout=5 * SLACK)
    assert cartesia_twin.sessions[0].audio_bytes == 3200
    assert cartesia_twin.sessions[0].close_code == 1000


@pytest.mark.asyncio
@pytest.mark.cartesia_twin(script=[["A", "b"]], order="flush_first")
async def test_marker_scripts_the_twin_of_an_async_test(cartesia_client: stt.AsyncCartesia) -> None:
    async with cartesia_client.stt.manual_finalize.websocket(
        model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
    ) as conn:
        await conn.send_audio(bytes(320))
        await conn.finalize(timeout=5)
    assert conn.transcript.text == "Ab"


@pytest.mark.speech
@pytest.mark.asyncio
async def test_speech_twin_fixture_recognizes_what_it_synthesized(
    cartesia_speech_twin: TwinServer,
) -> None:
    async with stt.AsyncCartesia(api_key="k", base_url=cartesia_speech_twin.base_url) as client:
        response = await client.tts.generate(
            model_id="sonic-latest",
            transcript="Thank you very much for your help",
            voice="any",
            output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        )
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(await response.read())
            utt = await conn.finalize(timeout=30)
    assert utt.text == "thank you very much for your help"


def test_factory_twins_are_independent_and_stopped_after_the_test(
    cartesia_twin_factory: TwinFactory,
) -> None:
    first = cartesia_twin_factory([["one"]])
    second = cartesia_twin_factory(max_sessions=1)
    assert first.base_url != second.base_url
    assert isinstance(first.engine, ScriptedEngine) and first.engine.replies == [["one"]]
    with pytest.raises(TypeError, match="give one of script"):
        cartesia_twin_factory([["x"]], speech=True)
    second.stop()
    second.stop()  # idempotent
    assert "stopped" in repr(second)

    async def connect(base_url: str) -> None:
        async with (
            stt.AsyncCartesia(api_key="k", base_url=base_url) as client,
            client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, max_retries=0
            ),
        ):
            pass

    with pytest.raises(stt.APIConnectionError):
        asyncio.run(connect(second.base_url))  # nothing listens there any more
    asyncio.run(connect(first.base_url))


def test_wait_idle_names_a_session_left_open() -> None:
    async def leave_open(twin: TwinServer) -> None:
        async with stt.AsyncCartesia(api_key="k", base_url=twin.base_url) as client:
            conn = await client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000
            ).enter()
            try:
                with pytest.raises(TimeoutError, match="1 twin session"):
                    twin.wait_idle(timeout=0.2)
                with pytest.raises(TimeoutError, match=r"still open after 0\.2 s"):
                    await twin.idle(timeout=0.2)
            finally:
                await conn.aclose()
            await twin.idle(timeout=5 * SLACK)

    with start_twin() as twin:
        asyncio.run(leave_open(twin))
        assert twin.active_sessions == 0
        assert twin.sessions[0].close_code == 1000


def test_an_open_session_is_active_as_soon_as_the_client_has_its_socket() -> None:
    # The threaded twin counts a session before its 101 goes out, so a client that holds an
    # open socket is never missed by active_sessions, wait_idle() or the session limit.
    async def open_and_count(twin: TwinServer) -> list[int]:
        seen = []
        async with stt.AsyncCartesia(api_key="k", base_url=twin.base_url) as client:
            for _ in range(40):
                conn = await client.stt.manual_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000
                ).enter()
                seen.append(twin.active_sessions)
                await conn.aclose()
                await twin.idle(timeout=5 * SLACK)
        return seen

    with start_twin() as twin:
        assert asyncio.run(open_and_count(twin)) == [1] * 40


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a Markdown file."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, re.DOTALL | re.MULTILINE)


@pytest.mark.speech  # the FastAPI example's second test runs the recognizing twin
@pytest.mark.timeout(300)
def test_docs_testing_md_runs_as_copied(tmp_path: Path) -> None:
    """Every Python block of docs/testing.md, each saved as a test file beside the page's
    pytest.ini, runs with -W error and no conftest: what a user copying the page gets."""
    page = (ROOT / "docs" / "testing.md").read_text()
    inis = re.findall(r"^```ini\n(.*?)^```$", page, re.DOTALL | re.MULTILINE)
    (ini,) = [block for block in inis if "asyncio_default_fixture_loop_scope" in block]
    (tmp_path / "pytest.ini").write_text(ini)
    # Blocks marked "# fragment" (a framework's call, shown, not run) are left out.
    blocks = [b for b in python_blocks(page) if not b.startswith("# fragment")]
    assert len(blocks) >= 5
    for index, block in enumerate(blocks):
        (tmp_path / f"test_docs_block_{index}.py").write_text(block)
    tests = sum(len(re.findall(r"^(?:async )?def test_", block, re.MULTILINE)) for block in blocks)
    code, out = run_pytest(cwd=tmp_path)
    assert code == 0, out
    assert f"rootdir: {tmp_path}" in out
    assert summary(out) == f"{tests} passed", out
    # The complete FastAPI example is also the user suite's file.
    assert (USER_SUITE / "suite_fastapi.py").read_text() in blocks
