"""Splitting a Markdown reply into parts a platform accepts.

Each part has at most ``limit`` characters (and ``max_lines`` lines when given). A split never
falls inside a fenced code block that fits in one part; otherwise it prefers, in this order, a
paragraph break, a line break, the end of a sentence, a space — taking the latest one of the
best kind that leaves the part at least a quarter full — and cuts hard only when there is no
such place. The parts joined give the text back exactly.

A code block longer than a part cannot stay whole: it is cut at line breaks and each piece is
closed (a `` ``` `` line) and reopened with the same fence and language in the next part, so
every part renders on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})(.*)$")
_SENTENCE = re.compile(r"[.!?…。！？](?:[\"')\]]*)\s")


@dataclass(frozen=True, slots=True)
class _Fence:
    start: int  # offset of the opening fence line
    end: int  # offset just past the closing fence line (or the text's end)
    opener: str  # the opening line without its newline (``` plus the language)
    marker: str  # the fence characters, e.g. ```


def chunk(text: str, limit: int, *, max_lines: int | None = None) -> list[str]:
    """The parts of ``text``; ``[]`` for an empty text."""
    if limit < 16:
        raise ValueError("a part must hold at least 16 characters")
    if not text:
        return []
    fences = _fences(text)
    parts: list[str] = []
    carry = ""  # the reopened fence line that starts the next part
    start = 0
    while start < len(text):
        room = limit - len(carry)
        used = len(carry.splitlines())
        end = _break(text, start, room, fences, max_lines, used)
        inside = next((f for f in fences if f.start < end < f.end), None)
        closing = ""
        if inside is not None:  # an oversized block: close it here and reopen it next
            closing = inside.marker + "\n"
            end = _break(text, start, room - len(closing) - 1, fences, max_lines, used + 1)
            if not text[start:end].endswith("\n"):
                closing = "\n" + closing
        parts.append(carry + text[start:end] + closing)
        carry = inside.opener + "\n" if inside is not None else ""
        start = end
    return parts


def _fences(text: str) -> list[_Fence]:
    found: list[_Fence] = []
    offset = 0
    open_at: int | None = None
    opener = marker = ""
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line.rstrip("\r\n"))
        if match is not None:
            if open_at is None:
                open_at, opener, marker = offset, line.rstrip("\r\n"), match.group(2)
            elif match.group(2).startswith(marker) and not match.group(3).strip():
                found.append(_Fence(open_at, offset + len(line), opener.strip(), marker))
                open_at = None
        offset += len(line)
    if open_at is not None:
        found.append(_Fence(open_at, len(text), opener.strip(), marker))
    return found


def _break(text: str, start: int, room: int, fences: list[_Fence], max_lines: int | None,
           lines_used: int) -> int:
    """Where the part that starts at ``start`` ends."""
    hard = min(len(text), start + room)
    if max_lines is not None:
        hard = min(hard, _after_lines(text, start, max_lines - lines_used))
    if hard >= len(text):
        return len(text)
    floor = start + max(1, (hard - start) // 4)

    def allowed(pos: int) -> bool:
        return not any(f.start < pos < f.end and f.end - f.start <= room for f in fences)

    window = text[start:hard]
    for pattern in ("\n\n", "\n", None, " "):
        if pattern is None:  # a sentence end
            spots = [start + m.end() for m in _SENTENCE.finditer(window)]
        else:
            spots = [start + m.end() for m in re.finditer(re.escape(pattern), window)]
        good = [p for p in spots if floor <= p <= hard and allowed(p)]
        if good:
            return good[-1]
    # No nice place: the latest allowed position (not inside a block that would fit later).
    for pos in range(hard, start, -1):
        if allowed(pos):
            return pos
    return hard


def _after_lines(text: str, start: int, lines: int) -> int:
    """The offset just past ``lines`` lines from ``start`` (the text's end if it has fewer)."""
    pos = start
    for _ in range(max(1, lines)):
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text)
        pos = nl + 1
    return pos
