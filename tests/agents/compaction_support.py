"""Helpers of the compaction tests: an engine on the loopback OpenAI fake whose model has a
small context window, an empty workspace (so the system prompt is small and known), and
readers of what the fake received."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from clawgate import config
from clawgate.agents.bus import RunEvent
from clawgate.agents.turn import Submission
from clawgate.runtime import Runtime
from tests.agents.conftest import Harness, build_config
from tests.support.mock_openai import MockOpenAI, RecordedRequest

WINDOW = 8_000  # tokens: compaction at 6,000 (reserve 2,000), the flush from 5,000
COMPACTION = {"reserve_tokens": 2_000, "keep_recent_tokens": 1_000,
              "memory_flush": {"soft_threshold_tokens": 1_000}}


def words(word: str, tokens: int) -> str:
    """About ``tokens`` tokens of text (4 characters each)."""
    return " ".join([word] * (tokens * 4 // (len(word) + 1)))


def settings(state: Path, mock: MockOpenAI, *, window: int = WINDOW,
             compaction: dict[str, Any] | None = None, agent: dict[str, Any] | None = None,
             plugins: dict[str, Any] | None = None) -> config.Settings:
    data = build_config(mock=mock, engine={"compaction": compaction or COMPACTION})
    data["plugins"]["entries"]["openai"]["config"]["models"] = [
        {"id": "mock-model", "context_window": window}]
    data["agents"] = [{"id": "main", "default": True,
                       "model": {"primary": "openai/mock-model"}, **(agent or {})}]
    data["plugins"].update(plugins or {})
    return config.Settings(config.parse(data), state_dir=state,
                           config_path=state / "clawgate.toml")


async def start(state: Path, mock: MockOpenAI, **options: Any) -> Harness:
    """A started runtime over ``state`` whose workspace is empty (created before the start,
    so no starter files: the system prompt is small)."""
    (state / "workspace").mkdir(parents=True, exist_ok=True)
    runtime = Runtime(settings(state, mock, **options), drain_deadline_s=5.0)
    await runtime.start()
    return Harness(runtime)


async def turn(h: Harness, text: str, **options: Any) -> tuple[Any, list[RunEvent]]:
    """Run one turn, following it: (result, its events)."""
    followed = await h.engine.submit(Submission(text, **options), follow=True)
    events = [e async for e in followed.events()]
    return await followed.result(), events


def compaction_events(events: list[RunEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.stream == "compaction"]


def contents(request: RecordedRequest) -> list[tuple[str, str]]:
    """(role, text) of each message a request sent."""
    out = []
    for m in request.body["messages"]:
        content = m.get("content")
        out.append((m["role"], content if isinstance(content, str) else str(content or "")))
    return out


def tool_names(request: RecordedRequest) -> set[str]:
    return {t["function"]["name"] for t in request.body.get("tools") or ()}


def daily_log(h: Harness) -> Path:
    return h.state / "workspace" / "memory" / f"{date.today().isoformat()}.md"
