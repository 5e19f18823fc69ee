"""The agent's Markdown as Slack mrkdwn.

Slack's message text has its own markup: ``*bold*``, ``_italic_``, ``~strike~``, ```` `code` ````,
```` ```pre``` ````, ``<url|label>`` links and ``>`` quotes, and ``&``, ``<``, ``>`` must be sent
as ``&amp;``, ``&lt;``, ``&gt;`` (everything else is literal). So:

- fenced code blocks become ```` ``` ```` blocks (the language tag dropped: Slack would show it);
  inline code stays; the text inside either is only escaped;
- ``**b**``/``__b__`` -> ``*b*``; ``***bi***`` -> ``*_bi_*``; ``*i*``/``_i_`` -> ``_i_``;
  ``~~s~~`` -> ``~s~``;
- ``[label](url)`` and ``![alt](url)`` -> ``<url|label>``; ``<https://...>`` stays a link;
- ``# Heading`` -> ``*Heading*``; ``-``/``*``/``+`` bullets -> ``•``; a leading ``>`` quotes;
- any other ``&``, ``<``, ``>`` is escaped, so a reply can never ping ``<!channel>`` or forge
  a link.

Markup left open (a part cut by the chunker, a preview mid-stream) stays literal text. Slack
never rejects mrkdwn (there is nothing like Telegram's "can't parse entities"), so there is no
plain-text retry.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?=\S)")
_QUOTE = re.compile(r"^ {0,3}>\s?")
_INLINE = re.compile(
    r"(?P<code>`+)(?P<code_body>.+?)(?P=code)"
    r"|!?\[(?P<label>[^\]\n]+)\]\((?P<url>[^)\s]+)(?:\s+\"[^\"]*\")?\)"
    r"|<(?P<auto>(?:https?|mailto):[^>\s]+)>"
    r"|\*\*\*(?P<both>[^*\n](?:.*?[^*\s])?)\*\*\*"
    r"|\*\*(?P<bold>[^*\n](?:.*?[^*\s])?)\*\*"
    r"|(?<![\w_])__(?P<bold2>[^_\n](?:.*?[^_\s])?)__(?![\w_])"
    r"|~~(?P<strike>[^~\n](?:.*?[^~\s])?)~~"
    r"|(?<![\w*])\*(?P<italic>[^*\s](?:[^*\n]*?[^*\s])?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic2>[^_\s](?:[^_\n]*?[^_\s])?)_(?![\w_])"
)


def escape(text: str) -> str:
    """Slack's three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(markdown: str) -> str:
    """Render ``markdown`` as Slack mrkdwn."""
    out: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        opener = _FENCE.match(line)
        if fence is None and opener is not None:
            fence = opener.group(1)
            out.append("```")
            continue
        if fence is not None:
            if opener is not None and opener.group(1).startswith(fence[0] * len(fence)) \
                    and not line.strip()[len(opener.group(1)):].strip():
                fence = None
                out.append("```")
            else:
                out.append(escape(line))
            continue
        out.append(_line(line))
    if fence is not None:
        out.append("```")  # an unclosed block (a cut part, a preview) is still code
    return _join_fences("\n".join(out))


def _join_fences(text: str) -> str:
    # "```\ncode\n```" is what Slack expects; an empty block would show two fences.
    return text.replace("```\n```", "``` ```")


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading is not None:
        inner = _inline(heading.group(1).replace("**", "").replace("__", ""))
        return f"*{inner}*" if inner else ""  # bold inside bold would end it early
    prefix = ""
    quote = _QUOTE.match(line)
    if quote is not None:
        prefix, line = "> ", line[quote.end():]
    bullet = _BULLET.match(line)
    if bullet is not None:
        prefix, line = prefix + bullet.group(1) + "• ", line[bullet.end():]
    return prefix + _inline(line)


def _inline(text: str) -> str:
    """Inline Markdown of one line as mrkdwn."""
    parts: list[str] = []
    at = 0
    for match in _INLINE.finditer(text):
        parts.append(escape(text[at:match.start()]))
        at = match.end()
        group = match.lastgroup
        if match.group("code") is not None:
            parts.append(f"`{escape(match.group('code_body'))}`")
        elif match.group("label") is not None:
            url = match.group("url")
            label = _inline(match.group("label")).replace("|", "¦")
            parts.append(f"<{_url(url)}|{label}>" if _linkable(url) else
                         f"{label} ({escape(url)})")
        elif match.group("auto") is not None:
            parts.append(f"<{_url(match.group('auto'))}>")
        elif group == "both":
            parts.append(f"*_{_inline(match.group(group))}_*")
        elif group in ("bold", "bold2"):
            parts.append(f"*{_inline(match.group(group))}*")
        elif group == "strike":
            parts.append(f"~{_inline(match.group(group))}~")
        else:
            parts.append(f"_{_inline(match.group(group or 'italic'))}_")
    parts.append(escape(text[at:]))
    return "".join(parts)


def _linkable(url: str) -> bool:
    return url.lower().startswith(("http://", "https://", "mailto:"))


def _url(url: str) -> str:
    # A URL inside <...|...> may not hold the characters that end it.
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
