"""memory-core: files as the source of truth, a per-agent hybrid index, tools, RPC and a watcher.

``register(api)`` only wires things up (no I/O): the tools ``memory_search``, ``memory_get``
and ``memory_append`` (what the pre-compaction memory flush writes with), a
``before_prompt_build`` hook that adds today's and yesterday's daily logs to the system prompt
of sessions that are not shared, the RPC methods ``memory.status``, ``memory.index`` and
``memory.search``, and the ``memory-watcher`` service, which opens the indexes, syncs them and
follows file changes. Indexes open lazily too, so the tools work in a
host that never starts services.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from clawgate import (
    ClawgateError,
    InvalidRequest,
    PluginApi,
    ToolContext,
    ToolError,
    session_scope,
)

from .embeddings import Embedder, EmbeddingSettings
from .files import MemoryFiles, append_text, extras_from_config, read_lines
from .manager import AgentMemory, Options
from .search import Ranking
from .watcher import AgentWatcher

MAX_RESULTS_CAP = 50
# The daily-log section of the system prompt is re-read at most this often per workspace (as
# the bootstrap files are): reading it is a thread hop on every turn otherwise. An append by
# this plugin drops the cached copy at once; an edit from outside shows up within the TTL.
DAILY_TTL_S = 2.0
GET_MAX_CHARS = 40_000  # memory_get returns at most this much text (the model's context is finite)

SEARCH_PARAMETERS = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "What to look for, in natural language."},
        "maxResults": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS_CAP,
                       "description": "How many snippets to return (default 6)."},
        "minScore": {"type": "number", "minimum": 0, "maximum": 1,
                     "description": "Drop results scoring below this (default 0.35)."},
    },
    "required": ["query"],
    "additionalProperties": False,
}
APPEND_PARAMETERS = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "What to remember, as Markdown lines."},
        "path": {"type": "string",
                 "description": "MEMORY.md or a file under memory/ (default: today's daily "
                                "log, memory/YYYY-MM-DD.md)."},
    },
    "required": ["text"],
    "additionalProperties": False,
}
GET_PARAMETERS = {
    "type": "object",
    "properties": {
        "path": {"type": "string",
                 "description": "A path from memory_search, e.g. memory/2026-01-31.md"},
        "from": {"type": "integer", "minimum": 1, "description": "First line (1-based)."},
        "lines": {"type": "integer", "minimum": 1, "description": "How many lines."},
    },
    "required": ["path"],
    "additionalProperties": False,
}


class MemoryUnavailable(ClawgateError):
    """Memory was asked for after the plugin's generation stopped it."""


class UnknownAgent(InvalidRequest):
    """Memory was asked about an agent the config does not have."""


class Memory:
    """The plugin's state for one generation: every agent's memory and their watchers."""

    def __init__(self, api: PluginApi) -> None:
        self.config: Mapping[str, Any] = api.config
        self.log = api.logger
        self.workspaces = api.workspaces()
        root = api.root_config
        self.main_key = str(getattr(getattr(root, "session", None), "main_key", "main"))
        agents = getattr(root, "agents", ()) or ()
        self.default_agent = next((a.id for a in agents if getattr(a, "default", False)),
                                  next(iter(self.workspaces), "main"))
        self.read_only = {str(a.id): True for a in agents
                          if getattr(a, "workspace_access", "rw") == "ro"}
        self.index_dir = Path(api.state_dir) / "memory"
        self.embedding = EmbeddingSettings.from_config(self.config.get("embeddings"))
        ranking = Ranking(
            vector_weight=float(self.config["vector_weight"]),
            text_weight=float(self.config["text_weight"]),
            half_life_days=float(self.config["half_life_days"]),
            mmr_lambda=float(self.config["mmr_lambda"]),
            snippet_chars=int(self.config["snippet_chars"]),
        )
        self.options = Options(
            chunk_tokens=int(self.config["chunk_tokens"]),
            chunk_overlap=int(self.config["chunk_overlap"]),
            candidate_multiplier=int(self.config["candidate_multiplier"]),
            semantic_deadline_s=float(self.config["semantic_deadline_s"]),
            cache_max_entries=int(self.config["cache_max_entries"]),
            vector_backend=self.config["vector_backend"],
            ranking=ranking,
            resync_after_s=None if self.config["watch"] else 5.0,
        )
        self._embedder: Embedder | None = None
        self._agents: dict[str, AgentMemory] = {}
        self._watchers: list[AgentWatcher] = []
        # workspace -> (monotonic time read, the daily-log section); one entry per agent.
        self._daily: dict[Path, tuple[float, str]] = {}
        self.stopped = False

    def agent(self, agent_id: str | None = None) -> AgentMemory:
        """The memory of ``agent_id`` (default: the default agent), created on first use."""
        if self.stopped:
            raise MemoryUnavailable("memory is shutting down")
        agent_id = agent_id or self.default_agent
        memory = self._agents.get(agent_id)
        if memory is not None:
            return memory
        workspace = self.workspaces.get(agent_id)
        if workspace is None:
            raise UnknownAgent(
                f"unknown agent {agent_id!r}; agents: {', '.join(sorted(self.workspaces))}",
                method="memory")
        if self.embedding is not None and self._embedder is None:
            self._embedder = Embedder(self.embedding)
        files = MemoryFiles(workspace, extras_from_config(workspace, self.config["extra_paths"]))
        memory = AgentMemory(agent_id, files, self.index_dir / f"{agent_id}.sqlite", self.options,
                             self._embedder, self.log)
        self._agents[agent_id] = memory
        return memory

    async def start(self) -> None:
        """Open every agent's index and, when watching, start its watcher (which syncs)."""
        if not self.config["watch"]:
            return
        for agent_id in self.workspaces:
            watcher = AgentWatcher(self.agent(agent_id),
                                   debounce_s=float(self.config["debounce_ms"]) / 1000,
                                   logger=self.log)
            watcher.start()
            self._watchers.append(watcher)

    async def stop(self) -> None:
        """Stop the watchers, then close every index and the embedding client."""
        self.stopped = True
        for watcher in self._watchers:
            await watcher.stop()
        self._watchers.clear()
        for memory in self._agents.values():
            await memory.close()
        if self._embedder is not None:
            await self._embedder.aclose()

    # -- what the tools, the hook and the methods call ----------------------------------------

    async def search(self, agent_id: str | None, arguments: Mapping[str, Any]) -> dict[str, Any]:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        max_results = _number(arguments, "maxResults", int(self.config["max_results"]), int,
                              1, MAX_RESULTS_CAP)
        min_score = _number(arguments, "minScore", float(self.config["min_score"]), float, 0, 1)
        return await self.agent(agent_id).search(query, max_results=max_results,
                                                 min_score=min_score)

    async def get(self, agent_id: str | None, arguments: Mapping[str, Any]) -> dict[str, Any]:
        memory = self.agent(agent_id)
        path = arguments.get("path")
        start = _number(arguments, "from", None, int, 1, None)
        count = _number(arguments, "lines", None, int, 1, None)
        resolved = memory.files.resolve(path if isinstance(path, str) else "")
        text = await asyncio.to_thread(read_lines, resolved, start, count)
        answer: dict[str, Any] = {"path": memory.files.display(resolved), "text": text}
        if len(text) > GET_MAX_CHARS:
            answer["text"] = text[:GET_MAX_CHARS]
            answer["truncated"] = True
        return answer

    async def append(self, agent_id: str | None, arguments: Mapping[str, Any]
                     ) -> dict[str, Any]:
        memory = self.agent(agent_id)
        if self.read_only.get(memory.agent_id):
            raise ValueError('the workspace is read-only (workspace_access = "ro")')
        path = arguments.get("path") or f"memory/{datetime.now().astimezone().date()}.md"
        if not isinstance(path, str):
            raise ValueError("path must be a string")
        target, outcome = await asyncio.to_thread(_append, memory.files, path,
                                                  arguments.get("text"))
        memory.dirty = True  # read your writes: the next search syncs first
        workspace = self.workspaces.get(memory.agent_id)
        if workspace is not None:
            self._daily.pop(workspace, None)  # and the next prompt reads the logs again
        return {"path": memory.files.display(target), "outcome": outcome}

    async def daily_logs(self, session_key: str, agent_id: str, system_prompt: str
                         ) -> dict[str, str] | None:
        mode = self.config["daily_logs"]
        scope = session_scope(session_key, self.main_key)
        if mode == "off" or scope == "group" or (mode == "main" and scope != "main"):
            return None
        workspace = self.workspaces.get(agent_id)
        if workspace is None:
            return None
        cached = self._daily.get(workspace)
        now = time.monotonic()
        if cached is not None and now - cached[0] < DAILY_TTL_S:
            section = cached[1]
        else:
            section = await asyncio.to_thread(_read_daily, MemoryFiles(workspace),
                                              int(self.config["daily_log_chars"]))
            self._daily[workspace] = (now, section)
        return {"system_prompt": f"{system_prompt}\n\n{section}"} if section else None


def _number(arguments: Mapping[str, Any], name: str, default: Any, kind: type,
            low: float | None, high: float | None) -> Any:
    value = arguments.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if kind is int and value != int(value):
        raise ValueError(f"{name} must be a whole number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
        raise ValueError(f"{name} must be {bounds}")
    return kind(value)


def _append(files: MemoryFiles, path: str, text: Any) -> tuple[Path, str]:
    workspace = files.workspace
    for folder in (workspace, workspace / "memory"):
        if folder.exists() and not os.access(folder, os.W_OK):
            raise ValueError(f"the workspace is read-only ({folder} is not writable)")
    return append_text(files, path, text)


def _read_daily(files: MemoryFiles, limit: int) -> str:
    """Today's and yesterday's logs, newest last, each cut to its last ``limit`` characters."""
    today = datetime.now().astimezone().date()
    parts = []
    for day, label in ((today - timedelta(days=1), "yesterday"), (today, "today")):
        path = files.daily_log(day)
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        if not text:
            continue
        if len(text) > limit:  # logs are append-only: the end is the most recent part
            text = "[... earlier entries cut]\n" + text[-limit:]
        parts.append(f"### memory/{day.isoformat()}.md ({label})\n{text}")
    if not parts:
        return ""
    return ("## Memory: recent daily logs\nYour notes from yesterday and today. Search older "
            "memory with memory_search.\n\n" + "\n\n".join(parts))


def register(api: PluginApi) -> None:
    memory = Memory(api)

    async def memory_search(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        """Search your memory (MEMORY.md, memory/*.md and extra paths) before answering
        questions about earlier work, decisions, dates, people, preferences or to-dos; returns
        snippets with their path and line range."""
        try:
            return await memory.search(context.agent_id, arguments)
        except (ValueError, ClawgateError) as exc:
            raise ToolError(str(exc), tool="memory_search") from None

    async def memory_get(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        """Read lines of a memory file (a path from memory_search), optionally from a line
        and for a number of lines, to quote only what is needed."""
        try:
            return await memory.get(context.agent_id, arguments)
        except (ValueError, ClawgateError) as exc:
            raise ToolError(str(exc), tool="memory_get") from None

    async def memory_append(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        """Append notes to a memory file (default: today's daily log memory/YYYY-MM-DD.md;
        or MEMORY.md for curated long-term facts), creating it if needed. Append only:
        nothing already written changes."""
        try:
            return await memory.append(context.agent_id, arguments)
        except (ValueError, ClawgateError, OSError) as exc:
            raise ToolError(str(exc), tool="memory_append") from None

    api.register_tool(memory_search, parameters=SEARCH_PARAMETERS)
    api.register_tool(memory_get, parameters=GET_PARAMETERS)
    api.register_tool(memory_append, parameters=APPEND_PARAMETERS)

    async def before_prompt_build(session_key: str, agent_id: str,
                                  system_prompt: str) -> dict[str, str] | None:
        return await memory.daily_logs(session_key, agent_id, system_prompt)

    api.on("before_prompt_build", before_prompt_build)

    async def status(params: Mapping[str, Any], context: Any) -> dict[str, Any]:
        wanted = params.get("agentId")
        ids = [str(wanted)] if wanted else list(memory.workspaces)
        return {"agents": [await memory.agent(i).status() for i in ids]}

    async def index(params: Mapping[str, Any], context: Any) -> dict[str, Any]:
        agent = memory.agent(_agent_param(params))
        report = await (agent.reindex() if params.get("force") else agent.sync("rpc"))
        return {"agentId": agent.agent_id, "force": bool(params.get("force")),
                **report.as_dict(), "status": await agent.status()}

    async def search(params: Mapping[str, Any], context: Any) -> dict[str, Any]:
        try:
            return await memory.search(_agent_param(params), params)
        except ValueError as exc:
            raise InvalidRequest(str(exc), method="memory.search") from None

    api.register_method("memory.status", status, scope="operator.read")
    api.register_method("memory.index", index, scope="operator.write")
    api.register_method("memory.search", search, scope="operator.read")
    api.register_service("memory-watcher", lambda context: memory.start(),
                         lambda context: memory.stop())


def _agent_param(params: Mapping[str, Any]) -> str | None:
    agent = params.get("agentId")
    if agent is not None and not isinstance(agent, str):
        raise InvalidRequest("agentId must be a string", method="memory.*")
    return agent
