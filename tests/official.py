"""The official ``cartesia`` SDK, in a virtual environment of its own.

Its pins differ from ours (``cartesia[websockets]`` 3.x and 4.x require ``websockets<16``), so
installing it beside this package would run the whole suite on a websockets our users do not
get. Instead each version lives in ``.official-venvs/cartesia-<version>`` at the project root
(or under ``$CARTESIA_OFFICIAL_VENVS``), made on first use with ``pip install`` from the package
registry and reused afterwards; ``.ci/run`` makes it before the tests. Test code runs the
official client in that interpreter as a subprocess (``tests/official_run.py``) against a twin
this process serves on 127.0.0.1.

Nothing is skipped: when the environment cannot be made, the test that needs it fails and
says why.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["OFFICIAL_VERSION", "RUNNER", "official_python", "run_official"]

# The version whose examples the conformance tests run (the seed's).
OFFICIAL_VERSION = "3.2.0"

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "official_run.py"


def _venvs() -> Path:
    return Path(os.environ.get("CARTESIA_OFFICIAL_VENVS", ROOT / ".official-venvs"))


def official_python(version: str = OFFICIAL_VERSION) -> Path:
    """The interpreter of a virtual environment holding ``cartesia[websockets]==version``.

    Made once (under a file lock, so parallel test workers wait for one another), then reused.

    Raises:
        RuntimeError: If the environment could not be made (pip's output included).
    """
    root = _venvs()
    root.mkdir(parents=True, exist_ok=True)
    env_dir = root / f"cartesia-{version}"
    python = env_dir / "bin" / "python"
    ready = env_dir / ".ready"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            venv.EnvBuilder(clear=True, with_pip=True).create(env_dir)
            result = subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    f"cartesia[websockets]=={version}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"could not install cartesia=={version} into {env_dir}:\n"
                    f"{result.stdout}\n{result.stderr}"
                )
            ready.write_text(version)
    return python


async def run_official(version: str, script: Path, *args: str, timeout: float = 90) -> str:
    """Run ``script`` with ``args`` in the official SDK's environment for ``version``.

    Returns:
        What it printed on stdout.

    Raises:
        AssertionError: It failed, or its environment holds another version (the script
            prints ``official cartesia <version>`` on stderr first).
    """
    python = await asyncio.to_thread(official_python, version)
    proc = await asyncio.create_subprocess_exec(
        str(python),
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert f"official cartesia {version}" in err.decode()
    return out.decode()


if __name__ == "__main__":  # `python tests/official.py [VERSION ...]`: make them now
    for name in sys.argv[1:] or [OFFICIAL_VERSION]:
        print(official_python(name))
