"""Transcript messages: validation of OpenAI-shaped messages, stored rows, and the export to
OpenClaw's pi-agent JSONL transcript format (reference §4.4).

The store keeps messages in the OpenAI chat shape the engine speaks (``role``, ``content`` as a
string or parts, ``tool_calls``, ``tool_call_id``, ``name``). Two clawgate metadata keys,
``usage`` and ``stop_reason``, go to their own columns; any other key is kept verbatim in
``extra`` so a message reads back as it was written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import orjson

from clawgate.errors import InvalidRequest
from clawgate.providers.base import Message
from clawgate.sessions.schema import SessionEntry, dumps, loads

Role = Literal["user", "assistant", "tool", "system"]
ROLES: tuple[Role, ...] = ("user", "assistant", "tool", "system")
Content = str | list[dict[str, Any]] | None

_COLUMN_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name"})
_META_KEYS = frozenset({"usage", "stop_reason"})
# OpenAI/Anthropic finish reasons -> pi's stopReason vocabulary.
_STOP_REASONS: Mapping[str, str] = {
    "stop": "stop", "end_turn": "stop", "length": "length", "max_tokens": "length",
    "tool_calls": "toolUse", "tool_use": "toolUse", "error": "error", "aborted": "aborted",
}
PI_TRANSCRIPT_VERSION = 3


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One transcript row. ``seq`` counts from 1 within a ``session_id``; ``archived`` is set when
    the session was reset or deleted."""

    id: int
    key: str
    session_id: str
    seq: int
    role: Role
    content: Content
    created_at: int
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    usage: dict[str, Any] | None = None
    stop_reason: str | None = None
    extra: dict[str, Any] | None = None
    archived: bool = False

    def to_message(self) -> Message:
        """The OpenAI-shaped message as written (without the usage/stop_reason metadata)."""
        msg: Message = dict(self.extra or {})
        msg["role"] = self.role
        msg["content"] = self.content
        if self.tool_calls is not None:
            msg["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            msg["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            msg["name"] = self.name
        return msg

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredMessage:
        """Decode a ``SELECT * FROM messages`` row."""
        return cls(
            id=row["id"],
            key=row["key"],
            session_id=row["session_id"],
            seq=row["seq"],
            role=row["role"],
            content=loads(row["content"]),
            created_at=row["created_at"],
            tool_calls=loads(row["tool_calls"]),
            tool_call_id=row["tool_call_id"],
            name=row["name"],
            usage=loads(row["usage"]),
            stop_reason=row["stop_reason"],
            extra=loads(row["extra"]),
            archived=bool(row["archived"]),
        )


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A validated message on its way into ``messages``: decoded values plus their JSON text."""

    role: Role
    content: Content
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    name: str | None
    usage: dict[str, Any] | None
    stop_reason: str | None
    extra: dict[str, Any] | None
    json: tuple[str | None, str | None, str | None, str | None]  # content, tool_calls, usage, extra

    def stored(self, *, id: int, key: str, session_id: str, seq: int, at: int) -> StoredMessage:
        """The row this message became."""
        return StoredMessage(
            id=id, key=key, session_id=session_id, seq=seq, role=self.role, content=self.content,
            created_at=at, tool_calls=self.tool_calls, tool_call_id=self.tool_call_id,
            name=self.name, usage=self.usage, stop_reason=self.stop_reason, extra=self.extra,
        )


def check_messages(
    messages: Sequence[Message], method: str = "sessions.append"
) -> list[NewMessage]:
    """Validate OpenAI-shaped messages; a bad one raises :class:`InvalidRequest` naming its index
    and field."""
    if isinstance(messages, Mapping | str | bytes):
        raise InvalidRequest("messages must be a list of message objects", method=method)
    return [_check(i, m, method) for i, m in enumerate(messages)]


def _check(i: int, m: Any, method: str) -> NewMessage:
    def bad(what: str) -> InvalidRequest:
        return InvalidRequest(f"messages[{i}]{what}", method=method)

    if not isinstance(m, Mapping):
        raise bad(" must be an object")
    role = m.get("role")
    if role not in ROLES:
        raise bad(f".role must be one of {', '.join(ROLES)}, not {role!r}")
    content = m.get("content")
    if not (content is None or isinstance(content, str) or _dict_list(content)):
        raise bad(".content must be a string, a list of part objects or null")
    tool_calls = m.get("tool_calls")
    if not (tool_calls is None or _dict_list(tool_calls)):
        raise bad(".tool_calls must be a list of objects or null")
    for field in ("tool_call_id", "name", "stop_reason"):
        if not (m.get(field) is None or isinstance(m.get(field), str)):
            raise bad(f".{field} must be a string or null")
    usage = m.get("usage")
    if not (usage is None or isinstance(usage, dict)):
        raise bad(".usage must be an object or null")
    extra = {k: v for k, v in m.items() if k not in _COLUMN_KEYS and k not in _META_KEYS}
    try:
        json = (
            dumps(content),
            None if tool_calls is None else dumps(tool_calls),
            None if usage is None else dumps(usage),
            dumps(extra) if extra else None,
        )
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise bad(f" is not JSON-serializable: {exc}") from None
    return NewMessage(
        role=cast(Role, role), content=cast(Content, content),
        tool_calls=cast("list[dict[str, Any]] | None", tool_calls),
        tool_call_id=m.get("tool_call_id"), name=m.get("name"),
        usage=cast("dict[str, Any] | None", usage), stop_reason=m.get("stop_reason"),
        extra=extra or None, json=json,
    )


def _dict_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(p, dict) for p in value)


def export_jsonl(entry: SessionEntry, messages: Sequence[StoredMessage], *, cwd: str = "") -> str:
    """The session as a pi-agent transcript: a ``session`` header line, then one ``message``
    entry per stored message chained by ``parentId``. System messages are left out (pi keeps the
    system prompt outside the transcript), except compaction entries, which become pi
    ``compaction`` entries; tool messages become ``toolResult`` messages."""
    lines: list[dict[str, Any]] = [{
        "type": "session", "version": PI_TRANSCRIPT_VERSION, "id": entry.session_id,
        "timestamp": iso(entry.started_at), "cwd": cwd,
    }]
    parent: str | None = None
    tool_names: dict[str, str] = {}
    for m in messages:
        entry_id = f"{m.id:08x}"
        record = (m.extra or {}).get("compaction") if m.role == "system" else None
        if isinstance(record, dict):  # a compaction entry (sessions.compaction): pi's own kind
            lines.append({
                "type": "compaction", "id": entry_id, "parentId": parent,
                "timestamp": iso(m.created_at), "summary": m.content if isinstance(
                    m.content, str) else "",
                "firstKeptEntryId": f"{int(record.get('firstKeptId', 0)):08x}",
                "tokensBefore": int(record.get("tokensBefore", 0)),
            })
            parent = entry_id
            continue
        body = _pi_message(m, tool_names)
        if body is None:
            continue
        lines.append({
            "type": "message", "id": entry_id, "parentId": parent,
            "timestamp": iso(m.created_at), "message": body,
        })
        parent = entry_id
    return "".join(orjson.dumps(line).decode() + "\n" for line in lines)


def iso(ms: int) -> str:
    """Epoch milliseconds as JavaScript's ``Date.toISOString()`` text."""
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _pi_message(m: StoredMessage, tool_names: dict[str, str]) -> dict[str, Any] | None:
    if m.role == "system":
        return None
    if m.role == "user":
        return {"role": "user", "content": _parts(m.content), "timestamp": m.created_at}
    if m.role == "tool":
        call_id = m.tool_call_id or ""
        return {
            "role": "toolResult", "toolCallId": call_id,
            "toolName": m.name or tool_names.get(call_id, ""),
            "content": _parts(m.content), "isError": bool((m.extra or {}).get("is_error")),
            "timestamp": m.created_at,
        }
    content: list[dict[str, Any]] = []
    reasoning = (m.extra or {}).get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning})
    content.extend(_parts(m.content))
    for call in m.tool_calls or []:
        fn = call.get("function") or {}
        call_id, name = str(call.get("id", "")), str(fn.get("name", ""))
        tool_names[call_id] = name
        content.append(
            {"type": "toolCall", "id": call_id, "name": name, "arguments": _args(fn)}
        )
    out: dict[str, Any] = {"role": "assistant", "content": content, "timestamp": m.created_at}
    if m.usage is not None:
        out["usage"] = _pi_usage(m.usage)
    if m.stop_reason is not None:
        out["stopReason"] = _STOP_REASONS.get(m.stop_reason, m.stop_reason)
    return out


def _parts(content: Content) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            out.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url", "") if isinstance(url, dict) else str(url or "")
            out.append(_image(url))
        else:
            # No pi equivalent: keep the part visible rather than drop it.
            out.append({"type": "text", "text": orjson.dumps(part).decode()})
    return out


def _image(url: str) -> dict[str, Any]:
    head, sep, data = url.partition(",")
    if url.startswith("data:") and sep and head.endswith(";base64"):
        return {"type": "image", "data": data, "mimeType": head[5:-7]}
    return {"type": "text", "text": f"[image: {url}]"}


def _args(fn: Mapping[str, Any]) -> Any:
    """pi stores tool arguments as an object; OpenAI sends a JSON string."""
    raw = fn.get("arguments")
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {"_raw": str(raw)}
    return value if isinstance(value, dict) else {"_raw": str(raw)}


def _pi_usage(u: Mapping[str, Any]) -> dict[str, Any]:
    inp = _int(u.get("input", u.get("prompt_tokens")))
    out = _int(u.get("output", u.get("completion_tokens")))
    total = u.get("total", u.get("total_tokens", u.get("totalTokens")))
    read = _int(u.get("cache_read", u.get("cacheRead")))
    write = _int(u.get("cache_write", u.get("cacheWrite")))
    raw = u.get("cost")
    cost: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return {
        "input": inp, "output": out,
        "cacheRead": read, "cacheWrite": write,
        "totalTokens": _int(total) if total is not None else inp + out,
        "cost": {"input": _num(cost.get("input")), "output": _num(cost.get("output")),
                 "cacheRead": _num(cost.get("cache_read")),
                 "cacheWrite": _num(cost.get("cache_write")),
                 "total": _num(cost.get("total"))},
    }


def _num(value: Any) -> float | int:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
