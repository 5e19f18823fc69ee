"""Discovery: find plugin folders in the five origins and refuse unsafe ones before any code runs.

Origins, in precedence order for a duplicate id (the first one wins, later ones are reported as
overridden):

1. ``config``    folders listed in ``plugins.load_paths`` (the operator chose them by path)
2. ``bundled``   folders shipped inside clawgate (``clawgate/bundled/*``)
3. ``installed`` distributions exposing the entry-point group ``clawgate.plugins``
4. ``global``    ``<state>/plugins/*``
5. ``workspace`` ``<workspace>/.clawgate/plugins/*`` of every configured agent

As in OpenClaw, a workspace or global copy cannot shadow a bundled plugin. Safety gates, checked
on the real files: the manifest or entry module resolving outside the plugin root (a symlink
escape), a world-writable root, manifest or entry, and (outside ``bundled``) a file owned by
neither the current user nor root.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.metadata
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clawgate.errors import ManifestError
from clawgate.plugins.manifest import MANIFEST_NAME, Manifest, read_manifest
from clawgate.plugins.schemas import SchemaCache

Origin = Literal["config", "bundled", "installed", "global", "workspace"]
ORIGINS: tuple[Origin, ...] = ("config", "bundled", "installed", "global", "workspace")
ENTRY_POINT_GROUP = "clawgate.plugins"
BUNDLED_ROOT = Path(__file__).resolve().parent.parent / "bundled"


@dataclass(frozen=True, slots=True)
class Source:
    """A folder that may hold a plugin, with the origin it was found through."""

    origin: Origin
    root: Path
    workspace: Path | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A plugin folder whose manifest was read and that passed the safety gates."""

    manifest: Manifest
    origin: Origin
    root: Path
    entry_file: Path
    code_digest: str
    workspace: Path | None = None

    @property
    def id(self) -> str:
        return self.manifest.id


@dataclass(frozen=True, slots=True)
class Refusal:
    """A folder that was not accepted, with the reason; ``plugin_id`` when it could be read."""

    origin: Origin
    root: Path
    reason: str
    plugin_id: str | None = None
    status: Literal["error", "blocked", "overridden"] = "error"


@dataclass(frozen=True, slots=True)
class Inventory:
    """The result of one discovery scan: what can load, what was refused, and a digest."""

    candidates: tuple[Candidate, ...]
    refusals: tuple[Refusal, ...]
    warnings: tuple[str, ...] = ()
    digest: str = field(default="")

    def candidate(self, plugin_id: str) -> Candidate | None:
        return next((c for c in self.candidates if c.id == plugin_id), None)


def sources(
    *,
    load_paths: Sequence[str],
    state_dir: Path,
    workspaces: Sequence[Path],
    bundled_root: Path | None = BUNDLED_ROOT,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> list[Source]:
    """Every folder to look at, in precedence order. Reads directory listings only."""
    found: list[Source] = []
    for raw in load_paths:
        path = (state_dir / Path(raw).expanduser()).absolute()
        if not path.exists():  # a typo must not pass silently: scan() refuses it by name
            found.append(Source("config", path))
            continue
        # A load path may be one plugin folder or a folder of plugin folders.
        found.extend(Source("config", p) for p in _plugin_dirs(path, direct_ok=True))
    if bundled_root is not None:
        found.extend(Source("bundled", p) for p in _plugin_dirs(bundled_root))
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else (
        entry_points
    )
    for ep in eps:
        root = _entry_point_root(ep.value)
        if root is not None:
            found.append(Source("installed", root))
    found.extend(Source("global", p) for p in _plugin_dirs(state_dir / "plugins"))
    for ws in workspaces:
        found.extend(
            Source("workspace", p, workspace=ws) for p in _plugin_dirs(ws / ".clawgate" / "plugins")
        )
    return found


def scan(found: Sequence[Source], schemas: SchemaCache | None = None) -> Inventory:
    """Read every source's manifest, apply the safety gates and resolve duplicate ids
    (``schemas``: the checks of manifest config schemas that already passed)."""
    candidates: dict[str, Candidate] = {}
    refusals: list[Refusal] = []
    warnings: list[str] = []
    for source in found:
        result = inspect_source(source, schemas)
        if isinstance(result, Refusal):
            refusals.append(result)
            continue
        warnings.extend(result.manifest.warnings)
        winner = candidates.get(result.id)
        if winner is None:
            candidates[result.id] = result
        else:
            refusals.append(
                Refusal(
                    source.origin,
                    source.root,
                    f"overridden by {winner.origin} plugin at {winner.root}",
                    plugin_id=result.id,
                    status="overridden",
                )
            )
    ordered = tuple(candidates.values())
    return Inventory(ordered, tuple(refusals), tuple(warnings), _digest(ordered, refusals))


def inspect_source(source: Source, schemas: SchemaCache | None = None) -> Candidate | Refusal:
    """Read one folder's manifest and check it; never imports plugin code."""
    root = source.root
    manifest_path = root / MANIFEST_NAME
    try:
        real_root = root.resolve(strict=True)
        gate = _gate(source, real_root, manifest_path)
        if gate:
            return Refusal(source.origin, root, gate, status="blocked")
        manifest = read_manifest(manifest_path, schemas)
    except ManifestError as exc:
        return Refusal(source.origin, root, str(exc), plugin_id=exc.plugin_id)
    except FileNotFoundError:
        what = "plugins.load_paths: folder" if source.origin == "config" else "plugin folder"
        return Refusal(source.origin, root, f"{what} {root} does not exist")
    except OSError as exc:
        return Refusal(source.origin, root, f"cannot read plugin folder: {exc.strerror}")
    entry = _entry_file(real_root, manifest.entry_module())
    if entry is None:
        return Refusal(
            source.origin,
            root,
            f"entry module {manifest.entry_module()!r} not found in {root}",
            plugin_id=manifest.id,
        )
    # Every module the plugin could import passes the gates, not only its entry file: a
    # symlinked or world-writable sibling would otherwise run with the plugin's trust.
    files = sorted(_python_files(real_root))
    for path in [entry, *files]:
        try:  # the root itself passed with the manifest
            gate = _gate(source, real_root, path, root_checked=True)
        except OSError as exc:  # e.g. a dangling symlink
            gate = f"{path}: {exc.strerror}"
        if gate:
            return Refusal(source.origin, root, gate, plugin_id=manifest.id, status="blocked")
    return Candidate(manifest, source.origin, root, entry, code_digest(real_root, files),
                     source.workspace)


def _gate(source: Source, real_root: Path, path: Path, *, root_checked: bool = False,
          ) -> str | None:
    """The reason ``path`` (inside a plugin root) must not be used, or None."""
    real = path.resolve(strict=True)
    if real != real_root and real_root not in real.parents:
        return f"{path} resolves to {real}, outside the plugin root {real_root}"
    for checked in (real,) if root_checked else (real_root, real):
        info = checked.stat()
        if info.st_mode & stat.S_IWOTH and not _repair(source, checked, info):
            return f"{checked} is world-writable"
        if source.origin != "bundled" and info.st_uid not in (os.getuid(), 0):
            return f"{checked} is owned by uid {info.st_uid}, not by this user or root"
    return None


def _repair(source: Source, path: Path, info: os.stat_result) -> bool:
    # Like OpenClaw, bundled files get one in-place repair attempt: they ship with clawgate, so a
    # loose umask at install time should not disable core features.
    if source.origin != "bundled":
        return False
    try:
        path.chmod(stat.S_IMODE(info.st_mode) & ~stat.S_IWOTH)
    except OSError:
        return False
    return True


def code_digest(root: Path, files: list[Path] | None = None) -> str:
    """A digest of every Python file under ``root`` (paths and contents).

    The content, not mtime or size, identifies the code: an edit preserved by ``cp -p`` or a
    change to a module the entry imports still makes a different load.
    """
    h = hashlib.sha256()
    for path in sorted(_python_files(root)) if files is None else files:
        h.update(str(path.relative_to(root)).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError as exc:  # unreadable now: still part of the identity, as an error
            h.update(f"!{exc.errno}".encode())
        h.update(b"\0")
    return h.hexdigest()


def _python_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__"))]
        found.extend(Path(folder) / f for f in files if f.endswith(".py"))
    return found


def _entry_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _plugin_dirs(path: Path, *, direct_ok: bool = False) -> list[Path]:
    if direct_ok and (path / MANIFEST_NAME).exists():
        return [path]
    try:
        children = sorted(path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [c for c in children if c.is_dir() and not c.name.startswith((".", "_"))]


def _entry_point_root(value: str) -> Path | None:
    """The folder of an entry point's module, found without importing it."""
    module = value.partition(":")[0].strip()
    parts = module.split(".")
    spec = importlib.machinery.PathFinder.find_spec(parts[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    for part in parts[1:]:
        folder = folder / part
    return folder if folder.is_dir() else None


def _digest(candidates: Sequence[Candidate], refusals: Sequence[Refusal]) -> str:
    h = hashlib.sha256()
    for c in candidates:
        h.update(
            f"{c.id}|{c.origin}|{c.root}|{c.manifest.digest}|{c.entry_file}|"
            f"{c.code_digest}|{c.workspace}\n".encode()
        )
    for r in refusals:
        h.update(f"!{r.origin}|{r.root}|{r.plugin_id}|{r.reason}\n".encode())
    return h.hexdigest()
