"""One agent's index: a SQLite file (WAL) under ``<state>/memory/<agent_id>.sqlite``.

The index is a cache derived from the memory files. It holds *versions* ("sets"): tables
``files_<n>``, ``chunks_<n>``, ``fts_<n>`` (FTS5, unicode61), ``tri_<n>`` (FTS5 trigram, CJK
chunks only) and, with sqlite-vec, ``vec_<n>``; ``meta.active`` names the set searches read.
Incremental syncs write into the active set. A full reindex builds set ``n+1`` beside it and
publishes it in one transaction (``active = n+1``, old tables dropped), so every search sees
either the whole old index or the whole new one — in this process and in any other reading
the file — and a crash mid-build leaves the old set active (the orphan is dropped on open).

A :class:`Store` wraps one connection and is used from one thread only (the manager gives each
connection a thread of its own); nothing here runs on the event loop.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import chunks as chunking
from . import vectors
from .files import FileInfo

SCHEMA_VERSION = "1"
VectorBackend = Literal["auto", "sqlite-vec", "cosine"]
_MAX_QUERY_TERMS = 16
_MAX_CJK_GRAMS = 32


@dataclass(frozen=True, slots=True)
class SetInfo:
    """The active index version: its id, the embedder its vectors came from, their size."""

    id: int
    identity: str | None
    dims: int | None
    has_vec: bool


@dataclass(frozen=True, slots=True)
class FileChange:
    """A file to (re)index: its chunks and their vectors (float32 bytes or None)."""

    info: FileInfo
    hash: str
    chunks: Sequence[chunking.Chunk]
    vectors: Sequence[bytes | None]


@dataclass(frozen=True, slots=True)
class Row:
    """A chunk as a search reads it."""

    id: int
    path: str
    start_line: int
    end_line: int
    text: str
    mtime: float


@dataclass(frozen=True, slots=True)
class Hit:
    """A keyword hit: the chunk and its BM25 relevance mapped into [0, 1)."""

    row: Row
    score: float


class Store:
    """One connection to an agent's index file. Use from a single thread."""

    def __init__(self, path: Path, *, backend: VectorBackend = "auto") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        # Only takes effect in a new file: lets a rebuild hand the old version's pages back.
        self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.vec_error: str | None = "disabled by config (vector_backend = \"cosine\")"
        if backend != "cosine":
            self.vec_error = vectors.load_sqlite_vec(self.conn)
        self._matrix: tuple[tuple[int, int], vectors.Matrix] | None = None
        self._create()
        self._reconcile_vec()

    # -- schema and sets ---------------------------------------------------------------------

    def _create(self) -> None:
        with self._tx():
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS sets (id INTEGER PRIMARY KEY, identity TEXT, "
                "dims INTEGER, vec INTEGER NOT NULL DEFAULT 0, pid INTEGER, built_at REAL, "
                "indexed_at REAL)")
            # A rowid table: its rows keep their vector in the page; in a WITHOUT ROWID
            # table a 1.5 KB BLOB would spill into a mostly empty overflow page.
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS cache (id INTEGER PRIMARY KEY, model TEXT NOT NULL, "
                "hash TEXT NOT NULL, vector BLOB NOT NULL, used REAL NOT NULL)")
            self.conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS cache_key ON cache(model, hash)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS cache_used ON cache(used)")
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            if self._active() is None:
                self._make_set(1)
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('active', '1')")
        self._drop_orphans()

    def _active(self) -> int | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'active'").fetchone()
        return int(row[0]) if row else None

    def active(self) -> SetInfo:
        """The set searches read now."""
        set_id = self._active()
        assert set_id is not None  # created in _create
        row = self.conn.execute("SELECT identity, dims, vec FROM sets WHERE id = ?",
                                (set_id,)).fetchone()
        identity, dims, vec = row if row else (None, None, 0)
        return SetInfo(set_id, identity, dims, bool(vec))

    def _make_set(self, set_id: int) -> None:
        n = set_id
        self.conn.execute(
            f"CREATE TABLE files_{n} (path TEXT PRIMARY KEY, abs TEXT NOT NULL, mtime REAL, "
            "size INTEGER, hash TEXT NOT NULL)")
        self.conn.execute(
            f"CREATE TABLE chunks_{n} (id INTEGER PRIMARY KEY, path TEXT NOT NULL, "
            "start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, text TEXT NOT NULL, "
            "hash TEXT NOT NULL, cjk INTEGER NOT NULL, mtime REAL, vector BLOB)")
        self.conn.execute(f"CREATE INDEX chunks_{n}_path ON chunks_{n}(path)")
        self.conn.execute(
            f"CREATE VIRTUAL TABLE fts_{n} USING fts5(text, content='chunks_{n}', "
            "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')")
        self.conn.execute(
            f"CREATE VIRTUAL TABLE tri_{n} USING fts5(text, content='chunks_{n}', "
            "content_rowid='id', tokenize='trigram')")
        self.conn.execute("INSERT OR REPLACE INTO sets (id, pid, built_at) VALUES (?, ?, ?)",
                          (n, os.getpid(), time.time()))

    def _drop_set(self, set_id: int) -> None:
        try:
            self.conn.execute(f"DROP TABLE IF EXISTS vec_{set_id}")
        except sqlite3.OperationalError:  # vec0 is not loaded here: the table stays behind
            pass
        for kind in ("tri", "fts", "chunks", "files"):
            self.conn.execute(f"DROP TABLE IF EXISTS {kind}_{set_id}")
        self.conn.execute("DELETE FROM sets WHERE id = ?", (set_id,))

    def _reconcile_vec(self) -> None:
        """Keep the active set's vec0 mirror honest when the file moves between interpreters
        with and without sqlite-vec: without it, writes cannot reach the mirror, so it is
        marked unused; with it again, the mirror is rebuilt from the stored vectors."""
        info = self.active()
        if info.has_vec and self.vec_error is not None:
            with self._tx():
                self.conn.execute("UPDATE sets SET vec = 0 WHERE id = ?", (info.id,))
        elif not info.has_vec and self.vec_error is None and info.dims and info.identity:
            with self._tx():
                self.conn.execute(f"DROP TABLE IF EXISTS vec_{info.id}")
                self._ensure_vec(info.id, info.dims)
                self.conn.execute(f"INSERT INTO vec_{info.id}(rowid, embedding) SELECT id, "
                                  f"vector FROM chunks_{info.id} WHERE vector IS NOT NULL")
                self.conn.execute("UPDATE sets SET vec = 1 WHERE id = ?", (info.id,))

    def _drop_orphans(self) -> None:
        """Drop sets left by a rebuild that died (another process's, no longer running)."""
        active = self._active()
        rows = self.conn.execute("SELECT id, pid FROM sets WHERE id != ?", (active,)).fetchall()
        for set_id, pid in rows:
            if pid == os.getpid() or _alive(pid):
                continue
            with self._tx():
                self._drop_set(int(set_id))

    def begin_set(self) -> int:
        """Create the tables of a new, empty set for a full rebuild; return its id."""
        with self._tx():
            top = self.conn.execute("SELECT max(id) FROM sets").fetchone()[0] or 0
            new = int(top) + 1
            self._make_set(new)
        return new

    def publish(self, set_id: int) -> None:
        """Make ``set_id`` the active set and drop the one it replaces, atomically."""
        with self._tx():
            old = self._active()
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('active', ?)", (str(set_id),))
            if old is not None and old != set_id:
                self._drop_set(old)
        # Give the dropped version's pages back and fold the WAL into the file (best effort:
        # a reader holding an old snapshot only delays the checkpoint).
        self.conn.execute("PRAGMA incremental_vacuum")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def discard(self, set_id: int) -> None:
        """Drop a set that will not be published (a failed or cancelled rebuild)."""
        if set_id == self._active():
            return
        with self._tx():
            self._drop_set(set_id)

    def set_vectors_identity(self, set_id: int, identity: str, dims: int) -> None:
        """Record which embedder the vectors of ``set_id`` come from (and their size)."""
        with self._tx():
            has_vec = self._ensure_vec(set_id, dims)
            self.conn.execute("UPDATE sets SET identity = ?, dims = ?, vec = ? WHERE id = ?",
                              (identity, dims, int(has_vec), set_id))

    def _ensure_vec(self, set_id: int, dims: int) -> bool:
        if self.vec_error is not None:
            return False
        self.conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS vec_{set_id} USING "
            f"vec0(embedding float[{int(dims)}] distance_metric=cosine)")
        return True

    # -- writes ------------------------------------------------------------------------------

    def files(self, set_id: int) -> dict[str, tuple[float, int, str]]:
        """Path -> (mtime, size, content hash) of the files indexed in ``set_id``."""
        return {p: (m, s, h) for p, m, s, h in
                self.conn.execute(f"SELECT path, mtime, size, hash FROM files_{set_id}")}

    def chunk_vectors(self, set_id: int, paths: Iterable[str]) -> dict[str, bytes]:
        """Chunk hash -> vector of the chunks of ``paths`` (reused when a file changes)."""
        found: dict[str, bytes] = {}
        for path in paths:
            for h, v in self.conn.execute(
                    f"SELECT hash, vector FROM chunks_{set_id} WHERE path = ? AND vector IS NOT "
                    "NULL", (path,)):
                found[h] = v
        return found

    def apply(self, set_id: int, changes: Sequence[FileChange], removed: Sequence[str],
              touched: Sequence[FileInfo] = ()) -> None:
        """Replace the chunks of ``changes``, forget ``removed`` files and refresh the stat of
        ``touched`` ones (same content), in one transaction."""
        info = self._set_info(set_id)
        with self._tx():
            for path in removed:
                self._delete_file(set_id, path, info.has_vec)
            for change in changes:
                self._delete_file(set_id, change.info.path, info.has_vec)
                self._insert_file(set_id, change, info.has_vec)
            for file in touched:
                self.conn.execute(f"UPDATE files_{set_id} SET mtime = ?, size = ? WHERE path = ?",
                                  (file.mtime, file.size, file.path))
            if changes or removed:
                self.conn.execute("UPDATE sets SET indexed_at = ? WHERE id = ?",
                                  (time.time(), set_id))

    def _set_info(self, set_id: int) -> SetInfo:
        row = self.conn.execute("SELECT identity, dims, vec FROM sets WHERE id = ?",
                                (set_id,)).fetchone()
        identity, dims, vec = row if row else (None, None, 0)
        return SetInfo(set_id, identity, dims, bool(vec))

    def _delete_file(self, set_id: int, path: str, has_vec: bool) -> None:
        n = set_id
        self.conn.execute(
            f"INSERT INTO fts_{n}(fts_{n}, rowid, text) SELECT 'delete', id, text FROM chunks_{n} "
            "WHERE path = ?", (path,))
        self.conn.execute(
            f"INSERT INTO tri_{n}(tri_{n}, rowid, text) SELECT 'delete', id, text FROM chunks_{n} "
            "WHERE path = ? AND cjk = 1", (path,))
        if has_vec:  # one rowid at a time: what vec0 supports for deletes
            ids = self.conn.execute(f"SELECT id FROM chunks_{n} WHERE path = ?", (path,))
            self.conn.executemany(f"DELETE FROM vec_{n} WHERE rowid = ?", ids.fetchall())
        self.conn.execute(f"DELETE FROM chunks_{n} WHERE path = ?", (path,))
        self.conn.execute(f"DELETE FROM files_{n} WHERE path = ?", (path,))

    def _insert_file(self, set_id: int, change: FileChange, has_vec: bool) -> None:
        n, info = set_id, change.info
        self.conn.execute(f"INSERT INTO files_{n} VALUES (?, ?, ?, ?, ?)",
                          (info.path, str(info.abs), info.mtime, info.size, change.hash))
        for chunk, vector in zip(change.chunks, change.vectors, strict=True):
            cjk = chunking.has_cjk(chunk.text)
            cur = self.conn.execute(
                f"INSERT INTO chunks_{n} (path, start_line, end_line, text, hash, cjk, mtime, "
                "vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (info.path, chunk.start_line, chunk.end_line, chunk.text, chunk.hash, int(cjk),
                 info.mtime, vector))
            rowid = cur.lastrowid
            self.conn.execute(f"INSERT INTO fts_{n}(rowid, text) VALUES (?, ?)",
                              (rowid, chunk.text))
            if cjk:
                self.conn.execute(f"INSERT INTO tri_{n}(rowid, text) VALUES (?, ?)",
                                  (rowid, chunk.text))
            if has_vec and vector is not None:
                self.conn.execute(f"INSERT INTO vec_{n}(rowid, embedding) VALUES (?, ?)",
                                  (rowid, vector))

    def missing_vectors(self, set_id: int, limit: int) -> list[tuple[int, str, str]]:
        """(id, hash, text) of up to ``limit`` chunks without a vector (to backfill)."""
        return [(int(i), str(h), str(t)) for i, h, t in self.conn.execute(
            f"SELECT id, hash, text FROM chunks_{set_id} WHERE vector IS NULL LIMIT ?", (limit,))]

    def put_vectors(self, set_id: int, pairs: Sequence[tuple[int, bytes]]) -> None:
        """Store backfilled vectors by chunk id."""
        info = self._set_info(set_id)
        with self._tx():
            for cid, blob in pairs:
                self.conn.execute(f"UPDATE chunks_{set_id} SET vector = ? WHERE id = ?",
                                  (blob, cid))
                if info.has_vec:  # vec0 has no INSERT OR REPLACE
                    self.conn.execute(f"DELETE FROM vec_{set_id} WHERE rowid = ?", (cid,))
                    self.conn.execute(f"INSERT INTO vec_{set_id}(rowid, embedding) VALUES (?, ?)",
                                      (cid, blob))

    # -- embedding cache ---------------------------------------------------------------------

    def cached(self, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
        """Cached vectors of ``model`` by text hash (their use time is refreshed)."""
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            marks = ",".join("?" * len(part))
            for h, v in self.conn.execute(
                    f"SELECT hash, vector FROM cache WHERE model = ? AND hash IN ({marks})",
                    (model, *part)):
                found[h] = v
        if found:
            now = time.time()
            with self._tx():
                self.conn.executemany("UPDATE cache SET used = ? WHERE model = ? AND hash = ?",
                                      [(now, model, h) for h in found])
        return found

    def cache_put(self, model: str, entries: Sequence[tuple[str, bytes]], limit: int) -> None:
        """Add vectors to the cache, then evict the least recently used beyond ``limit``."""
        now = time.time()
        with self._tx():
            self.conn.executemany(
                "INSERT OR REPLACE INTO cache (model, hash, vector, used) VALUES (?, ?, ?, ?)",
                [(model, h, v, now) for h, v in entries])
            count = self.conn.execute("SELECT count(*) FROM cache").fetchone()[0]
            if count > limit:
                self.conn.execute(
                    "DELETE FROM cache WHERE id IN (SELECT id FROM cache ORDER BY used LIMIT ?)",
                    (count - limit,))

    def cache_size(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM cache").fetchone()[0])

    # -- reads -------------------------------------------------------------------------------

    def keyword(self, query: str, limit: int) -> tuple[int, list[Hit]]:
        """Keyword hits for ``query`` in the active set: BM25 over words (all terms first, any
        term when that finds too few) and over CJK trigrams. Returns (set id, hits)."""
        with self._read():
            set_id = self.active().id
            scores: dict[int, float] = {}
            words = chunking.words(query)
            content = [w for w in words if w not in chunking.STOP] or words
            content = list(dict.fromkeys(content))[:_MAX_QUERY_TERMS]
            if content:
                quoted = [f'"{w}"' for w in content]
                self._match(f"fts_{set_id}", " AND ".join(quoted), limit, scores)
                if len(scores) < limit and len(quoted) > 1:  # fill up with any-term hits
                    self._match(f"fts_{set_id}", " OR ".join(quoted), limit, scores,
                                fill=limit - len(scores))
            for run in chunking.cjk_runs(query):
                if len(run) >= 3:
                    grams = chunking.cjk_grams(run, 3)[:_MAX_CJK_GRAMS]
                    self._match(f"tri_{set_id}", " OR ".join(f'"{g}"' for g in grams), limit,
                                scores)
                else:  # the trigram index cannot match fewer than three characters
                    for (cid,) in self.conn.execute(
                            f"SELECT id FROM chunks_{set_id} WHERE cjk = 1 AND instr(text, ?) > 0 "
                            "LIMIT ?", (run, limit)):
                        scores[cid] = max(scores.get(cid, 0.0), 0.5)
            rows = self._rows(set_id, scores)
        return set_id, sorted((Hit(r, scores[r.id]) for r in rows), key=lambda h: -h.score)

    def _match(self, table: str, expr: str, limit: int, scores: dict[int, float], *,
               fill: int | None = None) -> None:
        """Add the best ``limit`` matches of ``expr`` to ``scores``; with ``fill``, stop once
        that many chunks not yet in ``scores`` were added."""
        try:
            found = self.conn.execute(
                f"SELECT rowid, rank FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?",
                (expr, limit)).fetchall()
        except sqlite3.OperationalError:  # a query FTS5 cannot parse finds nothing
            return
        for cid, rank in found:
            if fill is not None and cid not in scores:
                if fill <= 0:
                    break
                fill -= 1
            relevance = -float(rank)  # FTS5's bm25() is negative: more negative is better
            score = relevance / (1 + relevance) if relevance > 0 else 0.001
            if score > scores.get(cid, 0.0):
                scores[cid] = score

    def nearest(self, query: Sequence[float], k: int, *,
                use_numpy: bool | None = None) -> tuple[int, list[tuple[Row, float]]]:
        """The ``k`` chunks nearest to ``query`` (cosine), best first. Returns (set id, hits)."""
        with self._read():
            info = self.active()
            if info.has_vec:
                found = [(int(cid), 1.0 - float(dist)) for cid, dist in self.conn.execute(
                    f"SELECT rowid, distance FROM vec_{info.id} WHERE embedding MATCH ? AND k = ?",
                    (vectors.pack(query), k))]
            else:
                found = self._matrix_for(info.id, use_numpy).top(query, k)
            scores = dict(found)
            rows = self._rows(info.id, scores)
        return info.id, sorted(((r, scores[r.id]) for r in rows), key=lambda p: -p[1])

    def matrix_backend(self) -> str:
        return "sqlite-vec" if self.vec_error is None else (
            self._matrix[1].backend if self._matrix else
            ("numpy" if vectors.numpy_available() else "python"))

    def _matrix_for(self, set_id: int, use_numpy: bool | None) -> vectors.Matrix:
        # data_version changes whenever another connection (the writer) commits.
        version = (set_id, int(self.conn.execute("PRAGMA data_version").fetchone()[0]))
        if self._matrix is not None and self._matrix[0] == version:
            return self._matrix[1]
        ids: list[int] = []
        blobs: list[bytes] = []
        for cid, blob in self.conn.execute(
                f"SELECT id, vector FROM chunks_{set_id} WHERE vector IS NOT NULL"):
            ids.append(int(cid))
            blobs.append(blob)
        matrix = vectors.Matrix(ids, blobs, use_numpy=use_numpy)
        self._matrix = (version, matrix)
        return matrix

    def _rows(self, set_id: int, scores: dict[int, float]) -> list[Row]:
        ids = list(scores)
        rows: list[Row] = []
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            rows.extend(Row(*r) for r in self.conn.execute(
                f"SELECT id, path, start_line, end_line, text, mtime FROM chunks_{set_id} "
                f"WHERE id IN ({marks})", part))
        return rows

    def stats(self) -> dict[str, int | float | str | None]:
        """Counts of the active set and the size of the index file (with its WAL)."""
        with self._read():
            info = self.active()
            files = self.conn.execute(f"SELECT count(*) FROM files_{info.id}").fetchone()[0]
            chunk_count, vector_count = self.conn.execute(
                f"SELECT count(*), count(vector) FROM chunks_{info.id}").fetchone()
            indexed_at = self.conn.execute("SELECT indexed_at FROM sets WHERE id = ?",
                                           (info.id,)).fetchone()[0]
        size = sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal"))
                   if os.path.exists(p))
        return {"set": info.id, "files": int(files), "chunks": int(chunk_count),
                "vectors": int(vector_count), "bytes": size, "indexedAt": indexed_at,
                "identity": info.identity}

    def close(self) -> None:
        self.conn.close()

    # -- transactions ------------------------------------------------------------------------

    def _tx(self) -> _Transaction:
        return _Transaction(self.conn, "BEGIN IMMEDIATE")

    def _read(self) -> _Transaction:
        return _Transaction(self.conn, "BEGIN")


class _Transaction:
    """BEGIN ... COMMIT (ROLLBACK on error); nested use joins the open transaction."""

    def __init__(self, conn: sqlite3.Connection, begin: str) -> None:
        self._conn = conn
        self._begin = begin
        self._owner = False

    def __enter__(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute(self._begin)
            self._owner = True

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._owner:
            return
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
