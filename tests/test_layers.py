"""The import graph keeps its shape: no circle anywhere in clawgate (function-level and
TYPE_CHECKING imports included), and bundled plugins use only the plugin author's API.

The layer order itself is the import-linter contract in pyproject.toml (``lint-imports`` in CI).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "clawgate" / "bundled"


def test_no_import_circle() -> None:
    graph = grimp.build_graph("clawgate", exclude_type_checking_imports=False)
    circles = sorted({
        tuple(sorted((module, imported)))
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    })
    assert not circles, f"modules that import each other (directly or not): {circles}"


def plugin_files() -> list[Path]:
    return sorted(p for p in BUNDLED.glob("*/*.py"))


def test_bundled_plugins_are_found() -> None:
    names = {p.parent.name for p in plugin_files()}
    assert {"echo", "openai", "clock"} <= names


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_bundled_plugin_imports_only_the_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module.startswith("clawgate.")):
            private.append(node.module)
        elif isinstance(node, ast.Import):
            private += [a.name for a in node.names if a.name.startswith("clawgate.")]
    assert not private, f"{path}: bundled plugins import only `clawgate`, not {private}"
