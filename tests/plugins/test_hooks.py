"""Hook specs and the generic caller: modes, ordering, contained failures, registration checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from clawgate.errors import HookError, RegistrationError
from clawgate.plugins.hooks import SPECS, HookCaller, HookHandler, HookSpec, make_handler

pytestmark = pytest.mark.anyio

TURN = {"session_key": "agent:main:main", "agent_id": "main"}


def handler(plugin_id: str, hook: str, fn: Callable[..., Any], *, priority: int = 0,
            timeout: float | None = None, order: list[int] | None = None) -> HookHandler:
    counter = order if order is not None else [0]
    counter[0] += 1
    return make_handler(plugin_id, hook, fn, priority=priority, timeout_s=timeout,
                        order=counter[0])


# -- observe ------------------------------------------------------------------------------------


async def test_observe_runs_handlers_concurrently_and_ignores_results() -> None:
    started: list[str] = []
    both_started = asyncio.Event()

    def make(name: str) -> Callable[..., Any]:
        async def fn(session_key: str, status: str) -> str:
            started.append(name)
            if len(started) == 2:
                both_started.set()
            # each handler waits for the other to have started: sequential running would hang
            await both_started.wait()
            return "ignored"
        return fn

    caller = HookCaller([handler("a", "agent_end", make("a"), timeout=5),
                         handler("b", "agent_end", make("b"), timeout=5)])
    result = await caller.call("agent_end", **TURN, run_id="r", status="ok", text="t", usage=None)
    assert sorted(started) == ["a", "b"]
    assert result.failures == ()
    assert dict(result.values) == {}


async def test_observe_sync_and_async_handlers_receive_only_what_they_ask() -> None:
    seen: dict[str, Any] = {}

    def sync_fn(session_key: str) -> None:
        seen["sync"] = session_key

    async def async_fn(status: str, **rest: Any) -> None:
        seen["async"] = (status, sorted(rest))

    caller = HookCaller([handler("a", "agent_end", sync_fn), handler("b", "agent_end", async_fn)])
    await caller.call("agent_end", **TURN, run_id="r", status="ok", text="t", usage=None)
    assert seen == {"sync": "agent:main:main",
                    "async": ("ok", ["agent_id", "run_id", "session_key", "text", "usage"])}


# -- modify -------------------------------------------------------------------------------------


async def test_modify_merges_sequentially_in_priority_order() -> None:
    order: list[int] = [0]

    def low(text: str) -> dict[str, str]:
        return {"text": text + " [low]"}

    async def high(text: str) -> dict[str, str]:
        return {"text": text + " [high]"}

    def middle(text: str) -> None:
        return None  # no change

    def same_priority_later(text: str) -> dict[str, str]:
        return {"text": text + " [later]"}

    caller = HookCaller([
        handler("low", "message_sending", low, priority=-5, order=order),
        handler("later", "message_sending", same_priority_later, priority=10, order=order),
        handler("mid", "message_sending", middle, order=order),
        handler("high", "message_sending", high, priority=10, order=order),
    ])
    # equal priorities keep registration order: "later" was registered before "high"
    assert [h.plugin_id for h in caller.handlers("message_sending")] == [
        "later", "high", "mid", "low"]
    result = await caller.call("message_sending", **TURN, text="reply")
    assert dict(result.values) == {"text": "reply [later] [high] [low]"}
    assert result.failures == ()


async def test_modify_refuses_fields_outside_the_spec_and_non_dicts() -> None:
    def sneaky(model: str) -> dict[str, str]:
        return {"model": "openai/gpt-5", "agent_id": "root"}

    def wrong(model: str) -> str:
        return "not a dict"

    caller = HookCaller([handler("sneaky", "before_model_resolve", sneaky),
                         handler("wrong", "before_model_resolve", wrong)])
    result = await caller.call("before_model_resolve", **TURN, model="echo/echo")
    assert dict(result.values) == {"model": "openai/gpt-5"}
    assert [f.plugin_id for f in result.failures] == ["sneaky", "wrong"]
    assert "cannot change ['agent_id']" in result.failures[0].error
    assert "returned str" in result.failures[1].error


async def test_modify_without_handlers_returns_the_input() -> None:
    result = await HookCaller([]).call("before_prompt_build", **TURN, system_prompt="s",
                                       messages=[], tools=[])
    assert dict(result.values) == {"system_prompt": "s", "messages": []}


# -- claim --------------------------------------------------------------------------------------


async def test_claim_first_handled_wins_and_stops() -> None:
    calls: list[str] = []

    def passes(message: str) -> dict[str, bool]:
        calls.append("passes")
        return {"handled": False}

    async def takes(message: str) -> dict[str, Any]:
        calls.append("takes")
        return {"handled": True, "reply": message.upper()}

    def never(message: str) -> dict[str, bool]:
        calls.append("never")
        return {"handled": True}

    caller = HookCaller([handler("p", "inbound_claim", passes, priority=3),
                         handler("t", "inbound_claim", takes, priority=2),
                         handler("n", "inbound_claim", never, priority=1)])
    result = await caller.call("inbound_claim", session_key="k", message="hi", channel="c")
    assert result.claimed_by == "t"
    assert result.claim == {"handled": True, "reply": "HI"}
    assert calls == ["passes", "takes"]


async def test_claim_nobody_handles() -> None:
    caller = HookCaller([handler("p", "inbound_claim", lambda message: None)])
    result = await caller.call("inbound_claim", session_key="k", message="hi", channel="c")
    assert result.claimed_by is None and result.claim is None


# -- gate ---------------------------------------------------------------------------------------


async def test_gate_block_stops_the_chain() -> None:
    calls: list[str] = []

    def allow(tool: str) -> dict[str, bool]:
        calls.append("allow")
        return {"block": False}

    def block(tool: str) -> dict[str, Any]:
        calls.append("block")
        return {"block": True, "reason": f"{tool} is not allowed"}

    def never(tool: str) -> None:
        calls.append("never")

    caller = HookCaller([handler("a", "before_tool_call", allow, priority=2),
                         handler("b", "before_tool_call", block, priority=1),
                         handler("c", "before_tool_call", never)])
    result = await caller.call("before_tool_call", **TURN, tool="shell", arguments={})
    assert result.blocked and result.blocked_by == "b"
    assert result.reason == "shell is not allowed"
    assert calls == ["allow", "block"]


async def test_gate_block_without_reason_names_the_plugin() -> None:
    caller = HookCaller([handler("guard", "before_tool_call", lambda: {"block": True})])
    result = await caller.call("before_tool_call", **TURN, tool="x", arguments={})
    assert result.reason == "blocked by plugin 'guard'"


async def test_gate_allows_when_nobody_blocks() -> None:
    caller = HookCaller([handler("a", "before_tool_call", lambda: None)])
    result = await caller.call("before_tool_call", **TURN, tool="x", arguments={})
    assert not result.blocked and result.failures == ()


# -- failures -----------------------------------------------------------------------------------


async def test_fail_open_exception_is_skipped_and_recorded() -> None:
    def broken(text: str) -> dict[str, str]:
        raise RuntimeError("plugin bug")

    async def fine(text: str) -> dict[str, str]:
        return {"text": text + "!"}

    caller = HookCaller([handler("broken", "message_sending", broken, priority=1),
                         handler("fine", "message_sending", fine)])
    result = await caller.call("message_sending", **TURN, text="hi")
    assert dict(result.values) == {"text": "hi!"}
    (failure,) = result.failures
    assert (failure.plugin_id, failure.hook) == ("broken", "message_sending")
    assert "RuntimeError: plugin bug" in failure.error
    assert caller.failures_total == 1


async def test_fail_open_exception_in_observe_does_not_stop_others() -> None:
    seen: list[str] = []

    async def broken(session_key: str) -> None:
        raise ValueError("nope")

    caller = HookCaller([handler("broken", "session_start", broken),
                         handler("ok", "session_start", lambda session_key: seen.append("ok"))])
    result = await caller.call("session_start", **TURN)
    assert seen == ["ok"]
    assert [f.plugin_id for f in result.failures] == ["broken"]


async def test_timeout_is_contained() -> None:
    async def hangs(text: str) -> dict[str, str]:
        await asyncio.Event().wait()
        return {"text": "never"}

    def after(text: str) -> dict[str, str]:
        return {"text": text + " ok"}

    caller = HookCaller([handler("slow", "message_sending", hangs, priority=1, timeout=0.05),
                         handler("after", "message_sending", after)])
    result = await caller.call("message_sending", **TURN, text="hi")
    assert dict(result.values) == {"text": "hi ok"}
    (failure,) = result.failures
    assert failure.plugin_id == "slow" and "timed out after 0.05 s" in failure.error


async def test_fail_closed_gate_blocks_when_a_handler_raises() -> None:
    calls: list[str] = []

    def broken(tool: str) -> None:
        raise RuntimeError("policy backend down")

    caller = HookCaller([handler("policy", "before_tool_call", broken, priority=1),
                         handler("later", "before_tool_call", lambda: calls.append("later"))])
    result = await caller.call("before_tool_call", **TURN, tool="shell", arguments={})
    assert result.blocked_by == "policy"
    assert "policy backend down" in (result.reason or "")
    assert len(result.failures) == 1
    assert calls == []


async def test_fail_closed_gate_blocks_on_timeout() -> None:
    async def hangs(tool: str) -> None:
        await asyncio.Event().wait()

    caller = HookCaller([handler("policy", "before_tool_call", hangs, timeout=0.05)])
    result = await caller.call("before_tool_call", **TURN, tool="shell", arguments={})
    assert result.blocked_by == "policy"
    assert "timed out" in (result.reason or "")


async def test_fail_closed_non_gate_raises_hook_error(monkeypatch: pytest.MonkeyPatch) -> None:
    strict = HookSpec("strict_modify", ("text",), "modify", 1, fail="closed", fields=("text",))
    specs = {**SPECS, "strict_modify": strict}

    def broken(text: str) -> None:
        raise RuntimeError("bad")

    caller = HookCaller([HookHandler("p", "strict_modify", broken, 0, 1, 0, ("text",))],
                        specs=specs)
    with pytest.raises(HookError) as caught:
        await caller.call("strict_modify", text="x")
    assert (caught.value.hook, caught.value.plugin_id) == ("strict_modify", "p")


async def test_call_without_a_required_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="without"):
        await HookCaller([]).call("agent_end", session_key="k")


# -- registration checks ------------------------------------------------------------------------


def test_unknown_hook_name_fails_at_registration_naming_the_plugin() -> None:
    with pytest.raises(RegistrationError) as caught:
        make_handler("my_plugin", "before_tool_cal", lambda: None, priority=0, timeout_s=None,
                     order=0)
    assert caught.value.plugin_id == "my_plugin"
    assert "my_plugin" in str(caught.value) and "before_tool_cal" in str(caught.value)


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (lambda session_key, mood: None, "asks for 'mood'"),
        (lambda *args: None, "keyword parameters"),
        (lambda session_key, /: None, "keyword parameters"),
        ("not callable", "not callable"),
    ],
)
def test_bad_handler_signature_fails_at_registration(fn: Any, words: str) -> None:
    with pytest.raises(RegistrationError) as caught:
        make_handler("my_plugin", "session_start", fn, priority=0, timeout_s=None, order=0)
    assert words in str(caught.value)
    assert "my_plugin" in str(caught.value)


def test_optional_unknown_parameter_is_allowed_and_not_passed() -> None:
    h = make_handler("p", "session_start", lambda session_key, extra=1: None, priority=0,
                     timeout_s=None, order=0)
    assert h.wants == ("session_key",)
    assert h.kwargs({"session_key": "k", "agent_id": "a"}) == {"session_key": "k"}


@pytest.mark.parametrize("timeout", [0, -1, 601])
def test_timeout_out_of_range_is_refused(timeout: float) -> None:
    with pytest.raises(RegistrationError, match="timeout"):
        make_handler("p", "session_start", lambda: None, priority=0, timeout_s=timeout, order=0)


def test_default_timeout_comes_from_the_spec() -> None:
    h = make_handler("p", "gateway_stop", lambda: None, priority=0, timeout_s=None, order=0)
    assert h.timeout_s == SPECS["gateway_stop"].timeout_s


def test_every_hook_spec_is_documented_and_consistent() -> None:
    assert SPECS
    for name, spec in SPECS.items():
        assert spec.name == name
        assert spec.doc.strip(), f"hook {name} has no doc"
        assert spec.mode in ("observe", "modify", "claim", "gate")
        assert len(set(spec.params)) == len(spec.params)
        assert set(spec.fields) <= set(spec.params), name
        assert bool(spec.fields) == (spec.mode == "modify"), name
