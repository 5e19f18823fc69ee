"""Fixtures for plugin-runtime tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugins.factory import copy_fixtures


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """An empty folder of plugins under tmp_path (use it as a ``load_paths`` entry)."""
    path = tmp_path / "plugins-src"
    path.mkdir()
    return path


@pytest.fixture
def fixtures_copy(tmp_path: Path):
    """``fixtures_copy(*names)``: copy fixture plugins into a tmp load path and return it."""

    def copy(*names: str) -> Path:
        return copy_fixtures(tmp_path / "load", *names)

    return copy
