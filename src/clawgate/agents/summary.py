"""The texts of compaction: what the summariser is asked, how a summary enters the next
prompts, and the memory flush turn's prompts.

The conversation goes to the summariser as plain text (``[user] ...``, ``[assistant] ...``,
``[tool call] name(args)``, ``[tool result] ...``), not as chat messages: the summary call
then needs no tool definitions and cannot trip a provider's rules on tool-call pairing or
role order. A conversation larger than the summariser's window is summarised in stages, each
stage updating the summary of the ones before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from clawgate.agents.budget import tokens
from clawgate.config import MemoryFlushConfig
from clawgate.providers.base import Message, text_of

SILENT_TOKEN = "NO_REPLY"
PIECE_CHARS = 24_000  # one message's share of a stage; the rest of it is cut (marked)
MAX_STAGES = 32

SUMMARY_SYSTEM = """\
You write the working summary of a conversation between a user and an AI assistant. The \
assistant will continue the conversation from your summary and the newest messages only, so \
the summary must carry everything it needs: the user's goals and requests, decisions and \
their reasons, facts learned (names, numbers, dates, file paths, identifiers and commands \
exactly as written), what the assistant did with its tools and what came of it, the user's \
preferences, and what is still open or was promised next. Drop greetings, small talk and \
anything later superseded. Write in the conversation's language, as concise Markdown under \
the headings: Goal, Facts and decisions, Done, Open items. Reply with the summary only."""

FLUSH_PROMPT = (
    "Pre-compaction memory flush: this session is about to be compacted, and older messages "
    "will then be replaced by a summary. Write anything durable worth remembering (facts, "
    "decisions, preferences, open to-dos) to your memory files now: append to "
    "memory/YYYY-MM-DD.md (memory_append does this and creates memory/ if needed); add to "
    "an existing file, never overwrite what it holds. If there is nothing to store, reply "
    f"with {SILENT_TOKEN}."
)
FLUSH_SYSTEM = (
    "This is a silent pre-compaction memory flush turn: nobody sees your reply. Save durable "
    "memories to disk with your tools, then reply with " + SILENT_TOKEN + "."
)


def pieces(messages: Sequence[Message]) -> list[str]:
    """The conversation as text, one piece per message (each at most ``PIECE_CHARS``)."""
    out: list[str] = []
    for m in messages:
        role = m.get("role")
        text = text_of(m)
        if isinstance(m.get("content"), list) and any(
                isinstance(p, dict) and p.get("type") not in ("text", "input_text",
                                                               "output_text")
                for p in m["content"]):
            text += " [attachment]"
        if role == "tool":
            piece = f"[tool result{_name(m)}] {text}"
        elif role == "assistant":
            calls = [_call(c) for c in m.get("tool_calls") or ()]
            piece = "\n".join(([f"[assistant] {text}"] if text.strip() else [])
                              + [f"[tool call] {c}" for c in calls])
        else:
            piece = f"[{role}] {text}"
        if len(piece) > PIECE_CHARS:
            cut = len(piece) - PIECE_CHARS
            piece = piece[:PIECE_CHARS] + f" [... {cut} characters cut]"
        if piece.strip():
            out.append(piece)
    return out


def _name(m: Message) -> str:
    name = m.get("name")
    return f" {name}" if isinstance(name, str) and name else ""


def _call(call: Any) -> str:
    fn = (call.get("function") or {}) if isinstance(call, dict) else {}
    return f"{fn.get('name', '?')}({fn.get('arguments', '')})"


def stages(texts: Sequence[str], budget_tokens: int) -> list[list[str]]:
    """``texts`` in order, grouped into stages of at most ``budget_tokens`` each (a piece
    larger than the budget is a stage of its own; pieces are capped anyway)."""
    out: list[list[str]] = []
    size = 0
    for text in texts:
        need = tokens(text) + 1
        if out and size + need <= budget_tokens:
            out[-1].append(text)
            size += need
        else:
            out.append([text])
            size = need
    return out


def request(previous: str | None, stage: Sequence[str], *, instructions: str | None,
            last: bool, partial: bool = False) -> str:
    """The user message of one summary call."""
    parts: list[str] = []
    if previous:
        parts.append("The summary of the conversation so far:\n<summary>\n"
                     f"{previous.strip()}\n</summary>")
    if partial:
        parts.append("(Older messages of the conversation were not available to this summary.)")
    joined = "\n\n".join(stage)
    parts.append(f"The conversation{' continues' if previous else ''}:\n"
                 f"<conversation>\n{joined}\n</conversation>")
    ask = ("Write the updated summary, merging the earlier one with these messages."
           if previous else "Write the summary.")
    if instructions and last:
        ask += f"\nAlso follow these instructions for the summary: {instructions.strip()}"
    parts.append(ask)
    return "\n\n".join(parts)


def summary_message(summary: str, record: dict[str, Any], *, recall: bool) -> Message:
    """How a compaction entry enters a prompt: a user message ahead of the kept messages."""
    count = int(record.get("summarized", 0) or 0)
    what = f"{count} earlier messages" if count else "The earlier conversation"
    note = (f"[{what} of this session were compacted into the summary below. The gateway "
            "keeps the full transcript")
    note += (", and what you saved to memory can be found with memory_search.]" if recall
             else ".]")
    return {"role": "user", "content": f"{note}\n\n<summary>\n{summary.strip()}\n</summary>"}


def flush_texts(config: MemoryFlushConfig, now: datetime) -> tuple[str, str]:
    """(user prompt, system prompt addition) of a memory flush turn, dated ``now``."""
    prompt = (config.prompt or FLUSH_PROMPT).replace("YYYY-MM-DD", now.date().isoformat())
    system = config.system_prompt or FLUSH_SYSTEM
    if SILENT_TOKEN not in prompt:
        prompt += f"\nIf nothing needs storing, reply with {SILENT_TOKEN}."
    return f"{prompt}\nCurrent time: {now.isoformat(timespec='minutes')}", system
