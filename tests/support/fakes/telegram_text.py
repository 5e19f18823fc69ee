"""Telegram's formatting options (``parse_mode`` HTML and MarkdownV2) turned into plain text plus
``MessageEntity`` objects, with Telegram's own error wording for malformed input.

The rules and messages follow the Bot API's "Formatting options" section and the server's
parser (tdlib ``MessageEntity.cpp``): supported HTML tags ``b strong i em u ins s strike del
span.tg-spoiler tg-spoiler a code pre blockquote tg-emoji``; the four named HTML entities plus
numeric ones; in MarkdownV2 every one of ``_*[]()~`>#+-=|{}.!`` outside an entity must be
escaped with ``\\``. Offsets and lengths are in UTF-16 code units, as Telegram counts them.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["EntityError", "parse"]

_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}
_RESERVED = set("_*[]()~`>#+-=|{}.!")
_ATTR = re.compile(r'\s*([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\'|([^\s>]+))')
_MD_NAMES = {"bold": "Bold", "italic": "Italic", "underline": "Underline",
             "strikethrough": "Strikethrough", "spoiler": "Spoiler", "code": "Code",
             "pre": "Pre", "text_link": "TextUrl"}


class EntityError(ValueError):
    """Malformed formatted text; ``str()`` is Telegram's description after
    "Bad Request: can't parse entities: "."""


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8"))


class _Builder:
    """Accumulates output text and entities with UTF-16 offsets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.entities: list[dict[str, Any]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += _u16(text)

    def close(self, start: int, entity: dict[str, Any]) -> None:
        if self.length > start:
            self.entities.append({**entity, "offset": start, "length": self.length - start})

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        entities = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), entities


def parse(text: str, mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """(plain text, entities) of ``text`` under ``parse_mode`` ``mode`` (None, "HTML",
    "MarkdownV2" or "Markdown"); raises EntityError, or ValueError for an unknown mode."""
    if not mode:
        return text, []
    lowered = mode.lower()
    if lowered == "html":
        return _html(text)
    if lowered == "markdownv2":
        return _markdown_v2(text)
    if lowered == "markdown":
        return _markdown_legacy(text)
    raise ValueError(f"Unsupported parse_mode {mode}")


def _html(source: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    stack: list[tuple[str, int, dict[str, Any]]] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "&":
            end = source.find(";", i, i + 12)
            if end != -1:
                decoded = html.unescape(source[i:end + 1])
                if decoded != source[i:end + 1]:
                    out.add(decoded)
                    i = end + 1
                    continue
            out.add("&")  # an unknown entity stays literal, as Telegram does
            i += 1
            continue
        if char != "<":
            nxt = source.find("<", i)
            amp = source.find("&", i)
            stop = min(x for x in (nxt, amp, n) if x != -1)
            out.add(source[i:stop])
            i = stop
            continue
        begin = i
        i += 1
        if i < n and source[i] == "/":
            end = source.find(">", i)
            if end == -1:
                raise EntityError(f"Unclosed end tag at byte offset {_byte_offset(source, begin)}")
            name = source[i + 1:end].strip().lower()
            if not stack:
                raise EntityError(
                    f"Unexpected end tag at byte offset {_byte_offset(source, begin)}")
            tag, start, entity = stack.pop()
            if name != tag:
                raise EntityError(
                    f'Unmatched end tag at byte offset {_byte_offset(source, begin)}, '
                    f'expected "</{tag}>", found "</{name}>"')
            out.close(start, entity)
            i = end + 1
            continue
        match = re.match(r"[a-zA-Z][a-zA-Z0-9-]*", source[i:])
        name = match.group(0).lower() if match else ""
        if name not in _HTML_TAGS:
            raise EntityError(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(source, begin)}')
        i += len(name)
        end = source.find(">", i)
        if end == -1:
            raise EntityError(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
        attrs = {m.group(1).lower(): next(g for g in m.groups()[1:] if g is not None)
                 for m in _ATTR.finditer(source[i:end])}
        entity = _html_entity(name, attrs, stack, source, begin)
        stack.append((name, out.length, entity))
        i = end + 1
    if stack:
        raise EntityError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    text, entities = out.result()
    return _merge_pre_code(text, entities)


def _html_entity(name: str, attrs: dict[str, str], stack: list[tuple[str, int, dict[str, Any]]],
                 source: str, begin: int) -> dict[str, Any]:
    kind = _HTML_TAGS[name]
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise EntityError(f'Tag "span" must have class "tg-spoiler" at byte offset '
                          f'{_byte_offset(source, begin)}')
    if kind == "text_link":
        href = attrs.get("href", "")
        return {"type": "text_link", "url": href} if href else {"type": "_plain"}
    if kind == "custom_emoji":
        emoji_id = attrs.get("emoji-id", "")
        if not emoji_id.isdigit():
            raise EntityError(f"Invalid custom emoji identifier specified at byte offset "
                              f"{_byte_offset(source, begin)}")
        return {"type": "custom_emoji", "custom_emoji_id": emoji_id}
    if kind == "code" and stack and stack[-1][0] == "pre":
        language = attrs.get("class", "")
        language = language[len("language-"):] if language.startswith("language-") else ""
        return {"type": "code", "_language": language}
    if kind == "blockquote" and "expandable" in _bare_attrs(source, begin):
        return {"type": "expandable_blockquote"}
    return {"type": kind}


def _bare_attrs(source: str, begin: int) -> str:
    return source[begin:source.find(">", begin)]


def _merge_pre_code(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``<pre><code class="language-x">`` becomes one ``pre`` entity with ``language``; links
    without href vanish (Telegram keeps their text only)."""
    result: list[dict[str, Any]] = []
    for entity in sorted(entities, key=lambda e: "_language" in e):  # pre before its code
        if entity["type"] == "_plain":
            continue
        if "_language" in entity:
            pre = next((e for e in result if e["type"] == "pre" and e["offset"] == entity["offset"]
                        and e["length"] == entity["length"]), None)
            if pre is not None:
                if entity["_language"]:
                    pre["language"] = entity["_language"]
                continue
            entity = {k: v for k, v in entity.items() if k != "_language"}
        result.append(entity)
    return text, sorted(result, key=lambda e: (e["offset"], -e["length"]))


def _markdown_v2(source: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    stack: list[tuple[str, int, int, dict[str, Any]]] = []  # (marker, out start, src index, e)
    i, n = 0, len(source)
    at_line_start = True
    quote_start: int | None = None
    while i < n:
        char = source[i]
        if at_line_start and quote_start is not None and char != ">":
            out.close(quote_start, {"type": "blockquote"})
            quote_start = None
        if at_line_start and char == ">":
            if quote_start is None:
                quote_start = out.length
            i += 1
            at_line_start = False
            continue
        at_line_start = False
        if char == "\\" and i + 1 < n and 0 < ord(source[i + 1]) < 127:
            out.add(source[i + 1])
            i += 2
            continue
        if char == "\n":
            if quote_start is not None and not source.startswith(">", i + 1):
                out.close(quote_start, {"type": "blockquote"})  # the newline is not quoted
                quote_start = None
            out.add("\n")
            at_line_start = True
            i += 1
            continue
        if char == "`":
            i = _md_code(source, i, out)
            continue
        marker = _md_marker(source, i)
        if marker is not None:
            kind = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough",
                    "||": "spoiler"}[marker]
            if stack and stack[-1][0] == marker:
                _, start, _, entity = stack.pop()
                out.close(start, entity)
            else:
                stack.append((marker, out.length, i, {"type": kind}))
            i += len(marker)
            continue
        if char == "[":
            stack.append(("[", out.length, i, {"type": "text_link"}))
            i += 1
            continue
        if char == "]" and stack and stack[-1][0] == "[":
            _, start, src, entity = stack.pop()
            if not source.startswith("(", i + 1):
                raise EntityError(f"Can't find end of TextUrl entity at byte offset "
                                  f"{_byte_offset(source, src)}")
            url, i = _md_url(source, i + 2, src)
            out.close(start, {"type": "text_link", "url": url})
            continue
        if char in _RESERVED:
            raise EntityError(f"Character '{char}' is reserved and must be escaped with the "
                              f"preceding '\\'")
        out.add(char)
        i += 1
    if quote_start is not None:
        out.close(quote_start, {"type": "blockquote"})
    if stack:
        marker, _, src, entity = stack[-1]
        name = _MD_NAMES.get(entity["type"], entity["type"])
        raise EntityError(f"Can't find end of {name} entity at byte offset "
                          f"{_byte_offset(source, src)}")
    return out.result()


def _md_marker(source: str, i: int) -> str | None:
    if source.startswith("__", i):
        return "__"
    if source.startswith("||", i):
        return "||"
    if source[i] in "*_~":
        return source[i]
    return None


def _md_code(source: str, i: int, out: _Builder) -> int:
    fence = source.startswith("```", i)
    marker = "```" if fence else "`"
    j = i + len(marker)
    language = ""
    if fence:
        line_end = source.find("\n", j)
        if line_end != -1 and re.fullmatch(r"[A-Za-z0-9_+#.-]*", source[j:line_end]):
            language, j = source[j:line_end], line_end + 1
    start = out.length
    buf: list[str] = []
    while j < len(source):
        if source[j] == "\\" and j + 1 < len(source) and 0 < ord(source[j + 1]) < 127:
            buf.append(source[j + 1])
            j += 2
            continue
        if source.startswith(marker, j):
            out.add("".join(buf))
            entity: dict[str, Any] = {"type": "pre" if fence else "code"}
            if language:
                entity["language"] = language
            out.close(start, entity)
            return j + len(marker)
        buf.append(source[j])
        j += 1
    raise EntityError(f"Can't find end of {'Pre' if fence else 'Code'} entity at byte offset "
                      f"{_byte_offset(source, i)}")


def _md_url(source: str, j: int, src: int) -> tuple[str, int]:
    buf: list[str] = []
    while j < len(source):
        if source[j] == "\\" and j + 1 < len(source):
            buf.append(source[j + 1])
            j += 2
            continue
        if source[j] == ")":
            return "".join(buf), j + 1
        buf.append(source[j])
        j += 1
    raise EntityError(f"Can't find end of a URL at byte offset {_byte_offset(source, src)}")


def _markdown_legacy(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Legacy Markdown: ``*bold*``, ``_italic_``, `` `code` ``, ``[text](url)``; no escaping
    rules beyond an unclosed marker being an error."""
    out = _Builder()
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char in "*_`":
            end = source.find(char, i + 1)
            if end == -1:
                raise EntityError(f"Can't find end of the entity starting at byte offset "
                                  f"{_byte_offset(source, i)}")
            start = out.length
            out.add(source[i + 1:end])
            out.close(start, {"type": {"*": "bold", "_": "italic", "`": "code"}[char]})
            i = end + 1
            continue
        match = re.match(r"\[([^\]]*)\]\(([^)]*)\)", source[i:])
        if match:
            start = out.length
            out.add(match.group(1))
            out.close(start, {"type": "text_link", "url": match.group(2)})
            i += match.end()
            continue
        out.add(char)
        i += 1
    return out.result()
