"""Start-up names every configuration problem once (a plugin with bad config, a misspelt id in
``plugins.entries``, a ``load_paths`` folder that does not exist, an agent whose provider is
not loaded) and every plugin from outside the package; ``plugins doctor`` reports them too
(issue 7, items 7 and 18). Real `clawgate gateway` and `clawgate plugins doctor` processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from tests.gateway.test_process import CLAWGATE, free_port
from tests.gateway.test_startup import env_for, run_cli, stop, wait_ready

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def test_start_up_warns_once_per_problem_and_names_trusted_plugins(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    missing = tmp_path / "no-such-plugins"
    good = FIXTURES / "good_tool"
    (state / "clawgate.toml").write_text(f"""
[plugins]
load_paths = ["{missing}", "{good}"]

[plugins.entries.echo.config]
delay_ms = "x"

[plugins.entries.ecoh]
enabled = true

[[agents]]
id = "main"
model = {{ primary = "echo/echo", fallbacks = ["nosuch/model"] }}
""")
    port = free_port()
    proc = subprocess.Popen([CLAWGATE, "gateway", "--port", str(port)], env=env_for(state),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
    finally:
        out = stop(proc)
    warnings = [line.split("start-up: ", 1)[1] for line in out.splitlines()
                if "WARNING" in line and "start-up: " in line]
    expected = [
        "plugins.entries.echo.config: invalid config at $.delay_ms",
        "plugins.entries.ecoh: no such plugin",
        f"plugins.load_paths: folder {missing} does not exist",
        "agent 'main': no loaded plugin provides 'echo' (needed by echo/echo)",
        "agent 'main': no loaded plugin provides 'nosuch' (needed by nosuch/model)",
    ]
    for needle in expected:
        assert sum(needle in w for w in warnings) == 1, (needle, warnings)
    trust = [line for line in out.splitlines() if "running as trusted code" in line]
    assert len(trust) == 1 and f"good_tool (config {good})" in trust[0]

    doctor = run_cli("plugins", "doctor", "--json", state=state)
    assert doctor.returncode == 1
    report = orjson.loads(doctor.stdout)
    assert report["ok"] is False
    assert any(r["root"] == str(missing) and "does not exist" in r["reason"]
               for r in report["refused"])
    assert {"pluginId": "good_tool", "origin": "config", "root": str(good),
            "status": "loaded"} in report["trusted"]
    text = run_cli("plugins", "doctor", state=state).stdout
    assert f"trusted  good_tool (config {good}): loaded" in text
    assert "does not exist" in text and "problems found" in text
