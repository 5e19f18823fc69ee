"""The dataclass code cache: a later run loads what an earlier one compiled, and the classes
are exactly those ``dataclasses`` makes without it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from typing import Any

import pytest

from clawgate import codecache
from clawgate.codecache import CodeCache

ROOT = Path(__file__).resolve().parent.parent


def _define(cache: CodeCache, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(dataclasses, "exec", cache.exec, raising=False)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Point:
        x: int
        label: str = "p"

    monkeypatch.delattr(dataclasses, "exec")
    return Point


def test_a_second_run_compiles_nothing_and_makes_the_same_class(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = tmp_path / "cache.bin"
    first = CodeCache(path)
    _define(first, monkeypatch)
    assert first.compiled > 0 and first.hits == 0
    first.save()
    assert path.read_bytes().startswith(MAGIC_NUMBER)

    second = CodeCache(path)
    point = _define(second, monkeypatch)
    assert second.compiled == 0 and second.hits == first.compiled

    p = point(3)
    assert p == point(3, "p") and p != point(4)
    assert hash(p) == hash(point(3))
    assert repr(p).endswith("Point(x=3, label='p')")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    # Compiled without this module's future import: the generated __init__ annotates with
    # the field types, as dataclasses does.
    assert point.__init__.__annotations__ == {"x": "int", "label": "str", "return": None}


def test_nothing_is_written_when_bytecode_writing_is_off(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache = CodeCache(tmp_path / "cache.bin")
    _define(cache, monkeypatch)
    cache.save()
    assert not (tmp_path / "cache.bin").exists()


@pytest.mark.parametrize("content", [b"", b"garbage", MAGIC_NUMBER + b"\x00\x01",
                                     b"\x00\x00\r\n" + b"x" * 40])
def test_an_unreadable_or_foreign_file_is_ignored(tmp_path, monkeypatch, content):
    path = tmp_path / "cache.bin"
    path.write_bytes(content)
    cache = CodeCache(path)
    point = _define(cache, monkeypatch)
    assert cache.hits == 0 and cache.compiled > 0
    assert point(1).x == 1


def test_a_read_only_folder_is_no_error(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        cache = CodeCache(folder / "cache.bin")
        _define(cache, monkeypatch)
        cache.save()
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_a_missing_folder_is_made_and_no_temporary_file_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = tmp_path / "__pycache__" / "cache.bin"
    cache = CodeCache(path)
    _define(cache, monkeypatch)
    cache.save()
    assert [p.name for p in path.parent.iterdir()] == ["cache.bin"]


def test_importing_clawgate_in_a_fresh_process_uses_the_cache_and_release_restores_exec(
        tmp_path):
    # The package installs the cache itself, at the file CLAWGATE_CODE_CACHE names.
    script = textwrap.dedent("""
        import sys
        sys.dont_write_bytecode = False
        import dataclasses
        import clawgate.codecache as cc
        cache = cc.release()
        assert "exec" not in vars(dataclasses)
        print(cache.hits, cache.compiled)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
           "CLAWGATE_CODE_CACHE": str(tmp_path / "c.bin")}

    def run() -> list[int]:
        out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                             capture_output=True, text=True).stdout
        return [int(n) for n in out.split()]

    hits, compiled = run()
    assert compiled > 100  # (classes with the same fields share methods: hits already)
    again_hits, again_compiled = run()
    assert again_compiled == 0 and again_hits == hits + compiled
    assert codecache.MAX_ENTRIES > compiled


def test_the_cache_can_be_turned_off(tmp_path):
    script = "import clawgate.codecache as cc, dataclasses\n" \
             "assert cc.release() is None and 'exec' not in vars(dataclasses)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CLAWGATE_CODE_CACHE": "off"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)


def test_a_damaged_entry_is_compiled_again(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = tmp_path / "cache.bin"
    first = CodeCache(path)
    _define(first, monkeypatch)
    first.save()
    data = bytearray(path.read_bytes())
    data[-40:] = b"\xff" * 40  # the last code object's bytes
    path.write_bytes(bytes(data))
    second = CodeCache(path)
    point = _define(second, monkeypatch)
    assert second.compiled >= 1 and second.hits == first.compiled - second.compiled
    assert point(2) == point(2)
