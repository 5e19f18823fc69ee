"""``clawgate plugins list|inspect|doctor`` against real plugin folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clawgate import cli
from tests.plugins.factory import copy_fixtures


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dir with a config file; nothing from the real home directory leaks in."""
    root = tmp_path / "state"
    root.mkdir()
    monkeypatch.setenv("CLAWGATE_STATE_DIR", str(root))
    monkeypatch.delenv("CLAWGATE_CONFIG", raising=False)
    monkeypatch.delenv("CLAWGATE_GATEWAY_PORT", raising=False)
    return root


def configure(state: Path, *fixtures: str, extra: str = "") -> Path:
    src = copy_fixtures(state / "load", *fixtures)
    (state / "clawgate.toml").write_text(
        f'[plugins]\nload_paths = ["{src}"]\n{extra}', encoding="utf-8")
    return src


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_shows_status_and_reasons(state: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    configure(state, "good_tool", "raises_at_import")
    code, out, _ = run(capsys, "plugins", "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data["generation"], int) and len(data["plan"]) == 64
    rows = {r["id"]: r for r in data["plugins"]}
    assert rows["good_tool"]["status"] == "loaded"
    assert rows["good_tool"]["reason"] == "config plugin (enabled by default)"
    assert rows["good_tool"]["tools"] == ["greet"]
    assert rows["echo"]["status"] == "loaded" and rows["echo"]["origin"] == "bundled"
    assert rows["openai"]["reason"] == "bundled (disabled by default)"
    assert rows["raises_at_import"]["status"] == "error"
    assert rows["raises_at_import"]["failurePhase"] == "load"
    assert "boom at import" in rows["raises_at_import"]["error"]


def test_list_table(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure(state, "good_tool", extra='deny = ["clock"]\n')
    code, out, _ = run(capsys, "plugins", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ORIGIN", "STATUS", "REASON"]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert by_id["clock"].split()[1:3] == ["bundled", "disabled"]
    assert by_id["clock"].endswith("blocked by denylist")
    assert by_id["good_tool"].split()[1:3] == ["config", "loaded"]


def test_inspect_shows_decision_config_and_diagnostics(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(state, "good_tool", "conflict_a", "conflict_b",
              extra='[plugins.entries.good_tool]\nenabled = true\nconfig = {greeting = "hey"}\n')
    code, out, _ = run(capsys, "plugins", "inspect", "good_tool")
    assert code == 0
    detail = json.loads(out)
    assert detail["decision"] == {"enabled": True, "source": "explicit", "rule": "explicit",
                                  "reason": "enabled in config"}
    assert detail["config"] == {"greeting": "hey"}
    assert detail["manifest"]["name"] == "Good tool"
    assert detail["diagnostics"] == []

    code, out, _ = run(capsys, "plugins", "inspect", "conflict_b")
    assert code == 0
    diagnostics = json.loads(out)["diagnostics"]
    assert {d["level"] for d in diagnostics} == {"error"}
    assert any("tool 'same_name'" in d["message"] for d in diagnostics)
    assert any("method 'same.method'" in d["message"] for d in diagnostics)


def test_inspect_unknown_plugin_exits_1(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plugins", "inspect", "no-such-plugin")
    assert code == 1
    assert out == ""
    assert "no plugin 'no-such-plugin'" in err


def test_doctor_ok_with_healthy_plugins(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure(state, "good_tool", "good_provider")
    code, out, _ = run(capsys, "plugins", "doctor")
    assert code == 0
    assert out.splitlines()[-1] == "ok"
    code, out, _ = run(capsys, "plugins", "doctor", "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True


@pytest.mark.parametrize("broken", ["raises_at_import", "raises_in_register", "exits_at_import"])
def test_doctor_exits_1_with_a_broken_plugin(
    state: Path, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    configure(state, "good_tool", broken)
    code, out, _ = run(capsys, "plugins", "doctor")
    assert code == 1
    assert out.splitlines()[-1] == "problems found"
    assert broken in out
    code, out, _ = run(capsys, "plugins", "doctor", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert [b["id"] for b in report["broken"]] == [broken]


def test_doctor_reports_refused_folders(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = configure(state, "good_tool")
    (src / "good_tool").chmod(0o777)
    code, out, _ = run(capsys, "plugins", "doctor", "--json")
    assert code == 1
    report = json.loads(out)
    (refused,) = report["refused"]
    assert refused["status"] == "blocked" and "world-writable" in refused["reason"]


def test_bad_config_is_a_clean_error(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (state / "clawgate.toml").write_text("[plugins]\nbogus = 1\n")
    code, out, err = run(capsys, "plugins", "list")
    assert code == 1
    assert "plugins.bogus" in err and "unknown key" in err


def test_config_env_var_names_another_file(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[plugins]\ndeny = ["echo"]\n')
    monkeypatch.setenv("CLAWGATE_CONFIG", str(other))
    code, out, _ = run(capsys, "plugins", "list", "--json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)["plugins"]}
    assert rows["echo"]["reason"] == "blocked by denylist"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_console_script(state: Path) -> None:
    configure(state, "good_tool")
    script = Path(sys.executable).parent / "clawgate"
    assert script.exists()
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(state)}
    done = subprocess.run([str(script), "plugins", "list"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert lines["good_tool"][1:3] == ["config", "loaded"]
    assert lines["echo"][1:3] == ["bundled", "loaded"]
