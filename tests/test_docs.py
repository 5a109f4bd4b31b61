"""Every Python block in README.md and docs/ runs as written, or is visibly not a program.

Each ```python block of README.md and docs/**/*.md is one of:

* **runnable** (the default): written to a file and run as a script in a subprocess, from an
  empty directory, against the local twin it starts itself, with ``CARTESIA_API_KEY`` and
  ``CARTESIA_BASE_URL`` unset, within a bounded time. It must exit 0, and print exactly the
  lines it declares: the ``# text`` comment after a ``print(...)`` line (as in docs/twin.md),
  or, for output printed in a loop, the comment lines after a ``# Output:`` line at the end of
  the block. In an expected line, ``<port>`` stands for a port number and ``...`` for any
  text. A block that declares nothing must print nothing. Blocks that synthesize or recognize
  speech (``serve()`` without an engine, ``SphinxEngine``, ``tts.generate``) are marked
  ``speech``.
* a **fragment**: its first line is ``# fragment``. It is not run, but it must parse as
  Python (top-level ``await`` allowed).
* **covered elsewhere**: the pages in :data:`COVERED`, whose blocks another test already
  checks (verbatim excerpts of code the suite runs, or run by that page's own test).

The inventory test lists the fragments and the counts (``pytest -s`` shows them), and checks
that no page refers to files outside the repository.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import SLACK

ROOT = Path(__file__).resolve().parents[1]

COVERED: dict[str, tuple[str, str]] = {
    # page: (test file, test function) that checks its blocks
    "docs/fastapi.md": ("tests/test_fastapi_app.py", "test_docs_fastapi_md_shows_the_app_verbatim"),
    "docs/testing.md": (
        "tests/test_testing_plugin.py",
        "test_docs_testing_md_runs_as_copied",
    ),
    "docs/twin.md": ("tests/test_twin.py", "test_twin_md_examples_run_as_written"),
}
"""Pages whose Python blocks another test checks; this runner skips them (and says so)."""

FRAGMENT = "# fragment"
OUTPUT = "# Output:"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_SPEECH = re.compile(r"\bserve\(\s*\)|\bSphinxEngine\b|\btts\.generate\(")


@dataclass(frozen=True)
class Block:
    """One ```python block of a page."""

    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def fragment(self) -> bool:
        return self.code.lstrip().lower().startswith(FRAGMENT)

    @property
    def covered(self) -> bool:
        return self.page in COVERED

    @property
    def speech(self) -> bool:
        return bool(_SPEECH.search(self.code))


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks() -> list[Block]:
    """Every ```python block of every page, in page order."""
    found = []
    for path in pages():
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(str(path.relative_to(ROOT)), line, match.group(1)))
    return found


def expected_output(code: str) -> list[str]:
    """The lines a block declares it prints (see the module docstring)."""
    lines = code.splitlines()
    if OUTPUT in (line.strip() for line in lines):
        start = [line.strip() for line in lines].index(OUTPUT)
        tail = lines[start + 1 :]
        if not all(line.startswith("#") for line in tail if line.strip()):
            raise AssertionError(f"only comment lines may follow {OUTPUT!r}")
        return [line[2:] if line.startswith("# ") else line[1:] for line in tail if line.strip()]
    return [
        line.split("  # ", 1)[1].strip()
        for line in lines
        if line.strip().startswith("print(") and "  # " in line
    ]


def matches(line: str, pattern: str) -> bool:
    """``line`` equals ``pattern``, where ``<port>`` is digits and ``...`` any text."""
    regex = re.escape(pattern).replace("<port>", r"\d+").replace(r"\.\.\.", ".*")
    return re.fullmatch(regex, line) is not None


ALL = blocks()
RUNNABLE = [b for b in ALL if not b.fragment and not b.covered]


def test_inventory_fragments_and_no_outside_references() -> None:
    fragments = [b for b in ALL if b.fragment and not b.covered]
    covered = [b for b in ALL if b.covered]
    print(
        f"\n{len(ALL)} python blocks: {len(RUNNABLE)} runnable, {len(fragments)} fragments, "
        f"{len(covered)} checked by other tests"
    )
    for block in fragments:
        print(f"  fragment {block.id}")
        # A fragment is not run, but it must still be Python.
        ast.parse(block.code, block.id, feature_version=(3, 11))
        compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for page, (test_file, test_name) in COVERED.items():
        assert (ROOT / page).exists(), page
        assert f"def {test_name}(" in (ROOT / test_file).read_text(), (page, test_file)
        print(f"  {page}: checked by {test_file}::{test_name}")
    # The runner must not silently find nothing (a changed fence regex, a moved page).
    assert len(RUNNABLE) >= 10
    for path in pages():
        for lang in re.findall(r"^```\s*(py\w*|pycon|ipython\w*)\s*$", path.read_text(), re.M):
            assert lang == "python", f"{path.relative_to(ROOT)}: use ```python, not ```{lang}"
    # The docs must stand alone: no file of theirs points outside the repository.
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*")]:
        if path.is_file() and path.suffix in (".md", ".py", ".yml", ".txt"):
            text = path.read_text()
            for banned in ("../shared", "protocol.md §"):
                assert banned not in text, f"{path.relative_to(ROOT)} mentions {banned!r}"


def _param(block: Block) -> object:
    marks = [pytest.mark.speech] if block.speech else []
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.timeout(130 * SLACK)
@pytest.mark.parametrize("block", [_param(b) for b in RUNNABLE])
def test_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    expected = expected_output(block.code)
    script = tmp_path / "example.py"
    script.write_text(block.code)
    env = {
        k: v for k, v in os.environ.items() if k not in ("CARTESIA_API_KEY", "CARTESIA_BASE_URL")
    }
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120 * SLACK,
        check=False,
    )
    assert run.returncode == 0, f"{block.id} failed:\n{run.stderr}"
    lines = run.stdout.splitlines()
    assert len(lines) == len(expected), (
        f"{block.id} printed {len(lines)} lines, declares {len(expected)}:\n{run.stdout}"
    )
    for number, (line, pattern) in enumerate(zip(lines, expected, strict=True), 1):
        assert matches(line, pattern), f"{block.id}, line {number}: {line!r} != {pattern!r}"
