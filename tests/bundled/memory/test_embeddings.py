"""The vector path: embeddings from a loopback fake server (a deterministic hash embedder that
knows a few synonyms), the embedding cache, the semantic deadline, endpoint failures, a
changed model making the index stale, and a full reindex swapped in under live searches."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from clawgate.bundled.memory_core.vectors import Matrix, pack
from tests.bundled.memory.conftest import Factory, Memory, embedding_config
from tests.support.fake_embeddings import FakeEmbeddings, hash_embed

pytestmark = pytest.mark.anyio

CAR = {"MEMORY.md": "I drive a red car to work every morning.\n",
       "memory/pets.md": "Our cat sleeps on the sofa all afternoon.\n"}


async def status(memory: Memory) -> dict[str, Any]:
    row: dict[str, Any] = (await memory.method("memory.status"))["agents"][0]
    return row


async def test_hybrid_search_finds_what_keywords_miss(make_memory: Factory,
                                                      embeddings: FakeEmbeddings) -> None:
    memory = await make_memory(memory=embedding_config(embeddings), files=CAR)
    # The hash embedder's cosines are lower than a real model's: a lower floor.
    found = await memory.search("what automobile do I have?", minScore=0.1)
    assert found["mode"] == "hybrid" and found["model"] == "hash-64"
    assert found["backend"] in ("cosine-numpy", "cosine-python", "sqlite-vec")
    assert [r["path"] for r in found["results"]][0] == "MEMORY.md"
    assert (await memory.paths("feline", minScore=0.1))[0] == "memory/pets.md"
    row = await status(memory)
    assert row["vectors"] == row["chunks"] == 2
    assert row["indexEmbedding"].endswith("|hash-64|") and row["stale"] is False
    # The same query without an embedder finds nothing: the match was the vectors' doing.
    keyword_only = await make_memory(files=CAR, state=memory.state.parent / "other")
    assert await keyword_only.paths("what automobile do I have?", minScore=0.35) == []


async def test_min_score_filters_hybrid_results(make_memory: Factory,
                                                embeddings: FakeEmbeddings) -> None:
    memory = await make_memory(memory=embedding_config(embeddings), files=CAR)
    assert await memory.paths("automobile", minScore=0.99) == []
    assert await memory.paths("automobile", minScore=0.1) != []


async def test_the_cache_spares_the_endpoint_on_a_rebuild(make_memory: Factory,
                                                          embeddings: FakeEmbeddings) -> None:
    memory = await make_memory(memory=embedding_config(embeddings), files=CAR)
    await memory.sync()
    before = embeddings.inputs
    assert before >= 2
    report = await memory.method("memory.index", {"force": True})
    assert report["indexed"] == 2 and report["embedded"] == 0
    assert embeddings.inputs == before  # every chunk came from the cache
    assert (await status(memory))["cacheEntries"] == 2


async def test_past_the_deadline_keyword_hits_come_back_with_a_warning(
        make_memory: Factory, embeddings: FakeEmbeddings) -> None:
    memory = await make_memory(memory={**embedding_config(embeddings),
                                       "semantic_deadline_s": 0.2}, files=CAR)
    await memory.sync()
    embeddings.delay_s = 5.0
    found = await memory.search("red car")
    assert found["mode"] == "keyword" and "0.2 s" in found["warning"]
    assert [r["path"] for r in found["results"]] == ["MEMORY.md"]


async def test_a_failing_endpoint_leaves_keyword_search_and_vectors_come_later(
        make_memory: Factory, embeddings: FakeEmbeddings) -> None:
    embeddings.fail_status = 400  # not retried
    memory = await make_memory(memory=embedding_config(embeddings), files=CAR)
    await memory.sync()
    row = await status(memory)
    assert (row["chunks"], row["vectors"]) == (2, 0) and "400" in row["embeddingError"]
    found = await memory.search("red car")
    assert found["mode"] == "keyword" and "semantic search failed" in found["warning"]
    assert found["results"][0]["path"] == "MEMORY.md"
    embeddings.fail_status = None
    await memory.sync()  # nothing changed on disk: the sync backfills the missing vectors
    row = await status(memory)
    assert row["vectors"] == 2 and "embeddingError" not in row
    assert (await memory.search("automobile", minScore=0.1))["mode"] == "hybrid"


async def test_a_new_model_makes_the_index_stale_until_a_forced_reindex(
        make_memory: Factory, embeddings: FakeEmbeddings) -> None:
    first = await make_memory(memory=embedding_config(embeddings), files=CAR)
    await first.sync()
    await first.host.aclose()
    memory = await make_memory(memory=embedding_config(embeddings, model="hash-64-v2"),
                               state=first.state)
    row = await status(memory)
    assert row["stale"] is True and row["embeddingModel"] == "hash-64-v2"
    found = await memory.search("red car")
    assert found["mode"] == "keyword" and "index --force" in found["warning"]
    memory.write("memory/new.md", "A new note about the car wash.\n")
    await memory.sync()  # a sync while stale indexes text but embeds nothing
    assert (await status(memory))["vectors"] == 2
    await memory.method("memory.index", {"force": True})
    row = await status(memory)
    assert row["stale"] is False and row["vectors"] == row["chunks"] == 3
    assert row["indexEmbedding"].split("|")[1] == "hash-64-v2"
    assert embeddings.models[-1] == "hash-64-v2"
    assert (await memory.search("automobile", minScore=0.1))["mode"] == "hybrid"


async def test_a_full_reindex_swaps_atomically_under_concurrent_searches(
        make_memory: Factory, embeddings: FakeEmbeddings) -> None:
    files = {f"memory/topic-{i:03}.md": f"Notes {i}: the harbour crane inspection went fine.\n"
             for i in range(120)}
    memory = await make_memory(memory={**embedding_config(embeddings, batch_size=4),
                                       "half_life_days": 0, "mmr_lambda": 1}, files=files)
    await memory.sync()
    held = embeddings.hold_batches = threading.Event()  # the rebuild waits on its embeddings
    for i in range(120):  # new content: the rebuild must embed (nothing is cached)
        memory.write(f"memory/topic-{i:03}.md",
                     f"Notes {i}: the harbour crane inspection went fine, again.\n")
    rebuild = asyncio.ensure_future(memory.method("memory.index", {"force": True}))
    seen: list[int] = []
    try:
        while not rebuild.done():
            found = await memory.search("harbour crane inspection", maxResults=50)
            seen.append(len(found["results"]))
            if len(seen) == 5:
                held.set()  # enough searches saw the old version: let the rebuild finish
    finally:
        held.set()
        report = await rebuild
    assert report["indexed"] == 120
    assert len(seen) > 3  # searches really ran while the new version was being built
    assert set(seen) == {50}  # never an empty or half-built index
    after = await memory.search("harbour crane inspection again", maxResults=50)
    assert len(after["results"]) == 50 and "again" in after["results"][0]["snippet"]
    row = await status(memory)
    assert (row["files"], row["chunks"], row["vectors"]) == (120, 120, 120)


def test_numpy_and_plain_python_cosine_agree() -> None:
    texts = [f"note {i} about {'cats' if i % 3 else 'cars'} and item {i * 7}" for i in range(40)]
    blobs = [pack(hash_embed(t, 32)) for t in texts]
    query = hash_embed("cars item 21", 32)
    fast = Matrix(range(40), blobs, use_numpy=True).top(query, 40)
    slow = Matrix(range(40), blobs, use_numpy=False).top(query, 40)
    assert [i for i, _ in fast] == [i for i, _ in slow]  # equal scores: by chunk id in both
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(fast, slow, strict=True))
    assert Matrix(range(40), blobs, use_numpy=False).backend == "python"


def _sqlite_vec_loads() -> bool:
    import sqlite3

    from clawgate.bundled.memory_core.vectors import load_sqlite_vec

    conn = sqlite3.connect(":memory:")
    try:
        return load_sqlite_vec(conn) is None
    finally:
        conn.close()


async def test_sqlite_vec_and_the_cosine_fallback_rank_alike(make_memory: Factory,
                                                             embeddings: FakeEmbeddings,
                                                             tmp_path) -> None:
    files = {f"memory/n{i}.md": f"Note {i}: {'car' if i % 2 else 'cat'} and item {i * 3}.\n"
             for i in range(30)}
    ranked = {}
    for backend in ("auto", "cosine"):
        memory = await make_memory(memory={**embedding_config(embeddings),
                                           "vector_backend": backend},
                                   files=files, state=tmp_path / backend)
        found = await memory.search("automobile item 21", minScore=0, maxResults=10)
        ranked[backend] = ([r["path"] for r in found["results"]], found["backend"])
    expected = "sqlite-vec" if _sqlite_vec_loads() else "cosine-numpy"
    assert ranked["auto"][1] == expected
    assert ranked["cosine"][1] == "cosine-numpy"
    assert ranked["auto"][0] == ranked["cosine"][0]
