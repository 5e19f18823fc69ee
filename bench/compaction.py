"""Benchmark: what session compaction costs the turn path.

1. **The check**: before every model call the engine estimates the prompt (system prompt, tool
   definitions, every message since the last compaction). Measured directly on a 400-message
   prompt (the most a prompt holds before the message cap compacts), and end to end: echo
   turns on a session of 398 stored messages with compaction on and off (p50 difference).
2. **A compaction** of that session through ``sessions.compact``'s engine path with the echo
   provider (a model that answers at once, so this is the gateway's own time: the flush turn,
   the context reads, the summary request build, the entry's write).

Budget: the check adds < 0.5 ms per turn at 400 messages (p50), a share of the gateway's
3 ms per completion. Run: ``.venv/bin/python bench/compaction.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from clawgate import config
from clawgate.agents.budget import prompt_tokens
from clawgate.agents.turn import Submission
from clawgate.runtime import Runtime

MAIN = "agent:main:main"
CHECK_BUDGET_MS = 0.5


def conversation(turns: int) -> list[dict[str, Any]]:
    """``turns`` user/assistant pairs of ~600 characters each way."""
    text = "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10
    out: list[dict[str, Any]] = []
    for n in range(turns):
        out += [{"role": "user", "content": f"{n}: {text}"},
                {"role": "assistant", "content": f"{n}: {text}"}]
    return out


async def runtime(state: Path, *, enabled: bool) -> Runtime:
    data = {"engine": {"compaction": {"enabled": enabled}}}
    settings = config.Settings(config.parse(data), state_dir=state,
                               config_path=state / "clawgate.toml")
    rt = Runtime(settings, drain_deadline_s=5.0)
    await rt.start()
    return rt


async def turns_ms(rt: Runtime, count: int) -> list[float]:
    samples = []
    for n in range(count):
        started = time.perf_counter()
        result = await rt.engine.run(Submission(f"question {n}"))
        samples.append((time.perf_counter() - started) * 1000)
        assert result.status == "ok", result.error
    return samples


async def main(quick: bool) -> None:
    turns = 30 if quick else 200
    messages = conversation(199)
    specs = [{"type": "function", "function": {"name": f"tool_{n}", "description": "x" * 200,
                                                "parameters": {"type": "object"}}}
             for n in range(6)]
    system = "s" * 8_000
    check = []
    for _ in range(200 if quick else 2_000):
        started = time.perf_counter()
        prompt_tokens(system, messages, specs)
        check.append((time.perf_counter() - started) * 1000)

    end_to_end: dict[str, dict[str, float | int]] = {}
    compaction: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for enabled in (False, True):
            state = Path(tmp) / f"state-{enabled}"
            rt = await runtime(state, enabled=enabled)
            try:
                await rt.store.ensure(MAIN)
                await rt.store.append(MAIN, messages)
                # Warm-up. With compaction on, the session passes the 400-message cap here and
                # is compacted (kept: 200), and again whenever it grows past it.
                await turns_ms(rt, 5)
                samples = []
                for _ in range(turns // 10):
                    samples += await turns_ms(rt, 10)
                end_to_end["on" if enabled else "off"] = common.summarize(samples)
                if enabled:
                    started = time.perf_counter()
                    outcome = await rt.engine.compact(MAIN, agent_id="main")
                    compaction = {"ms": round((time.perf_counter() - started) * 1000, 2),
                                  "compacted": outcome.compacted,
                                  "kept": outcome.kept,
                                  "flush": outcome.flush.status if outcome.flush else None}
            finally:
                await rt.aclose()

    added = float(end_to_end["on"]["median"]) - float(end_to_end["off"]["median"])
    check_p50 = common.median(check)
    budgets = [
        common.Budget("estimate of a 400-message prompt, p50", f"< {CHECK_BUDGET_MS} ms",
                      round(check_p50, 3), check_p50 < CHECK_BUDGET_MS),
    ]
    common.report({"benchmark": "compaction", "quick": quick,
                   "environment": common.environment(),
                   "estimate_ms": common.summarize(check, digits=4),
                   "turn_ms": end_to_end, "turn_added_ms_p50": round(added, 3),
                   "compaction": compaction}, budgets)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    asyncio.run(main(parser.parse_args().quick))
