"""The enable decision: one pure function over an ordered rule table. The first rule that
applies decides, and the decision carries the rule's reason so the CLI can show it.

Memory-slot exclusivity (only one memory plugin at a time) needs to see every plugin, so it is a
second pass, :func:`apply_memory_slot`, over the per-plugin decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from clawgate.config import PluginsConfig
from clawgate.plugins.manifest import Manifest

Source = Literal["disabled", "explicit", "default"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a plugin is enabled, what kind of decision it was, and why."""

    enabled: bool
    source: Source
    reason: str
    rule: str


@dataclass(frozen=True, slots=True)
class Subject:
    """What the rules look at for one plugin."""

    plugin_id: str
    origin: str
    manifest: Manifest
    plugins: PluginsConfig

    @property
    def entry_enabled(self) -> bool | None:
        return self.plugins.entry(self.plugin_id).enabled


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    applies: Callable[[Subject], bool]
    enabled: bool
    source: Source
    reason: Callable[[Subject], str]


def _const(text: str) -> Callable[[Subject], str]:
    return lambda _s: text


RULES: tuple[Rule, ...] = (
    Rule("plugins-disabled", lambda s: not s.plugins.enabled, False, "disabled",
         _const("plugins disabled")),
    Rule("denylist", lambda s: s.plugin_id in s.plugins.deny, False, "disabled",
         _const("blocked by denylist")),
    Rule("entry-disabled", lambda s: s.entry_enabled is False, False, "disabled",
         _const("disabled in config")),
    Rule("workspace-default-off",
         lambda s: s.origin == "workspace" and s.plugin_id not in s.plugins.allow
         and s.entry_enabled is not True,
         False, "disabled", _const("workspace plugin (disabled by default)")),
    Rule("memory-slot", lambda s: s.plugins.slots.memory == s.plugin_id, True, "explicit",
         _const("selected for the memory slot")),
    Rule("allowlist", lambda s: bool(s.plugins.allow) and s.plugin_id not in s.plugins.allow,
         False, "disabled", _const("not in allowlist")),
    Rule("explicit",
         lambda s: s.entry_enabled is True
         or (s.origin != "bundled" and s.plugin_id in s.plugins.allow),
         True, "explicit", _const("enabled in config")),
    Rule("bundled-default-on", lambda s: s.origin == "bundled" and s.manifest.enabled_by_default,
         True, "default", _const("bundled (enabled by default)")),
    Rule("bundled-default-off", lambda s: s.origin == "bundled", False, "disabled",
         _const("bundled (disabled by default)")),
    Rule("origin-default", lambda s: True, True, "default",
         lambda s: f"{s.origin} plugin (enabled by default)"),
)


def decide(subject: Subject) -> Decision:
    """Apply the rule table to one plugin: the first rule that applies decides."""
    for rule in RULES:
        if rule.applies(subject):
            return Decision(rule.enabled, rule.source, rule.reason(subject), rule.name)
    raise AssertionError("the last rule always applies")  # pragma: no cover


def apply_memory_slot(
    subjects: Sequence[Subject], decisions: Sequence[Decision]
) -> list[Decision]:
    """Keep at most one enabled single-kind memory plugin, as the memory slot says.

    ``slots.memory = "none"`` disables memory plugins; a plugin id selects that one; unset lets
    the first enabled memory plugin (in precedence order) take the slot. A plugin that is both
    ``memory`` and ``context-engine`` is never disabled by the slot.
    """
    slot = subjects[0].plugins.slots.memory if subjects else None
    result: list[Decision] = []
    owner: str | None = None
    for subject, decision in zip(subjects, decisions, strict=True):
        kinds = subject.manifest.kinds
        if not decision.enabled or kinds != ("memory",):
            result.append(decision)
            continue
        if slot == "none":
            decision = Decision(False, "disabled", "memory slot disabled", "memory-slot-none")
        elif slot is not None and slot != subject.plugin_id:
            decision = Decision(
                False, "disabled", f'memory slot set to "{slot}"', "memory-slot-other"
            )
        elif owner is not None:
            decision = Decision(
                False, "disabled", f'memory slot already filled by "{owner}"', "memory-slot-taken"
            )
        else:
            owner = subject.plugin_id
        result.append(decision)
    return result
