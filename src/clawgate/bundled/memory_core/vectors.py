"""Vector storage and nearest-neighbour search: sqlite-vec when it loads, else in-process cosine.

Vectors are stored as float32 BLOBs in the chunks table either way (the embedding cache keeps
the same bytes), so switching backends never needs a re-embedding. With sqlite-vec loaded, a
``vec0`` table mirrors them and answers k-nearest queries in C. Without it — the interpreter's
``sqlite3`` cannot load extensions, or the package is missing — :class:`Matrix` holds every
vector of the active index in memory and scores a query with one matrix product (numpy) or a
plain-Python dot product per row (correct, but slow past a few thousand chunks).
"""

from __future__ import annotations

import heapq
import importlib.util
import operator
import sqlite3
from array import array
from collections.abc import Sequence
from typing import Any


def _numpy() -> Any:
    """numpy (the optional "memory" extra), imported on first use: a gateway that never
    searches vectors does not pay its ~0.1 s import at start-up. None when not installed."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - exercised where numpy is not installed
        return None
    return numpy


def pack(vector: Sequence[float]) -> bytes:
    """A vector as float32 bytes (the BLOB format of the index and of sqlite-vec)."""
    return array("f", vector).tobytes()


def unpack(blob: bytes) -> array[float]:
    values = array("f")
    values.frombytes(blob)
    return values


def numpy_available() -> bool:
    return importlib.util.find_spec("numpy") is not None


def load_sqlite_vec(conn: sqlite3.Connection) -> str | None:
    """Load sqlite-vec into ``conn``; return None on success, else why it could not load."""
    enable = getattr(conn, "enable_load_extension", None)
    if enable is None:
        return "this Python's sqlite3 cannot load extensions"
    try:
        import sqlite_vec  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return "the sqlite-vec package is not installed"
    try:
        enable(True)
        try:
            sqlite_vec.load(conn)
        finally:
            enable(False)
    except (sqlite3.Error, AttributeError, OSError) as exc:
        return f"sqlite-vec did not load: {exc}"
    return None


class Matrix:
    """Every vector of one index version in memory, for exact cosine top-k.

    ``use_numpy=None`` picks numpy when it is installed. Vectors are unit length (the
    embedder normalises them), so the dot product is the cosine.
    """

    def __init__(self, ids: Sequence[int], blobs: Sequence[bytes], *,
                 use_numpy: bool | None = None) -> None:
        self.ids = list(ids)
        self._numpy = numpy_available() if use_numpy is None else (use_numpy and
                                                                    numpy_available())
        self.dims = len(blobs[0]) // 4 if blobs else 0
        self._rows: Any
        np = _numpy() if self._numpy else None
        self._np = np
        if np is not None and blobs:
            flat = np.frombuffer(b"".join(blobs), dtype=np.float32)
            self._rows = flat.reshape(len(blobs), self.dims)
            self._id_array = np.asarray(self.ids, dtype=np.int64)
        else:
            self._rows = [unpack(b) for b in blobs]

    @property
    def backend(self) -> str:
        return "numpy" if self._np is not None else "python"

    def __len__(self) -> int:
        return len(self.ids)

    def nbytes(self) -> int:
        return len(self.ids) * self.dims * 4

    def top(self, query: Sequence[float], k: int) -> list[tuple[int, float]]:
        """The ``k`` best (chunk id, cosine) pairs, best first."""
        if not self.ids or k <= 0 or len(query) != self.dims:
            return []
        np = self._np
        if np is not None:
            scores = self._rows @ np.asarray(query, dtype=np.float32)
            k = min(k, len(self.ids))
            best = np.argpartition(-scores, k - 1)[:k]
            # Best score first; equal scores by chunk id, as the plain-Python path orders them.
            best = best[np.lexsort((self._id_array[best], -scores[best]))]
            return [(int(self._id_array[i]), float(scores[i])) for i in best]
        q = array("f", query)
        scored = ((sum(map(operator.mul, row, q)), -cid) for cid, row in zip(self.ids, self._rows,
                                                                            strict=True))
        return [(-neg, float(score)) for score, neg in heapq.nlargest(k, scored)]
