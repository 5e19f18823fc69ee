"""Fixtures for the engine tests: a factory that builds a real engine (plugin host over real
plugin folders, SQLite store in tmp_path) and closes everything it built."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clawgate import config
from clawgate.agents.bus import RunEvent, Subscription
from clawgate.agents.engine import Engine
from clawgate.plugins.host import PluginHost
from clawgate.runtime import Runtime
from clawgate.sessions.store import SessionStore
from tests.support.mock_openai import MockOpenAI
from tests.support.poll import until  # noqa: F401  (re-exported for tests)

ENGINE_TOOLS = Path(__file__).resolve().parent.parent / "fixtures" / "engine" / "engine_tools"
MAIN = "agent:main:main"


@dataclass
class Harness:
    """One running runtime (engine, host and store), as the gateway builds it."""

    runtime: Runtime
    closed: bool = field(default=False)

    @property
    def settings(self) -> config.Settings:
        return self.runtime.settings

    @property
    def host(self) -> PluginHost:
        return self.runtime.host

    @property
    def store(self) -> SessionStore:
        return self.runtime.store

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def state(self) -> Path:
        return self.settings.state_dir

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.runtime.aclose()

    def leases(self) -> int:
        """Leases still held on every live plugin generation (0 once every run has ended)."""
        return sum(self.host.in_flight(g) for g in self.host.live())


Factory = Callable[..., Awaitable[Harness]]


def build_config(
    *,
    engine: Mapping[str, Any] | None = None,
    echo: Mapping[str, Any] | None = None,
    mock: MockOpenAI | None = None,
    tools: Mapping[str, Any] | None = None,
    model: str | Mapping[str, Any] | None = None,
    agents: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The config dict for an engine test (see ``make_engine``)."""
    entries: dict[str, Any] = {}
    load_paths: list[str] = []
    if echo is not None:
        entries["echo"] = {"enabled": True, "config": dict(echo)}
    if mock is not None:
        entries["openai"] = {"enabled": True, "config": {
            "base_url": mock.url, "api_key_env": "MOCK_KEY", "max_retries": 1}}
        model = model or {"primary": "openai/mock-model", "fallbacks": ["echo/echo"]}
    if tools is not None:
        load_paths.append(str(ENGINE_TOOLS))
        entries["engine_tools"] = {"enabled": True, "config": dict(tools)}
    data: dict[str, Any] = {"plugins": {"load_paths": load_paths, "entries": entries},
                            "engine": dict(engine or {})}
    if agents is not None:
        data["agents"] = [dict(a) for a in agents]
    elif model is not None:
        data["agents"] = [{"id": "main", "default": True, "model": model}]
    return data


# CLAWGATE_TEST_STORE=postgres runs the engine tests on a fresh PostgreSQL database each (the
# replica code paths: owners, claims, the takeover sweeper); the default is SQLite.
ON_POSTGRES = os.environ.get("CLAWGATE_TEST_STORE") == "postgres"


@pytest.fixture
async def make_engine(tmp_path: Path, anyio_backend: str,
                      request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """``await make_engine(engine=..., echo=..., mock=..., tools=..., model=..., agents=...,
    state=...)`` -> a started :class:`Harness`; all of them are closed after the test.

    ``echo``: config of the bundled echo plugin; ``mock``: a MockOpenAI server the agent's
    primary model points at (fallback ``echo/echo``); ``tools``: config of the engine_tools
    fixture plugin (loaded when given); ``state``: the state directory (default tmp_path).
    """
    if ON_POSTGRES and request.node.get_closest_marker("sqlite_only") is not None:
        pytest.skip("inspects the SQLite file itself")
    built: list[Harness] = []
    urls: dict[Path, str] = {}  # one database per state directory (a restart reopens it)

    async def factory(*, state: Path | None = None, **options: Any) -> Harness:
        state_dir = state or tmp_path
        data = build_config(**options)
        if ON_POSTGRES:
            cluster = request.getfixturevalue("pg_cluster")
            url = urls[state_dir] = urls.get(state_dir) or cluster.database()
            data["store"] = {"url": url}
        settings = config.Settings(config.parse(data), state_dir=state_dir,
                                   config_path=state_dir / "clawgate.toml")
        runtime = Runtime(settings, drain_deadline_s=5.0)
        await runtime.start()
        harness = Harness(runtime)
        built.append(harness)
        return harness

    yield factory
    for harness in reversed(built):
        await harness.close()
    for url in urls.values():
        request.getfixturevalue("pg_cluster").release(url)


@pytest.fixture(autouse=True)
def _mock_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_KEY", "test-key")


def gated(tmp_path: Path, **engine: Any) -> dict[str, Any]:
    """``make_engine`` options for an agent on the fixture plugin's ``gate`` provider: a message
    containing ``[hold]`` is answered once :func:`open_gate` was called."""
    gate = tmp_path / "gate"
    gate.mkdir(exist_ok=True)
    return {"engine": engine, "tools": {"gate_dir": str(gate)}, "model": "gate/gate"}


def open_gate(tmp_path: Path) -> None:
    (tmp_path / "gate" / "open").touch()


async def next_event(sub: Subscription, pred: Callable[[RunEvent], bool],
                     within: float = 10.0) -> RunEvent:
    """The next run event of ``sub`` that satisfies ``pred`` (TimeoutError after ``within`` s);
    session events on the way are skipped."""
    async with asyncio.timeout(within):
        while True:
            event = await sub.get()
            if isinstance(event, RunEvent) and pred(event):
                return event


def started(run_id: str) -> Callable[[RunEvent], bool]:
    """Matches the lifecycle start of ``run_id`` (published once its message is stored)."""
    return lambda e: e.run_id == run_id and e.stream == "lifecycle" and e.data["phase"] == "start"


def texts(messages: Sequence[Any]) -> list[tuple[str, Any]]:
    """(role, content) of stored messages, for compact assertions."""
    return [(m.role, m.content) for m in messages]


def user_texts(body: Mapping[str, Any]) -> list[str]:
    """The user message texts of a chat-completions request body, in order."""
    return [m["content"] for m in body["messages"] if m["role"] == "user"]
