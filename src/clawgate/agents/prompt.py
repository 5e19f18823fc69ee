"""The system prompt: the agent's workspace bootstrap files, its tools, and the date and time.

Bootstrap files follow OpenClaw: AGENTS.md, SOUL.md, USER.md, IDENTITY.md, TOOLS.md, and
MEMORY.md for main sessions only. Each file is capped at 20,000 characters and all of them at
60,000; a cut is marked so the model (and a reader of the prompt) knows text is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from clawgate.agents.roster import Agent
from clawgate.plugins.registry import Tool

BOOTSTRAP_FILES = ("AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md")
MAIN_ONLY_FILES = ("MEMORY.md",)
PER_FILE_CHARS = 20_000
TOTAL_CHARS = 60_000


@dataclass(frozen=True, slots=True)
class BootstrapFile:
    name: str
    text: str
    truncated: bool
    missing: bool


def read_bootstrap(workspace: Path, *, main_session: bool) -> list[BootstrapFile]:
    """Read the workspace's bootstrap files with the caps applied. Blocking (file I/O)."""
    names = BOOTSTRAP_FILES + (MAIN_ONLY_FILES if main_session else ())
    budget = TOTAL_CHARS
    files: list[BootstrapFile] = []
    for name in names:
        try:
            text = (workspace / name).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            files.append(BootstrapFile(name, "", False, True))
            continue
        limit = min(PER_FILE_CHARS, budget)
        truncated = len(text) > limit
        if truncated:
            text = text[:limit]
        budget -= len(text)
        files.append(BootstrapFile(name, text, truncated, False))
    return files


class BootstrapCache:
    """Bootstrap files per (workspace, main session), re-read at most every ``ttl_s`` seconds.

    Reading them is file I/O off the event loop (a thread hop) on every turn otherwise; a
    workspace edit shows up in new turns within ``ttl_s``.
    """

    def __init__(self, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._files: dict[tuple[Path, bool], tuple[float, list[BootstrapFile]]] = {}

    async def files(self, workspace: Path, *, main_session: bool) -> list[BootstrapFile]:
        key = (workspace, main_session)
        cached = self._files.get(key)
        now = self._clock()
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        files = await asyncio.to_thread(read_bootstrap, workspace, main_session=main_session)
        self._files[key] = (now, files)
        return files


def system_prompt(
    agent: Agent,
    files: Sequence[BootstrapFile],
    tools: Sequence[Tool],
    *,
    now: datetime,
    extra: str | None = None,
) -> str:
    """Assemble the system prompt from its parts."""
    parts = [
        f"You are {agent.name}, an assistant served by clawgate (agent id: {agent.id}).",
        f"Current date and time: {now.isoformat(timespec='seconds')} ({now.strftime('%A')}).",
        f"Workspace: {agent.workspace}",
    ]
    if tools:
        lines = [f"- {t.name}: {t.description.splitlines()[0] if t.description else ''}"
                 for t in tools]
        parts.append("## Tools\nYou can call these tools:\n" + "\n".join(lines))
    present = [f for f in files if not f.missing]
    if present:
        sections = []
        for f in present:
            marker = f"\n[... {f.name} truncated: the rest of the file was not included]" \
                if f.truncated else ""
            sections.append(f"### {f.name}\n{f.text.rstrip()}{marker}")
        parts.append("## Workspace files\n" + "\n\n".join(sections))
    if extra:
        parts.append(extra.strip())
    return "\n\n".join(parts)
