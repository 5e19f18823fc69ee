"""Token budgets of a session's prompt: the estimate, the thresholds, and where to cut.

The estimate is deliberately cheap and provider-independent: about four characters per token
over everything the prompt sends (system prompt, tool definitions as JSON, each message's
text, tool calls and names, plus a few tokens of framing per message; an image counts as
``IMAGE_TOKENS``). Within a turn the runner raises it to what the provider reported for the
previous call (its input + output tokens, plus the estimate of what was added since), so text
that packs fewer characters per token (code, CJK) cannot hide behind the heuristic for long.

Thresholds follow OpenClaw: the memory flush at ``window - reserve - soft_threshold``, the
compaction at ``window - reserve``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from clawgate.config import CompactionConfig
from clawgate.providers.base import Message, ToolSpec

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4  # role and framing of each message
IMAGE_TOKENS = 1_000


def tokens(text: str) -> int:
    """The estimate of a text: ceil(characters / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def message_tokens(message: Message) -> int:
    """The estimate of one chat message (text, parts, tool calls)."""
    chars = 0
    images = 0
    content: Any = message.get("content")
    if isinstance(content, str):
        chars += len(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") in ("image_url", "image", "input_image"):
                images += 1
            else:
                chars += len(str(part.get("text", ""))) or len(orjson.dumps(part))
    for call in message.get("tool_calls") or ():
        fn = (call.get("function") or {}) if isinstance(call, dict) else {}
        chars += len(str(fn.get("name", ""))) + len(str(fn.get("arguments", ""))) + 16
    for name in ("name", "tool_call_id"):
        value = message.get(name)
        if isinstance(value, str):
            chars += len(value)
    return -(-chars // CHARS_PER_TOKEN) + MESSAGE_TOKENS + images * IMAGE_TOKENS


def prompt_tokens(system: str, messages: Iterable[Message],
                  tools: Sequence[ToolSpec] = ()) -> int:
    """The estimate of a whole prompt."""
    total = tokens(system) + sum(message_tokens(m) for m in messages)
    if tools:
        total += tokens(orjson.dumps(list(tools)).decode())
    return total


@dataclass(frozen=True, slots=True)
class Budget:
    """The thresholds of one model's window (all in estimated tokens)."""

    window: int
    reserve: int
    flush_at: int  # the memory flush runs from here (soft threshold)
    compact_at: int  # compaction runs from here
    keep: int  # newest tokens kept verbatim by a compaction
    summary_tokens: int  # max_tokens of a summary call

    @classmethod
    def of(cls, window: int, config: CompactionConfig) -> Budget:
        """The budget of a ``window``-token model. A reserve that would leave less than half
        the window is cut to half of it, so a small window still holds a conversation."""
        reserve = min(config.reserve_tokens, window // 2)
        compact_at = window - reserve
        soft = min(config.memory_flush.soft_threshold_tokens, compact_at // 2)
        summary = max(256, min(8_192, int(max(reserve, window // 8) * 0.8)))
        keep = min(config.keep_recent_tokens, max(0, compact_at - summary) // 2)
        return cls(window, reserve, compact_at - soft, compact_at, keep, summary)


def cut(messages: Sequence[Message], keep_tokens: int, *, max_messages: int | None = None
        ) -> int | None:
    """Where to cut ``messages`` (oldest first) so that the kept tail ``messages[i:]`` holds
    at most ``keep_tokens`` (and ``max_messages``) but as much as it can: the index of a user
    message, so a tool call is never separated from its result and a turn starts the tail.
    When even the newest turn is larger, the tail is that turn alone. None when there is no
    user message after the first message (nothing before it could be summarised)."""
    boundaries = [i for i, m in enumerate(messages) if i > 0 and m.get("role") == "user"]
    if not boundaries:
        return None
    suffix = [0] * (len(messages) + 1)
    for i in range(len(messages) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + message_tokens(messages[i])
    for i in boundaries:
        fits = suffix[i] <= keep_tokens
        if fits and (max_messages is None or len(messages) - i <= max_messages):
            return i
    return boundaries[-1]


def tail(messages: Sequence[Message], budget_tokens: int) -> list[Message]:
    """The longest tail of ``messages`` that starts at a user message and fits in
    ``budget_tokens`` (the newest turn alone when none fits; everything when all fits)."""
    if sum(message_tokens(m) for m in messages) <= budget_tokens:
        return list(messages)
    start = cut(messages, budget_tokens)
    return list(messages[start:]) if start is not None else list(messages)
