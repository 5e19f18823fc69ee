"""Session compaction through real engine turns on the loopback OpenAI fake: the memory flush
first (its tool call writes a memory file on disk), the summary in the next prompt, the full
transcript kept — on the proactive path (thresholds) and the reactive one (a context-length
error), once per cycle also across a restart, skipped on a read-only workspace or without a
memory plugin, and a failing summary call that leaves the session usable and says why."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from clawgate.agents.budget import message_tokens, prompt_tokens
from clawgate.agents.summary import SILENT_TOKEN
from clawgate.agents.turn import Submission
from tests.agents.compaction_support import (
    compaction_events,
    contents,
    daily_log,
    start,
    tool_names,
    turn,
    words,
)
from tests.agents.conftest import MAIN, Harness
from tests.support.mock_openai import Fail, MockOpenAI, RecordedRequest, Reply, call_tool

pytestmark = pytest.mark.anyio
Factory = Callable[..., Awaitable[Harness]]
CONTEXT_ERROR = Fail(400, "This model's maximum context length is 8000 tokens",
                     code="context_length_exceeded")


@pytest.fixture
async def make_runtime(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Factory]:
    """``await make_runtime(mock, state=..., **options)``: a started runtime on the fake (see
    ``compaction_support.settings``); all of them are closed after the test."""
    built: list[Harness] = []

    async def factory(mock: MockOpenAI, *, state: Path | None = None,
                      **options: Any) -> Harness:
        harness = await start(state or tmp_path / "state", mock, **options)
        built.append(harness)
        return harness

    yield factory
    for harness in reversed(built):
        await harness.close()


def estimate(request: RecordedRequest, reply: str) -> int:
    """The engine's estimate of the next prompt: what ``request`` sent plus its reply."""
    messages = request.body["messages"]
    system = messages[0]["content"]
    return prompt_tokens(system, messages[1:], request.body.get("tools") or ()) + \
        message_tokens({"role": "assistant", "content": reply})


def sized(target: int, request: RecordedRequest, reply: str) -> int:
    """Tokens of the next user message that bring the estimate to about ``target``."""
    return max(50, target - estimate(request, reply))


def append_call(text: str) -> Any:
    return call_tool("memory_append", orjson.dumps({"text": text}).decode())


async def two_turns(h: Harness, mock: MockOpenAI) -> str:
    """Two echoed turns of ~450 tokens each way; returns the last reply."""
    for word in ("alpha", "bravo"):
        result, _ = await turn(h, words(word, 450))
        assert result.status == "ok"
    return str(result.text)


async def test_proactive_flush_then_compaction_keeps_the_transcript(make_runtime, mock_openai):
    h = await make_runtime(mock_openai)
    last = await two_turns(h, mock_openai)
    big = words("charlie", sized(6_400, mock_openai.requests[-1], last))  # past 6,000
    mock_openai.plan(append_call("- The user talked about alpha and bravo."),
                     Reply(SILENT_TOKEN), Reply("SUMMARY: alpha then bravo."),
                     Reply("final answer"))

    result, events = await turn(h, big)

    assert (result.status, result.text) == ("ok", "final answer")
    flush, flush_end, summary, final = mock_openai.requests[-4:]
    # 1. The flush: a silent turn with the flush prompt, the memory tools, the newest context.
    assert contents(flush)[-1][0] == "user" and "memory flush" in contents(flush)[-1][1]
    assert "silent pre-compaction memory flush" in contents(flush)[0][1]
    assert "memory_append" in tool_names(flush)
    assert "charlie" in str(flush.body["messages"])
    assert "The user talked about alpha and bravo." in daily_log(h).read_text()
    assert contents(flush_end)[-1][0] == "tool"
    # 2. The summary call: the older turns as text, not the kept newest turn.
    assert "working summary" in contents(summary)[0][1]
    assert "alpha alpha" in contents(summary)[1][1] and "charlie" not in contents(summary)[1][1]
    # 3. The turn: the summary, then the kept turn; the summarised text is gone from it.
    sent = contents(final)[1:]
    assert sent[0][0] == "user" and "SUMMARY: alpha then bravo." in sent[0][1]
    assert sent[1] == ("user", big)
    assert "alpha alpha" not in str(final.body["messages"])
    # Events: flush before the compaction; the silent turn streamed nothing to the surface.
    assert [(e["phase"], e.get("status")) for e in compaction_events(events)] == [
        ("flush", "start"), ("flush", "ok"), ("start", None), ("end", None)]
    end = compaction_events(events)[-1]
    assert end["compacted"] is True and end["tokensAfter"] < end["tokensBefore"]
    streamed = "".join(str(e.data.get("delta", "")) for e in events if e.stream == "assistant")
    assert streamed == "final answer"
    assert not [e for e in events if e.stream == "tool"]
    # Nothing was deleted: every message is in the store, the flush marked silent.
    stored = await h.store.transcript(MAIN)
    roles = [(m.role, bool((m.extra or {}).get("silent")),
              bool((m.extra or {}).get("compaction"))) for m in stored]
    assert roles == [("user", False, False), ("assistant", False, False)] * 2 + [
        ("user", False, False), ("user", True, False), ("assistant", True, False),
        ("tool", True, False), ("assistant", True, False), ("system", False, True),
        ("assistant", False, False)]
    entry = stored[9]
    assert entry.content == "SUMMARY: alpha then bravo."
    assert entry.extra["compaction"]["firstKeptId"] == stored[4].id
    assert entry.extra["compaction"]["trigger"] == "threshold"
    exported = [orjson.loads(line) for line in (await h.store.export_jsonl(MAIN)).splitlines()]
    [compaction] = [e for e in exported if e["type"] == "compaction"]
    assert compaction["summary"] == "SUMMARY: alpha then bravo."
    assert compaction["firstKeptEntryId"] == f"{stored[4].id:08x}"


async def test_flush_at_the_soft_threshold_runs_once_per_cycle_across_a_restart(
        make_runtime, mock_openai, tmp_path):
    state = tmp_path / "state"
    h = await make_runtime(mock_openai, state=state)
    last = await two_turns(h, mock_openai)
    middle = words("delta", sized(5_500, mock_openai.requests[-1], last))  # in [5,000, 6,000)
    mock_openai.plan(append_call("- delta matters"), Reply(SILENT_TOKEN), Reply("noted"))

    result, events = await turn(h, middle)

    assert result.text == "noted"
    assert [e.get("status") for e in compaction_events(events)] == ["start", "ok"]  # no compaction
    assert "delta matters" in daily_log(h).read_text()
    assert contents(mock_openai.requests[-1])[-1] == ("user", middle)  # the turn saw it all
    await h.close()

    h = await make_runtime(mock_openai, state=state)  # a restart: the flush is on record
    push = words("echo", sized(6_500, mock_openai.requests[-1], "noted"))
    # ~4,900 tokens to summarise do not fit one summary call of this small window: two
    # stages, the second updating the first's summary.
    mock_openai.plan(Reply("SUMMARY one"), Reply("SUMMARY two"), Reply("after the restart"))
    sent = len(mock_openai.requests)

    result, events = await turn(h, push)

    assert result.text == "after the restart"
    first, second, final = mock_openai.requests[sent:]  # no second flush
    assert "delta" not in contents(first)[1][1] and "alpha alpha" in contents(first)[1][1]
    assert "<summary>\nSUMMARY one\n</summary>" in contents(second)[1][1]
    assert "delta delta" in contents(second)[1][1]
    flush = [e for e in compaction_events(events) if e["phase"] == "flush"]
    assert flush == [{"phase": "flush", "status": "skipped",
                      "reason": "the memory flush of this compaction cycle already ran"}]
    assert "SUMMARY two" in contents(final)[1][1] and contents(final)[-1] == ("user", push)
    # A new cycle began with the compaction: the next crossing flushes again.
    cycle = await h.store.context(MAIN, 100)
    assert not await h.store.flushed(MAIN, cycle.session_id, cycle.entry.seq)


async def test_a_context_length_error_flushes_compacts_and_retries(make_runtime, mock_openai):
    h = await make_runtime(mock_openai, window=200_000)  # no threshold is anywhere near
    await two_turns(h, mock_openai)
    mock_openai.plan(CONTEXT_ERROR, append_call("- saved before the overflow"),
                     Reply(SILENT_TOKEN), Reply("SUMMARY after overflow"), Reply("recovered"))

    result, events = await turn(h, "one more question")

    assert (result.status, result.text) == ("ok", "recovered")
    failed, flush, _, summary, retry = mock_openai.requests[-5:]
    assert "memory flush" in contents(flush)[-1][1]
    assert "working summary" in contents(summary)[0][1]
    assert "saved before the overflow" in daily_log(h).read_text()
    sent = contents(retry)[1:]
    assert "SUMMARY after overflow" in sent[0][1] and sent[-1] == ("user", "one more question")
    assert len(str(retry.body["messages"])) < len(str(failed.body["messages"]))
    phases = [(e["phase"], e.get("status"), e.get("trigger")) for e in compaction_events(events)]
    assert phases == [("flush", "start", None), ("flush", "ok", None),
                      ("start", None, "overflow"), ("end", None, "overflow")]
    assert compaction_events(events)[-1]["willRetry"] is True
    assert h.engine.metrics.get("provider_failovers_total") == 0


async def test_still_too_long_after_compacting_fails_the_turn_clearly(make_runtime, mock_openai):
    h = await make_runtime(mock_openai, window=200_000)
    await two_turns(h, mock_openai)
    mock_openai.plan(CONTEXT_ERROR, Reply(SILENT_TOKEN), Reply("SUMMARY"), CONTEXT_ERROR)

    result, _ = await turn(h, "huge")

    assert result.status == "error"
    assert "maximum context length" in result.error and "still too long after compacting" \
        in result.error
    followed, _ = await turn(h, "and now?")  # the session stays usable (compacted)
    assert followed.status == "ok" and "SUMMARY" in contents(mock_openai.requests[-1])[1][1]


async def test_a_failing_summary_call_leaves_the_session_usable_and_says_why(
        make_runtime, mock_openai, caplog):
    h = await make_runtime(mock_openai)
    last = await two_turns(h, mock_openai)
    big = words("charlie", sized(6_400, mock_openai.requests[-1], last))
    mock_openai.plan(Reply(SILENT_TOKEN), Fail(400, "summariser refused the request"),
                     Reply("answered anyway"))

    result, events = await turn(h, big)

    assert (result.status, result.text) == ("ok", "answered anyway")
    end = compaction_events(events)[-1]
    assert end["phase"] == "end" and end["compacted"] is False
    assert "summary call failed" in end["error"] and "summariser refused" in end["error"]
    assert any("summary call failed" in r.getMessage() for r in caplog.records)
    stored = await h.store.transcript(MAIN)
    assert not [m for m in stored if m.role == "system"]  # no compaction entry
    assert "alpha alpha" in str(mock_openai.requests[-1].body["messages"])  # all still sent
    assert [m.content for m in stored if m.role == "user" and not m.extra][:3] == [
        words("alpha", 450), words("bravo", 450), big]
    # The next turn tries again (the flush of this cycle ran already): alpha to charlie,
    # ~5,800 tokens, take two summary calls of this small window.
    mock_openai.plan(Reply("SUMMARY part"), Reply("SUMMARY at last"), Reply("fine"))
    again, _ = await turn(h, "still there?")
    assert again.text == "fine" and "SUMMARY at last" in contents(mock_openai.requests[-1])[1][1]


async def test_a_read_only_workspace_compacts_without_a_flush(make_runtime, mock_openai):
    h = await make_runtime(mock_openai, agent={"workspace_access": "ro"})
    mock_openai.plan(append_call("- should not land"))
    refused, _ = await turn(h, "remember this")  # the tool itself refuses too
    tool = [m for m in await h.store.transcript(MAIN) if m.role == "tool"]
    assert tool[0].content.startswith("error: the workspace is read-only")
    assert refused.status == "ok"
    big = words("charlie", sized(6_400, mock_openai.requests[-1], refused.text))
    mock_openai.plan(Reply("SUMMARY ro"), Reply("done"))
    sent = len(mock_openai.requests)

    result, events = await turn(h, big)

    assert result.text == "done" and len(mock_openai.requests) == sent + 2
    [skipped] = [e for e in compaction_events(events) if e["phase"] == "flush"]
    assert skipped["status"] == "skipped" and "read-only" in skipped["reason"]
    assert compaction_events(events)[-1]["compacted"] is True
    assert not daily_log(h).exists()


async def test_without_a_memory_plugin_the_flush_is_skipped(make_runtime, mock_openai):
    h = await make_runtime(mock_openai, plugins={"slots": {"memory": "none"}})
    last = await two_turns(h, mock_openai)
    big = words("charlie", sized(6_400, mock_openai.requests[-1], last))
    mock_openai.plan(Reply("SUMMARY none"), Reply("done"))

    _, events = await turn(h, big)

    [skipped] = [e for e in compaction_events(events) if e["phase"] == "flush"]
    assert skipped == {"phase": "flush", "status": "skipped",
                       "reason": "no memory plugin is loaded"}
    assert "memory_search" not in str(mock_openai.requests[-1].body["messages"])


async def test_compact_command_with_instructions(make_runtime, mock_openai):
    h = await make_runtime(mock_openai, window=200_000)
    alone = await h.engine.submit(Submission("/compact"))
    assert (await alone.result()).text == "⚙️ Compaction skipped: no sessionId"
    await two_turns(h, mock_openai)
    mock_openai.plan(Reply(SILENT_TOKEN), Reply("SUMMARY focused"))
    sent = len(mock_openai.requests)

    command = await h.engine.submit(Submission("/compact keep only bravo"))

    result = await command.result()
    assert command.command == "compact" and result.status == "ok"
    assert result.text.startswith("⚙️ Compacted (~") and "memory flush: ok" in result.text
    flush, summary = mock_openai.requests[sent:]
    assert "memory flush" in contents(flush)[-1][1]
    assert "keep only bravo" in contents(summary)[1][1]
    entry = (await h.store.context(MAIN, 10)).entry
    assert entry is not None and entry.extra["compaction"]["trigger"] == "manual"
    assert entry.extra["compaction"]["instructions"] == "keep only bravo"
    again = await (await h.engine.submit(Submission("/compact"))).result()
    assert again.text.startswith("⚙️ Compaction skipped: nothing to compact")
    reply, _ = await turn(h, "next")
    assert "SUMMARY focused" in contents(mock_openai.requests[-1])[1][1] and reply.status == "ok"


async def test_a_reset_starts_a_new_flush_cycle(make_runtime, mock_openai):
    h = await make_runtime(mock_openai)
    for round in ("before", "after"):
        last = await two_turns(h, mock_openai)
        middle = words("delta", sized(5_500, mock_openai.requests[-1], last))
        mock_openai.plan(append_call(f"- noted {round} the reset"), Reply(SILENT_TOKEN),
                         Reply("noted"))
        result, events = await turn(h, middle)
        assert result.text == "noted", round
        assert [e.get("status") for e in compaction_events(events)] == ["start", "ok"], round
        new = await (await h.engine.submit(Submission("/new"))).result()
        assert new.text == "Started a new session."
    log = daily_log(h).read_text()
    assert "noted before the reset" in log and "noted after the reset" in log
