"""Fixtures for memory-core: real files in tmp_path, the plugin loaded by a real PluginHost
(services started, so the watcher runs), tools called through the registry as the engine calls
them, and a loopback fake embeddings server."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from clawgate import ToolContext, config
from clawgate.plugins.host import Generation, PluginHost
from tests.support.fake_embeddings import FakeEmbeddings
from tests.support.poll import until

__all__ = ["Memory", "until"]

MAIN = "agent:main:main"


@dataclass
class Memory:
    """A started host with memory-core, and helpers to call what it registered."""

    host: PluginHost
    state: Path
    workspace: Path

    @property
    def generation(self) -> Generation:
        return self.host.current

    def write(self, relative: str, text: str) -> Path:
        path = self.workspace / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    async def tool(self, name: str, arguments: Mapping[str, Any], *, agent: str = "main",
                   session: str = MAIN) -> Any:
        """Call a tool the way the engine does: handler(arguments, context), sync or async."""
        tool = self.generation.registry.tool(name)
        assert tool is not None, f"tool {name} is not registered"
        workspace = self.host.settings.agent_workspace(
            next(a for a in self.host.settings.agents() if a.id == agent))
        context = ToolContext(session, agent, "run-test", workspace)
        args = (dict(arguments), context) if tool.wants_context else (dict(arguments),)
        result = tool.handler(*args)
        if inspect.isawaitable(result):
            result = await result
        return orjson.loads(orjson.dumps(result))  # what the model would see, as JSON

    async def method(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        method = self.generation.registry.methods[name]
        result = method.handler(dict(params or {}), None)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def sync(self, agent: str = "main") -> dict[str, Any]:
        """An incremental sync through the ``memory.index`` method (what the watcher does)."""
        report: dict[str, Any] = await self.method("memory.index", {"agentId": agent})
        return report

    async def search(self, query: str, **options: Any) -> dict[str, Any]:
        found: dict[str, Any] = await self.tool("memory_search", {"query": query, **options})
        return found

    async def paths(self, query: str, **options: Any) -> list[str]:
        return [r["path"] for r in (await self.search(query, **options))["results"]]


Factory = Callable[..., Awaitable[Memory]]


def settings_for(state: Path, memory: Mapping[str, Any] | None = None,
                 **extra: Any) -> config.Settings:
    plugin = {"enabled": True, "config": {"debounce_ms": 50, **(memory or {})}}
    data: dict[str, Any] = {"plugins": {"entries": {"memory-core": plugin}}, **extra}
    return config.Settings(config.parse(data), state_dir=state,
                           config_path=state / "clawgate.toml")


@pytest.fixture
async def make_memory(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Factory]:
    """``await make_memory(memory=..., files=..., state=..., services=True)``: a started host
    whose memory-core has the ``memory`` config, with ``files`` (relative path -> text) written
    into the workspace of agent ``main`` before it starts. Closed after the test."""
    hosts: list[PluginHost] = []

    async def factory(*, memory: Mapping[str, Any] | None = None, state: Path | None = None,
                      services: bool = True, files: Mapping[str, str] | None = None,
                      **extra: Any) -> Memory:
        state_dir = state or tmp_path / "state"
        settings = settings_for(state_dir, memory, **extra)
        workspace = settings.agent_workspace(settings.agents()[0])
        workspace.mkdir(parents=True, exist_ok=True)
        for relative, text in (files or {}).items():
            (workspace / relative).parent.mkdir(parents=True, exist_ok=True)
            (workspace / relative).write_text(text, encoding="utf-8")
        host = PluginHost(settings)
        hosts.append(host)
        await host.start(services=services)
        record = host.current.registry.records["memory-core"]
        assert record.status == "loaded", record
        return Memory(host, state_dir, workspace)

    yield factory
    for host in reversed(hosts):
        await host.aclose()


@pytest.fixture
async def embeddings(anyio_backend: str) -> AsyncIterator[FakeEmbeddings]:
    """A fake embeddings server that knows a few synonyms (car/automobile, ...)."""
    server = FakeEmbeddings(dims=64, synonyms={"automobile": "car", "vehicle": "car",
                                               "feline": "cat", "kitten": "cat"})
    async with server:
        yield server


def embedding_config(server: FakeEmbeddings, **options: Any) -> dict[str, Any]:
    return {"embeddings": {"base_url": server.base_url, "model": "hash-64", **options}}
