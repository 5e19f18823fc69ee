"""One agent's memory: sync, full reindex, search and status over its index.

Every SQLite call runs on a thread owned by this object: one for the writer connection (syncs
and rebuilds, one at a time under ``_lock``) and one for the reader connection (searches), so
searches go on while a rebuild writes its new index version. Embedding requests are async
HTTP on the event loop, between those thread hops.

Staleness: the active index records which embedder its vectors came from. When the configured
embedder differs, the index is *stale*: vector search is paused (keyword search still answers,
with a warning) and syncs stop embedding, until a forced reindex rebuilds every vector.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import chunks as chunking
from . import vectors
from .embeddings import Embedder, EmbeddingError
from .files import FileInfo, MemoryFiles
from .index import FileChange, SetInfo, Store, VectorBackend
from .search import Ranking, Result, finish, hybrid_results, keyword_results

T = TypeVar("T")
_QUERY_CACHE = 256  # query vectors kept in memory per agent
_BACKFILL_BATCHES = 64  # embedding batches a sync may spend on chunks that lack a vector
_APPLY_FILES = 200  # files per transaction in a full rebuild


@dataclass(frozen=True, slots=True)
class Options:
    """The plugin config, as the manager uses it."""

    chunk_tokens: int = 400
    chunk_overlap: int = 80
    candidate_multiplier: int = 4
    semantic_deadline_s: float = 30.0
    cache_max_entries: int = 50_000
    vector_backend: VectorBackend = "auto"
    ranking: Ranking = Ranking()
    use_numpy: bool | None = None  # None: when installed
    # Without a watcher, a search re-syncs when the last sync is older than this.
    resync_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync or rebuild did."""

    indexed: int
    removed: int
    chunks: int
    embedded: int
    seconds: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"indexed": self.indexed, "removed": self.removed,
                               "chunks": self.chunks, "embedded": self.embedded,
                               "seconds": round(self.seconds, 3)}
        if self.error:
            row["error"] = self.error
        return row


class _Thread:
    """A single worker thread: the one thread that ever touches a connection."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class AgentMemory:
    """The memory of one agent: its files, its index file and its embedder (shared)."""

    def __init__(self, agent_id: str, files: MemoryFiles, db_path: Path, options: Options,
                 embedder: Embedder | None, logger: logging.Logger) -> None:
        self.agent_id = agent_id
        self.files = files
        self.db_path = db_path
        self.options = options
        self.embedder = embedder
        self.log = logger
        self._writer = _Thread(f"memory-{agent_id}-w")
        self._reader = _Thread(f"memory-{agent_id}-r")
        self._wstore: Store | None = None
        self._rstore: Store | None = None
        self._open_lock = asyncio.Lock()
        self._lock = asyncio.Lock()  # one sync or rebuild at a time
        self._rebuilding = False  # a full rebuild holds the lock (searches do not wait for it)
        self._queries: OrderedDict[str, list[float]] = OrderedDict()
        self.synced_at: float | None = None
        self.dirty = False  # the watcher saw a change that no sync has picked up yet
        self.last_sync: SyncReport | None = None
        self.skipped: list[str] = []
        self.embedding_error: str | None = None
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the index file; safe to call many times."""
        async with self._open_lock:
            if self.closed:
                raise RuntimeError(f"memory of agent {self.agent_id!r} is closed")
            if self._wstore is None:
                make = functools.partial(Store, self.db_path,
                                         backend=self.options.vector_backend)
                self._wstore = await self._writer.run(make)
                self._rstore = await self._reader.run(make)

    async def close(self) -> None:
        """Wait for the running sync, close both connections and their threads."""
        self.closed = True
        async with self._lock:
            if self._wstore is not None:
                await self._writer.run(self._wstore.close)
            if self._rstore is not None:
                await self._reader.run(self._rstore.close)
            self._wstore = self._rstore = None
        await asyncio.to_thread(self._writer.shutdown)
        await asyncio.to_thread(self._reader.shutdown)

    @property
    def _w(self) -> Store:
        if self._wstore is None:
            raise RuntimeError("index is not open")
        return self._wstore

    @property
    def _r(self) -> Store:
        if self._rstore is None:
            raise RuntimeError("index is not open")
        return self._rstore

    def stale(self, active: SetInfo) -> bool:
        """True when the active index's vectors come from another embedder than configured."""
        return (self.embedder is not None and active.identity is not None
                and active.identity != self.embedder.identity)

    # -- indexing ----------------------------------------------------------------------------

    async def sync(self, reason: str = "sync") -> SyncReport:
        """Bring the active index up to date with the files (changed files only)."""
        await self.open()
        async with self._lock:
            started = time.perf_counter()
            self.dirty = False
            active = await self._writer.run(self._w.active)
            changes, removed, touched = await self._writer.run(self._plan, active.id, False)
            embed = self.embedder is not None and not self.stale(active)
            filled, embedded = await self._vectors(changes, active, reuse=embed) if embed else (
                [FileChange(c.info, c.hash, c.chunks, [None] * len(c.chunks)) for c in changes],
                0)
            await self._writer.run(self._w.apply, active.id, filled, removed, touched)
            if embed:
                embedded += await self._backfill(active.id)
            report = SyncReport(len(changes), len(removed), sum(len(c.chunks) for c in changes),
                                embedded, time.perf_counter() - started, self.embedding_error)
            self._done(report, reason)
            return report

    async def reindex(self) -> SyncReport:
        """Rebuild the whole index as a new version and publish it atomically."""
        await self.open()
        async with self._lock:
            self._rebuilding = True
            try:
                return await self._rebuild()
            finally:
                self._rebuilding = False

    async def _rebuild(self) -> SyncReport:
        """``reindex`` under the lock."""
        started = time.perf_counter()
        self.dirty = False
        active = await self._writer.run(self._w.active)
        new_id = await self._writer.run(self._w.begin_set)
        try:
            changes, _, _ = await self._writer.run(self._plan, new_id, True)
            embedded = 0
            filled = [FileChange(c.info, c.hash, c.chunks, [None] * len(c.chunks))
                      for c in changes]
            if self.embedder is not None:
                # Vectors of the old version are reusable only if the embedder is the same.
                reuse = active.identity == self.embedder.identity
                filled, embedded = await self._vectors(changes, active, reuse=reuse,
                                                       target=new_id)
            for start in range(0, len(filled), _APPLY_FILES):
                batch = filled[start:start + _APPLY_FILES]
                await self._writer.run(self._w.apply, new_id, batch, [], [])
            await self._writer.run(self._w.publish, new_id)
        except BaseException:
            await asyncio.shield(self._writer.run(self._w.discard, new_id))
            raise
        report = SyncReport(len(changes), 0, sum(len(c.chunks) for c in changes), embedded,
                            time.perf_counter() - started, self.embedding_error)
        self._done(report, "reindex")
        return report

    def _done(self, report: SyncReport, reason: str) -> None:
        self.synced_at = time.time()
        self.last_sync = report
        if report.indexed or report.removed:
            self.log.info("memory %s (%s): %d files indexed, %d removed, %d chunks in %.3f s",
                          self.agent_id, reason, report.indexed, report.removed, report.chunks,
                          report.seconds)

    def _plan(self, set_id: int, full: bool
              ) -> tuple[list[FileChange], list[str], list[FileInfo]]:
        """(changed files with their chunks, removed paths, files whose stat alone changed).
        Runs on the writer thread: file reads and hashing stay off the event loop."""
        infos, self.skipped = self.files.scan()
        known = {} if full else self._w.files(set_id)
        changes: list[FileChange] = []
        touched: list[FileInfo] = []
        for info in infos:
            previous = known.pop(info.path, None)
            if previous is not None and previous[0] == info.mtime and previous[1] == info.size:
                continue
            try:
                text = info.abs.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                self.skipped.append(f"{info.path}: {exc}")
                continue
            digest = chunking.digest(text)
            if previous is not None and previous[2] == digest:
                touched.append(info)
                continue
            pieces = chunking.chunk_markdown(text, tokens=self.options.chunk_tokens,
                                             overlap=self.options.chunk_overlap)
            changes.append(FileChange(info, digest, pieces, ()))
        return changes, list(known), touched

    async def _vectors(self, changes: Sequence[FileChange], active: SetInfo, *, reuse: bool,
                       target: int | None = None) -> tuple[list[FileChange], int]:
        """``changes`` with a vector per chunk (old vectors, the cache, then the endpoint).
        A failing endpoint leaves ``None`` vectors: the text is indexed, vectors come later."""
        assert self.embedder is not None
        identity = self.embedder.identity
        hashes = [c.hash for change in changes for c in change.chunks]
        found: dict[str, bytes] = {}
        if reuse and changes:
            found.update(await self._writer.run(self._w.chunk_vectors, active.id,
                                                [c.info.path for c in changes]))
        wanted = [h for h in dict.fromkeys(hashes) if h not in found]
        if wanted:
            found.update(await self._writer.run(self._w.cached, identity, wanted))
        texts = {c.hash: c.text for change in changes for c in change.chunks
                 if c.hash not in found}
        embedded = 0
        if texts:
            try:
                fresh = await self.embedder.embed(list(texts.values()))
            except EmbeddingError as exc:
                self._embedding_failed(exc)
            else:
                blobs = [vectors.pack(v) for v in fresh]
                entries = list(zip(texts, blobs, strict=True))
                await self._writer.run(self._w.cache_put, identity, entries,
                                       self.options.cache_max_entries)
                found.update(entries)
                embedded = len(entries)
                self.embedding_error = None
        if found:
            dims = len(next(iter(found.values()))) // 4
            await self._writer.run(self._w.set_vectors_identity, target or active.id, identity,
                                   dims)
        filled = [FileChange(c.info, c.hash, c.chunks, [found.get(p.hash) for p in c.chunks])
                  for c in changes]
        return filled, embedded

    async def _backfill(self, set_id: int) -> int:
        """Embed chunks that have no vector yet (indexed while the endpoint was down, or
        before an embedder was configured)."""
        assert self.embedder is not None
        done = 0
        size = max(1, self.embedder.settings.batch_size)
        for _ in range(_BACKFILL_BATCHES):
            missing = await self._writer.run(self._w.missing_vectors, set_id, size)
            if not missing:
                break
            try:
                fresh = await self.embedder.embed([text for _, _, text in missing])
            except EmbeddingError as exc:
                self._embedding_failed(exc)
                break
            blobs = [vectors.pack(v) for v in fresh]
            await self._writer.run(self._w.set_vectors_identity, set_id, self.embedder.identity,
                                   len(blobs[0]) // 4)
            await self._writer.run(self._w.put_vectors, set_id,
                                   [(cid, b) for (cid, _, _), b in zip(missing, blobs,
                                                                       strict=True)])
            await self._writer.run(self._w.cache_put, self.embedder.identity,
                                   [(h, b) for (_, h, _), b in zip(missing, blobs, strict=True)],
                                   self.options.cache_max_entries)
            done += len(missing)
            self.embedding_error = None
        return done

    def _embedding_failed(self, exc: EmbeddingError) -> None:
        self.embedding_error = str(exc)
        self.log.warning("memory %s: embeddings failed (keyword search still works): %s",
                         self.agent_id, exc)

    # -- search ------------------------------------------------------------------------------

    async def search(self, query: str, *, max_results: int, min_score: float) -> dict[str, Any]:
        """``memory_search``: hybrid when an embedder is configured and the index is not
        stale, else keyword ranking. Semantic retrieval past the deadline is dropped and the
        keyword results come back with a warning."""
        await self.open()
        resync = self.options.resync_after_s
        outdated = (resync is not None and self.synced_at is not None
                    and time.time() - self.synced_at > resync)
        if self.synced_at is None or ((self.dirty or outdated) and not self._rebuilding):
            # Read your writes: a file changed a moment ago is searched, not its old version
            # (waiting for a sync under way: it reads changed files only) — unless a full
            # rebuild is under way: then the active version answers at once (a long rebuild
            # must not stall searches), and ``dirty`` stays set for the next.
            await self.sync("search")
        options = self.options
        candidates = max(1, min(200, max_results * options.candidate_multiplier))
        active = await self._reader.run(self._r.active)
        warnings: list[str] = []
        semantic: asyncio.Task[list[Any]] | None = None
        if self.embedder is not None and self.stale(active):
            warnings.append(
                f"the index was built with another embedding model ({active.identity}); vector "
                "search is paused until 'clawgate memory index --force' rebuilds it")
        elif self.embedder is not None:
            semantic = asyncio.get_running_loop().create_task(self._nearest(query, candidates))
        try:
            _, hits = await self._reader.run(self._r.keyword, query, candidates)
            keyword = keyword_results(query, hits, options.ranking)
            nearest: list[Any] | None = None
            if semantic is not None:
                try:
                    async with asyncio.timeout(options.semantic_deadline_s):
                        nearest = await asyncio.shield(semantic)
                except TimeoutError:
                    warnings.append(f"semantic search took longer than "
                                    f"{options.semantic_deadline_s:g} s; keyword results only")
                except EmbeddingError as exc:
                    warnings.append(f"semantic search failed ({exc}); keyword results only")
        finally:
            if semantic is not None and not semantic.done():
                semantic.cancel()
                await asyncio.gather(semantic, return_exceptions=True)
        merged: list[Result] = (hybrid_results(keyword, nearest, options.ranking)
                                if nearest is not None else keyword)
        results = finish(merged, options.ranking, max_results=max_results, min_score=min_score,
                         relaxed=nearest is None)
        answer: dict[str, Any] = {
            "results": [r.as_dict() for r in results],
            "provider": "openai-compatible" if self.embedder is not None else "none",
            "model": self.embedder.model if self.embedder is not None else None,
            "backend": self._backend() if nearest is not None else "fts",
            "mode": "hybrid" if nearest is not None else "keyword",
        }
        if warnings:
            answer["warning"] = "; ".join(warnings)
        return answer

    async def _nearest(self, query: str, k: int) -> list[Any]:
        assert self.embedder is not None
        key = query.strip()
        vector = self._queries.get(key)
        if vector is None:
            vector = (await self.embedder.embed([key]))[0]
            self._queries[key] = vector
            while len(self._queries) > _QUERY_CACHE:
                self._queries.popitem(last=False)
        else:
            self._queries.move_to_end(key)
        _, found = await self._reader.run(
            functools.partial(self._r.nearest, use_numpy=self.options.use_numpy), vector, k)
        return found

    def _backend(self) -> str:
        if self._rstore is None:
            return "fts"
        if self._rstore.vec_error is None:
            return "sqlite-vec"
        if self.options.use_numpy is False or not vectors.numpy_available():
            return "cosine-python"
        return "cosine-numpy"

    # -- status ------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The ``memory.status`` row of this agent."""
        await self.open()
        stats = await self._reader.run(self._r.stats)
        active = await self._reader.run(self._r.active)
        cache = await self._reader.run(self._r.cache_size)
        row: dict[str, Any] = {
            "agentId": self.agent_id,
            "workspace": str(self.files.workspace),
            "index": str(self.db_path),
            "files": stats["files"],
            "chunks": stats["chunks"],
            "vectors": stats["vectors"],
            "indexBytes": stats["bytes"],
            "embeddingModel": self.embedder.model if self.embedder is not None else None,
            "indexEmbedding": active.identity,
            "stale": self.stale(active),
            "lastIndexedAt": stats["indexedAt"],
            "lastSyncAt": self.synced_at,
            "backend": self._backend() if self.embedder is not None else "fts",
            "vectorBackendNote": self._r.vec_error,
            "cacheEntries": cache,
        }
        if self.last_sync is not None:
            row["lastSync"] = self.last_sync.as_dict()
        if self.skipped:
            row["skipped"] = list(self.skipped[:20])
        if self.embedding_error:
            row["embeddingError"] = self.embedding_error
        return row
