"""Compiled dataclass methods, kept across runs like ``.pyc`` files.

``@dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__`` (and for frozen
classes ``__setattr__``, ``__delattr__``, ``__hash__``) and compiles it, class by class, on
every start. A gateway creates about 220 dataclasses while it starts (its own and its
libraries'); compiling their methods was ~55 ms of a ~300 ms start. The source of a generated
method depends only on the class's field names and options, never on values (those are passed
in as arguments), so the same text always compiles to the same code: this module keeps that
code, keyed by a digest of the text, in ``__pycache__`` next to this file, and the next start
loads it instead of compiling.

:func:`install` routes the ``dataclasses`` module's calls to ``exec`` through the cache (a
lookup in that module's globals; the classes made are exactly what ``dataclasses`` makes
without it). :func:`release` ends it once start-up is over: it writes what was compiled anew
and drops the cache from memory. Like Python's own bytecode cache, nothing is written when
``sys.dont_write_bytecode`` is set (``PYTHONDONTWRITEBYTECODE``) or the folder is read-only;
an unreadable or foreign file is ignored. ``CLAWGATE_CODE_CACHE`` names another file for it
(e.g. on a read-only install), or turns it ``off``.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import marshal
import mmap
import os
import sys
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType
from typing import Any

MAX_ENTRIES = 4096  # a bound on the file: far more than every dataclass clawgate loads
_BUILTIN_EXEC = exec


ENV = "CLAWGATE_CODE_CACHE"  # another file for the cache, or "off"


def default_path() -> Path | None:
    """``$CLAWGATE_CODE_CACHE``, else ``__pycache__/dataclasses.<tag>.bin`` beside this file;
    None when the variable says ``off``."""
    chosen = os.environ.get(ENV, "")
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen)
    return Path(__file__).with_name("__pycache__") / (
        f"dataclasses.{sys.implementation.cache_tag}.bin")


class CodeCache:
    """Code objects of compiled dataclass methods, by digest of their source text.

    Each code object is unmarshalled from its slice of the (mapped) file when asked for: a
    thousand separate small buffers would stay behind as heap fragments once the cache is
    released (~1 MiB resident).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hits = 0
        self.compiled = 0
        self._data: bytes | mmap.mmap
        self._data, self._index = _load(path)
        self._new: dict[bytes, bytes] = {}
        self._used: set[bytes] = set()

    def exec(self, source: Any, globals: Any = None, locals: Any = None) -> None:
        """``exec`` as ``dataclasses`` calls it, with the compile step cached."""
        if not isinstance(source, str):
            _BUILTIN_EXEC(source, globals, locals)
            return
        key = hashlib.blake2b(source.encode(), digest_size=16).digest()
        code = self._cached(key)
        if code is not None:
            self.hits += 1
        else:
            # dont_inherit: compiled as dataclasses.py compiles it, without this module's
            # ``from __future__ import annotations`` (which would make the generated
            # methods' annotations strings).
            code = compile(source, "<string>", "exec", dont_inherit=True)
            self._new[key] = marshal.dumps(code)
            self.compiled += 1
        _BUILTIN_EXEC(code, globals, locals)

    def _cached(self, key: bytes) -> CodeType | None:
        blob: bytes | memoryview | None = self._new.get(key)
        if blob is None and (where := self._index.get(key)) is not None:
            blob = memoryview(self._data)[where[0]:where[0] + where[1]]
        if blob is None:
            return None
        try:
            code = marshal.loads(blob)
        except (EOFError, ValueError, TypeError):
            code = None
        if not isinstance(code, CodeType):  # a damaged entry: compiled again, and replaced
            self._index.pop(key, None)
            return None
        if key in self._index:
            self._used.add(key)
        return code

    def save(self) -> None:
        """Write the cache when something was compiled anew (and writing is allowed)."""
        if not self._new or sys.dont_write_bytecode:
            return
        kept = self._index
        if len(kept) + len(self._new) > MAX_ENTRIES:  # stale entries of older code: drop
            kept = {k: v for k, v in kept.items() if k in self._used}
        view = memoryview(self._data)
        entries: list[tuple[bytes, bytes | memoryview]] = [
            *((k, view[o:o + n]) for k, (o, n) in kept.items()), *self._new.items()]
        index: dict[bytes, tuple[int, int]] = {}
        blobs: list[bytes | memoryview] = []
        offset = 0
        for key, blob in entries:
            index[key] = (offset, len(blob))
            blobs.append(blob)
            offset += len(blob)
        head = marshal.dumps(index)
        temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(exist_ok=True)
            with open(temp, "wb") as out:
                out.write(MAGIC_NUMBER + len(head).to_bytes(4, "little") + head)
                out.writelines(blobs)
            os.chmod(temp, os.stat(__file__).st_mode & 0o666)  # as readable as the source
            os.replace(temp, self.path)
        except OSError:
            temp.unlink(missing_ok=True)

    def clear(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()
        self._data, self._index = b"", {}
        self._new.clear()
        self._used.clear()


def _load(path: Path) -> tuple[bytes | mmap.mmap, dict[bytes, tuple[int, int]]]:
    """The file, mapped, and its index (digest -> offset, length); nothing if it is unusable.

    Mapped rather than read: its pages go back to the system when the cache is released,
    where a read buffer would leave a hole in the heap."""
    try:
        with open(path, "rb") as file:
            data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # ValueError: an empty file
        return b"", {}
    start = len(MAGIC_NUMBER) + 4
    if data[:len(MAGIC_NUMBER)] != MAGIC_NUMBER or len(data) < start:
        data.close()
        return b"", {}  # another interpreter's bytecode, or cut short
    size = int.from_bytes(data[start - 4:start], "little")
    try:
        index = marshal.loads(data[start:start + size])
    except (EOFError, ValueError, TypeError):
        index = None
    base = start + size
    if not isinstance(index, dict):
        data.close()
        return b"", {}
    usable = {}
    for key, where in index.items():
        if (isinstance(key, bytes) and isinstance(where, tuple) and len(where) == 2
                and all(isinstance(n, int) and n >= 0 for n in where)
                and base + where[0] + where[1] <= len(data)):
            usable[key] = (base + where[0], where[1])
    return data, usable


_active: CodeCache | None = None


def install() -> CodeCache | None:
    """Start caching the dataclass methods compiled from now on (idempotent); None when the
    cache is off."""
    global _active
    path = default_path()
    if _active is None and path is not None:
        _active = CodeCache(path)
        dataclasses.exec = _active.exec  # type: ignore[attr-defined]
        atexit.register(release)  # a process that never calls release() saves at exit
    return _active


def release() -> CodeCache | None:
    """Stop caching: save what was compiled anew, restore ``exec``, free the cache."""
    global _active
    cache, _active = _active, None
    if cache is None:
        return None
    if vars(dataclasses).get("exec") == cache.exec:
        del dataclasses.exec  # type: ignore[attr-defined]
    cache.save()
    cache.clear()
    return cache
