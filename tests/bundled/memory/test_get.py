"""memory_get: line slices of memory files, and refusal of every path outside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clawgate import ToolError
from tests.bundled.memory.conftest import Factory

pytestmark = pytest.mark.anyio

TEXT = "one\ntwo\nthree\nfour\n"


async def test_reads_whole_files_and_slices(make_memory: Factory) -> None:
    memory = await make_memory(files={"MEMORY.md": TEXT, "memory/2026-01-01.md": TEXT})
    assert await memory.tool("memory_get", {"path": "MEMORY.md"}) == {
        "path": "MEMORY.md", "text": TEXT}
    got = await memory.tool("memory_get", {"path": "memory/2026-01-01.md", "from": 2, "lines": 2})
    assert got["text"] == "two\nthree\n"
    assert (await memory.tool("memory_get", {"path": "MEMORY.md", "from": 4}))["text"] == "four\n"
    assert (await memory.tool("memory_get", {"path": "MEMORY.md", "from": 9}))["text"] == ""
    absolute = str(memory.workspace / "MEMORY.md")
    assert (await memory.tool("memory_get", {"path": absolute}))["path"] == "MEMORY.md"


async def test_a_missing_memory_file_reads_as_empty(make_memory: Factory) -> None:
    memory = await make_memory()
    got = await memory.tool("memory_get", {"path": "memory/2030-01-01.md"})
    assert got == {"path": "memory/2030-01-01.md", "text": ""}


@pytest.mark.parametrize("path", [
    "AGENTS.md",                       # a workspace file that is not memory
    "memory/../AGENTS.md",             # climbing out of memory/
    "../outside.md",                   # out of the workspace
    "memory/notes.txt",                # not Markdown
    "/etc/passwd",
    "",
    "memory/link-out.md",              # a symlink inside memory/ pointing outside
    "memory/linked-dir/secret.md",     # through a symlinked folder
])
async def test_paths_outside_the_memory_files_are_refused(make_memory: Factory, tmp_path: Path,
                                                          path: str) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "secret.md").write_text("the launch codes\n")
    (tmp_path / "outside.md").write_text("outside\n")
    memory = await make_memory(files={"AGENTS.md": "agents\n", "memory/notes.txt": "txt\n"})
    os.symlink(secret / "secret.md", memory.workspace / "memory" / "link-out.md")
    os.symlink(secret, memory.workspace / "memory" / "linked-dir")
    with pytest.raises(ToolError) as raised:
        await memory.tool("memory_get", {"path": path})
    assert raised.value.tool == "memory_get"
    # And the symlinked files are not indexed either.
    assert await memory.paths("launch codes") == []


async def test_extra_paths_are_readable_and_their_neighbours_are_not(make_memory: Factory,
                                                                      tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "team.md").write_text("team\n")
    (notes / "private.md").write_text("private\n")
    memory = await make_memory(memory={"extra_paths": [{"path": str(notes),
                                                        "pattern": "team*.md"}]})
    got = await memory.tool("memory_get", {"path": str(notes / "team.md")})
    assert got["text"] == "team\n"
    with pytest.raises(ToolError):
        await memory.tool("memory_get", {"path": str(notes / "private.md")})


async def test_bad_arguments_are_refused(make_memory: Factory) -> None:
    memory = await make_memory(files={"MEMORY.md": TEXT})
    for arguments in ({"path": "MEMORY.md", "from": 0}, {"path": "MEMORY.md", "lines": "2"},
                      {"path": 3}, {}):
        with pytest.raises(ToolError):
            await memory.tool("memory_get", arguments)
