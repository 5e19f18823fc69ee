"""The agent's Markdown as Telegram HTML (``parse_mode=HTML``), and the plain-text measures
Telegram applies.

Supported: ``**bold**`` / ``__bold__``, ``*italic*`` / ``_italic_``, ``***both***``,
``~~strike~~``, ``||spoiler||``, `` `code` ``, fenced code blocks (``<pre>``, with the language
when given), ``[links](url)`` (http, https, tg, mailto; images become links), ``<url>``
autolinks, ``> quotes`` (``<blockquote>``), ``#`` headings (bold), ``-``/``*``/``+`` bullets
(``•``), horizontal rules and pipe tables (kept monospaced in ``<pre>``). Everything else is
text with ``&``, ``<`` and ``>`` escaped, so the result always parses.

Emphasis is matched within one line (a marker that is not closed on its line is text), which
keeps a stray ``*`` from swallowing the rest of a reply. The visible text of the result is never
longer than the Markdown it came from (markers and URLs are dropped, nothing is added), so a part
the core chunked to 4,000 characters stays under Telegram's 4,096 after rendering.
"""

from __future__ import annotations

import html
import re

MAX_TEXT = 4096  # Telegram's limit on a message's text after entity parsing (UTF-16 units)

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_RULE = re.compile(r"^\s{0,3}([-*_])(?:\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)+\|?\s*$")
_LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.-]{1,32}$")
_SPECIAL = re.compile(r"[\\`*_~|\[!<>&]")
_LINK_TAIL = re.compile(r"\(\s*<?([^\s()<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|tg|mailto):[^\s<>]+)>")
_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_TAGS = re.compile(r"<[^>]*>")
# Delimiters tried at a position, longest first: (marker, opening tags, closing tags).
_EMPHASIS: tuple[tuple[str, str, str], ...] = (
    ("***", "<b><i>", "</i></b>"), ("___", "<b><i>", "</i></b>"),
    ("**", "<b>", "</b>"), ("__", "<b>", "</b>"), ("~~", "<s>", "</s>"),
    ("||", "<tg-spoiler>", "</tg-spoiler>"), ("*", "<i>", "</i>"), ("_", "<i>", "</i>"),
)


def escape(text: str) -> str:
    """Text for Telegram HTML (``&``, ``<``, ``>``)."""
    return html.escape(text, quote=False)


def render(markdown: str) -> str:
    """Telegram HTML for ``markdown``."""
    lines = markdown.split("\n")
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is not None:
            i = _code_block(lines, i, fence, out)
            continue
        if _QUOTE.match(line):
            quoted: list[str] = []
            while i < n and (match := _QUOTE.match(lines[i])) is not None:
                inner = match.group(1)
                while (deeper := _QUOTE.match(inner)) is not None:  # no nested quotes
                    inner = deeper.group(1)
                quoted.append(_line(inner))
                i += 1
            body = "\n".join(quoted)
            out.append(f"<blockquote>{body}</blockquote>" if body.strip() else body)
            continue
        if line.lstrip().startswith("|") and i + 1 < n and _TABLE_RULE.match(lines[i + 1]):
            rows: list[str] = []
            while i < n and lines[i].lstrip().startswith("|"):
                rows.append(escape(lines[i]))
                i += 1
            out.append("<pre>" + "\n".join(rows) + "</pre>")
            continue
        out.append(_line(line))
        i += 1
    return "\n".join(out)


def _code_block(lines: list[str], start: int, fence: re.Match[str], out: list[str]) -> int:
    """Render the fenced block opened at ``lines[start]``; returns the index after it."""
    marker = fence.group(1)
    language = fence.group(2)
    body: list[str] = []
    i = start + 1
    while i < len(lines):
        closing = _FENCE.match(lines[i])
        if closing is not None and closing.group(1)[0] == marker[0] \
                and len(closing.group(1)) >= len(marker) and not closing.group(2):
            i += 1
            break
        body.append(lines[i])
        i += 1
    code = escape("\n".join(body))
    if not code.strip():
        out.append(code)
    elif language and _LANGUAGE.match(language):
        out.append(f'<pre><code class="language-{escape(language)}">{code}</code></pre>')
    else:
        out.append(f"<pre>{code}</pre>")
    return i


def _line(line: str) -> str:
    """One line outside code blocks: headings, bullets and rules, then inline markup."""
    heading = _HEADING.match(line)
    if heading is not None:
        inner = inline(heading.group(1))
        return f"<b>{inner}</b>" if inner.strip() else inner
    if _RULE.match(line):
        return "———"
    bullet = _BULLET.match(line)
    if bullet is not None:
        return f"{bullet.group(1)}• {inline(bullet.group(2))}"
    return inline(line)


def inline(text: str, *, links: bool = True) -> str:
    """Inline Markdown of one line as Telegram HTML."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        special = _SPECIAL.search(text, i)
        if special is None:
            out.append(escape(text[i:]))
            break
        j = special.start()
        if j > i:
            out.append(escape(text[i:j]))
        i = _special(text, j, out, links)
    return "".join(out)


def _special(text: str, i: int, out: list[str], links: bool) -> int:
    """Render the construct that starts with the special character at ``i``; returns where
    rendering continues."""
    char = text[i]
    if char == "\\" and i + 1 < len(text) and text[i + 1] in _PUNCT:
        out.append(escape(text[i + 1]))
        return i + 2
    if char == "`":
        return _code_span(text, i, out)
    if links and (char == "[" or text.startswith("![", i)):
        end = _link(text, i, out)
        if end is not None:
            return end
    if char == "<":
        auto = _AUTOLINK.match(text, i)
        if auto is not None and links:
            url = auto.group(1)
            out.append(f'<a href="{html.escape(url)}">{escape(url)}</a>')
            return auto.end()
    if char in "*_~|":
        end = _emphasis(text, i, out, links)
        if end is not None:
            return end
    out.append(escape(char))
    return i + 1


def _code_span(text: str, i: int, out: list[str]) -> int:
    run = _run(text, i)
    ticks = text[i:i + run]
    j = i + run
    while True:
        close = text.find(ticks, j)
        if close < 0:
            out.append(escape(ticks))  # no closing run: the backticks are text
            return i + run
        after = close + run
        if after < len(text) and text[after] == "`":  # a longer run is not a match
            j = after + _run(text, after)
            continue
        code = text[i + run:close]
        if len(code) > 2 and code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        out.append(f"<code>{escape(code)}</code>" if code else escape(ticks * 2))
        return after


def _run(text: str, i: int) -> int:
    """How many backticks start at ``i``."""
    j = i
    while j < len(text) and text[j] == "`":
        j += 1
    return j - i


def _link(text: str, i: int, out: list[str]) -> int | None:
    image = text[i] == "!"
    start = i + 2 if image else i + 1
    depth, j = 1, start
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "[":
            depth += 1
        elif text[j] == "]":
            depth -= 1
            if depth == 0:
                break
        j += 1
    if j >= len(text):
        return None
    tail = _LINK_TAIL.match(text, j + 1)
    if tail is None:
        return None
    url = tail.group(1)
    if not url.lower().startswith(_SCHEMES):
        return None
    label = text[start:j]
    shown = inline(label, links=False) if label.strip() else escape(url)
    out.append(f'<a href="{html.escape(url)}">{shown}</a>')
    return tail.end()


def _emphasis(text: str, i: int, out: list[str], links: bool) -> int | None:
    for marker, opening, closing in _EMPHASIS:
        if not text.startswith(marker, i):
            continue
        size = len(marker)
        after = i + size
        if after >= len(text) or text[after].isspace() or text[after] == marker[0]:
            continue
        if marker[0] == "_" and i > 0 and text[i - 1].isalnum():
            continue  # snake_case is text
        close = _closer(text, marker, after + 1)
        if close is None:
            continue
        out.append(opening + inline(text[after:close], links=links) + closing)
        return close + size
    return None


def _closer(text: str, marker: str, start: int) -> int | None:
    """Where ``marker`` closes: not after whitespace, not part of a longer run of the same
    character, and (for ``_``) not inside a word."""
    size = len(marker)
    char = marker[0]
    j = start
    while True:
        j = text.find(marker, j)
        if j < 0:
            return None
        end = j + size
        longer = (end < len(text) and text[end] == char) or (j > 0 and text[j - 1] == char
                                                               and size < 3)
        if text[j - 1].isspace() or longer or text[j - 1] == "\\":
            j += 1
            continue
        if char == "_" and end < len(text) and text[end].isalnum():
            j += 1
            continue
        return j


def visible(rendered: str) -> str:
    """The text Telegram shows for rendered HTML (tags dropped, entities decoded)."""
    return html.unescape(_TAGS.sub("", rendered))


def units(text: str) -> int:
    """The length of ``text`` as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def split_plain(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-16 units, cut at a line break or a space
    where there is one in the second half of a piece (for text no rendering can fit)."""
    pieces: list[str] = []
    rest = text
    while units(rest) > limit:
        cut = _fit(rest, limit)
        soft = max(rest.rfind("\n", cut // 2, cut), rest.rfind(" ", cut // 2, cut))
        cut = soft + 1 if soft > 0 else cut
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        pieces.append(rest)
    return pieces


def _fit(text: str, limit: int) -> int:
    """The longest prefix length of ``text`` within ``limit`` UTF-16 units."""
    total = 0
    for index, char in enumerate(text):
        total += 2 if ord(char) > 0xFFFF else 1
        if total > limit:
            return index
    return len(text)
