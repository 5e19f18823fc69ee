"""Who may talk to the agent, and when: DM policy, group policy, sender allowlists, mention
gating (reference §A.3 step 2), routing to an agent (bindings), and the bounded context of
group chatter the bot was not addressed in.

Decisions are pure functions of the policy and the message, except what the store knows
(senders approved through pairing), which the caller passes in.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from clawgate.channels.accounts import AccountConfig, Policy
from clawgate.chat import InboundMessage
from clawgate.config import Binding

Verdict = Literal["allow", "pairing", "drop", "context"]
MAX_CONVERSATIONS = 1000  # conversations whose unaddressed chatter is remembered
HISTORY_MARKER = "[Chat messages since your last reply - for context]"
CURRENT_MARKER = "[Current message - respond to this]"


@dataclass(frozen=True, slots=True)
class Gate:
    verdict: Verdict
    reason: str = ""


def dm_gate(policy: Policy, sender: str, approved: bool) -> Gate:
    """A direct message: ``open`` lets everyone in; ``allowlist`` those in ``allow_from``;
    ``pairing`` those too, plus senders approved through pairing, and offers the others a
    code; ``disabled`` nobody."""
    if policy.dm_policy == "disabled":
        return Gate("drop", "direct messages are disabled")
    listed = sender in policy.allow_from or "*" in policy.allow_from
    if policy.dm_policy == "open" or listed:
        return Gate("allow")
    if policy.dm_policy == "pairing":
        return Gate("allow") if approved else Gate("pairing", "unknown sender")
    return Gate("drop", "sender is not in allow_from")


def group_gate(policy: Policy, message: InboundMessage) -> Gate:
    """A group message: the group must be allowed (listed in ``groups``, or ``group_policy``
    ``open``), the sender allowed in it, and the bot addressed when the group requires it —
    otherwise the message is kept only as context."""
    if policy.group_policy == "disabled":
        return Gate("drop", "groups are disabled")
    rule = policy.group(message.conversation)
    if rule is None and policy.group_policy == "allowlist":
        return Gate("drop", f"group {message.conversation} is not in groups")
    senders = (rule.allow_from if rule is not None and rule.allow_from is not None
               else policy.group_allow_from)
    if senders and message.sender not in senders and "*" not in senders:
        return Gate("drop", "sender is not allowed in this group")
    require = True if rule is None else rule.require_mention
    if require and not mentioned(policy, message):
        return Gate("context", "the bot was not mentioned")
    return Gate("allow")


def mentioned(policy: Policy, message: InboundMessage) -> bool:
    """Addressed to the bot: the platform says so (an ``@bot`` entity, a reply to the bot), or
    the text matches one of ``mention_patterns`` (case-insensitive regular expressions)."""
    if message.mentioned:
        return True
    for pattern in policy.mention_patterns:
        try:
            if re.search(pattern, message.text, re.IGNORECASE):
                return True
        except re.error:
            if pattern.lower() in message.text.lower():  # not a regex: a plain substring
                return True
    return False


def route(account: AccountConfig, message: InboundMessage, bindings: Sequence[Binding],
          default: str) -> str:
    """The agent a message goes to: a binding of the peer, then of the group, the group's own
    ``agent``, a binding of the account, the account's ``agent``, a binding of the channel,
    then the default agent."""
    channel, account_id = account.channel, account.account_id

    def binding(**want: str | None) -> str | None:
        for b in bindings:
            m = b.match
            if m.channel is not None and m.channel != channel:
                continue
            fields = {"account": m.account, "peer": m.peer, "group": m.group}
            if all(fields[k] == v for k, v in want.items()) and all(
                    fields[k] is None for k in fields if k not in want):
                return b.agent
        return None

    direct = message.chat_type == "direct"
    if direct:
        found = binding(peer=message.sender) or binding(account=account_id, peer=message.sender)
        if found:
            return found
    else:
        found = binding(group=message.conversation) or binding(
            account=account_id, group=message.conversation)
        if found:
            return found
        rule = account.policy.group(message.conversation)
        if rule is not None and rule.agent:
            return rule.agent
    return (binding(account=account_id) or account.policy.agent or binding()
            or default)


class GroupContext:
    """The newest messages of each group conversation (a chat, or a thread or topic of one)
    the bot was not addressed in (at most ``limit`` per conversation, ``MAX_CONVERSATIONS``
    conversations), prepended to the next message that is
    addressed to it, then forgotten. In memory: chatter is context, not a promise."""

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[str, ...], deque[str]] = OrderedDict()

    def keep(self, key: tuple[str, ...], message: InboundMessage, limit: int) -> None:
        if limit <= 0:
            return
        lines = self._kept.get(key)
        if lines is None or lines.maxlen != limit:
            lines = self._kept[key] = deque(lines or (), maxlen=limit)
        lines.append(f"{message.sender_name or message.sender}: {message.text}")
        self._kept.move_to_end(key)
        while len(self._kept) > MAX_CONVERSATIONS:
            self._kept.popitem(last=False)

    def render(self, key: tuple[str, ...], message: InboundMessage, group: bool) -> str:
        """The text the agent gets: the kept context (if any) and the message, labelled with
        its sender in groups; the context is used up."""
        text = f"{message.sender_name or message.sender}: {message.text}" if group \
            else message.text
        kept = self._kept.pop(key, None)
        if not kept:
            return text
        return "\n".join([HISTORY_MARKER, *kept, "", CURRENT_MARKER, text])
