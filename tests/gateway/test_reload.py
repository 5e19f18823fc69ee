"""Hot plugin reload: `plugins.reload` (and SIGHUP) swap generations without dropping work."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawgate.agents.turn import Submission
from tests.support.gateway_server import serve_gateway
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio


def write_config(state: Path, delay_ms: int, extra: str = "") -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "clawgate.toml").write_text(
        f"[plugins.entries.echo.config]\ndelay_ms = {delay_ms}\n{extra}")


async def test_reload_swaps_generation_and_in_flight_turns_finish_on_the_old(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    # The old generation's turn takes long enough that a reload on a loaded machine ends first.
    write_config(state, 3000)
    config = {"plugins": {"entries": {"echo": {"config": {"delay_ms": 3000}}}}}
    async with serve_gateway(state, config) as server, open_client(server) as ws:
        gateway = server.gateway
        first = gateway.runtime.host.current
        unchanged = await ws.ok("plugins.reload")
        assert unchanged["changed"] is False and unchanged["generation"] == first.id

        slow = await gateway.runtime.engine.submit(Submission("still on the old generation",
                                           session_key="agent:main:reload"))
        await until(lambda: gateway.runtime.engine.lanes.active("agent:main:reload") is not None)
        write_config(state, 0)
        reloaded = await ws.ok("plugins.reload")
        assert reloaded["changed"] is True and reloaded["generation"] != first.id
        second = gateway.runtime.host.current
        assert second.id == reloaded["generation"]
        assert gateway.runtime.host.in_flight(first) == 1  # the admitted turn keeps its generation
        result = await slow.result()
        assert result.status == "ok" and result.text == "still on the old generation"
        await until(lambda: first not in gateway.runtime.host.live()
                    and gateway.runtime.host.in_flight(first) == 0)
        fast = await gateway.runtime.engine.run(
            Submission("new generation", session_key="agent:main:reload"))
        assert fast.text == "new generation"
        counters = gateway.metrics.counters()
        assert counters["plugin_loads_on_request_total"] == 0
        assert counters["plugin_generation_builds_total"] == 2
        # Retiring stops the old generation's services (memory-core's watcher and index
        # threads): it may still be finishing when the quick turn above has ended.
        await until(lambda: gateway.metrics.counters()["plugin_generations_retired_total"] >= 1)


async def test_an_invalid_config_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_config(state, 0)
    async with serve_gateway(state, {}) as server, open_client(server) as ws:
        before = server.gateway.runtime.host.current
        write_config(state, 0, "[plugins]\nbogus = true\n")
        error = await ws.call("plugins.reload")
        assert error["ok"] is False
        assert "plugins.bogus" in error["error"]["message"]
        assert server.gateway.runtime.host.current is before
        (state / "clawgate.toml").write_text("[plugins.entries.echo.config]\ndelay_ms = -5\n")
        refused = await ws.error("plugins.reload")  # valid TOML, invalid plugin config
        assert "plugins.entries.echo.config.delay_ms" in refused["message"]
        reloaded = await ws.ok("plugins.reload", {"force": True})
        echo = next(p for p in reloaded["plugins"] if p["id"] == "echo")
        assert echo["status"] == "error" and "$.delay_ms" in echo["reason"]
        assert (await ws.ok("health"))["ok"] is True  # a broken plugin never takes it down


async def test_reload_needs_admin_scope(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path / "state", {}) as server, \
            open_client(server, scopes=["operator.read"]) as ws:
        denied = await ws.call("plugins.reload")
        assert denied["ok"] is False and denied["error"]["code"] == "FORBIDDEN"


async def test_a_reload_that_would_lose_a_loaded_plugin_is_refused(tmp_path: Path) -> None:
    """Issue 7 item 3: ``delay_ms = "x"`` must not swap in a generation without echo."""
    state = tmp_path / "state"
    write_config(state, 0)
    async with serve_gateway(state, {}) as server, open_client(server) as ws:
        host = server.gateway.runtime.host
        before = host.current
        (state / "clawgate.toml").write_text('[plugins.entries.echo.config]\ndelay_ms = "x"\n')
        error = await ws.error("plugins.reload")
        assert error["code"] == "INVALID_REQUEST"
        assert "plugins.entries.echo.config.delay_ms" in error["message"]
        assert "reload refused" in error["message"] and "'echo'" in error["message"]
        assert host.current is before
        reply = await server.gateway.runtime.engine.run(Submission("still served"))
        assert (reply.status, reply.text) == ("ok", "still served")
        # A later valid reload still works (the refused settings were not kept)...
        write_config(state, 5)
        assert (await ws.ok("plugins.reload"))["changed"] is True
        # ...and --force accepts the partial generation.
        (state / "clawgate.toml").write_text('[plugins.entries.echo.config]\ndelay_ms = "x"\n')
        forced = await ws.ok("plugins.reload", {"force": True})
        assert forced["changed"] is True
        echo = next(p for p in forced["plugins"] if p["id"] == "echo")
        assert echo["status"] == "error" and "delay_ms" in echo["reason"]
