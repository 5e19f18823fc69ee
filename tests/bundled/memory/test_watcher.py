"""The watcher: file edits, new files, a new memory/ folder and deletions reach the index
without anyone searching or asking for a sync (status does not sync; it only reads)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bundled.memory.conftest import Factory, Memory, until

pytestmark = pytest.mark.anyio


async def status(memory: Memory) -> dict[str, Any]:
    row: dict[str, Any] = (await memory.method("memory.status"))["agents"][0]
    return row


async def indexed(memory: Memory, files: int, chunks: int | None = None) -> bool:
    row = await status(memory)
    return bool(row["files"] == files and (chunks is None or row["chunks"] == chunks))


async def test_the_watcher_follows_edits_new_folders_and_deletions(make_memory: Factory) -> None:
    # The workspace has no memory/ folder yet: the watcher must notice it being created.
    memory = await make_memory(memory={"chunk_tokens": 32, "chunk_overlap": 0})
    await until(lambda: indexed(memory, 0))
    memory.write("MEMORY.md", "The spare key is under the flower pot.\n")
    await until(lambda: indexed(memory, 1, 1))
    memory.write("memory/2026-05-05.md", "Met Ana about the lighthouse project.\n")
    await until(lambda: indexed(memory, 2, 2))
    # An edit that grows the file into several chunks.
    memory.write("memory/2026-05-05.md", "\n".join(
        f"Line {i}: the lighthouse project needs more paint and bolts." for i in range(20)))
    await until(lambda: indexed(memory, 2, 1 + 20 // 2))
    row = await status(memory)
    assert row["chunks"] > 2
    (memory.workspace / "MEMORY.md").unlink()
    await until(lambda: indexed(memory, 1))
    found = await memory.search("spare key flower pot")
    assert all(r["path"] != "MEMORY.md" for r in found["results"])
    assert (await memory.paths("lighthouse paint"))[0] == "memory/2026-05-05.md"


async def test_without_the_watcher_a_search_still_reads_new_files(make_memory: Factory) -> None:
    memory = await make_memory(memory={"watch": False})
    memory.write("MEMORY.md", "The wifi password is on the fridge.\n")
    assert (await status(memory))["files"] == 0  # nothing watches
    assert await memory.paths("wifi password") == ["MEMORY.md"]  # the first search syncs


def _watch_thread_wakes() -> dict[int, int]:
    """Context switches so far of each thread watchfiles polls from (anyio's worker threads):
    the times it woke up."""
    wakes = {}
    for thread in threading.enumerate():
        if thread.name.startswith("AnyIO worker") and thread.native_id is not None:
            status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
            wakes[thread.native_id] = sum(
                int(line.split()[1]) for line in status.splitlines()
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
    return wakes


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
async def test_an_idle_watcher_wakes_a_few_times_a_second_and_still_sees_edits(
        make_memory: Factory) -> None:
    # At the default debounce (1.5 s) watchfiles' thread looks for changes every 500 ms, not
    # every 50 ms: at idle each wake-up takes the GIL from the gateway.
    memory = await make_memory(memory={"debounce_ms": 1500})
    await until(lambda: indexed(memory, 0))
    await until(_watch_thread_wakes)
    before, started = _watch_thread_wakes(), time.monotonic()
    await asyncio.sleep(2.0)
    after, elapsed = _watch_thread_wakes(), time.monotonic() - started
    per_second = [(after[t] - before[t]) / elapsed for t in before if t in after]
    assert per_second and max(per_second) <= 5, per_second  # 20 a second at a 50 ms step
    memory.write("MEMORY.md", "The boat is moored at pier nine.\n")
    await until(lambda: indexed(memory, 1, 1), within=10.0)
