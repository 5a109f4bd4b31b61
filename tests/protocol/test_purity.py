"""The protocol core stays pure: no I/O library, no threads, no clock (style.md, "pure core")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cartesia_stt_async.protocol as protocol

FORBIDDEN = frozenset(
    {"aiohttp", "anyio", "asyncio", "selectors", "socket", "threading", "time", "websockets"}
)
PROTOCOL_DIR = Path(protocol.__file__).parent
MODULES = sorted(PROTOCOL_DIR.glob("*.py"))


def imported_roots(source: str, filename: str = "<test>") -> set[str]:
    """Top-level names of every absolute import anywhere in ``source`` (also nested ones)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def dynamic_imports(source: str, filename: str = "<test>") -> list[str]:
    """Calls that import by name at run time (``__import__``, ``importlib.import_module``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "__import__":
                found.append("__import__")
            elif isinstance(func, ast.Attribute) and func.attr == "import_module":
                found.append("import_module")
    return found


def test_every_protocol_module_is_checked() -> None:
    assert {p.stem for p in MODULES} >= {
        "__init__",
        "audio",
        "commands",
        "events",
        "pacing",
        "session",
        "transcript",
    }


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_protocol_module_imports_no_io(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert imported_roots(source, str(path)) & FORBIDDEN == set()
    assert dynamic_imports(source, str(path)) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_protocol_module_relative_imports_stay_in_the_package(path: Path) -> None:
    # ``from ..connection import X`` would pull the asyncio layer into the core.
    allowed = {"errors", None}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 2:
            assert node.module in allowed, f"{path.name} imports ..{node.module}"
        if isinstance(node, ast.ImportFrom) and node.level > 2:
            pytest.fail(f"{path.name} imports from above the package")


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import asyncio", {"asyncio"}),
        ("import asyncio.events", {"asyncio"}),
        ("import time as _t", {"time"}),
        ("from time import monotonic", {"time"}),
        ("from websockets.asyncio.client import connect", {"websockets"}),
        ("import os, socket", {"socket"}),
        ("def f():\n    import threading\n", {"threading"}),
        ("if TYPE_CHECKING:\n    import aiohttp\n", {"aiohttp"}),
        ("try:\n    import anyio\nexcept ImportError:\n    pass\n", {"anyio"}),
        ("import selectors", {"selectors"}),
        ("import timeit", set()),  # the check is on whole names
        ("from . import time", set()),  # a sibling module named time is not the stdlib one
        ("import msgspec\nfrom ..errors import UsageError", set()),
    ],
)
def test_the_import_check_itself(source: str, bad: set[str]) -> None:
    assert imported_roots(source) & FORBIDDEN == bad


def test_the_dynamic_import_check_itself() -> None:
    assert dynamic_imports("m = __import__('asyncio')") == ["__import__"]
    assert dynamic_imports("import importlib\nimportlib.import_module('time')") == ["import_module"]
    assert dynamic_imports("x = len('abc')") == []
