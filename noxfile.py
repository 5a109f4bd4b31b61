"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``; ``fuzz``, ``bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the test suite against the local twin over loopback (``-- -m "not speech"``: fast).

    Workers: two per CPU (pyproject's ``-n auto``); ``-- -n0`` runs in one process. The
    connection suites run on asyncio's loop and on uvloop (``-- --loops=asyncio``: one).
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def fuzz(session: nox.Session) -> None:
    """The hostile-peer suite at length: 5,000 seeded schedules per server order, 1 GiB chunks."""
    session.install("-e", ".[test]")
    env = {"HOSTILE_SEEDS": "5000", "HOSTILE_CHUNK_BYTES": str(1 << 30)}
    session.run("python", "-m", "pytest", "tests/hostile", *session.posargs, env=env)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, benchmarks and this file."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the docs site strictly: a broken link, anchor or docstring fails."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", f"{session.create_tmp()}/site")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks vs the official SDK and a bare websockets loop (not run by default).

    ``nox -s bench``: the quick steady-state run (about 3 minutes) and a short decode run.
    ``nox -s bench -- full``: the full steady-state run (about 20 minutes), which rewrites
    benchmarks/results/steady_state.* and docs/img/steady_state.png. Further arguments go to
    benchmarks/steady_state.py.
    """
    session.install("-e", ".[bench]")
    args = list(session.posargs)
    full = args[:1] == ["full"]
    if full:
        args = args[1:]
    session.run("python", "benchmarks/bench_decode.py", *([] if full else ["5000"]))
    session.run("python", "benchmarks/steady_state.py", *([] if full else ["--quick"]), *args)
