"""The ``cartesia-stt`` command and the README's quick start, run as real processes."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.cli import main

from .conftest import API_KEY, SLACK, pcm

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.asyncio
async def test_twin_command_serves_the_protocol() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cartesia_stt_async",
        "twin",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20 * SLACK)).decode()
        match = re.search(r"twin listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        client = stt.AsyncCartesia(api_key=API_KEY, base_url=match.group(1))
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
        ) as conn:
            await conn.send_audio(pcm(0.2))
            utt = await conn.finalize(timeout=5 * SLACK)
        assert utt.text == ""  # the default script is empty: flush_done only
        assert conn.state == "done"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10 * SLACK)


def test_cli_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["twin", "--port", str(port)]) == 1
    assert "cannot serve" in capsys.readouterr().err


def test_cli_requires_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


@pytest.mark.asyncio
async def test_readme_quickstart_runs() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "quickstart.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30 * SLACK)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["'Hello world.'", "'Hello world.'"]
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples" / "quickstart.py").read_text()
    # The README shows the same program (its body, minus the module docstring and guard).
    body = example.split('"""', 2)[2].split("\n\nif __name__")[0].strip()
    assert body.replace("\n\n\n", "\n\n") in readme.replace("\n\n\n", "\n\n")
