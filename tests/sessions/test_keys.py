"""The session-key grammar: every shape, the builders, and round-trip properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawgate.errors import SessionKeyError
from clawgate.sessions import keys
from clawgate.sessions.keys import SessionKey, parse

SHAPES = [
    ("agent:main:main", SessionKey("main", agent_id="main", main="main")),
    ("agent:ops:work", SessionKey("main", agent_id="ops", main="work")),
    ("agent:main:direct:+15551234", SessionKey("direct", agent_id="main", peer_id="+15551234")),
    ("agent:main:telegram:direct:123",
     SessionKey("direct", agent_id="main", channel="telegram", peer_id="123")),
    ("agent:main:whatsapp:biz:direct:+1555",
     SessionKey("direct", agent_id="main", channel="whatsapp", account_id="biz",
                peer_id="+1555")),
    ("agent:main:telegram:group:-100123",
     SessionKey("group", agent_id="main", channel="telegram", group_id="-100123")),
    ("agent:main:telegram:group:-100123:topic:7",
     SessionKey("group", agent_id="main", channel="telegram", group_id="-100123",
                topic_id="7")),
    ("agent:main:discord:channel:42",
     SessionKey("channel", agent_id="main", channel="discord", group_id="42")),
    ("agent:main:slack:channel:c01:thread:1700.1",
     SessionKey("channel", agent_id="main", channel="slack", group_id="c01",
                thread_id="1700.1")),
    ("agent:main:openai-user:alice", SessionKey("openai-user", agent_id="main", user="alice")),
    ("agent:main:openai:8a1f", SessionKey("openai", agent_id="main", ref="8a1f")),
    ("agent:main:openresponses-user:bob",
     SessionKey("openresponses-user", agent_id="main", user="bob")),
    ("agent:main:openresponses:9b2e", SessionKey("openresponses", agent_id="main", ref="9b2e")),
    ("agent:main:subagent:77aa", SessionKey("subagent", agent_id="main", ref="77aa")),
    ("cron:nightly", SessionKey("cron", job_id="nightly")),
    ("cron:nightly:run:r1", SessionKey("cron", job_id="nightly", run_id="r1")),
    ("agent:main:cron:nightly", SessionKey("cron", agent_id="main", job_id="nightly")),
    ("agent:main:cron:nightly:run:r1",
     SessionKey("cron", agent_id="main", job_id="nightly", run_id="r1")),
    ("hook:0b5e", SessionKey("hook", ref="0b5e")),
    ("hook:gmail:inbox", SessionKey("hook", ref="gmail:inbox")),
    ("global", SessionKey("global")),
    ("unknown", SessionKey("unknown")),
    ("agent:main:explicit:model-run-1",
     SessionKey("other", agent_id="main", rest="explicit:model-run-1")),
    ("agent:main:main:heartbeat", SessionKey("other", agent_id="main", rest="main:heartbeat")),
]


@pytest.mark.parametrize(("text", "key"), SHAPES, ids=[t for t, _ in SHAPES])
def test_each_shape_parses_and_formats(text: str, key: SessionKey) -> None:
    assert parse(text) == key
    assert keys.format(key) == text
    assert str(key) == text


def test_parse_lowercases() -> None:
    assert str(parse("Agent:Main:Telegram:Direct:ABC")) == "agent:main:telegram:direct:abc"


def test_scope_of_direct_keys() -> None:
    assert parse("agent:a:main").scope == "main"
    assert parse("agent:a:direct:p").scope == "per-peer"
    assert parse("agent:a:tg:direct:p").scope == "per-channel-peer"
    assert parse("agent:a:tg:acct:direct:p").scope == "per-account-channel-peer"
    assert parse("agent:a:tg:group:g").scope is None


REFUSED = [
    ("", "empty"),
    ("agent:main:ma in", "whitespace"),
    ("agent:main:main\n", "whitespace"),
    ("agent:main:\x07", "control"),
    ("agent::main", "empty segment"),
    ("a::b", "empty segment"),
    ("agent:main:", "empty segment"),
    (":agent:main:main", "empty segment"),
    ("agent:", "empty segment"),
    ("agent:main", "needs a rest"),
    ("agent:_bad:main", "invalid agent id"),
    ("agent:" + "a" * 65 + ":main", "invalid agent id"),
    ("agent:main:" + "x" * 600, "limit is 512"),
    ("main", "qualify"),
    ("telegram:direct:1", "qualify"),
    ("cron:job:extra", "cron"),
]


@pytest.mark.parametrize(("text", "why"), REFUSED)
def test_refused_keys_say_why(text: str, why: str) -> None:
    with pytest.raises(SessionKeyError, match=why):
        parse(text)


def test_bad_key_values_are_refused() -> None:
    with pytest.raises(SessionKeyError, match="needs peer_id"):
        SessionKey("direct", agent_id="main")
    with pytest.raises(SessionKeyError, match="has no user"):
        SessionKey("main", agent_id="main", main="main", user="x")
    with pytest.raises(SessionKeyError, match="lower-case"):
        SessionKey("direct", agent_id="main", peer_id="Bob")
    with pytest.raises(SessionKeyError, match="must not contain ':'"):
        SessionKey("direct", agent_id="main", peer_id="a:b")
    with pytest.raises(SessionKeyError, match="not both"):
        SessionKey("group", agent_id="m", channel="c", group_id="g", thread_id="t", topic_id="u")
    with pytest.raises(SessionKeyError, match="kind 'direct'"):
        SessionKey("other", agent_id="main", rest="direct:bob")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("main", "main"), ("  Ops ", "ops"), ("Hello World!!", "hello-world"),
        ("_x", "x"), ("---", "main"), ("", "main"), ("a" * 80, "a" * 64), ("a.b..c", "a-b-c"),
        ("données", "donn-es"),
    ],
)
def test_normalize_agent_id(raw: str, expected: str) -> None:
    assert keys.normalize_agent_id(raw) == expected


@given(st.text(max_size=100))
def test_normalize_agent_id_is_always_valid_and_idempotent(raw: str) -> None:
    out = keys.normalize_agent_id(raw)
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", out)
    assert keys.normalize_agent_id(out) == out


def test_builders() -> None:
    assert keys.main_key("Ops") == "agent:ops:main"
    assert keys.main_key("ops", "Work") == "agent:ops:work"
    assert keys.dm_key("main", "+1555", "main") == "agent:main:main"
    assert keys.dm_key("main", "+1555", "per-peer") == "agent:main:direct:+1555"
    assert keys.dm_key("main", "U1", "per-channel-peer", "Slack") == "agent:main:slack:direct:u1"
    assert keys.dm_key("main", "u1", "per-channel-peer") == "agent:main:unknown:direct:u1"
    assert (keys.dm_key("main", "u1", "per-account-channel-peer", "slack")
            == "agent:main:slack:default:direct:u1")
    assert (keys.dm_key("main", "u1", "per-account-channel-peer", "slack", "T9")
            == "agent:main:slack:t9:direct:u1")
    assert keys.dm_key("main", "  ", "per-peer", main="home") == "agent:main:home"
    assert keys.group_key("main", "telegram", "-100") == "agent:main:telegram:group:-100"
    assert (keys.group_key("main", "slack", "C1", "channel", thread="17.2")
            == "agent:main:slack:channel:c1:thread:17.2")
    assert (keys.group_key("main", "telegram", "-100", topic="3")
            == "agent:main:telegram:group:-100:topic:3")
    assert keys.openai_user_key("Main", "Alice") == "agent:main:openai-user:alice"
    assert keys.openresponses_user_key("main", "Bob") == "agent:main:openresponses-user:bob"


def test_builders_refuse_what_the_grammar_cannot_hold() -> None:
    with pytest.raises(SessionKeyError, match="whitespace"):
        keys.openai_user_key("main", "John Smith")
    with pytest.raises(SessionKeyError, match="empty"):
        keys.openai_user_key("main", " ")
    with pytest.raises(SessionKeyError, match="not both"):
        keys.group_key("main", "tg", "1", thread="a", topic="b")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("main", "agent:ops:work"),  # "main" means the main key, whatever it is named
        ("work", "agent:ops:work"),  # the configured main key
        ("agent:other:main", "agent:other:main"),
        ("Telegram:Group:1", "agent:ops:telegram:group:1"),
        ("global", "global"),
        ("unknown", "unknown"),
        ("cron:nightly", "cron:nightly"),
        ("hook:abc", "hook:abc"),
        ("my-notes", "agent:ops:my-notes"),
    ],
)
def test_qualify(raw: str, expected: str) -> None:
    assert keys.qualify(raw, "Ops", main="work") == expected


def test_qualify_refuses_bad_keys() -> None:
    with pytest.raises(SessionKeyError, match="empty"):
        keys.qualify("  ", "main")
    with pytest.raises(SessionKeyError, match="empty segment"):
        keys.qualify("a::b", "main")


@pytest.mark.parametrize(
    ("key", "chat_type", "kind"),
    [
        ("global", None, "global"),
        ("unknown", None, "unknown"),
        ("agent:main:tg:group:1", None, "group"),
        ("agent:main:slack:channel:1", None, "group"),
        ("agent:main:main", "group", "group"),
        ("agent:main:main", "channel", "group"),
        ("agent:main:main", "direct", "direct"),
        ("agent:main:tg:direct:1", None, "direct"),
    ],
)
def test_row_kind(key: str, chat_type: str | None, kind: str) -> None:
    assert keys.row_kind(key, chat_type) == kind


def test_agent_of() -> None:
    assert keys.agent_of("agent:ops:main") == "ops"
    assert keys.agent_of("cron:x") is None
    assert keys.agent_of("global") is None
    assert keys.agent_of("agent:ops") is None


# -- properties ------------------------------------------------------------------------------

_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_.+@#=éßжø"
seg = st.text(alphabet=_CHARS, min_size=1, max_size=12)
agent = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,11}", fullmatch=True)
multi = st.lists(seg, min_size=1, max_size=3).map(":".join)


def _key_strategy() -> st.SearchStrategy[SessionKey]:
    opt = st.none() | seg
    return st.one_of(
        st.builds(lambda a, m: SessionKey("main", agent_id=a, main=m), agent, seg),
        st.builds(lambda a, p: SessionKey("direct", agent_id=a, peer_id=p), agent, seg),
        st.builds(lambda a, c, p: SessionKey("direct", agent_id=a, channel=c, peer_id=p),
                  agent, seg, seg),
        st.builds(lambda a, c, ac, p: SessionKey("direct", agent_id=a, channel=c, account_id=ac,
                                                 peer_id=p), agent, seg, seg, seg),
        st.builds(
            lambda k, a, c, g, t, which: SessionKey(
                k, agent_id=a, channel=c, group_id=g,
                thread_id=t if which == "thread" else None,
                topic_id=t if which == "topic" else None,
            ),
            st.sampled_from(["group", "channel"]), agent, seg, seg, opt,
            st.sampled_from(["thread", "topic"]),
        ),
        st.builds(lambda k, a, u: SessionKey(k, agent_id=a, user=u),
                  st.sampled_from(["openai-user", "openresponses-user"]), agent, seg),
        st.builds(lambda k, a, r: SessionKey(k, agent_id=a, ref=r),
                  st.sampled_from(["openai", "openresponses", "subagent"]), agent, seg),
        st.builds(lambda a, j, r: SessionKey("cron", agent_id=a, job_id=j, run_id=r),
                  st.none() | agent, seg, opt),
        st.builds(lambda r: SessionKey("hook", ref=r), multi),
        st.sampled_from([SessionKey("global"), SessionKey("unknown")]),
    )


@given(_key_strategy())
def test_parse_format_round_trip(key: SessionKey) -> None:
    text = keys.format(key)
    assert parse(text) == key
    assert keys.format(parse(text)) == text


@given(agent, st.lists(seg, min_size=1, max_size=7))
def test_any_agent_key_parses_and_formats_back(agent_id: str, rest: list[str]) -> None:
    text = ":".join(["agent", agent_id, *rest])
    assert keys.format(parse(text)) == text


@given(st.lists(seg, min_size=1, max_size=5), st.integers(0, 4),
       st.sampled_from([" ", "\t", "\n", "\x00", "\x1b", "\u2028", "\u00a0"]))
def test_whitespace_and_control_chars_are_refused(
    rest: list[str], at: int, bad: str
) -> None:
    rest[at % len(rest)] += bad
    with pytest.raises(SessionKeyError, match="whitespace or a control character"):
        parse(":".join(["agent", "main", *rest]))


@given(st.lists(seg, min_size=2, max_size=5), st.integers(0, 4))
def test_empty_segments_are_refused(rest: list[str], at: int) -> None:
    rest[at % len(rest)] = ""
    with pytest.raises(SessionKeyError, match="empty segment"):
        parse(":".join(["agent", "main", *rest]))


@given(st.from_regex(r"[_-][a-z0-9_-]{0,10}|[a-z0-9][a-z0-9_-]{64,70}|[a-z]*[.@+][a-z]*",
                     fullmatch=True))
def test_invalid_agent_ids_are_refused(bad_agent: str) -> None:
    with pytest.raises(SessionKeyError, match="invalid agent id"):
        parse(f"agent:{bad_agent}:main")


@given(st.integers(513, 2000))
def test_overlong_keys_are_refused(n: int) -> None:
    with pytest.raises(SessionKeyError, match="limit is 512"):
        parse("agent:main:" + "x" * (n - len("agent:main:")))
