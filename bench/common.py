"""Helpers shared by the benchmarks in ``bench/``.

Every benchmark prints one JSON document on stdout, then a last line starting with
``verdict:`` that says whether the budgets from docs/architecture.md were met. Budget misses
are reported, not raised: the exit code is 0 unless the benchmark itself crashes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, nearest-rank method."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in [0, 100]")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    """The median of ``samples``."""
    return statistics.median(samples)


def summarize(samples: Sequence[float], *, digits: int = 3) -> dict[str, float | int]:
    """``{"median", "p95", "min", "max", "n"}`` of ``samples``, rounded to ``digits``."""
    return {
        "median": round(median(samples), digits),
        "p95": round(percentile(samples, 95), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "n": len(samples),
    }


def time_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn()`` once; return (elapsed milliseconds, its result)."""
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


def rss_kb() -> dict[str, int]:
    """Resident memory of this process from /proc/self/status: ``{"rss_kb", "peak_kb"}``.

    ``peak_kb`` is VmHWM, the high-water mark since the process started. Empty on systems
    without /proc (the benchmark still runs; it just reports no memory figures).
    """
    wanted = {"VmRSS": "rss_kb", "VmHWM": "peak_kb"}
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in wanted:
                    found[wanted[name]] = int(rest.split()[0])  # the kernel reports kB
    except OSError:
        return {}
    return found


def environment() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget from DESIGN.md checked against a measured value."""

    name: str
    budget: str
    value: float | int | str
    ok: bool


def verdict(benchmark: str, budgets: Iterable[Budget]) -> str:
    """The one-line summary printed last: ``verdict: ok ...`` or ``verdict: MISS ...``."""
    checked = list(budgets)
    missed = [b for b in checked if not b.ok]
    parts = "; ".join(f"{b.name} = {b.value} (budget {b.budget})" for b in (missed or checked))
    if missed:
        return f"verdict: MISS {benchmark}: {len(missed)}/{len(checked)} budgets missed: {parts}"
    return f"verdict: ok {benchmark}: {len(checked)}/{len(checked)} budgets met: {parts}"


def report(document: dict[str, Any], budgets: Sequence[Budget]) -> None:
    """Print ``document`` (with its budgets and overall ``ok``) as JSON, then the verdict."""
    document = {**document, "budgets": [asdict(b) for b in budgets],
                "ok": all(b.ok for b in budgets)}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.write(verdict(str(document.get("benchmark", "?")), budgets) + "\n")
    sys.stdout.flush()
