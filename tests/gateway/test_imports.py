"""What a gateway's start-up imports (issue 12, item 4): neither uvicorn's command line nor the
WebSocket client, and uvicorn imported that way still offers every name of its package; the
cyclic GC is paused while the API is imported and is back on after a failed start. Each check
runs in a fresh interpreter, as `clawgate gateway` does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from clawgate import cli


def run(script: str, state: Path, **extra_env: str) -> Any:
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(state), **extra_env}
    env.pop("CLAWGATE_CONFIG", None)
    env.pop("CLAWGATE_GATEWAY_PORT", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_gateway_command_does_not_import_uvicorns_cli_or_the_client(
        tmp_path: Path) -> None:
    found = run("""
        import gc, json, sys
        import clawgate.cli, clawgate.gateway.app
        print(json.dumps({"loaded": [m for m in ("uvicorn.main", "click", "watchfiles.run",
                                               "clawgate.client", "websockets.asyncio.client",
                                               "urllib.request", "tomllib", "jsonschema")
                                     if m in sys.modules],
                          "gc": gc.isenabled(), "frozen": gc.get_freeze_count()}))
    """, tmp_path)
    # watchfiles comes with memory-core's watcher, jsonschema with a manifest to check: neither
    # is imported before the gateway starts.
    assert found["loaded"] == []
    assert found["gc"] is True and found["frozen"] > 10_000


DESCRIBE = textwrap.dedent("""
    def describe(value):
        name = getattr(value, "__qualname__", getattr(value, "name", ""))
        where = getattr(value, "__module__", "")
        return f"{type(value).__module__}.{type(value).__qualname__}:{where}.{name}"

    def names(uvicorn):
        return {"all": sorted(uvicorn.__all__), "version": uvicorn.__version__,
                "names": {n: describe(getattr(uvicorn, n)) for n in uvicorn.__all__}}
""")


def test_uvicorn_without_its_cli_offers_every_name_of_its_package(tmp_path: Path) -> None:
    plain = run(DESCRIBE + """
import json
import uvicorn
print(json.dumps(names(uvicorn)))
""", tmp_path)
    ours = run(DESCRIBE + """
import json, sys
import clawgate.gateway.serving
import uvicorn
before = "uvicorn.main" in sys.modules
found = names(uvicorn)
print(json.dumps({**found, "before": before, "after": "uvicorn.main" in sys.modules}))
""", tmp_path)
    assert ours.pop("before") is False  # main and run come on first use
    assert ours.pop("after") is True
    assert ours == plain


def test_the_collector_is_back_on_after_a_failed_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        found = run(f"""
            import gc, json
            from clawgate import cli
            code = cli.main(["gateway", "--port", "{port}"])
            print(json.dumps({{"code": code, "gc": gc.isenabled()}}))
        """, tmp_path)
    assert found == {"code": 1, "gc": True}


def serving(tmp_path: Path, report: str, **extra_env: str) -> Any:
    """Run ``clawgate gateway`` in a fresh interpreter; once it answers /health, a thread
    evaluates the expression ``report`` there (names: asyncio, gc, sys, threading) and its
    JSON value is returned."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    return run(f"""
        import asyncio, gc, json, os, sys, threading, time, urllib.request
        from clawgate import cli

        def running_loops():
            # The loop the gateway's asyncio.Runner runs, found on the main thread's stack.
            frame = sys._current_frames()[threading.main_thread().ident]
            loops = []
            while frame is not None:
                runner = frame.f_locals.get("self")
                if isinstance(runner, asyncio.Runner):
                    loops.append(type(runner.get_loop()).__module__)
                frame = frame.f_back
            return loops

        def probe():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen("http://127.0.0.1:{port}/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            print(json.dumps({report}), flush=True)
            os._exit(0)

        threading.Thread(target=probe, daemon=True).start()
        cli.main(["gateway", "--port", "{port}"])
    """, tmp_path, **extra_env)


def test_a_serving_gateway_collects_young_objects_rarely_and_switches_threads_often(
        tmp_path: Path) -> None:
    found = serving(tmp_path, '{"young": gc.get_threshold()[0], "gc": gc.isenabled(), '
                              '"switch": sys.getswitchinterval()}')
    assert found == {"young": cli.GC_YOUNG, "gc": True, "switch": cli.GIL_SWITCH_S}


def test_the_openai_plugin_loads_without_its_http_client(tmp_path: Path) -> None:
    found = run("""
        import json, sys
        import clawgate.bundled.openai.plugin, clawgate.bundled.openai.provider
        print(json.dumps({"aiohttp": "aiohttp" in sys.modules, "httpx": "httpx" in sys.modules}))
    """, tmp_path)
    # The first request to the provider imports its client; httpx it never needs.
    assert found == {"aiohttp": False, "httpx": False}


@pytest.mark.parametrize(("choice", "module"), [("auto", "uvloop"), ("asyncio", "asyncio")])
def test_the_gateway_serves_on_uvloop_unless_told_asyncio(tmp_path: Path, choice: str,
                                                          module: str) -> None:
    found = serving(tmp_path, "running_loops()", CLAWGATE_EVENT_LOOP=choice)
    assert [m.split(".")[0] for m in found] == [module]


def test_an_unknown_event_loop_is_refused_by_name(tmp_path: Path) -> None:
    found = run("""
        import json
        from clawgate import cli
        print(json.dumps({"code": cli.main(["gateway", "--port", "1"])}))
    """, tmp_path, CLAWGATE_EVENT_LOOP="trio")
    assert found == {"code": 1}
