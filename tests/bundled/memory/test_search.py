"""Indexing and searching real memory files on disk, keyword ranking (no embedder)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from clawgate import ToolError
from tests.bundled.memory.conftest import Factory

pytestmark = pytest.mark.anyio


def log(days_ago: int) -> str:
    """The daily-log path of ``days_ago`` days before today."""
    return f"memory/{(date.today() - timedelta(days=days_ago)).isoformat()}.md"


async def test_search_finds_the_file_and_lines_that_hold_the_answer(make_memory: Factory) -> None:
    memory = await make_memory(files={
        "MEMORY.md": "# Long-term\n\nThe user prefers PostgreSQL over MySQL.\n",
        log(1): "## 10:00\nPlanned the garden.\n\n## 14:00\nDecided to deploy with Kamal.\n",
        "notes.md": "PostgreSQL is mentioned here, but notes.md is not memory.\n",
    })
    found = await memory.search("which database does the user prefer? PostgreSQL")
    assert found["mode"] == "keyword" and found["provider"] == "none"
    top = found["results"][0]
    assert top["path"] == "MEMORY.md"
    assert (top["startLine"], top["endLine"]) == (1, 4)
    assert "PostgreSQL" in top["snippet"] and top["source"] == "memory"
    assert all(r["path"] != "notes.md" for r in found["results"])
    assert (await memory.paths("deploying with kamal"))[0] == log(1)  # stemmed: deploy(ing)
    assert await memory.paths("zebra") == []


async def test_max_results(make_memory: Factory) -> None:
    memory = await make_memory(files={
        log(day): f"Standup {day}: talked about the roadmap.\n" for day in range(9)})
    assert len(await memory.paths("roadmap standup", maxResults=3)) == 3
    assert len(await memory.paths("roadmap standup", maxResults=20)) == 9


async def test_keyword_ranking_relaxes_min_score_rather_than_answer_nothing(
        make_memory: Factory) -> None:
    memory = await make_memory(files={"MEMORY.md": "The boat is called Pelican.\n"})
    found = await memory.search("what is the name of the boat", minScore=0.99)
    assert [r["path"] for r in found["results"]] == ["MEMORY.md"]
    assert found["results"][0]["score"] < 0.99


async def test_long_files_are_chunked_with_line_ranges(make_memory: Factory) -> None:
    lines = [f"Entry {i}: routine note about nothing in particular." for i in range(1, 200)]
    lines[149] = "Entry 150: the vault combination is kept in the blue binder."
    memory = await make_memory(memory={"chunk_tokens": 64, "chunk_overlap": 16},
                               files={"memory/log.md": "\n".join(lines) + "\n"})
    top = (await memory.search("vault combination blue binder"))["results"][0]
    assert top["startLine"] <= 150 <= top["endLine"]
    assert top["endLine"] - top["startLine"] < 10
    got = await memory.tool("memory_get", {"path": top["path"], "from": 150, "lines": 1})
    assert got == {"path": "memory/log.md", "text": lines[149] + "\n"}


async def test_cjk_text_is_found_through_the_trigram_index(make_memory: Factory) -> None:
    memory = await make_memory(files={
        "memory/db.md": "今天我们决定把数据库迁移到新的服务器。\n",
        "memory/marketing.md": "会议讨论了市场营销计划。\n",
    })
    assert (await memory.paths("数据库迁移"))[0] == "memory/db.md"
    assert (await memory.paths("我们的营销计划是什么"))[0] == "memory/marketing.md"
    assert (await memory.paths("数据"))[0] == "memory/db.md"  # two characters: substring


async def test_extra_paths_are_memory_too(make_memory: Factory, tmp_path: Path) -> None:
    outside = tmp_path / "shared-notes"
    outside.mkdir()
    (outside / "team.md").write_text("The on-call rotation changes every Tuesday.\n")
    (outside / "skip.txt").write_text("rotation Tuesday\n")
    memory = await make_memory(memory={"extra_paths": [str(outside)]})
    found = await memory.paths("on-call rotation Tuesday")
    assert found == [(outside / "team.md").resolve().as_posix()]


async def test_decay_prefers_recent_logs_and_memory_md_is_evergreen(make_memory: Factory) -> None:
    text = "Budget review: the budget was approved.\n"
    memory = await make_memory(memory={"mmr_lambda": 1},
                               files={log(365): text, log(0): text, "MEMORY.md": text})
    found = (await memory.search("budget review approved", minScore=0))["results"]
    order = [r["path"] for r in found]
    assert order.index(log(0)) < order.index(log(365))
    assert order.index("MEMORY.md") < order.index(log(365))
    old = next(r for r in found if r["path"] == log(365))
    evergreen = next(r for r in found if r["path"] == "MEMORY.md")
    assert old["score"] < evergreen["score"] / 100  # a year old: twelve half-lives


async def test_mmr_spreads_near_duplicates(make_memory: Factory) -> None:
    files = {f"memory/dup{i}.md": "Kafka cluster upgrade plan with broker restarts.\n"
             for i in range(3)}
    files["memory/other.md"] = "Kafka cluster monitoring dashboard and alerts.\n"
    diverse = await make_memory(memory={"half_life_days": 0, "mmr_lambda": 0.3}, files=files)
    order = await diverse.paths("kafka cluster", minScore=0, maxResults=4)
    assert order.index("memory/other.md") <= 1  # not pushed below all the duplicates


async def test_status_reports_files_chunks_and_size(make_memory: Factory) -> None:
    memory = await make_memory(files={"MEMORY.md": "alpha\n", log(0): "beta\n"})
    await memory.sync()
    status = (await memory.method("memory.status"))["agents"][0]
    assert status["agentId"] == "main"
    assert (status["files"], status["chunks"], status["vectors"]) == (2, 2, 0)
    assert status["indexBytes"] > 0 and status["stale"] is False
    assert status["embeddingModel"] is None and status["lastIndexedAt"] is not None
    assert status["index"].endswith("memory/main.sqlite")
    found = await memory.method("memory.search", {"query": "beta"})
    assert found["results"][0]["path"] == log(0)


async def test_bad_search_arguments_are_refused(make_memory: Factory) -> None:
    memory = await make_memory()
    for arguments in ({"query": ""}, {"query": "x", "maxResults": 0},
                      {"query": "x", "maxResults": 2.5}, {"query": "x", "minScore": 3}):
        with pytest.raises(ToolError):
            await memory.tool("memory_search", arguments)
