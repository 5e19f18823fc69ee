"""Which files are an agent's memory, and the containment rule ``memory_get`` enforces.

The memory of an agent is, in its workspace, ``MEMORY.md`` and every ``*.md`` under
``memory/`` (daily logs are ``memory/YYYY-MM-DD.md``), plus the configured extra paths: a file,
a folder (every ``*.md`` below it) or ``{path, pattern}`` (a glob inside a folder). Relative
extra paths are relative to the workspace.

A path is a memory file only if its *resolved* location (symlinks followed) is one of those: a
symlink inside ``memory/`` that points elsewhere is neither indexed nor readable. Paths are
shown relative to the workspace when they are inside it, and absolute otherwise.

Everything here is blocking file I/O: callers run it in a worker thread.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

MEMORY_FILE = "MEMORY.md"
MEMORY_DIR = "memory"
MAX_FILES = 20_000  # per agent: a runaway extra path must not make the index unbounded
MAX_FILE_BYTES = 4 * 1024 * 1024  # larger files are skipped (and reported by status)
_DAILY = re.compile(r"(?:^|/)memory/(\d{4})-(\d{2})-(\d{2})\.md$")


class NotMemory(ValueError):
    """A path that is not one of the agent's memory files; the message says why."""


@dataclass(frozen=True, slots=True)
class Extra:
    """A configured extra path: a file or a folder, with a glob for folders."""

    root: Path
    pattern: str = "**/*.md"


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One memory file on disk."""

    path: str  # as shown: relative to the workspace, or absolute
    abs: Path  # resolved
    mtime: float
    size: int


def extras_from_config(workspace: Path, raw: Sequence[Any]) -> tuple[Extra, ...]:
    """The extra paths of the plugin config (strings or ``{path, pattern}``)."""
    found: list[Extra] = []
    for entry in raw:
        if isinstance(entry, str):
            path, pattern = entry, "**/*.md"
        elif isinstance(entry, Mapping):
            path, pattern = str(entry["path"]), str(entry.get("pattern") or "**/*.md")
        else:
            continue
        root = Path(path).expanduser()
        found.append(Extra((root if root.is_absolute() else workspace / root), pattern))
    return tuple(found)


def daily_date(path: str) -> date | None:
    """The date of a daily log path (``memory/YYYY-MM-DD.md``), or None."""
    match = _DAILY.search(path.replace("\\", "/"))
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def evergreen(path: str) -> bool:
    """``MEMORY.md`` and undated files under ``memory/`` never decay with age."""
    norm = path.replace("\\", "/")
    return norm == MEMORY_FILE or (norm.startswith(f"{MEMORY_DIR}/") and daily_date(norm) is None)


@dataclass(frozen=True, slots=True)
class MemoryFiles:
    """The memory files of one workspace."""

    workspace: Path
    extras: tuple[Extra, ...] = ()

    def daily_log(self, day: date) -> Path:
        return self.workspace / MEMORY_DIR / f"{day.isoformat()}.md"

    def watch_roots(self) -> list[tuple[Path, bool]]:
        """(path, recursive) pairs a watcher should follow; only existing ones. The workspace
        itself is watched flat so MEMORY.md and a new ``memory/`` folder are seen."""
        roots: list[tuple[Path, bool]] = []
        if self.workspace.is_dir():
            roots.append((self.workspace, False))
        memory_dir = self.workspace / MEMORY_DIR
        if memory_dir.is_dir():
            roots.append((memory_dir, True))
        for extra in self.extras:
            if extra.root.is_dir():
                roots.append((extra.root, True))
            elif extra.root.parent.is_dir():
                roots.append((extra.root.parent, False))
        return roots

    def scan(self) -> tuple[list[FileInfo], list[str]]:
        """Every memory file (at most ``MAX_FILES``), and what was skipped and why."""
        found: dict[Path, FileInfo] = {}
        skipped: list[str] = []
        for candidate in self._candidates():
            if len(found) >= MAX_FILES:
                skipped.append(f"more than {MAX_FILES} memory files; the rest are not indexed")
                break
            try:
                resolved = candidate.resolve()
                if resolved in found or not self.allowed(resolved):
                    continue
                stat = resolved.stat()
            except OSError:
                continue
            if not os.path.isfile(resolved):
                continue
            if stat.st_size > MAX_FILE_BYTES:
                skipped.append(f"{self.display(resolved)}: larger than {MAX_FILE_BYTES} bytes")
                continue
            found[resolved] = FileInfo(self.display(resolved), resolved, stat.st_mtime,
                                       stat.st_size)
        return sorted(found.values(), key=lambda f: f.path), skipped

    def resolve(self, path: str) -> Path:
        """The resolved location of memory file ``path``; raise :class:`NotMemory` otherwise."""
        if not isinstance(path, str) or not path.strip():
            raise NotMemory("path must be a non-empty string")
        if "\x00" in path:
            raise NotMemory("path contains a NUL character")
        raw = Path(path.strip()).expanduser()
        candidate = raw if raw.is_absolute() else self.workspace / raw
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise NotMemory(f"cannot resolve {path!r}: {exc}") from None
        if not self.allowed(resolved):
            raise NotMemory(
                f"{path!r} is not a memory file: only MEMORY.md, memory/**/*.md and the "
                "configured extra paths can be read"
            )
        return resolved

    def allowed(self, resolved: Path) -> bool:
        """True when a resolved path is one of this workspace's memory files (by location)."""
        if resolved.suffix.lower() != ".md":
            return False
        workspace = self.workspace.resolve()
        if resolved == (workspace / MEMORY_FILE):
            return True
        if _inside(resolved, (workspace / MEMORY_DIR).resolve()):
            return True
        for extra in self.extras:
            root = extra.root.resolve()
            if resolved == root:
                return True
            if _inside(resolved, root):
                rel = resolved.relative_to(root).as_posix()
                bare = extra.pattern.removeprefix("**/")
                if fnmatch.fnmatch(rel, extra.pattern) or fnmatch.fnmatch(rel, bare):
                    return True
        return False

    def display(self, resolved: Path) -> str:
        workspace = self.workspace.resolve()
        if _inside(resolved, workspace):
            return resolved.relative_to(workspace).as_posix()
        return resolved.as_posix()

    def _candidates(self) -> Iterable[Path]:
        yield self.workspace / MEMORY_FILE
        yield from _walk(self.workspace / MEMORY_DIR, "**/*.md")
        for extra in self.extras:
            if extra.root.is_dir():
                yield from _walk(extra.root, extra.pattern)
            else:
                yield extra.root


def read_lines(path: Path, start: int | None, count: int | None) -> str:
    """Lines ``start``.. (1-based) of a file, ``count`` of them (all when None). A missing file
    reads as ``""`` (as in OpenClaw: the model may ask for a log not written yet)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    if start is None and count is None:
        return text
    lines = text.splitlines(keepends=True)
    first = max(1, start or 1) - 1
    last = len(lines) if count is None else first + max(0, count)
    return "".join(lines[first:last])


def _inside(path: Path, root: Path) -> bool:
    return path != root and root in path.parents


def _walk(root: Path, pattern: str) -> Iterable[Path]:
    """Files under ``root`` matching ``pattern``, without following directory symlinks."""
    if not root.is_dir():
        return
    bare = pattern.removeprefix("**/")
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            full = Path(folder) / name
            rel = full.relative_to(root).as_posix()
            if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, bare):
                yield full


APPEND_MAX_CHARS = 16_000  # one memory_append call's text


def append_text(files: MemoryFiles, path: str, text: str) -> tuple[Path, str]:
    """Append ``text`` to the workspace memory file ``path`` (``MEMORY.md`` or
    ``memory/**/*.md``; never an extra path, which may be someone else's notes), creating it
    and ``memory/`` as needed. Returns (resolved path, outcome): ``"appended"``, or
    ``"duplicate"`` when the file already holds exactly this text (a flush that ran twice must
    not write twice). Append only: nothing already in the file changes."""
    if not isinstance(text, str) or not text.strip():
        raise NotMemory("text must be a non-empty string")
    if len(text) > APPEND_MAX_CHARS:
        raise NotMemory(f"text is longer than {APPEND_MAX_CHARS} characters; write less")
    own = MemoryFiles(files.workspace)  # the workspace's own memory files, no extras
    target = own.resolve(path)
    body = text.strip("\n")
    try:
        existing = target.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        existing = ""
    if body in existing:
        return target, "duplicate"
    if len(existing.encode("utf-8")) + len(body.encode("utf-8")) > MAX_FILE_BYTES:
        raise NotMemory(f"{own.display(target)} would grow past {MAX_FILE_BYTES} bytes")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not own.allowed(target.resolve()):  # a symlinked folder created meanwhile
        raise NotMemory(f"{path!r} is not a memory file")
    separator = "" if not existing or existing.endswith("\n") else "\n"
    with target.open("a", encoding="utf-8") as out:
        out.write(f"{separator}{body}\n")
    return target, "appended"
