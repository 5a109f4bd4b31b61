"""The protocol core stays pure: stdlib and msgspec only, no I/O, no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cartesia_stt_async.protocol as protocol

FORBIDDEN = {
    "aiohttp",
    "anyio",
    "asyncio",
    "selectors",
    "socket",
    "threading",
    "time",
    "websockets",
}
MODULES = sorted(Path(protocol.__file__).parent.glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_every_protocol_module_is_checked() -> None:
    names = {p.stem for p in MODULES}
    assert {"audio", "commands", "events", "pacing", "session", "transcript"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_protocol_module_imports_no_io(path: Path) -> None:
    assert not imported_roots(path) & FORBIDDEN
