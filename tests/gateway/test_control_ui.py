"""The Control UI's HTTP side: the committed static files are what is served, with a strict
CSP and revalidation; the API routes keep working beside it; the base path and the switch;
the metrics ring behind the Overview charts; ``clawgate dashboard``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clawgate import cli
from clawgate.config import parse
from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.series import Series, quantile
from clawgate.errors import ConfigError
from clawgate.gateway.control_ui import UI_DIR, load
from tests.support.gateway_server import in_process, serve_gateway
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio
FILES = sorted(p.relative_to(UI_DIR).as_posix() for p in UI_DIR.rglob("*") if p.is_file())
BUDGET_BYTES = 300 * 1024


def test_the_committed_files_are_the_ones_loaded() -> None:
    assets = load()
    assert sorted(assets) == FILES
    for name in FILES:
        assert assets[name].body == (UI_DIR / name).read_bytes()


def test_page_weight_is_under_budget() -> None:
    total = sum((UI_DIR / name).stat().st_size for name in FILES)
    assert total < BUDGET_BYTES, f"the Control UI weighs {total} bytes"


def test_no_inline_script_and_no_foreign_origin() -> None:
    index = (UI_DIR / "index.html").read_text()
    assert re.findall(r"<script[^>]*>(.*?)</script>", index, re.S) == [""]
    for name in FILES:
        text = (UI_DIR / name).read_text(encoding="utf-8")
        assert not re.search(r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write|"
                             r"\beval\(|new Function", text), name
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), name
        assert not re.search(r"""import[^;]*from\s+["']https?:""", text), name


async def test_every_file_is_served_as_committed(tmp_path: Path) -> None:
    async with in_process(tmp_path) as app, app.client(token=None) as http:
        index = await http.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert index.content == (UI_DIR / "index.html").read_bytes()
        csp = index.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "connect-src 'self' ws://127.0.0.1:18789 wss://127.0.0.1:18789" in csp
        assert index.headers["cache-control"] == "no-cache"
        for name in FILES:
            r = await http.get(f"/ui/{name}")
            assert r.status_code == 200, name
            assert r.content == (UI_DIR / name).read_bytes(), name
            assert r.headers["x-content-type-options"] == "nosniff"
        js = await http.get("/ui/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        again = await http.get("/ui/app.js", headers={"If-None-Match": js.headers["etag"]})
        assert again.status_code == 304 and not again.content
        missing = await http.get("/ui/nope.js")
        assert missing.status_code == 404 and missing.json()["error"]["type"]
        traversal = await http.get("/ui/../../config.py")
        assert traversal.status_code == 404


async def test_api_routes_still_answer_beside_the_ui(tmp_path: Path) -> None:
    async with in_process(tmp_path) as app, app.client() as http:
        assert (await http.get("/health")).json() == {"ok": True, "status": "live"}
        assert (await http.get("/v1/models")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/no-such-path")).status_code == 404
        # The static files need no token; the API still does.
        async with app.client(token=None) as anonymous:
            assert (await anonymous.get("/")).status_code == 200
            assert (await anonymous.get("/v1/models")).status_code == 401


async def test_the_websocket_control_plane_at_root_still_works(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path) as server, open_client(server) as ws:
        assert (await ws.ok("health"))["ok"] is True


async def test_a_base_path_moves_the_ui_and_off_removes_it(tmp_path: Path) -> None:
    config = {"gateway": {"control_ui": {"base_path": "/console"}}}
    async with in_process(tmp_path / "a", config) as app, app.client(token=None) as http:
        assert (await http.get("/console/")).status_code == 200
        assert (await http.get("/console/ui/app.js")).status_code == 200
        moved = await http.get("/console")
        assert moved.status_code == 308 and moved.headers["location"] == "/console/"
        assert (await http.get("/")).status_code == 404
    off = {"gateway": {"control_ui": {"enabled": False}}}
    async with in_process(tmp_path / "b", off) as app, app.client(token=None) as http:
        assert (await http.get("/")).status_code == 404
        assert (await http.get("/ui/app.js")).status_code == 404


@pytest.mark.parametrize("bad", ["console", "/a b/", "/v1/ui", "/x/../y"])
def test_a_bad_base_path_is_refused_with_its_name(bad: str) -> None:
    with pytest.raises(ConfigError, match="gateway.control_ui.base_path"):
        parse({"gateway": {"control_ui": {"base_path": bad}}})


def test_quantiles_interpolate_inside_buckets() -> None:
    assert quantile(0.5, [0] * 15) is None
    counts = [0] * 15
    counts[3] = 10  # ten turns between 5 and 10 ms
    assert quantile(0.5, counts) == pytest.approx(0.0075)
    counts[14] = 1  # one beyond the last bound
    assert quantile(0.99, counts) == 30.0


def test_the_series_is_a_bounded_ring_of_deltas() -> None:
    metrics = Metrics()
    series = Series(metrics, capacity=3, interval_s=10, rss=lambda: 1234)
    series.start(0)
    for i in range(6):
        metrics.inc("agent_turns_total", status="ok")
        metrics.inc("agent_turns_total", status="error")
        metrics.observe("agent_turn_seconds", 0.02)
        series.sample((i + 1) * 10_000)
    samples = series.samples()
    assert len(samples) == 3 and [s.ts for s in samples] == [40_000, 50_000, 60_000]
    assert all(s.turns == 2 and s.turns_per_min == 12 for s in samples)
    assert all(10 <= (s.p50_ms or 0) <= 25 for s in samples)
    assert samples[-1].wire()["rssBytes"] == 1234
    assert series.samples(since_ms=50_000) == samples[-1:]
    idle = series.sample(70_000)
    assert idle.turns == 0 and idle.p50_ms is None and idle.wire()["p99Ms"] is None


async def test_metrics_series_over_the_websocket(tmp_path: Path) -> None:
    config = {"gateway": {"control_ui": {"sample_interval_s": 0.05, "samples": 4}}}
    async with serve_gateway(tmp_path, config) as server, open_client(server) as ws:
        await ws.ok("chat.send", {"sessionKey": "main", "message": "hi",
                                  "idempotencyKey": "series-1"})
        await until(lambda: len(server.gateway.series) == 4)
        result = await ws.ok("metrics.series")
        assert result["intervalMs"] == 50 and result["capacity"] == 4
        assert len(result["samples"]) == 4
        assert set(result["samples"][0]) == {"ts", "turns", "turnsPerMin", "p50Ms", "p99Ms",
                                             "rssBytes", "connections"}
        assert result["current"]["rssBytes"] > 0 and result["current"]["connections"] >= 1
        last = result["samples"][-1]["ts"]
        assert all(s["ts"] > last for s in (await ws.ok("metrics.series",
                                                        {"sinceMs": last}))["samples"])
        error = await ws.error("metrics.series", {"sinceMs": "yesterday"})
        assert "sinceMs" in error["message"]


def test_dashboard_prints_the_link_with_the_token(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLAWGATE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CLAWGATE_CONFIG", raising=False)
    monkeypatch.setenv("CLAWGATE_GATEWAY_TOKEN", "tok/en+1")
    monkeypatch.setenv("CLAWGATE_GATEWAY_PORT", "18999")
    assert cli.main(["dashboard"]) == 0
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:18999/#token=tok%2Fen%2B1"
    (tmp_path / "clawgate.toml").write_text('[gateway.control_ui]\nbase_path = "/c/"\n')
    assert cli.main(["dashboard", "--port", "7", "--token", "abc"]) == 0
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:7/c/#token=abc"
    (tmp_path / "clawgate.toml").write_text("[gateway.control_ui]\nenabled = false\n")
    assert cli.main(["dashboard"]) == 1
    assert "Control UI is off" in capsys.readouterr().err
