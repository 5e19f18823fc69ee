"""Benchmark: ``sessions.list`` at 100,000 stored sessions (keyset pages, offset pages, search).

A real SQLite store in a temporary directory is filled through the store's own API (``ensure``
with label, display name and subject, then ``patch`` of a label on some), concurrent calls
sharing group commits: a mix of direct and group chat sessions of two agents, some labelled,
and cron run keys (which the listing leaves out). Measured on the store's reader threads, each
figure the median of repeated calls:

- ``first_page``: the first page of 50, no filter (with the total count);
- ``page_1000_cursor``: page 1,000 reached by the ``nextCursor`` of page 999 (keyset);
- ``page_1000_offset``: the same page by ``offset`` (49,950 rows skipped), for comparison;
- ``search``: a needle matching a handful of sessions (FTS5 trigram index), and one matching
  ~1% of them;
- ``agent`` / ``label`` / ``active``: the first page filtered by agent, label and activeMinutes.

Prints one JSON document, then a ``verdict:`` line (budgets: first page < 5 ms, page 1,000 < 5
ms, search < 20 ms). ``--sessions N`` changes the size (default 100,000); ``--quick`` uses
20,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import common
from clawgate.sessions.listing import ListQuery, ListResult
from clawgate.sessions.store import SessionStore

FIRST_PAGE_BUDGET_MS = 5.0
DEEP_PAGE_BUDGET_MS = 5.0
SEARCH_BUDGET_MS = 20.0
REPEATS = 30


def session_fields(n: int) -> tuple[str, dict[str, Any]]:
    """The key and fields of the ``n``-th session of the mix."""
    agent = "main" if n % 5 else "ops"
    if n % 20 == 19:
        return f"agent:{agent}:cron:job{n % 7}:run:r{n}", {}
    if n % 3 == 0:
        return (f"agent:{agent}:slack:group:c{n}",
                {"chat_type": "group", "channel": "slack", "subject": f"Project room {n}"})
    return (f"agent:{agent}:telegram:direct:{n}",
            {"chat_type": "direct", "channel": "telegram", "display_name": f"User {n:06d}"})


async def fill(store: SessionStore, count: int) -> float:
    started = time.perf_counter()
    batch = 1000
    for start in range(0, count, batch):
        jobs = []
        for n in range(start, min(start + batch, count)):
            key, fields = session_fields(n)
            jobs.append(store.ensure(key, **fields))
        await asyncio.gather(*jobs)
        # Some sessions get a label (ensure keeps existing rows unchanged: patch sets it).
        await asyncio.gather(*(store.patch(session_fields(n)[0], label=f"team-{(n // 10) % 50}")
                               for n in range(start, min(start + batch, count), 10)
                               if n % 20 != 19))
    return time.perf_counter() - started


async def timed(call: Callable[[], Awaitable[ListResult]]) -> tuple[float, ListResult]:
    samples = []
    result = await call()  # warm (page cache, statements)
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - started) * 1000)
    return round(common.median(samples), 3), result


async def measure(count: int) -> dict[str, Any]:
    out: dict[str, Any] = {"sessions": count}
    with tempfile.TemporaryDirectory(prefix="clawgate-bench-listing-") as tmp:
        async with SessionStore(Path(tmp) / "clawgate.db") as store:
            out["fill_s"] = round(await fill(store, count), 2)
            first_ms, first = await timed(lambda: store.list_sessions(ListQuery()))
            out["first_page"] = {"ms": first_ms, "rows": len(first.rows),
                                 "totalCount": first.total}
            # Page 1,000, or the last page of a smaller store (--quick): reached by walking
            # the cursors of the pages before it.
            # (Cron run keys are not listed, so a small store has fewer pages than count/50.)
            target = min(1000, -(-count // 50))
            cursor, last = first.next_cursor, first.next_cursor
            walk_started = time.perf_counter()
            pages = 1
            while pages < target - 1 and cursor is not None:
                page = await store.list_sessions(ListQuery(cursor=cursor))
                last, cursor, pages = cursor, page.next_cursor, pages + 1
            if cursor is None:  # the store ended first: its last page is the deep one
                cursor, pages = last, pages - 1
            target = pages + 1
            walked_s = time.perf_counter() - walk_started
            deep_ms, deep = await timed(lambda: store.list_sessions(ListQuery(cursor=cursor)))
            offset_ms, by_offset = await timed(
                lambda: store.list_sessions(ListQuery(offset=(target - 1) * 50)))
            same = [r["key"] for r in deep.rows] == [r["key"] for r in by_offset.rows]
            out["page_1000_cursor"] = {"page": target, "ms": deep_ms, "rows": len(deep.rows),
                                       "walk_999_pages_s": round(walked_s, 3),
                                       "same_rows_as_offset": same}
            out["page_1000_offset"] = {"page": target, "ms": offset_ms,
                                       "rows": len(by_offset.rows)}
            rare = f"{count // 2 + 1:06d}"[:-1]  # "User 05000x": ~10 sessions
            searches: dict[str, Any] = {}
            for name, needle in (("rare", rare), ("one_percent", "team-7")):
                took, found = await timed(
                    lambda needle=needle: store.list_sessions(ListQuery(search=needle)))
                searches[name] = {"needle": needle, "ms": took, "totalCount": found.total}
            out["search"] = searches
            filters: dict[str, Any] = {}
            for name, query in (("agent", ListQuery(agent_id="ops")),
                                ("label", ListQuery(label="team-3")),
                                ("active", ListQuery(active_minutes=5))):
                took, found = await timed(lambda query=query: store.list_sessions(query))
                filters[name] = {"ms": took, "totalCount": found.total}
            out["filters"] = filters
    return out


def budgets(m: dict[str, Any]) -> list[common.Budget]:
    worst_search = max(s["ms"] for s in m["search"].values())
    return [
        common.Budget(f"sessions.list first page at {m['sessions']} sessions (ms)",
                      f"< {FIRST_PAGE_BUDGET_MS:g}", m["first_page"]["ms"],
                      m["first_page"]["ms"] < FIRST_PAGE_BUDGET_MS),
        common.Budget("page 1,000 by cursor (ms)", f"< {DEEP_PAGE_BUDGET_MS:g}",
                      m["page_1000_cursor"]["ms"],
                      m["page_1000_cursor"]["ms"] < DEEP_PAGE_BUDGET_MS
                      and m["page_1000_cursor"]["same_rows_as_offset"]),
        common.Budget("search, slowest needle (ms)", f"< {SEARCH_BUDGET_MS:g}", worst_search,
                      worst_search < SEARCH_BUDGET_MS),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 sessions")
    args = parser.parse_args(argv)
    count = 20_000 if args.quick else args.sessions
    load_before = os.getloadavg()
    measured = asyncio.run(measure(count))
    common.report({"benchmark": "listing", "environment": common.environment(),
                   "load_before": load_before, "load_after": os.getloadavg(), **measured},
                  budgets(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
