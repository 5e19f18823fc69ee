"""Slack events -> ``InboundMessage``: which events are messages, who wrote them, where they go,
and the text the agent reads.

Pure functions of the event and the bot's identity (``auth.test``); no Slack SDK here.

- ``message`` events (``channel_type`` ``im`` -> a DM, ``channel``/``group``/``mpim`` -> a group)
  and ``app_mention`` events (always ``mentioned``) are messages. Subtypes other than
  ``file_share``, ``thread_broadcast`` and ``me_message`` (edits, deletes, joins, topic
  changes...) are skipped; so are other bots' posts. The bot's own posts come back as
  ``from_self`` (the core drops them).
- The dedupe key is ``<channel>:<ts>``: the same for the ``message`` and the ``app_mention``
  event of one post, for Slack's redeliveries, and in Socket Mode and HTTP mode alike. The
  surviving event carries the same text and ``mentioned`` either way (``<@BOT>`` in the text).
- ``thread_ts`` (when it is not the message's own ``ts``) is the thread: the core keys the
  session ``...:thread:<ts>`` and replies go to that thread.
- The text loses its leading ``<@BOT>`` mention; Slack's markup (``<@U1>``, ``<#C1|name>``,
  ``<url|label>``, ``&amp;``) becomes plain text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clawgate import Attachment, InboundMessage

MESSAGE_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
MAX_FILES = 8
_CONTROL = re.compile(r"<([^<>\n]+)>")


@dataclass(frozen=True, slots=True)
class Identity:
    """The bot, as ``auth.test`` describes it."""

    user_id: str  # the bot user (U...), what <@...> mentions name
    bot_id: str  # B..., on the bot's own posts
    name: str
    team_id: str
    team: str

    def status(self) -> dict[str, str]:
        """The ``bot`` field of the account's status."""
        return {"id": self.user_id, "botId": self.bot_id, "name": self.name,
                "teamId": self.team_id, "team": self.team}


@dataclass(frozen=True, slots=True)
class FileRef:
    """Where an inbound file can be downloaded (``url_private_download``, bot token)."""

    file_id: str
    url: str


def chat_type_of(channel: str, channel_type: str | None) -> str:
    """Slack's ``channel_type`` (``app_mention`` events have none: guessed from the id)."""
    if channel_type:
        return channel_type
    return {"D": "im", "G": "group"}.get(channel[:1], "channel")


def message_of(event: Mapping[str, Any], me: Identity,
               names: Mapping[str, str] | None = None) -> InboundMessage | None:
    """The message an event carries, or None when it is not one the agent should see."""
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return None
    subtype = event.get("subtype")
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        return None
    bot_id = event.get("bot_id")
    user = event.get("user")
    own = bot_id == me.bot_id or (user is not None and user == me.user_id)
    if not own and (bot_id or subtype == "bot_message"):
        return None  # another bot (or an integration): not a person talking to the agent
    if not own and subtype not in MESSAGE_SUBTYPES:
        return None  # edits, deletes, joins, topic changes...
    if not isinstance(user, str) and not own:
        return None
    raw = str(event.get("text") or "")
    files = attachments(event)
    direct = chat_type_of(channel, event.get("channel_type")) == "im"
    mention = f"<@{me.user_id}>"
    mentioned = kind == "app_mention" or mention in raw or f"<@{me.user_id}|" in raw
    thread = event.get("thread_ts")
    thread = thread if isinstance(thread, str) and thread and thread != ts else None
    text = plain(strip_mention(raw, me.user_id), names or {}, me=me)
    return InboundMessage(
        message_id=f"{channel}:{ts}", sender=str(user or me.user_id), text=text,
        conversation=channel, chat_type="direct" if direct else "group", thread=thread,
        mentioned=mentioned, sender_name=(names or {}).get(str(user)),
        attachments=tuple(a for a, _ in files), from_self=own)


def file_refs(event: Mapping[str, Any]) -> list[FileRef]:
    """The download URLs of an event's files (kept by the channel for ``fetch``)."""
    return [ref for _, ref in attachments(event)]


def attachments(event: Mapping[str, Any]) -> list[tuple[Attachment, FileRef]]:
    """The files of a message event as attachments, with where to download each."""
    out: list[tuple[Attachment, FileRef]] = []
    files = event.get("files")
    if not isinstance(files, list):
        return out
    for item in files[:MAX_FILES]:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        mime = item.get("mimetype")
        mime = mime if isinstance(mime, str) and mime else None
        major = (mime or "").split("/", 1)[0]
        kind = major if major in ("image", "audio", "video") else "file"
        size = item.get("size")
        name = item.get("name") or item.get("title")
        url = item.get("url_private_download") or item.get("url_private") or ""
        out.append((Attachment(kind, item["id"], mime,  # type: ignore[arg-type]
                               size if isinstance(size, int) else None,
                               str(name) if name else None),
                    FileRef(item["id"], str(url))))
    return out


def strip_mention(text: str, bot_user_id: str) -> str:
    """The text without a leading ``<@BOT>`` (and the punctuation after it)."""
    pattern = rf"^\s*<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[\s,:;.!-]*"
    return re.sub(pattern, "", text, count=1)


def plain(text: str, names: Mapping[str, str], *, me: Identity | None = None) -> str:
    """Slack's message markup as plain text: ``<@U1>`` -> ``@name``, ``<#C1|general>`` ->
    ``#general``, ``<!here>`` -> ``@here``, ``<url|label>`` -> ``label (url)``, entities
    decoded."""

    def control(match: re.Match[str]) -> str:
        body = match.group(1)
        target, _, label = body.partition("|")
        if target.startswith("@"):
            user = target[1:]
            own = me.name if me is not None and user == me.user_id else None
            return "@" + (label or own or names.get(user) or user)
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            special = target[1:].split("^", 1)[0]
            return label or f"@{special}"
        if label and label != target:
            return f"{label} ({target})"
        return target.removeprefix("mailto:")

    converted = _CONTROL.sub(control, text)
    return converted.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def slash_text(command_text: str, commands: frozenset[str]) -> str:
    """What a ``/clawd ...`` slash command says: a gateway command when its first word names
    one (``/clawd status`` -> ``/status``), else the text as a message."""
    text = command_text.strip()
    first = text.split(None, 1)[0].lstrip("/").lower() if text else ""
    if first and first in commands:
        return "/" + text.lstrip("/")
    return text


def slash_message(payload: Mapping[str, Any], command: str,
                  commands: frozenset[str]) -> InboundMessage | None:
    """The message a ``/clawd ...`` slash command carries (None for another command). It is
    addressed to the bot (``mentioned``); its dedupe key is its ``trigger_id``."""
    if str(payload.get("command") or "").lower() != command.lower():
        return None
    channel, user = payload.get("channel_id"), payload.get("user_id")
    trigger = payload.get("trigger_id")
    if not all(isinstance(v, str) and v for v in (channel, user, trigger)):
        return None
    text = slash_text(str(payload.get("text") or ""), commands) or (
        "/help" if "help" in commands else "")
    if not text:
        return None
    direct = chat_type_of(str(channel), None) == "im"
    return InboundMessage(message_id=f"slash:{trigger}", sender=str(user), text=text,
                          conversation=str(channel), chat_type="direct" if direct else "group",
                          mentioned=True, sender_name=str(payload.get("user_name") or "") or None)
