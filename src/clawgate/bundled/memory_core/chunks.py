"""Chunking memory files: line-aligned windows of ~400 tokens with an 80-token overlap.

Tokens are estimated at four characters each (OpenClaw's estimate without a tokenizer). A chunk
is a run of whole lines, so its 1-based ``start_line``..``end_line`` range points the model (and
``memory_get``) at exactly what it quotes. A line longer than a whole chunk is cut into pieces
that all carry that line's number. The next chunk starts with the last lines of the previous
one, up to the overlap, so a fact that straddles a boundary is whole in at least one chunk.

CJK text has no spaces between words, so the word tokenizer of the full-text index sees a
whole sentence as one token; :func:`has_cjk` marks the chunks that also go into the trigram
index, and :func:`cjk_grams` turns a CJK query into the trigrams that index can match.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

CHARS_PER_TOKEN = 4

# Han (with extension A and compatibility ideographs), kana, Hangul syllables and jamo.
_CJK_CLASS = (
    "[\u1100-\u11ff\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff]"
)


@functools.cache
def _cjk(run: bool = False) -> re.Pattern[str]:
    # Compiled on first use (pure memo): the two wide character classes cost ~4 ms, paid at
    # every gateway start-up before, though a start with no memory files never needs them.
    return re.compile(_CJK_CLASS + ("+" if run else ""))

# English function words: left out of queries and of coverage when other terms remain.
STOP = frozenset(
    "a an and are as at be but by can did do does for from had has have how i if in into is it "
    "its me my of on or our so that the their them then there these this to was we were what "
    "when where which who why will with you your".split()
)
_WORD = re.compile(r"[^\W_]+(?:_[^\W_]+)*", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of one file: lines ``start_line``..``end_line`` (1-based, inclusive)."""

    start_line: int
    end_line: int
    text: str
    hash: str  # sha256 of text: the embedding-cache key and the unchanged-chunk test


def digest(text: str) -> str:
    """The sha256 hex digest of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_markdown(text: str, *, tokens: int = 400, overlap: int = 80) -> list[Chunk]:
    """Split ``text`` into line-aligned chunks of about ``tokens`` tokens, overlapping by about
    ``overlap`` tokens. Blank-only text gives no chunks."""
    max_chars = max(32, tokens * CHARS_PER_TOKEN)
    overlap_chars = max(0, min(overlap * CHARS_PER_TOKEN, max_chars // 2))
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    chunks: list[Chunk] = []
    window: list[tuple[int, str]] = []  # (line number, text) of the chunk being built
    size = 0
    fresh = 0  # pieces added since the last flush (the rest is the carried overlap)

    def flush() -> None:
        nonlocal window, size, fresh
        fresh = 0
        if not window:
            return
        body = "\n".join(t for _, t in window)
        if body.strip():
            chunks.append(Chunk(window[0][0], window[-1][0], body, digest(body)))
        # Carry the tail into the next chunk, whole lines only, up to the overlap.
        kept: list[tuple[int, str]] = []
        carried = 0
        for number, line in reversed(window):
            if carried + len(line) + 1 > overlap_chars:
                break
            kept.insert(0, (number, line))
            carried += len(line) + 1
        window, size = kept, carried

    for number, line in enumerate(lines, start=1):
        pieces = [line[i:i + max_chars] for i in range(0, len(line), max_chars)] or [""]
        for piece in pieces:
            if window and size + len(piece) + 1 > max_chars:
                flush()
                if window and size + len(piece) + 1 > max_chars:
                    window, size = [], 0  # the carried tail and this piece do not fit together
            window.append((number, piece))
            size += len(piece) + 1
            fresh += 1
    if fresh:
        flush()
    return chunks


def has_cjk(text: str) -> bool:
    """True when ``text`` holds CJK characters (it then also goes into the trigram index)."""
    return _cjk().search(text) is not None


def words(text: str) -> list[str]:
    """The lower-cased word tokens of ``text`` outside CJK runs, in order."""
    if _cjk().search(text) is not None:
        text = _cjk(run=True).sub(" ", text)
    return _WORD.findall(text.lower())


def cjk_runs(text: str) -> list[str]:
    """The runs of consecutive CJK characters in ``text``."""
    return _cjk(run=True).findall(text)


def cjk_grams(run: str, n: int) -> list[str]:
    """The distinct ``n``-grams of a CJK run in order (the run itself when it is shorter)."""
    if len(run) <= n:
        return [run]
    return list(dict.fromkeys(run[i:i + n] for i in range(len(run) - n + 1)))


@functools.lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """A light English stem (plural and tense endings), so "prefers" covers "prefer". The
    full-text index uses the porter tokenizer for the same reason."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> set[str]:
    """The terms used for query coverage and MMR similarity: stemmed words, and CJK characters
    with their bigrams (CJK words are mostly one or two characters)."""
    found = {stem(w) for w in words(text)}
    for run in cjk_runs(text):
        found.update(run)
        found.update(cjk_grams(run, 2) if len(run) > 1 else ())
    return found
