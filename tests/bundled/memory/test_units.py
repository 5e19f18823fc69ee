"""Small pure pieces: chunk boundaries, the session scope that gates private memory, and
``PluginApi.workspaces()``."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawgate import config, session_scope
from clawgate.bundled.memory_core.chunks import chunk_markdown, cjk_grams, terms
from clawgate.plugins.api import PluginApi
from clawgate.plugins.manifest import MANIFEST_NAME, Manifest


def test_chunks_are_whole_lines_that_overlap_and_cover_everything() -> None:
    lines = [f"line {i:03} " + "x" * 40 for i in range(1, 101)]
    chunks = chunk_markdown("\n".join(lines), tokens=64, overlap=16)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 100
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start_line <= before.end_line  # overlap
        assert after.start_line > before.start_line  # progress
    for chunk in chunks:
        assert chunk.text == "\n".join(lines[chunk.start_line - 1:chunk.end_line])
        assert len(chunk.text) <= 64 * 4


def test_a_line_longer_than_a_chunk_is_cut_and_keeps_its_number() -> None:
    text = "short\n" + "y" * 1000 + "\nend"
    chunks = chunk_markdown(text, tokens=64, overlap=0)
    assert all(len(c.text) <= 256 for c in chunks)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 1), (2, 2), (2, 2), (2, 2), (2, 3)]
    assert "".join(c.text.replace("\n", "") for c in chunks) == text.replace("\n", "")
    assert chunk_markdown("\n\n  \n") == []


def test_cjk_terms_and_grams() -> None:
    assert cjk_grams("数据库迁移", 3) == ["数据库", "据库迁", "库迁移"]
    assert {"数据", "迁移", "deploy"} <= terms("deploying 数据库迁移")


@pytest.mark.parametrize(("key", "scope"), [
    ("agent:main:main", "main"),
    ("agent:ops:main", "main"),
    ("agent:main:work", "direct"),  # another single-segment key is not the main session
    ("agent:main:direct:bob", "direct"),
    ("agent:main:telegram:direct:bob", "direct"),
    ("agent:main:openai-user:alice", "direct"),
    ("cron:nightly", "direct"),
    ("agent:main:telegram:group:42", "group"),
    ("agent:main:discord:channel:7:thread:9", "group"),
    ("global", "group"),
    ("unknown", "group"),
    ("not a key", "group"),
])
def test_session_scope(key: str, scope: str) -> None:
    assert session_scope(key) == scope


def test_session_scope_uses_the_configured_main_key() -> None:
    assert session_scope("agent:main:home", main="home") == "main"
    assert session_scope("agent:main:main", main="home") == "direct"


def test_workspaces_come_from_the_config(tmp_path: Path) -> None:
    manifest = Manifest(id="x", config_schema={}, path=tmp_path / MANIFEST_NAME, digest="")
    root = config.parse({"agents": [{"id": "main", "default": True},
                                    {"id": "ops", "workspace": "ops-space"}]})
    api = PluginApi(manifest, config={}, root_config=root, state_dir=tmp_path,
                    hook_counter=lambda: 0)
    assert api.workspaces() == {"main": tmp_path / "workspace",
                                "ops": (tmp_path / "ops-space").resolve()}
    bare = PluginApi(manifest, config={}, root_config=None, state_dir=tmp_path,
                     hook_counter=lambda: 0)
    assert bare.workspaces() == {}


@pytest.mark.anyio
async def test_memory_core_fills_the_slot_by_default_and_none_turns_it_off(
        tmp_path: Path) -> None:
    from clawgate.plugins.host import PluginHost

    for slots, loaded in (({}, True), ({"memory": "none"}, False)):
        state = tmp_path / str(loaded)
        settings = config.Settings(config.parse({"plugins": {"slots": slots}}), state_dir=state,
                                   config_path=state / "clawgate.toml")
        host = PluginHost(settings)
        generation = await host.start(services=False)
        try:
            record = generation.registry.records["memory-core"]
            assert (record.status == "loaded") is loaded, record
            assert (generation.registry.tool("memory_search") is not None) is loaded
            assert ("memory.status" in generation.registry.methods) is loaded
        finally:
            await host.aclose()
