"""PluginHost: the two OpenClaw failures made impossible (I1-I5, I7), atomic swaps, retirement."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from clawgate.config import Settings
from clawgate.errors import Unavailable
from clawgate.plugins.discovery import BUNDLED_ROOT
from clawgate.plugins.host import PluginHost
from tests.plugins.factory import (
    copy_fixtures,
    make_plugin,
    make_settings,
    running_host,
    wait_for,
)

pytestmark = pytest.mark.anyio


def counters(host: PluginHost) -> dict[str, float]:
    return host.metrics.counters()


async def test_not_started_host_is_unavailable(tmp_path: Path) -> None:
    host = PluginHost(make_settings(tmp_path), bundled_root=None)
    try:
        with pytest.raises(Unavailable):
            host.current  # noqa: B018
        with pytest.raises(Unavailable):
            await host.acquire()
        with pytest.raises(Unavailable):
            host.snapshot  # noqa: B018
    finally:
        await host.aclose()


async def test_dispatch_reuses_the_startup_generation(tmp_path: Path) -> None:
    """OpenClaw #80682: start-up and dispatch spell their requests differently; here they
    derive the same plan, so the first message after boot loads nothing."""
    src = copy_fixtures(tmp_path / "load", "good_tool", "good_provider")
    startup = make_settings(
        tmp_path,
        plugins={
            "load_paths": [str(src)],
            "deny": [" nobody", "nobody "],
            "entries": {
                "echo": {"config": {"delay_ms": 0, "chunk_chars": 0}},
                "good_tool": {"enabled": True, "config": {"greeting": "hello"}},
                "good_provider": {"config": {}},
            },
        },
        agents=[{"id": "main", "name": "Main", "default": True, "model": "echo/echo",
                 "identity": {"emoji": "x"}}],
        gateway={"port": 19999, "auth": {"mode": "none"}},
        engine={"max_concurrent": 2},
    )
    # Another caller, another dict, another Settings object: only the plugin-relevant content
    # is the same.
    dispatch = Settings(config=make_settings(tmp_path, plugins={"load_paths": [str(src)]}).config,
                        state_dir=tmp_path, config_path=tmp_path / "elsewhere.toml")
    async with running_host(startup, bundled_root=BUNDLED_ROOT) as host:
        first = host.current
        assert {"echo", "good_tool", "good_provider"} <= first.plan.ids
        assert counters(host)["plugin_generation_builds_total"] == 1
        assert counters(host)["plugin_metadata_scans_total"] == 1

        assert await host.acquire(settings=dispatch) is first
        assert await host.acquire(["echo"]) is first
        assert await host.acquire(["echo", "good_tool"], settings=dispatch) is first
        assert await host.acquire() is first
        async with host.lease(["good_provider"]) as leased:
            assert leased is first

        got = counters(host)
        assert got["plugin_generation_builds_total"] == 1
        assert got["plugin_loads_on_request_total"] == 0
        assert got["plugin_metadata_scans_total"] == 1
        assert got["plugin_generation_reuses_total"] == 5


async def test_subset_request_reuses_despite_unrelated_config_change(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool", "slow_service")
    log = str(tmp_path / "svc.log")

    def settings(tag: str) -> Settings:
        return make_settings(tmp_path, plugins={"load_paths": [str(src)], "entries": {
            "slow_service": {"config": {"log": log, "tag": tag}}}})

    async with running_host(settings("one")) as host:
        first = host.current
        # only good_tool is requested, and its entry is unchanged: reuse by capability (I3)
        assert await host.acquire(["good_tool"], settings=settings("two")) is first
        assert counters(host)["plugin_generation_builds_total"] == 1
        # slow_service is requested and its config changed: never the stale generation
        fresh = await host.acquire(["slow_service"], settings=settings("two"))
        assert fresh is not first
        assert fresh.plan.ids == {"slow_service"}
        assert counters(host)["plugin_loads_on_request_total"] == 1


def write_manifest_change(src: Path) -> None:
    path = src / "good_tool" / "clawgate.plugin.json"
    path.write_text(path.read_text().replace("one tool", "one tool (v2)"))


CHANGES: dict[str, Any] = {
    "plugin config": {"entries": {"good_tool": {"config": {"greeting": "hi"}}}},
    "entry disabled": {"entries": {"good_tool": {"enabled": False}}},
    "allow list": {"allow": ["good_tool", "memory_b"]},
    "deny list": {"deny": ["memory_a"]},
    "memory slot": {"slots": {"memory": "memory_b"}},
    "manifest": None,
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
async def test_changed_inputs_force_a_new_generation(tmp_path: Path, change: str) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool", "memory_a", "memory_b")
    before = make_settings(tmp_path, plugins={"load_paths": [str(src)]})
    async with running_host(before) as host:
        old = host.current
        if CHANGES[change] is None:
            write_manifest_change(src)
            after = before
            new = await host.reload()
        else:
            after = make_settings(tmp_path, plugins={"load_paths": [str(src)], **CHANGES[change]})
            new = await host.reload(after)
        assert new is host.current
        assert new.id != old.id
        assert new.plan.digest != old.plan.digest
        assert counters(host)["plugin_generation_builds_total"] == 2
        for _ in range(3):
            assert (await host.acquire()).id == new.id
            assert (await host.acquire(settings=after)).id == new.id
            for pid in new.plan.ids:
                assert (await host.acquire([pid])).id != old.id
        assert counters(host)["plugin_loads_on_request_total"] == 0
        await wait_for(lambda: counters(host)["plugin_generations_retired_total"] == 1)
        assert old not in host.live()


@pytest.mark.parametrize("change", ["plugin config", "memory slot"])
async def test_request_with_changed_inputs_before_reload_is_not_served_stale(
    tmp_path: Path, change: str
) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool", "memory_a", "memory_b")
    before = make_settings(tmp_path, plugins={"load_paths": [str(src)]})
    after = make_settings(tmp_path, plugins={"load_paths": [str(src)], **CHANGES[change]})
    async with running_host(before) as host:
        old = host.current
        got = await host.acquire(settings=after)
        assert got.id != old.id
        assert got.plan == host.plan(after)
        # the on-request build is counted, and the later reload reuses it instead of rebuilding
        assert counters(host)["plugin_loads_on_request_total"] == 1
        assert (await host.reload(after)) is got
        assert counters(host)["plugin_generation_builds_total"] == 2


async def test_request_denying_a_plugin_never_gets_it(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool", "raises_in_register")
    before = make_settings(tmp_path, plugins={"load_paths": [str(src)]})
    denying = make_settings(tmp_path, plugins={"load_paths": [str(src)],
                                               "deny": ["good_tool"]})
    async with running_host(before) as host:
        got = await host.acquire(settings=denying)
        assert "good_tool" not in got.plan.ids
        assert got.registry.tool("greet") is None


async def test_concurrent_acquires_during_startup_build_once(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool", "good_provider", "method_and_route")
    host = PluginHost(make_settings(tmp_path, plugins={"load_paths": [str(src)]}),
                      bundled_root=BUNDLED_ROOT)
    try:
        starting = asyncio.create_task(host.start())
        await asyncio.sleep(0)  # let start() begin
        assert not starting.done()
        got = await asyncio.gather(*(host.acquire() for _ in range(50)),
                                   *(host.acquire(["echo", "good_tool"]) for _ in range(50)))
        first = await starting
        assert all(g is first for g in got)
        assert counters(host)["plugin_generation_builds_total"] == 1
        assert counters(host)["plugin_metadata_scans_total"] == 1
        assert counters(host)["plugin_loads_on_request_total"] == 0
    finally:
        await host.aclose()


async def test_concurrent_starts_share_one_start(tmp_path: Path) -> None:
    host = PluginHost(make_settings(tmp_path), bundled_root=BUNDLED_ROOT)
    try:
        got = await asyncio.gather(*(host.start() for _ in range(10)))
        assert len({g.id for g in got}) == 1
        assert counters(host)["plugin_generation_builds_total"] == 1
    finally:
        await host.aclose()


def four_workspaces(tmp_path: Path) -> Settings:
    agents = [{"id": f"agent{i}", "workspace": f"ws{i}"} for i in range(4)]
    for i in range(4):
        make_plugin(
            tmp_path / f"ws{i}" / ".clawgate" / "plugins", f"wsplug{i}",
            manifest_overrides={
                "providers": [f"prov{i}"],
                "modelIdNormalization": {"providers": {f"prov{i}": {
                    "aliases": {"short": f"long-{i}"}, "prefixWhenBare": f"vendor{i}"}}},
            },
        )
    return make_settings(tmp_path, agents=agents,
                         plugins={"allow": [f"wsplug{i}" for i in range(4)]})


async def test_model_id_normalization_under_concurrency_never_scans_or_loads(
    tmp_path: Path,
) -> None:
    """OpenClaw #90814: per-row normalization must not depend on an "active workspace" and
    must never rescan, however many agents in however many workspaces run at once."""
    settings = four_workspaces(tmp_path)
    reloads = 6
    async with running_host(settings) as host:
        assert host.current.plan.ids == {f"wsplug{i}" for i in range(4)}

        async def rows(task: int) -> list[tuple[str | None, str | None]]:
            i = task % 4
            out = []
            for step in range(20):
                if step == 10 and task % 16 == 0:
                    await host.reload()  # a reload issued while the other rows are mid-flight
                generation = await host.acquire([f"wsplug{i}"])
                out.append(generation.snapshot.display_model(f"prov{i}", "short"))
                out.append(host.snapshot.display_model(f"prov{i}", "bare-model"))
                await asyncio.sleep(0)
            return out

        async def reloader() -> None:
            for _ in range(reloads):
                await host.reload()
                await asyncio.sleep(0)

        results = await asyncio.gather(*(rows(t) for t in range(64)), reloader())
        for task, got in enumerate(results[:64]):
            i = task % 4
            assert set(got) == {(f"prov{i}", f"vendor{i}/long-{i}"),
                                (f"prov{i}", f"vendor{i}/bare-model")}
        got_counters = counters(host)
        assert got_counters["plugin_metadata_scans_total"] == 1 + reloads + 4
        assert got_counters["plugin_loads_on_request_total"] == 0
        assert got_counters["plugin_generation_builds_total"] == 1


def read_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def service_settings(tmp_path: Path, src: Path, tag: str) -> Settings:
    return make_settings(tmp_path, plugins={"load_paths": [str(src)], "entries": {
        "slow_service": {"config": {"log": str(tmp_path / "services.log"), "tag": tag}}}})


async def test_reload_swaps_atomically_and_retires_after_leases_drain(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "slow_service", "good_tool")
    log = tmp_path / "services.log"
    async with running_host(service_settings(tmp_path, src, "one")) as host:
        assert read_log(log) == ["start one first", "start one second"]
        async with host.lease() as old:
            assert host.in_flight(old) == 1
            new = await host.reload(service_settings(tmp_path, src, "two"))
            assert host.current is new and new is not old
            # in-flight work keeps the generation it started with, whole
            assert old.registry.tool("greet") is not None
            assert old.snapshot.by_id["slow_service"].config["tag"] == "one"
            old_modules = [m for m in old.modules if m in sys.modules]
            assert old_modules, "the leased generation's modules are still importable"
            for _ in range(50):  # give a premature retirement every chance to happen
                await asyncio.sleep(0)
            assert not any(line.startswith("stop") for line in read_log(log))
            assert counters(host)["plugin_generations_retired_total"] == 0
            assert read_log(log)[2:] == ["start two first", "start two second"]

        await wait_for(lambda: counters(host)["plugin_generations_retired_total"] == 1)
        assert read_log(log)[4:] == [
            "stop-begin one second", "stop-end one second",
            "stop-begin one first", "stop-end one first",
        ]
        assert not any(m in sys.modules for m in old.modules)
        assert any(m in sys.modules for m in new.modules)
        assert host.in_flight(old) == 0
    # closing the host retires the current generation the same way
    assert read_log(log)[8:] == [
        "stop-begin two second", "stop-end two second",
        "stop-begin two first", "stop-end two first",
    ]
    assert not any(m in sys.modules for m in new.modules)


async def test_reload_with_unchanged_inputs_keeps_the_generation(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "slow_service")
    settings = service_settings(tmp_path, src, "one")
    async with running_host(settings) as host:
        first = host.current
        assert await host.reload() is first
        assert await host.reload(service_settings(tmp_path, src, "one")) is first
        assert counters(host)["plugin_generation_builds_total"] == 1
        assert counters(host)["plugin_metadata_scans_total"] == 3
        assert read_log(tmp_path / "services.log") == ["start one first", "start one second"]


async def test_single_flight_for_concurrent_reloads_and_acquires(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "slow_service", "good_tool")
    async with running_host(service_settings(tmp_path, src, "one")) as host:
        first = host.current
        target = service_settings(tmp_path, src, "two")
        got = await asyncio.gather(
            host.reload(target),
            *(host.acquire(settings=target) for _ in range(20)),
            host.reload(target),
            *(host.acquire(settings=target) for _ in range(20)),
        )
        assert len({g.id for g in got}) == 1
        assert got[0].id != first.id
        assert got[0] is host.current
        assert counters(host)["plugin_generation_builds_total"] == 2
        # the new generation's services were started exactly once
        assert read_log(tmp_path / "services.log").count("start two first") == 1

        # a scoped request is its own plan: concurrent callers share one build of it
        third = service_settings(tmp_path, src, "three")
        scoped = await asyncio.gather(
            *(host.acquire(["slow_service"], settings=third) for _ in range(30)))
        assert len({g.id for g in scoped}) == 1
        assert scoped[0].plan.ids == {"slow_service"}
        assert counters(host)["plugin_generation_builds_total"] == 3


async def test_two_hosts_in_one_process_are_independent(tmp_path: Path) -> None:
    src_a = copy_fixtures(tmp_path / "a", "good_tool")
    src_b = copy_fixtures(tmp_path / "b", "conflict_a")
    async with running_host(make_settings(tmp_path / "a", plugins={"load_paths": [str(src_a)]})
                            ) as a, running_host(
            make_settings(tmp_path / "b", plugins={"load_paths": [str(src_b)]})) as b:
        assert a.current.registry.tool("greet") is not None
        assert a.current.registry.tool("same_name") is None
        assert b.current.registry.tool("same_name") is not None
        assert b.current.registry.tool("greet") is None


async def test_two_hosts_loading_one_id_from_different_folders(tmp_path: Path) -> None:
    for side in ("a", "b"):
        make_plugin(tmp_path / side / "src", "same_id",
                    code=f"def register(api):\n    api.register_tool(lambda a: '{side}', "
                         f"name='tool_{side}')\n")
    async with running_host(make_settings(tmp_path / "b", plugins={"load_paths": ["src"]})
                            ) as b:
        async with running_host(make_settings(tmp_path / "a", plugins={"load_paths": ["src"]})
                                ) as a:
            assert a.current.registry.tool("tool_a") is not None
            assert b.current.registry.tool("tool_b") is not None
            assert not set(a.current.modules) & set(b.current.modules)
        # retiring one host's generation leaves the other's modules alone
        assert b.current.modules and all(m in sys.modules for m in b.current.modules)


async def test_aclose_stops_services_of_every_live_generation(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "slow_service")
    host = PluginHost(service_settings(tmp_path, src, "one"), bundled_root=None)
    await host.start()
    await host.aclose()
    assert read_log(tmp_path / "services.log")[-2:] == ["stop-begin one first",
                                                        "stop-end one first"]
    assert host.live() == ()
    with pytest.raises(Unavailable):
        host.current  # noqa: B018


async def test_checkout_lease_holds_retirement_and_releases_once(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "slow_service")
    log = tmp_path / "services.log"
    async with running_host(service_settings(tmp_path, src, "one")) as host:
        old = host.current
        first = host.checkout()
        second = host.checkout(old)
        assert first.generation is old and host.in_flight(old) == 2
        await host.reload(service_settings(tmp_path, src, "two"))
        first.release()
        first.release()  # a second release does nothing
        assert host.in_flight(old) == 1
        for _ in range(50):
            await asyncio.sleep(0)
        assert not any(line.startswith("stop") for line in read_log(log))
        second.release()
        await wait_for(lambda: counters(host)["plugin_generations_retired_total"] == 1)
        assert "stop-end one first" in read_log(log)
