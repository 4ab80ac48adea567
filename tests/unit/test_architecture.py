"""The direction of imports (ARCHITECTURE.md), checked by walking each module's AST."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "prefork"


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((PKG / "http").glob("*.py")), ids=lambda p: p.name)
def test_http_is_bytes_in_objects_out(path: Path) -> None:
    forbidden = {"socket", "os", "threading", "select", "selectors", "prefork.connection",
                 "prefork.worker", "prefork.master", "prefork.wsgi"}
    assert not imports_of(path) & forbidden


def test_master_never_imports_the_http_layer() -> None:
    names = imports_of(PKG / "master.py")
    assert not {n for n in names if n.startswith("prefork.http")}
    assert "prefork.connection" not in names


def test_cli_is_the_only_reader_of_argv() -> None:
    for path in PKG.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "sys.argv" not in path.read_text(), path


def test_every_module_opens_with_a_docstring() -> None:
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path} has no module docstring"
