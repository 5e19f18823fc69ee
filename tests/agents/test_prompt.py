"""The system prompt: bootstrap files with their caps, MEMORY.md for the main session only,
``before_prompt_build``, and the workspace's starter files."""

from __future__ import annotations

import pytest

from clawgate.agents.roster import STARTER
from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN

pytestmark = pytest.mark.anyio


def system_of(mock, index=-1) -> str:
    first = mock.requests[index].body["messages"][0]
    assert first["role"] == "system"
    return first["content"]


async def test_bootstrap_files_reach_the_system_prompt(make_engine, mock_openai):
    h = await make_engine(mock=mock_openai)
    workspace = h.state / "workspace"
    for name in ("AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md"):
        (workspace / name).write_text(f"marker of {name}\n", encoding="utf-8")

    await h.engine.run(Submission("hi"))

    system = system_of(mock_openai)
    for name in ("AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md"):
        assert f"### {name}\nmarker of {name}" in system
    assert str(workspace) in system


async def test_per_file_and_total_caps_are_applied_and_marked(make_engine, mock_openai):
    h = await make_engine(mock=mock_openai)
    workspace = h.state / "workspace"
    (workspace / "AGENTS.md").write_text("A" * 25_000, encoding="utf-8")
    (workspace / "SOUL.md").write_text("S" * 20_000, encoding="utf-8")
    (workspace / "USER.md").write_text("U" * 20_000, encoding="utf-8")
    (workspace / "IDENTITY.md").write_text("\u03a9" * 100, encoding="utf-8")
    (workspace / "TOOLS.md").write_text("\u0416" * 100, encoding="utf-8")

    await h.engine.run(Submission("hi"))

    system = system_of(mock_openai)
    assert system.count("A" * 20_000) == 1 and "A" * 20_001 not in system
    assert "[... AGENTS.md truncated" in system
    assert "S" * 20_000 in system and "[... SOUL.md truncated" not in system
    assert "U" * 20_000 in system
    # 60,000 characters used up: later files are cut to nothing, and say so
    assert "\u03a9" not in system and "[... IDENTITY.md truncated" in system
    assert "\u0416" not in system and "[... TOOLS.md truncated" in system


async def test_memory_is_read_for_the_main_session_only(make_engine, mock_openai):
    h = await make_engine(mock=mock_openai)
    (h.state / "workspace" / "MEMORY.md").write_text("private memory marker", encoding="utf-8")

    await h.engine.run(Submission("hi"))  # the main session
    await h.engine.run(Submission("hi", session_key="agent:main:direct:stranger"))

    assert "private memory marker" in system_of(mock_openai, 0)
    assert "private memory marker" not in system_of(mock_openai, 1)
    assert "### MEMORY.md" not in system_of(mock_openai, 1)


async def test_before_prompt_build_changes_the_system_prompt(make_engine, mock_openai):
    h = await make_engine(mock=mock_openai, tools={"system_suffix": "Always answer in haiku."})

    result = await h.engine.run(Submission("hi"))

    assert result.status == "ok"
    assert system_of(mock_openai).endswith("\n\nAlways answer in haiku.")
    assert "- lookup: Look a word up." in system_of(mock_openai)  # the tools section


async def test_first_start_creates_the_workspace_and_never_overwrites(make_engine, tmp_path):
    state = tmp_path / "state"
    h = await make_engine(state=state)
    workspace = state / "workspace"
    starters = sorted(p.name for p in STARTER.glob("*.md"))
    assert sorted(p.name for p in workspace.iterdir()) == starters
    for name in starters:
        assert (workspace / name).read_text() == (STARTER / name).read_text()
    (workspace / "AGENTS.md").write_text("my own rules", encoding="utf-8")
    (workspace / "SOUL.md").unlink()
    await h.close()

    await make_engine(state=state)

    assert (workspace / "AGENTS.md").read_text() == "my own rules"
    assert not (workspace / "SOUL.md").exists()  # a user's deletion is respected too


async def test_each_agent_gets_its_own_workspace(make_engine, tmp_path):
    h = await make_engine(agents=[{"id": "main", "default": True},
                                  {"id": "helper", "workspace": "elsewhere/helper"}])
    assert (h.state / "workspace" / "AGENTS.md").exists()
    assert (h.state / "elsewhere" / "helper" / "AGENTS.md").exists()

    result = await h.engine.run(Submission("hi", agent_id="helper"))
    assert (result.status, result.session_key) == ("ok", "agent:helper:main")
    assert await h.store.get(MAIN) is None  # the main agent's session was not touched
