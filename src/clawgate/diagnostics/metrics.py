"""Counters and latency histograms, owned by one gateway (no process-global registry).

Rendered in the Prometheus text format by ``/metrics``. Names follow Prometheus conventions:
``*_total`` for counters, ``*_seconds`` for histograms.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]
RSS_SAMPLE_S = 1.0  # a per-turn record reuses a /proc reading at most this old
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    """A small metrics registry: named counters and histograms with optional labels."""

    def __init__(self, counters: Iterable[str] = ()) -> None:
        self._counters: dict[tuple[str, Labels], float] = {}
        self._histograms: dict[tuple[str, Labels], Histogram] = {}
        self._help: dict[str, str] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        for name in counters:  # declared counters are exported (as 0) before their first use
            self._counters[(name, ())] = 0
        self._rss: tuple[float, int] = (float("-inf"), 0)  # (monotonic time read, bytes)

    def rss(self) -> int:
        """This process's resident set size, sampled from /proc at most every
        ``RSS_SAMPLE_S`` seconds (a read per turn would cost more than the figure is worth)."""
        at, value = self._rss
        now = time.monotonic()
        if now - at >= RSS_SAMPLE_S:
            value = rss_bytes()
            self._rss = (now, value)
        return value

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """A gauge whose value ``read()`` gives when it is rendered or read."""
        self._gauges[name] = read

    def value(self, name: str) -> float:
        """A gauge's current value."""
        return self._gauges[name]()

    def describe(self, name: str, text: str) -> None:
        self._help[name] = text

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self._counters[key] = self._counters.get(key, 0) + value

    def get(self, name: str, **labels: str) -> float:
        return self._counters.get((name, tuple(sorted(labels.items()))), 0)

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        hist = self._histograms.get(key)
        if hist is None:
            hist = self._histograms[key] = Histogram()
        hist.observe(seconds)

    def total(self, name: str) -> float:
        """A counter summed over all its label sets."""
        return sum(v for (n, _), v in self._counters.items() if n == name)

    def buckets(self, name: str) -> list[int]:
        """A histogram's per-bucket counts summed over all its label sets (``BUCKETS`` plus
        the overflow bucket); zeros before its first observation."""
        counts = [0] * (len(BUCKETS) + 1)
        for (n, _), hist in self._histograms.items():
            if n == name:
                counts = [a + b for a, b in zip(counts, hist.counts, strict=True)]
        return counts

    def counters(self) -> dict[str, float]:
        """Unlabelled counters by name (what tests and benchmarks read)."""
        return {name: value for (name, labels), value in self._counters.items() if not labels}

    def render(self) -> str:
        """The Prometheus text exposition format."""
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in sorted(self._counters.items()):
            if name not in seen:
                seen.add(name)
                if name in self._help:
                    lines.append(f"# HELP {name} {self._help[name]}")
                lines.append(f"# TYPE {name} counter")
            lines.append(f"{name}{_fmt(labels)} {_num(value)}")
        for name, read in sorted(self._gauges.items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {_num(read())}")
        for (name, labels), hist in sorted(self._histograms.items()):
            if name not in seen:
                seen.add(name)
                lines.append(f"# TYPE {name} histogram")
            running = 0
            for bound, count in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f"{name}_bucket{_fmt((*labels, ('le', le)))} {running}")
            lines.append(f"{name}_sum{_fmt(labels)} {hist.total:.6f}")
            lines.append(f"{name}_count{_fmt(labels)} {hist.n}")
        return "\n".join(lines) + "\n"


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * _PAGE


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); False where there is
    no such call. Freed memory otherwise stays resident after a burst (thousands of
    connections that came and went) although nothing uses it. Blocking, but quick."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
