"""Chat-shaped requests to Anthropic Messages API parameters.

The engine speaks OpenAI's chat shapes; the Messages API differs in four ways handled here:

- the system prompt is a top-level ``system`` parameter, not a message;
- tool calls are ``tool_use`` blocks of the assistant message and tool results are
  ``tool_result`` blocks of the next *user* message (consecutive same-role messages merge);
- images are ``image`` blocks with a base64 or URL ``source``;
- extended thinking: the level becomes ``thinking.budget_tokens`` (and ``max_tokens`` grows to
  leave room for the answer), and the signed thinking blocks the model returned, kept on the
  stored assistant message as ``thinking_blocks``, go back first in that message, unmodified,
  as the API requires during tool use.

Prompt caching puts ``cache_control`` breakpoints on the stable prefix: the last tool, the
system prompt (which carries the workspace bootstrap files) and the conversation so far (its
last block), so the next call reads them from the cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from clawgate import Message, ModelRequest, ThinkingLevel, ToolSpec, text_of

# OpenClaw's levels run through pi-ai, whose budget-based providers use these token budgets;
# there is no budget tier above "high", so "xhigh" is clamped to it.
THINKING_BUDGETS: Mapping[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192,
                                       "high": 16384}
MIN_BUDGET = 1024  # the API's floor for budget_tokens
MIN_ANSWER_TOKENS = 1024  # room kept for the answer when the model's limit squeezes the budget
MAX_DEFAULT_TOKENS = 32_000  # the default max_tokens never exceeds this (as pi-ai)
EPHEMERAL: Mapping[str, str] = {"type": "ephemeral"}
# Sampling options the Messages API takes (temperature/top_p are refused with thinking on).
_SAMPLING = ("top_p", "top_k")


def budget(level: ThinkingLevel | None, budgets: Mapping[str, int] | None = None) -> int:
    """The thinking budget of ``level`` (0: thinking off)."""
    if level is None or level == "off":
        return 0
    table = {**THINKING_BUDGETS, **(budgets or {})}
    return int(table["high" if level == "xhigh" else level])


def params(request: ModelRequest, *, max_tokens: int, model_max: int | None = None,
           budgets: Mapping[str, int] | None = None, caching: bool = True) -> dict[str, Any]:
    """The JSON body of a streamed ``POST /v1/messages`` call.

    ``max_tokens`` is the answer's limit when the request sets none; ``model_max`` the model's
    output limit from the catalogue.
    """
    system, messages = split(request.messages)
    out: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True}
    answer = request.max_tokens or max_tokens
    thinking = budget(request.thinking, budgets)
    if thinking and _open_tool_cycle_without_thinking(messages):
        # The API wants the last tool-calling assistant message to start with its thinking
        # block; one written with thinking off has none, so this call runs without thinking.
        thinking = 0
    limit = answer + thinking
    if model_max is not None:
        limit = min(limit, model_max)
    if thinking and limit <= thinking:
        thinking = limit - MIN_ANSWER_TOKENS
    if thinking >= MIN_BUDGET:
        out["thinking"] = {"type": "enabled", "budget_tokens": thinking}
        out["max_tokens"] = limit
    else:
        out["max_tokens"] = min(answer, model_max) if model_max else answer
    if system:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text} for text in system]
        if caching:
            blocks[-1]["cache_control"] = dict(EPHEMERAL)
        out["system"] = blocks
    if request.tools:
        tools = [tool(spec) for spec in request.tools]
        if caching:
            tools[-1]["cache_control"] = dict(EPHEMERAL)
        out["tools"] = tools
    if caching and messages:
        _mark_last_block(messages)
    stop = request.extra.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    # Sampling goes in as given, except with thinking on, which refuses it.
    if "thinking" not in out:
        if request.temperature is not None:
            out["temperature"] = request.temperature
        out.update({k: request.extra[k] for k in _SAMPLING if request.extra.get(k) is not None})
    return out


def split(chat: Sequence[Message]) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, Anthropic messages) for chat-shaped messages."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in chat:
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message)
            if text:
                system.append(text)
            continue
        if role == "assistant":
            blocks = _assistant(message)
            speaker = "assistant"
        elif role == "tool":
            blocks = [_tool_result(message)]
            speaker = "user"
        else:
            blocks = _user(message.get("content"))
            speaker = "user"
        if not blocks:
            continue
        if messages and messages[-1]["role"] == speaker:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": speaker, "content": blocks})
    return system, messages


def tool(spec: ToolSpec) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool definition."""
    function = spec.get("function") or {}
    out: dict[str, Any] = {"name": str(function.get("name", "")),
                           "input_schema": function.get("parameters") or {"type": "object"}}
    if function.get("description"):
        out["description"] = str(function["description"])
    return out


def _user(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if part.get("text"):
                blocks.append({"type": "text", "text": str(part["text"])})
        elif kind == "image_url":
            url = part.get("image_url")
            blocks.append(image(url.get("url", "") if isinstance(url, dict) else str(url or "")))
        elif kind in ("image", "document"):
            blocks.append(dict(part))  # already an Anthropic block
    return blocks


def image(url: str) -> dict[str, Any]:
    """An image block for a ``data:`` URL (base64 source) or an http(s) URL (url source)."""
    head, sep, data = url.partition(",")
    if url.startswith("data:") and sep and head.endswith(";base64"):
        return {"type": "image",
                "source": {"type": "base64", "media_type": head[5:-7], "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        dict(b) for b in message.get("thinking_blocks") or ()
        if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")
    ]
    text = text_of(message)
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": str(call.get("id", "")),
                       "name": str(function.get("name", "")),
                       "input": _arguments(function.get("arguments"))})
    return blocks


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {"_raw": str(raw)}
    return value if isinstance(value, dict) else {"_raw": str(raw)}


def _tool_result(message: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result",
                             "tool_use_id": str(message.get("tool_call_id") or ""),
                             "content": text_of(message)}
    if message.get("is_error"):
        block["is_error"] = True
    return block


def _mark_last_block(messages: list[dict[str, Any]]) -> None:
    last = messages[-1]["content"][-1]
    if last.get("type") not in ("thinking", "redacted_thinking"):  # those take no breakpoint
        # A copy: the block may be shared with the caller's message list.
        messages[-1]["content"][-1] = {**last, "cache_control": dict(EPHEMERAL)}


def _open_tool_cycle_without_thinking(messages: Sequence[dict[str, Any]]) -> bool:
    """True when the conversation waits on tool results of an assistant message that has no
    thinking block."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            blocks = message["content"]
            uses = any(b.get("type") == "tool_use" for b in blocks)
            starts = blocks[0].get("type") in ("thinking", "redacted_thinking")
            return uses and not starts
        if not any(b.get("type") == "tool_result" for b in message["content"]):
            return False
    return False
