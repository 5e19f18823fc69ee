"""OpenClaw's session-key grammar: parse, format, build and classify keys.

A session key names one conversation. Keys are lower-case, ``:``-separated segments; a segment
is never empty and holds no whitespace or control characters. The shapes (reference §4.1)::

    agent:<id>:<mainKey>                                    main
    agent:<id>:direct:<peer>                                direct  (dmScope per-peer)
    agent:<id>:<channel>:direct:<peer>                      direct  (per-channel-peer)
    agent:<id>:<channel>:<account>:direct:<peer>            direct  (per-account-channel-peer)
    agent:<id>:<channel>:group:<gid>[:thread:<t>|:topic:<t>]    group
    agent:<id>:<channel>:channel:<gid>[:thread:<t>|:topic:<t>]  channel
    agent:<id>:openai-user:<user>    agent:<id>:openai:<uuid>
    agent:<id>:openresponses-user:<user>    agent:<id>:openresponses:<uuid>
    agent:<id>:subagent:<uuid>
    cron:<job>[:run:<run>]    agent:<id>:cron:<job>[:run:<run>]
    hook:<uuid-or-name>       global       unknown

Users may pick their own keys, so an ``agent:<id>:...`` key that fits no named shape is kind
``other`` rather than an error. The shapes are told apart by segment count and a marker word at a
fixed position, so every key built from a :class:`SessionKey` parses back to the same value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from clawgate.errors import SessionKeyError

KeyKind = Literal[
    "main", "direct", "group", "channel", "openai-user", "openai", "openresponses-user",
    "openresponses", "cron", "hook", "subagent", "global", "unknown", "other",
]
DmScope = Literal["main", "per-peer", "per-channel-peer", "per-account-channel-peer"]
RowKind = Literal["global", "unknown", "group", "direct"]
Scope = Literal["main", "direct", "group"]

MAX_KEY_LENGTH = 512
DEFAULT_AGENT_ID = "main"
DEFAULT_MAIN_KEY = "main"

_AGENT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_AGENT_INVALID_RUN = re.compile(r"[^a-z0-9_-]+")

# Per kind: the fields a key of that kind must set, and the ones it may set. Every other field
# must stay None, so a value never carries data that its text form would silently drop.
_SHAPES: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "main": (frozenset({"agent_id", "main"}), frozenset()),
    "direct": (frozenset({"agent_id", "peer_id"}), frozenset({"channel", "account_id"})),
    "group": (frozenset({"agent_id", "channel", "group_id"}), frozenset({"thread_id", "topic_id"})),
    "channel": (
        frozenset({"agent_id", "channel", "group_id"}), frozenset({"thread_id", "topic_id"})
    ),
    "openai-user": (frozenset({"agent_id", "user"}), frozenset()),
    "openresponses-user": (frozenset({"agent_id", "user"}), frozenset()),
    "openai": (frozenset({"agent_id", "ref"}), frozenset()),
    "openresponses": (frozenset({"agent_id", "ref"}), frozenset()),
    "subagent": (frozenset({"agent_id", "ref"}), frozenset()),
    "cron": (frozenset({"job_id"}), frozenset({"agent_id", "run_id"})),
    "hook": (frozenset({"ref"}), frozenset()),
    "global": (frozenset(), frozenset()),
    "unknown": (frozenset(), frozenset()),
    "other": (frozenset({"agent_id", "rest"}), frozenset()),
}
_FIELDS = (
    "agent_id", "main", "channel", "account_id", "peer_id", "group_id", "thread_id", "topic_id",
    "user", "ref", "job_id", "run_id", "rest",
)
# Fields whose value may span several segments (the free-form tails).
_MULTI_SEGMENT = frozenset({"ref", "rest"})


@dataclass(frozen=True, slots=True)
class SessionKey:
    """A parsed session key. ``str(key)`` gives its canonical text.

    ``ref`` is the uuid (or hook name) of openai/openresponses/subagent/hook keys; ``main`` is the
    main-key name of a ``main`` key; ``rest`` is everything after ``agent:<id>:`` of an ``other``
    key. Construction validates, so a ``SessionKey`` always formats to a key ``parse`` accepts.
    """

    kind: KeyKind
    agent_id: str | None = None
    main: str | None = None
    channel: str | None = None
    account_id: str | None = None
    peer_id: str | None = None
    group_id: str | None = None
    thread_id: str | None = None
    topic_id: str | None = None
    user: str | None = None
    ref: str | None = None
    job_id: str | None = None
    run_id: str | None = None
    rest: str | None = None

    def __post_init__(self) -> None:
        shape = _SHAPES.get(self.kind)
        if shape is None:
            raise SessionKeyError(f"unknown session key kind {self.kind!r}")
        required, optional = shape
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None:
                if name in required:
                    raise SessionKeyError(f"a {self.kind} session key needs {name}")
                continue
            if name not in required and name not in optional:
                raise SessionKeyError(f"a {self.kind} session key has no {name}")
            if name == "agent_id":
                _check_agent_id(value)
            else:
                _check_value(name, value, multi=name in _MULTI_SEGMENT)
        if self.account_id is not None and self.channel is None:
            raise SessionKeyError("a direct session key with account_id needs channel")
        if self.thread_id is not None and self.topic_id is not None:
            raise SessionKeyError("a session key has a thread or a topic, not both")
        if self.kind == "other":
            named = _classify((self.rest or "").split(":"))
            if named is not None:
                raise SessionKeyError(
                    f"rest {self.rest!r} is a {named[0]} key; build it as kind {named[0]!r}"
                )
        text = ":".join(_segments(self))
        if len(text) > MAX_KEY_LENGTH:
            raise SessionKeyError(
                f"session key is {len(text)} characters long; the limit is {MAX_KEY_LENGTH}",
                session_key=text[:80],
            )

    def __str__(self) -> str:
        return ":".join(_segments(self))

    @property
    def scope(self) -> DmScope | None:
        """The dmScope a ``main`` or ``direct`` key was built for (None for other kinds)."""
        if self.kind == "main":
            return "main"
        if self.kind != "direct":
            return None
        if self.account_id is not None:
            return "per-account-channel-peer"
        return "per-channel-peer" if self.channel is not None else "per-peer"


def normalize_agent_id(raw: str | None) -> str:
    """Trim and lower-case an agent id; repair an invalid one (runs of invalid characters become
    ``-``, edge dashes go, at most 64 characters); an empty result is ``main``."""
    text = (raw or "").strip().lower()
    if _AGENT_ID.fullmatch(text):
        return text
    text = _AGENT_INVALID_RUN.sub("-", text).strip("-")
    # A valid id starts with [a-z0-9]; "_" survives the collapse, so strip it at the front too.
    text = text.lstrip("_-")[:64].rstrip("-")
    return text or DEFAULT_AGENT_ID


def parse(text: str) -> SessionKey:
    """Parse a session key; raise :class:`SessionKeyError` saying what is wrong.

    Keys are case-insensitive (OpenClaw stores them lower-cased), so ``text`` is lower-cased.
    """
    if not isinstance(text, str):
        raise SessionKeyError(f"session key must be a string, not {type(text).__name__}")
    return _parse(text)


# Memoized (a pure function; keys are frozen and invalid ones raise, so nothing wrong is kept):
# a turn parses its session's key several times (scope, routing, store), ~7 µs each.
@functools.lru_cache(maxsize=1024)  # a turn's repeats hit; ~400 kB when full
def _parse(text: str) -> SessionKey:
    if not text:
        raise SessionKeyError("session key is empty")
    if len(text) > MAX_KEY_LENGTH:
        raise SessionKeyError(
            f"session key is {len(text)} characters long; the limit is {MAX_KEY_LENGTH}",
            session_key=text[:80],
        )
    for i, ch in () if _clean(text) else enumerate(text):
        if ch.isspace() or not ch.isprintable():
            raise SessionKeyError(
                f"session key contains whitespace or a control character ({ch!r}) at "
                f"position {i}",
                session_key=text,
            )
    text = text.lower()
    segs = text.split(":")
    for i, seg in enumerate(segs):
        if not seg:
            raise SessionKeyError(
                f"session key has an empty segment at position {i} ('::' or an edge ':')",
                session_key=text,
            )
    head = segs[0]
    if head == "agent":
        if len(segs) < 3:
            raise SessionKeyError(
                "session key 'agent:<id>' needs a rest after the agent id", session_key=text
            )
        _check_agent_id(segs[1], text)
        named = _classify(segs[2:])
        if named is None:
            return _build(text, "other", agent_id=segs[1], rest=":".join(segs[2:]))
        kind, fields = named
        return _build(text, kind, agent_id=segs[1], **fields)
    if len(segs) == 1 and head in ("global", "unknown"):
        return _build(text, "global" if head == "global" else "unknown")
    if head == "cron":
        if len(segs) == 2:
            return _build(text, "cron", job_id=segs[1])
        if len(segs) == 4 and segs[2] == "run":
            return _build(text, "cron", job_id=segs[1], run_id=segs[3])
        raise SessionKeyError(
            "cron session keys are cron:<jobId> or cron:<jobId>:run:<runId>", session_key=text
        )
    if head == "hook":
        return _build(text, "hook", ref=":".join(segs[1:]))
    raise SessionKeyError(
        "session key must start with 'agent:<id>:' or be global, unknown, cron:<jobId> or "
        "hook:<id> (qualify() adds the agent prefix)",
        session_key=text,
    )


def format(key: SessionKey) -> str:  # shadows the builtin on purpose: parse/format is the pair
    """The canonical text of ``key`` (same as ``str(key)``)."""
    return str(key)


@functools.lru_cache(maxsize=4096)
def canonical(text: str) -> str:
    """``format(parse(text))``: validate a key and return its canonical (lower-case) text.

    Memoized (a pure function of its argument; invalid keys raise and are not cached): every
    store call canonicalizes its key, several times per turn for the same few sessions.
    """
    return str(parse(text))


@functools.lru_cache(maxsize=256)  # pure, and asked on every turn (is this the main session?)
def main_key(agent_id: str = DEFAULT_AGENT_ID, main: str = DEFAULT_MAIN_KEY) -> str:
    """``agent:<id>:<main>``, the agent's main session."""
    return str(SessionKey("main", agent_id=normalize_agent_id(agent_id), main=_norm(main, "main")))


def dm_key(
    agent_id: str,
    peer: str | None,
    scope: DmScope = "main",
    channel: str | None = None,
    account: str | None = None,
    main: str = DEFAULT_MAIN_KEY,
) -> str:
    """The key of a direct chat with ``peer`` under dmScope ``scope``.

    Like OpenClaw, an empty peer (or scope ``main``) gives the main key, a missing channel is
    ``unknown`` and a missing account ``default``.
    """
    peer_id = (peer or "").strip().lower()
    if scope == "main" or not peer_id:
        return main_key(agent_id, main)
    agent = normalize_agent_id(agent_id)
    if scope == "per-peer":
        return str(SessionKey("direct", agent_id=agent, peer_id=peer_id))
    ch = _norm(channel, "unknown")
    if scope == "per-channel-peer":
        return str(SessionKey("direct", agent_id=agent, channel=ch, peer_id=peer_id))
    if scope == "per-account-channel-peer":
        acct = _norm(account, "default")
        return str(
            SessionKey("direct", agent_id=agent, channel=ch, account_id=acct, peer_id=peer_id)
        )
    raise SessionKeyError(f"unknown dmScope {scope!r}")


def group_key(
    agent_id: str,
    channel: str | None,
    group_id: str | None,
    kind: Literal["group", "channel"] = "group",
    thread: str | None = None,
    topic: str | None = None,
) -> str:
    """The key of a group or channel room, optionally narrowed to a thread or forum topic."""
    if kind not in ("group", "channel"):
        raise SessionKeyError(f"group kind must be 'group' or 'channel', not {kind!r}")
    return str(
        SessionKey(
            kind,
            agent_id=normalize_agent_id(agent_id),
            channel=_norm(channel, "unknown"),
            group_id=_norm(group_id, "unknown"),
            thread_id=_norm(thread, None),
            topic_id=_norm(topic, None),
        )
    )


def openai_user_key(agent_id: str, user: str) -> str:
    """``agent:<id>:openai-user:<user>`` for the OpenAI HTTP API's ``user`` field."""
    return str(SessionKey("openai-user", agent_id=normalize_agent_id(agent_id), user=_req(user)))


def openresponses_user_key(agent_id: str, user: str) -> str:
    """``agent:<id>:openresponses-user:<user>`` for the OpenResponses API's ``user`` field."""
    return str(
        SessionKey("openresponses-user", agent_id=normalize_agent_id(agent_id), user=_req(user))
    )


def qualify(raw: str, agent_id: str, main: str = DEFAULT_MAIN_KEY) -> str:
    """Qualify a request's session key with the resolved agent.

    ``main`` (or the configured main key) becomes the agent's main key; ``agent:...``, ``global``,
    ``unknown``, ``cron:...`` and ``hook:...`` keys keep their meaning; anything else becomes
    ``agent:<agent_id>:<raw>``. The result is canonical; an invalid key raises SessionKeyError.
    """
    if not isinstance(raw, str):
        raise SessionKeyError(f"session key must be a string, not {type(raw).__name__}")
    text = raw.strip().lower()
    if not text:
        raise SessionKeyError("session key is empty")
    main_name = _norm(main, DEFAULT_MAIN_KEY) or DEFAULT_MAIN_KEY
    if text in ("main", main_name):
        return main_key(agent_id, main_name)
    if text.startswith(("agent:", "cron:", "hook:")) or text in ("global", "unknown"):
        return canonical(text)
    return canonical(f"agent:{normalize_agent_id(agent_id)}:{text}")


def row_kind(key: str, chat_type: str | None = None) -> RowKind:
    """The ``kind`` of a sessions.list row: global/unknown by key, ``group`` for group or channel
    chats (by chat type or key), else ``direct``."""
    if key == "global":
        return "global"
    if key == "unknown":
        return "unknown"
    if chat_type in ("group", "channel") or ":group:" in key or ":channel:" in key:
        return "group"
    return "direct"


def session_scope(key: str, main: str = DEFAULT_MAIN_KEY) -> Scope:
    """Who may read a session's conversation: ``"main"`` for an agent's main (private) session,
    ``"group"`` for a group or channel shared with others, ``"direct"`` for one peer, an API
    user, cron or a sub-agent. A global, unknown or malformed key counts as ``"group"``: when
    the audience is not known, private memory stays out."""
    try:
        parsed = parse(key)
    except SessionKeyError:
        return "group"
    if parsed.kind == "main":
        return "main" if parsed.main == (_norm(main, DEFAULT_MAIN_KEY) or "main") else "direct"
    if parsed.kind in ("group", "channel", "global", "unknown"):
        return "group"
    if parsed.kind == "other" and (":group:" in key or ":channel:" in key):
        return "group"  # a user-chosen key that still names a group: treat it as one
    return "direct"


def agent_of(key: str) -> str | None:
    """The agent id of an ``agent:<id>:...`` key, or None (no prefix, or not a valid id)."""
    segs = key.split(":", 2)
    if len(segs) == 3 and segs[0] == "agent" and segs[2] and _AGENT_ID.fullmatch(segs[1]):
        return segs[1]
    return None


def _classify(rest: list[str]) -> tuple[KeyKind, dict[str, str]] | None:
    """Name the shape of the segments after ``agent:<id>:``, or None when none fits."""
    n = len(rest)
    if n == 1:
        return "main", {"main": rest[0]}
    if n == 2:
        head, value = rest
        if head == "direct":
            return "direct", {"peer_id": value}
        if head == "openai-user":
            return "openai-user", {"user": value}
        if head == "openresponses-user":
            return "openresponses-user", {"user": value}
        if head == "openai":
            return "openai", {"ref": value}
        if head == "openresponses":
            return "openresponses", {"ref": value}
        if head == "subagent":
            return "subagent", {"ref": value}
        if head == "cron":
            return "cron", {"job_id": value}
        return None
    if n == 3:
        channel, marker, value = rest
        if marker == "direct":
            return "direct", {"channel": channel, "peer_id": value}
        if marker == "group":
            return "group", {"channel": channel, "group_id": value}
        if marker == "channel":
            return "channel", {"channel": channel, "group_id": value}
        return None
    if n == 4:
        if rest[2] == "direct":
            return "direct", {"channel": rest[0], "account_id": rest[1], "peer_id": rest[3]}
        if rest[0] == "cron" and rest[2] == "run":
            return "cron", {"job_id": rest[1], "run_id": rest[3]}
        return None
    if n == 5 and rest[1] in ("group", "channel") and rest[3] in ("thread", "topic"):
        kind: KeyKind = "group" if rest[1] == "group" else "channel"
        sub = "thread_id" if rest[3] == "thread" else "topic_id"
        return kind, {"channel": rest[0], "group_id": rest[2], sub: rest[4]}
    return None


def _segments(k: SessionKey) -> list[str]:
    """The segments of ``k``'s text form (fields are validated by then)."""
    kind = k.kind
    if kind in ("global", "unknown"):
        return [kind]
    if kind == "hook":
        return ["hook", str(k.ref)]
    if kind == "cron":
        prefix = ["agent", k.agent_id] if k.agent_id is not None else []
        suffix = ["run", k.run_id] if k.run_id is not None else []
        return [*prefix, "cron", str(k.job_id), *suffix]
    head = ["agent", str(k.agent_id)]
    if kind == "main":
        return [*head, str(k.main)]
    if kind == "direct":
        middle = [v for v in (k.channel, k.account_id) if v is not None]
        return [*head, *middle, "direct", str(k.peer_id)]
    if kind in ("group", "channel"):
        tail = (
            ["thread", k.thread_id] if k.thread_id is not None
            else ["topic", k.topic_id] if k.topic_id is not None
            else []
        )
        return [*head, str(k.channel), kind, str(k.group_id), *tail]
    if kind in ("openai-user", "openresponses-user"):
        return [*head, kind, str(k.user)]
    if kind in ("openai", "openresponses", "subagent"):
        return [*head, kind, str(k.ref)]
    return [*head, str(k.rest)]


def _build(text: str, kind: KeyKind, **fields: str) -> SessionKey:
    """Construct a parsed key, attaching the key text to any validation error."""
    try:
        return SessionKey(kind, **fields)
    except SessionKeyError as exc:
        raise SessionKeyError(str(exc), session_key=text) from None


def _check_agent_id(value: str, key: str | None = None) -> None:
    if not _AGENT_ID.fullmatch(value):
        raise SessionKeyError(
            f"invalid agent id {value!r} (must match [a-z0-9][a-z0-9_-]{{0,63}})",
            session_key=key,
        )


def _check_value(name: str, value: str, *, multi: bool) -> None:
    """A field is one segment (or, for ``multi`` fields, several): lower-case, non-empty, without
    whitespace, control characters or (single segments) ``:``."""
    if not isinstance(value, str):
        raise SessionKeyError(f"{name} must be a string, not {type(value).__name__}")
    if value != value.lower():
        raise SessionKeyError(f"{name} {value!r} must be lower-case")
    for seg in value.split(":") if multi else [value]:
        if not seg:
            raise SessionKeyError(f"{name} {value!r} has an empty segment")
        if ":" in seg:
            raise SessionKeyError(f"{name} {value!r} must not contain ':'")
        for ch in () if _clean(seg) else seg:
            if ch.isspace() or not ch.isprintable():
                raise SessionKeyError(
                    f"{name} {value!r} contains whitespace or a control character ({ch!r})"
                )


def _clean(text: str) -> bool:
    """No whitespace and no control character, checked in C: every whitespace character but
    the space is also unprintable (true of all of Unicode). The loops that name the culprit
    run only when this fails."""
    return text.isprintable() and " " not in text


def _norm(value: str | None, default: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text or default


def _req(value: str) -> str:
    text = (value or "").strip().lower()
    if not text:
        raise SessionKeyError("user must not be empty")
    return text
