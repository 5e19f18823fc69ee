"""memory-core inside real engine turns: what reaches the system prompt per session kind, and
a model calling memory_search through the echo provider's ``/tool`` convention."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from clawgate import config
from clawgate.agents.turn import Submission
from clawgate.runtime import Runtime
from tests.agents.conftest import Harness, _mock_key, build_config  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio

GROUP = "agent:main:telegram:group:family"
DIRECT = "agent:main:direct:stranger"


@pytest.fixture
async def make_engine(tmp_path: Path, anyio_backend: str
                      ) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """tests/agents' engine factory, plus ``memory=``: memory-core's plugin config."""
    built: list[Harness] = []

    async def factory(*, state: Path | None = None, memory: dict[str, Any] | None = None,
                      **options: Any) -> Harness:
        state_dir = state or tmp_path
        data = build_config(**options)
        if memory is not None:
            data["plugins"]["entries"]["memory-core"] = {"config": memory}
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


def system_of(mock, index: int) -> str:
    first = mock.requests[index].body["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def test_memory_md_and_daily_logs_never_reach_a_group_session(make_engine, mock_openai):
    h = await make_engine(mock=mock_openai)
    workspace = h.state / "workspace"
    (workspace / "MEMORY.md").write_text("long-term marker\n", encoding="utf-8")
    today, yesterday = date.today(), date.today() - timedelta(days=1)
    (workspace / "memory").mkdir()
    (workspace / "memory" / f"{today.isoformat()}.md").write_text("today marker\n")
    (workspace / "memory" / f"{yesterday.isoformat()}.md").write_text("yesterday marker\n")
    (workspace / "memory" / "2001-01-01.md").write_text("ancient marker\n")

    await h.engine.run(Submission("hi"))
    await h.engine.run(Submission("hi", session_key=GROUP))
    await h.engine.run(Submission("hi", session_key=DIRECT))

    main, group, direct = (system_of(mock_openai, i) for i in range(3))
    assert "long-term marker" in main and "today marker" in main and "yesterday marker" in main
    assert main.index("yesterday marker") < main.index("today marker")
    assert "ancient marker" not in main
    for marker in ("long-term marker", "today marker", "yesterday marker", "Memory: recent"):
        assert marker not in group
    assert "long-term marker" not in direct  # core: MEMORY.md is for the main session
    assert "today marker" in direct  # daily_logs = "private": not shared, so included


async def test_daily_logs_main_only_and_off(make_engine, mock_openai, tmp_path):
    for mode, expect_main in (("main", True), ("off", False)):
        state = tmp_path / mode
        state.mkdir()
        h = await make_engine(mock=mock_openai, state=state, memory={"daily_logs": mode})
        log = h.state / "workspace" / "memory" / f"{date.today().isoformat()}.md"
        log.parent.mkdir(exist_ok=True)
        log.write_text(f"{mode} log marker\n")
        first = len(mock_openai.requests)
        await h.engine.run(Submission("hi"))
        await h.engine.run(Submission("hi", session_key=DIRECT))
        main, direct = system_of(mock_openai, first), system_of(mock_openai, first + 1)
        assert (f"{mode} log marker" in main) is expect_main
        assert f"{mode} log marker" not in direct


async def test_a_model_calls_memory_search_through_the_engine(make_engine, tmp_path: Path):
    # Written before the start: a write a moment before the search is only seen once the
    # watcher noticed it (the watcher tests cover that path).
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "MEMORY.md").write_text(
        "# Memory\n\nThe spare key is under the blue flower pot.\n", encoding="utf-8")
    h = await make_engine(echo={})
    arguments = orjson.dumps({"query": "where is the spare key?"}).decode()

    result = await h.engine.run(Submission(f"/tool memory_search {arguments}"))

    assert result.status == "ok"
    prefix = "tool memory_search said: "
    assert result.text.startswith(prefix)
    found = orjson.loads(result.text[len(prefix):])
    assert found["results"][0]["path"] == "MEMORY.md"
    assert "blue flower pot" in found["results"][0]["snippet"]
    got = await h.engine.run(Submission('/tool memory_get {"path": "../clawgate.db"}'))
    assert got.text.startswith("tool memory_get said: error: '../clawgate.db' is not a memory file")
