"""LoadPlan: the identity of a plugin load, derived by one pure function (invariant I1).

A plan lists, for every plugin that will load, exactly the inputs that can change what loading
it produces: id, origin, root, manifest digest, entry-file identity, validated-config digest and
runtime mode. Its digest is the generation key. Knobs that cannot change behaviour (logging,
tracing, who is asking, how the caller spelled its request) have no field here, so they cannot
make two equal loads look different — the root cause of OpenClaw #80682.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from clawgate.config import digest
from clawgate.plugins.metadata import MetadataSnapshot

Mode = Literal["full"]


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """One plugin's effective load inputs. Equal entries load to equal registrations."""

    id: str
    origin: str
    root: str
    manifest_digest: str
    entry_file: str
    code_digest: str
    config_digest: str
    mode: Mode = "full"


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """The ordered entries of one load, and their digest (the generation key)."""

    entries: tuple[PlanEntry, ...]
    digest: str
    entry_set: frozenset[PlanEntry] = field(default=frozenset(), compare=False, repr=False)
    ids: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def contains(self, other: LoadPlan) -> bool:
        """True when every entry of ``other`` is in this plan, input for input (I3)."""
        return other.digest == self.digest or other.entry_set <= self.entry_set

    def subset(self, plugin_ids: Iterable[str]) -> LoadPlan:
        """The plan restricted to ``plugin_ids`` (unknown ids are ignored)."""
        wanted = set(plugin_ids)
        return make_plan(e for e in self.entries if e.id in wanted)


def make_plan(entries: Iterable[PlanEntry]) -> LoadPlan:
    """A plan over ``entries``, keeping their order (precedence order)."""
    ordered = tuple(entries)
    return LoadPlan(ordered, digest([list(_row(e)) for e in ordered]), frozenset(ordered),
                    frozenset(e.id for e in ordered))


def derive_plan(snapshot: MetadataSnapshot, mode: Mode = "full") -> LoadPlan:
    """The plan for every enabled plugin of ``snapshot``: the only way plans are made."""
    entries = []
    for meta in snapshot.enabled():
        assert meta.id is not None and meta.manifest is not None and meta.entry_file is not None
        entries.append(
            PlanEntry(
                id=meta.id,
                origin=meta.origin,
                root=str(meta.root),
                manifest_digest=meta.manifest.digest,
                entry_file=str(meta.entry_file),
                code_digest=meta.code_digest,
                config_digest=meta.config_digest,
                mode=mode,
            )
        )
    return make_plan(entries)


def _row(entry: PlanEntry) -> tuple[str, ...]:
    return (
        entry.id,
        entry.origin,
        entry.root,
        entry.manifest_digest,
        entry.entry_file,
        entry.code_digest,
        entry.config_digest,
        entry.mode,
    )
