"""A bounded ring of metric samples: what the Control UI's Overview charts draw.

One :class:`Series` belongs to one gateway (no process-global state, I6). Its owner calls
``sample()`` on a timer (never per turn); each call turns the change of the gateway's counters
since the previous call into one :class:`Sample`: turns per minute, turn latency p50/p99
(interpolated inside the histogram buckets, as Prometheus' ``histogram_quantile`` does) and the
resident memory. The ring keeps the newest ``capacity`` samples and drops the oldest (I12).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clawgate.diagnostics.metrics import BUCKETS, Metrics, rss_bytes

TURNS = "agent_turns_total"
LATENCY = "agent_turn_seconds"


@dataclass(frozen=True, slots=True)
class Sample:
    """One interval: ``ts`` (epoch ms) is its end."""

    ts: int
    turns: int
    turns_per_min: float
    p50_ms: float | None  # None: no turn ended in the interval
    p99_ms: float | None
    rss_bytes: int
    connections: int

    def wire(self) -> dict[str, Any]:
        return {"ts": self.ts, "turns": self.turns, "turnsPerMin": round(self.turns_per_min, 2),
                "p50Ms": self.p50_ms, "p99Ms": self.p99_ms,
                "rssBytes": self.rss_bytes, "connections": self.connections}


class Series:
    """The newest ``capacity`` samples of ``metrics``, one per ``sample()`` call."""

    def __init__(self, metrics: Metrics, *, capacity: int, interval_s: float,
                 connections: Callable[[], int] = lambda: 0,
                 rss: Callable[[], int] = rss_bytes) -> None:
        self.metrics = metrics
        self.capacity = capacity
        self.interval_s = interval_s
        self._connections = connections
        self._rss = rss
        self._samples: deque[Sample] = deque(maxlen=capacity)
        self._last: tuple[int, float, list[int]] | None = None

    def __len__(self) -> int:
        return len(self._samples)

    def start(self, now_ms: int) -> None:
        """Take the baseline that the first sample is measured against."""
        self._last = (now_ms, self.metrics.total(TURNS), self.metrics.buckets(LATENCY))

    def sample(self, now_ms: int) -> Sample:
        """Close the interval that ends at ``now_ms`` and keep its sample."""
        sample = self.current(now_ms)
        self._samples.append(sample)
        self._last = (now_ms, self.metrics.total(TURNS), self.metrics.buckets(LATENCY))
        return sample

    def current(self, now_ms: int) -> Sample:
        """The interval so far (since the last sample), as a sample that is not kept."""
        if self._last is None:
            self.start(now_ms - int(self.interval_s * 1000))
        then, turns_before, buckets_before = self._last or (now_ms, 0.0, [0] * (len(BUCKETS) + 1))
        turns_now = self.metrics.total(TURNS)
        buckets_now = self.metrics.buckets(LATENCY)
        delta = [a - b for a, b in zip(buckets_now, buckets_before, strict=True)]
        turns = max(0, int(turns_now - turns_before))
        minutes = max(now_ms - then, 1) / 60_000
        return Sample(now_ms, turns, turns / minutes, _ms(quantile(0.5, delta)),
                      _ms(quantile(0.99, delta)), self._rss(), self._connections())

    def samples(self, since_ms: int | None = None) -> list[Sample]:
        """Samples oldest first; only those after ``since_ms`` when given."""
        if since_ms is None:
            return list(self._samples)
        return [s for s in self._samples if s.ts > since_ms]


def quantile(q: float, counts: list[int]) -> float | None:
    """The ``q`` quantile in seconds of a histogram's per-bucket counts (``BUCKETS`` and an
    overflow bucket), linear inside the bucket; None when it is empty. A value in the overflow
    bucket reads as the highest bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    running = 0
    for i, count in enumerate(counts):
        if count and running + count >= rank:
            if i >= len(BUCKETS):
                return BUCKETS[-1]
            low = 0.0 if i == 0 else BUCKETS[i - 1]
            return low + (BUCKETS[i] - low) * (rank - running) / count
        running += count
    return BUCKETS[-1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
