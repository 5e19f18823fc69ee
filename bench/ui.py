"""Control UI benchmark: Chromium (Playwright, Debian's /usr/bin/chromium) against a real
``clawgate gateway`` process on loopback.

Measures: first meaningful paint (navigation start to the frame that shows the shell and the
chat panel with its history: the page's ``clawgate:chat-ready`` mark, set after the next
animation frame once the history is in the DOM), where it goes (``ui/bundle.js`` loaded;
``clawgate:hello``: the WebSocket's ``hello-ok``; from there to the paint), the floor of this
machine (a fresh context's first contentful paint of the gateway's ``/health`` JSON: one
request, no script) and the ratio of the two, the page's total weight (every file it
loaded, uncompressed), the latency from a ``sessions.changed`` event reaching the page to its
row appearing in the Sessions list, and the page's own CPU while idle (Chromium's
``TaskDuration`` over 10 s). Prints JSON, then a verdict against the budgets of issue 14.

    .venv/bin/python bench/ui.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from playwright.sync_api import Page, sync_playwright  # noqa: E402
from tests.ui.conftest import ARGS, CHROMIUM, Gateway  # noqa: E402

# Timestamps, in the page's clock, of the first sessions.changed frame per session and of the
# first time its row is in the list: seen before the app's own handler runs.
PROBE = """
window.__evt = {}; window.__row = {};
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (m) => {
      if (typeof m.data === "string" && m.data.includes('"sessions.changed"')) {
        const key = JSON.parse(m.data).payload.sessionKey;
        if (!(key in window.__evt)) window.__evt[key] = performance.now();
      }
    });
  }
};
new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.nodeType === 1 && n.matches("tr[data-key]") && !(n.dataset.key in window.__row))
      window.__row[n.dataset.key] = performance.now();
  }
}).observe(document, { subtree: true, childList: true });
"""


def paint(page: Page, url: str) -> dict[str, float]:
    page.goto(url)
    page.wait_for_selector("#panel-chat[data-ready]")  # set with the clawgate:chat-ready mark
    return page.evaluate("""() => {
        const mark = performance.getEntriesByName('clawgate:chat-ready')[0].startTime;
        const fcp = (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime;
        const nav = performance.getEntriesByType('navigation')[0];
        const files = performance.getEntriesByType('resource')
            .filter((r) => !r.name.startsWith('ws'));
        const bytes = files.reduce((n, r) => n + r.decodedBodySize, nav.decodedBodySize);
        const hello = performance.getEntriesByName('clawgate:hello')[0].startTime;
        const bundle = files.find((r) => r.name.endsWith('/bundle.js'));
        return {ready_ms: mark, fcp_ms: fcp || null, hello_ms: hello,
                bundle_ms: bundle.responseEnd, bytes, files: files.length + 1};
    }""")


def floor(page: Page, url: str) -> float:
    """First contentful paint of ``/health`` (JSON shown as text) in a fresh context."""
    page.goto(url + "/health")
    page.wait_for_selector("pre, body")
    for _ in range(100):  # the paint entry lands after the frame
        fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {})"
                            ".startTime || 0")
        if fcp:
            return float(fcp)
        page.wait_for_timeout(10)
    raise RuntimeError("no first-contentful-paint for /health")


def row_latency(page: Page, gateway: Gateway, n: int) -> list[float]:
    page.click("a[data-panel=sessions]")
    page.wait_for_selector("#sessions-rows")
    out: list[float] = []
    for i in range(n):
        key = f"agent:main:openai-user:bench{i}-{time.time_ns()}"
        gateway.completion("bench", user=key.rsplit(":", 1)[1])
        page.wait_for_selector(f"tr[data-key='{key}']")
        out.append(page.evaluate(f"window.__row[{key!r}] - window.__evt[{key!r}]"))
    return out


def idle_cpu(page: Page, seconds: float) -> float:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def task() -> float:
        metrics = cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "TaskDuration")

    page.click("a[data-panel=chat]")
    page.wait_for_timeout(1000)  # let the panel switch settle before measuring idle
    before, started = task(), time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    return (task() - before) / (time.monotonic() - started) * 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    rounds, rows, idle_s = (3, 10, 5.0) if args.quick else (7, 30, 10.0)
    gateway = Gateway(Path(tempfile.mkdtemp(prefix="clawgate-bench-ui-")) / "state")
    try:
        gateway.wait_ready()
        gateway.completion("history for the chat panel", user="warm")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            paints, floors = [], []
            for _ in range(rounds):  # a fresh context each time: nothing cached
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                paints.append(paint(context.new_page(), gateway.dashboard()))
                context.close()
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                floors.append(floor(context.new_page(), gateway.url))
                context.close()
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(PROBE)
            page = context.new_page()
            paint(page, gateway.dashboard())
            latencies = row_latency(page, gateway, rows)
            cpu = idle_cpu(page, idle_s)
            browser.close()
    finally:
        gateway.stop()
    ready = statistics.median(p["ready_ms"] for p in paints)
    bare = statistics.median(floors)
    weight = max(p["bytes"] for p in paints)
    row = common.summarize(latencies)
    measured = {
        "first_meaningful_paint_ms": common.summarize([p["ready_ms"] for p in paints]),
        "first_contentful_paint_ms": common.summarize([p["fcp_ms"] or 0 for p in paints]),
        "bundle_loaded_ms": common.summarize([p["bundle_ms"] for p in paints]),
        "hello_ok_ms": common.summarize([p["hello_ms"] for p in paints]),
        "hello_to_meaningful_paint_ms": common.summarize(
            [p["ready_ms"] - p["hello_ms"] for p in paints]),
        "floor_health_fcp_ms": common.summarize(floors),
        "meaningful_paint_over_floor": round(ready / bare, 2),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "page_weight_bytes": weight, "page_files": paints[0]["files"],
        "sessions_changed_to_row_ms": row, "idle_cpu_percent": round(cpu, 3),
        "idle_seconds": idle_s,
    }
    budgets = [
        common.Budget("first meaningful paint, median", "< 300 ms", round(ready, 1), ready < 300),
        common.Budget("page weight", "< 300 KB", weight, weight < 300 * 1024),
        common.Budget("sessions.changed -> row, p95", "< 100 ms", row["p95"], row["p95"] < 100),
        common.Budget("page CPU at idle", "< 1 %", round(cpu, 3), cpu < 1.0),
    ]
    common.report({"benchmark": "ui", "environment": common.environment(), **measured}, budgets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
