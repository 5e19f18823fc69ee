"""Stored messages as OpenClaw's clients display them: ``chat.history`` rows, ``session.message``
payloads and the assistant message of ``chat`` events (pi-style roles and content parts).

One projection for every surface that shows a transcript, so a message looks the same whether
it arrives in a history page or live.
"""

from __future__ import annotations

from typing import Any

from clawgate.sessions.transcript import StoredMessage

OMITTED = "[chat.history omitted: message too large]"


def assistant_message(text: str, ts: int, **extra: Any) -> dict[str, Any]:
    """An assistant message in OpenClaw's chat shape (content parts)."""
    content = [{"type": "text", "text": text}] if text else []
    return {"role": "assistant", "content": content, "timestamp": ts, **extra}


def _parts(m: StoredMessage, max_chars: int | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    items = [{"type": "text", "text": m.content}] if isinstance(m.content, str) else (
        m.content or [])
    for part in items:
        if part.get("type") in ("text", "input_text", "output_text"):
            text = str(part.get("text", ""))
            if max_chars is not None and len(text) > max_chars:
                text = OMITTED
            out.append({"type": "text", "text": text})
        else:  # images and other parts are not echoed back (they can be megabytes)
            out.append({"type": "text", "text": f"[{part.get('type', 'part')}]"})
    return out


def display_message(m: StoredMessage, max_chars: int | None = None) -> dict[str, Any] | None:
    """``m`` as a client shows it, or None for messages clients never see (system prompts, the
    silent memory-flush turn); a compaction entry shows as pi's ``compactionSummary``.

    ``__openclaw`` carries the transcript identity (``id``, ``seq``) OpenClaw's clients use to
    merge a live message into a history they already hold.
    """
    meta = {"id": str(m.id), "seq": m.seq}
    if m.role == "system":
        record = (m.extra or {}).get("compaction")
        if not isinstance(record, dict):
            return None
        # Where a compaction happened: pi's compactionSummary message (the messages before
        # it are all still listed; the next prompts start from this summary).
        summary = m.content if isinstance(m.content, str) else ""
        return {"role": "compactionSummary", "summary": summary,
                "content": [{"type": "text", "text": summary}],
                "tokensBefore": record.get("tokensBefore"),
                "tokensAfter": record.get("tokensAfter"), "trigger": record.get("trigger"),
                "firstKeptEntryId": f"{int(record.get('firstKeptId', 0)):08x}",
                "timestamp": m.created_at, "__openclaw": meta}
    if (m.extra or {}).get("silent"):
        return None  # the memory flush turn: in the store, never shown as a chat message
    if m.role == "tool":
        return {"role": "toolResult", "toolCallId": m.tool_call_id or "",
                "toolName": m.name or "", "content": _parts(m, max_chars),
                "timestamp": m.created_at, "__openclaw": meta}
    message: dict[str, Any] = {"role": m.role, "content": _parts(m, max_chars),
                               "timestamp": m.created_at}
    for call in m.tool_calls or ():
        fn = call.get("function") or {}
        message["content"].append({"type": "toolCall", "id": call.get("id", ""),
                                   "name": fn.get("name", ""),
                                   "arguments": fn.get("arguments", "")})
    if m.role == "assistant" and m.stop_reason:
        message["stopReason"] = m.stop_reason
    if m.role == "assistant" and m.usage:
        message["usage"] = m.usage
    message["__openclaw"] = meta
    return message
