"""Ranking: keyword scores, the hybrid merge, temporal decay and MMR (pure functions).

- **Keyword score** of a chunk, in [0, 1]: ``0.4 * bm25 + 0.5 * coverage + 0.1 * path``, where
  ``bm25`` is FTS5's rank mapped by ``r / (1 + r)``, ``coverage`` the share of the query's
  terms the chunk contains and ``path`` whether a query term names the file. BM25 alone is
  nearly flat in a small memory (a term in half the chunks has almost no IDF), so coverage
  carries most of the weight; this is also the whole ranking when no embedder is configured.
- **Hybrid**: ``vector_weight * cosine + text_weight * keyword`` (0.7 / 0.3), over the union
  of both candidate lists (each ``candidate_multiplier * max_results`` long).
- **Temporal decay**: a score is multiplied by ``0.5 ** (age_days / half_life)``; the age of a
  daily log is its date, of other files their modification time. ``MEMORY.md`` and undated
  files under ``memory/`` are evergreen.
- **MMR** (Carbonell & Goldstein): results are re-ordered to maximise
  ``lambda * relevance - (1 - lambda) * max Jaccard similarity to those already chosen``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from . import chunks as chunking
from .files import daily_date, evergreen
from .index import Hit, Row

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Result:
    """One search result; :meth:`as_dict` is OpenClaw's ``memory_search`` result shape."""

    path: str
    start_line: int
    end_line: int
    score: float
    snippet: str
    text: str = field(repr=False)
    mtime: float | None = None
    vector_score: float = 0.0
    text_score: float = 0.0
    source: str = "memory"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "startLine": self.start_line, "endLine": self.end_line,
                "score": round(self.score, 4), "snippet": self.snippet, "source": self.source}


@dataclass(frozen=True, slots=True)
class Ranking:
    """How results are scored and ordered."""

    vector_weight: float = 0.7
    text_weight: float = 0.3
    half_life_days: float = 30.0  # 0 disables the decay
    mmr_lambda: float = 0.7  # 1 disables MMR
    snippet_chars: int = 700


def query_terms(query: str) -> set[str]:
    """The terms that coverage is measured on: stemmed non-stop words, and CJK characters
    with their bigrams."""
    found = chunking.words(query)
    content = [w for w in found if w not in chunking.STOP] or found
    return chunking.terms(" ".join(content)) | chunking.terms(" ".join(chunking.cjk_runs(query)))


class _Coverage:
    """Which query terms a lower-cased text contains: a word that starts with the (stemmed)
    term, or for CJK the characters anywhere. One regex scan per text, cheaper than
    tokenising every candidate."""

    def __init__(self, wanted: Iterable[str]) -> None:
        terms = sorted(set(wanted), key=lambda t: (-len(t), t))  # longest first in the regex
        self.count = len(terms)
        self._cjk = [t for t in terms if chunking.has_cjk(t)]
        words = [t for t in terms if not chunking.has_cjk(t)]
        self._words = re.compile(r"(?<![^\W_])(" + "|".join(map(re.escape, words)) + ")") \
            if words else None

    def found(self, text: str) -> int:
        hits = sum(1 for t in self._cjk if t in text)
        if self._words is not None:
            hits += len(set(self._words.findall(text)))
        return hits


def keyword_results(query: str, hits: Sequence[Hit], ranking: Ranking) -> list[Result]:
    """Keyword hits scored with coverage and path matches (see the module docstring)."""
    coverage_of = _Coverage(query_terms(query))
    results = []
    for hit in hits:
        row = hit.row
        coverage = coverage_of.found(row.text.lower()) / coverage_of.count \
            if coverage_of.count else 0.0
        in_path = coverage_of.count > 0 and coverage_of.found(row.path.lower()) > 0
        score = 0.4 * hit.score + 0.5 * coverage + 0.1 * in_path
        results.append(_result(row, score, ranking, text_score=score))
    return results


def hybrid_results(keyword: Sequence[Result], nearest: Sequence[tuple[Row, float]],
                   ranking: Ranking) -> list[Result]:
    """The weighted union of keyword results and vector neighbours."""
    by_key: dict[tuple[str, int, int], Result] = {}
    for row, cosine in nearest:
        by_key[(row.path, row.start_line, row.end_line)] = _result(
            row, 0.0, ranking, vector_score=max(0.0, cosine))
    for result in keyword:
        key = (result.path, result.start_line, result.end_line)
        found = by_key.get(key)
        by_key[key] = replace(found or result, text_score=result.text_score)
    total = ranking.vector_weight + ranking.text_weight
    return [replace(r, score=(ranking.vector_weight * r.vector_score +
                              ranking.text_weight * r.text_score) / (total or 1.0))
            for r in by_key.values()]


def decay(results: Iterable[Result], half_life_days: float,
          now: float | None = None) -> list[Result]:
    """Scores multiplied by ``0.5 ** (age / half_life)`` (evergreen files keep theirs)."""
    if half_life_days <= 0:
        return list(results)
    now = datetime.now(UTC).timestamp() if now is None else now
    out = []
    for result in results:
        born = _timestamp(result)
        if born is None:
            out.append(result)
            continue
        age_days = max(0.0, now - born) / DAY_S
        out.append(replace(result, score=result.score * math.pow(0.5, age_days / half_life_days)))
    return out


def mmr(results: Sequence[Result], lam: float, limit: int | None = None) -> list[Result]:
    """Results re-ordered by maximal marginal relevance (``lam`` >= 1 keeps score order);
    only the first ``limit`` picks are made by MMR, the rest follow in score order."""
    ordered = sorted(results, key=lambda r: -r.score)
    if lam >= 1 or len(ordered) <= 1:
        return ordered
    lam = max(0.0, lam)
    picks = len(ordered) if limit is None else min(limit, len(ordered))
    tokens = [_similarity_terms(r.text) for r in ordered]
    top, bottom = ordered[0].score, ordered[-1].score
    spread = top - bottom
    relevance = [(r.score - bottom) / spread if spread > 0 else 1.0 for r in ordered]
    similar = [0.0] * len(ordered)  # max similarity to anything chosen so far
    chosen: list[int] = []
    left = list(range(len(ordered)))
    while left and len(chosen) < picks:
        best = max(left, key=lambda i: (lam * relevance[i] - (1 - lam) * similar[i], -i))
        chosen.append(best)
        left.remove(best)
        for i in left:
            similar[i] = max(similar[i], _jaccard(tokens[i], tokens[best]))
    return [ordered[i] for i in chosen] + [ordered[i] for i in left]


def finish(results: Sequence[Result], ranking: Ranking, *, max_results: int,
           min_score: float, relaxed: bool = False, now: float | None = None) -> list[Result]:
    """Decay, the score floor, MMR and the count limit. ``relaxed`` (keyword ranking, as in
    OpenClaw): when nothing reaches ``min_score``, the best hits come back anyway, since
    keyword scores are not calibrated the way cosine similarities are. (MMR only re-orders,
    so the floor can be applied before it.)"""
    decayed = decay(results, ranking.half_life_days, now)
    kept = [r for r in decayed if r.score >= min_score]
    if not kept and relaxed:
        kept = [r for r in decayed if r.score > 0]
    return mmr(kept, ranking.mmr_lambda, max_results)[:max_results]


def _result(row: Row, score: float, ranking: Ranking, *, vector_score: float = 0.0,
            text_score: float = 0.0) -> Result:
    snippet = row.text if len(row.text) <= ranking.snippet_chars else (
        row.text[:ranking.snippet_chars].rstrip() + "…")
    return Result(row.path, row.start_line, row.end_line, score, snippet, row.text, row.mtime,
                  vector_score, text_score)


def _timestamp(result: Result) -> float | None:
    day = daily_date(result.path)
    if day is not None:
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    if evergreen(result.path):
        return None
    return result.mtime


def _similarity_terms(text: str) -> set[str]:
    """What MMR compares: lower-cased words (cheap), or CJK terms where there are no spaces."""
    if chunking.has_cjk(text):
        return chunking.terms(text)
    return set(text.lower().split())


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)
