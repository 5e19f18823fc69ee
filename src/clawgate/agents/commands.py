"""Slash commands: answered by the engine before a message reaches the model.

A message whose text is ``/name [args]`` (``/name@botname`` as Telegram sends it in groups is
the same command) and names a built-in or a plugin command is a command; any other text — also
an unknown ``/word`` — goes to the model unchanged. Built-ins:

=========  ============================================================================
``/new``   start a fresh session (new session id; the old transcript is archived)
``/reset`` the same as ``/new``
``/stop``  abort the session's running turn and its queued messages
``/status`` the session's agent, model, token counts and queue
``/compact`` summarise the older turns now (``/compact <instructions>`` steers the summary);
           the memory flush runs first; a running reply is stopped
``/help``  the commands this gateway knows
=========  ============================================================================

Plugin commands (``api.register_command``) run as ``handler(args, context)`` (sync handlers on
the plugin pool) and return the reply text. Commands are not stored in the transcript.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clawgate.plugins.registry import Command

if TYPE_CHECKING:
    from clawgate.agents.compaction import Outcome

_COMMAND = re.compile(r"^/([A-Za-z0-9_-]{1,64})(?:@[A-Za-z0-9_]{1,64})?(?:\s+([\s\S]*))?$")


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    description: str


BUILTINS: tuple[Builtin, ...] = (
    Builtin("new", "Start a fresh session"),
    Builtin("reset", "Start a fresh session (same as /new)"),
    Builtin("stop", "Stop the running reply and drop queued messages"),
    Builtin("status", "Show this session's agent, model and usage"),
    Builtin("compact", "Summarise the older turns now (/compact <instructions> to steer it)"),
    Builtin("help", "List the commands"),
)
BUILTIN_NAMES = frozenset(b.name for b in BUILTINS)


def parse(text: object) -> tuple[str, str] | None:
    """``(name, args)`` of a command-shaped text (name lower-cased), else None."""
    if not isinstance(text, str):
        return None
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()


def known(name: str, plugin_commands: Mapping[str, Command]) -> bool:
    """True when ``name`` is a built-in or a command of the current plugin generation."""
    return name in BUILTIN_NAMES or name in plugin_commands


def catalogue(plugin_commands: Mapping[str, Command]) -> list[dict[str, str]]:
    """Every command with its description and source (``commands.list``, ``/help``)."""
    rows = [{"name": b.name, "description": b.description, "source": "builtin"}
            for b in BUILTINS]
    rows += [{"name": c.name, "description": c.description, "source": "plugin",
              "pluginId": c.plugin_id}
             for c in sorted(plugin_commands.values(), key=lambda c: c.name)
             if c.name not in BUILTIN_NAMES]
    return rows


def help_text(plugin_commands: Mapping[str, Command]) -> str:
    lines = [f"/{row['name']} — {row['description']}" for row in catalogue(plugin_commands)]
    return "Commands:\n" + "\n".join(lines)


def compact_text(outcome: Outcome) -> str:
    """The ``/compact`` reply."""
    if outcome.compacted:
        line = f"⚙️ Compacted (~{_k(outcome.tokens_before)} → ~{_k(outcome.tokens_after or 0)} " \
               f"tokens; {outcome.kept} recent messages kept)"
    else:
        line = f"⚙️ Compaction skipped: {outcome.reason or 'nothing to compact'}"
    flush = outcome.flush
    if flush is not None:
        line += f" • memory flush: {flush.status}" + (
            f" ({flush.reason})" if flush.reason and flush.status != "ok" else "")
    return line


def _k(count: int) -> str:
    return f"{count / 1000:.1f}k" if count >= 1000 else str(count)
