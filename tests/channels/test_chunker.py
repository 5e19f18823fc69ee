"""The Markdown-aware chunker: parts respect the limit, code blocks that fit are never split,
and the parts join back to the text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clawgate.channels.chunker import _fences, chunk

WORD = st.text(alphabet="abcdefghij .,!?\n", min_size=1, max_size=12)
PROSE = st.lists(WORD, min_size=1, max_size=60).map("".join)
CODE = st.lists(st.text(alphabet="xyz=+1 ", min_size=0, max_size=20), min_size=1,
                max_size=8).map(lambda lines: "```py\n" + "\n".join(lines) + "\n```\n")
DOCUMENT = st.lists(st.one_of(PROSE, CODE, st.just("\n\n")), min_size=1, max_size=12).map(
    "".join)


def fits(text: str, limit: int) -> bool:
    return all(f.end - f.start <= limit for f in _fences(text))


@settings(max_examples=300, deadline=None)
@given(DOCUMENT, st.integers(min_value=40, max_value=400))
def test_parts_respect_the_limit_and_join_back(text: str, limit: int) -> None:
    parts = chunk(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    if fits(text, limit):
        assert "".join(parts) == text


@settings(max_examples=300, deadline=None)
@given(DOCUMENT, st.integers(min_value=40, max_value=400))
def test_no_code_block_that_fits_is_split(text: str, limit: int) -> None:
    if not fits(text, limit):
        return
    bounds, at = [], 0
    for part in chunk(text, limit):
        at += len(part)
        bounds.append(at)
    for fence in _fences(text):
        assert not any(fence.start < b < fence.end for b in bounds), (fence, bounds)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=3, max_value=60), st.integers(min_value=60, max_value=200))
def test_an_oversized_block_is_closed_and_reopened(lines: int, limit: int) -> None:
    text = "intro\n\n```python\n" + "".join(f"value_{n} = {n}\n" for n in range(lines * 4)) + \
        "```\nafter"
    parts = chunk(text, limit)
    assert all(len(p) <= limit for p in parts)
    for part in parts:  # every part renders on its own: fences balanced
        assert part.count("```") % 2 == 0, part
    body = "".join(p.replace("```\n```python\n", "") for p in parts)
    assert body.replace("```python\n", "", 1).count("value_") == lines * 4


def test_breaks_prefer_paragraphs_then_lines_then_sentences() -> None:
    text = "First paragraph here.\n\nSecond one, a little longer than the first."
    assert chunk(text, 40) == ["First paragraph here.\n\n",
                               "Second one, a little longer than the ", "first."]
    lines = "line one\nline two\nline three"
    assert chunk(lines, 20) == ["line one\nline two\n", "line three"]
    sentences = "One sentence. Two sentences. Three sentences here."
    assert chunk(sentences, 30) == ["One sentence. Two sentences. ", "Three sentences here."]


def test_max_lines() -> None:
    text = "".join(f"row {n}\n" for n in range(40))
    parts = chunk(text, 2000, max_lines=17)
    assert [p.count("\n") for p in parts] == [17, 17, 6]
    assert "".join(parts) == text


def test_empty_and_tiny_limits() -> None:
    assert chunk("", 100) == []
    try:
        chunk("x", 4)
    except ValueError:
        pass
    else:
        raise AssertionError("a limit under 16 is refused")
