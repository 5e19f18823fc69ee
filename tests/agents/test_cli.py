"""The CLI end to end: ``clawgate agent`` and ``clawgate sessions list`` in subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

CLAWGATE = Path(sys.executable).parent / "clawgate"


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWGATE_")}
    env["CLAWGATE_STATE_DIR"] = str(tmp_path)
    return subprocess.run([str(CLAWGATE), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_agent_then_sessions_list(tmp_path):
    done = cli(tmp_path, "agent", "-m", "hi", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["status"], result["text"]) == ("ok", "hi")
    assert result["sessionKey"] == "agent:main:main"

    listed = cli(tmp_path, "sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert page["count"] == page["total"] == 1
    [row] = page["sessions"]
    assert row["key"] == "agent:main:main"
    assert (row.get("modelProvider"), row.get("model")) == ("echo", "echo")
    assert (tmp_path / "clawgate.db").exists() and (tmp_path / "workspace").is_dir()


def test_agent_on_a_named_session_keeps_history(tmp_path):
    for text in ("first", "second"):
        done = cli(tmp_path, "agent", "-m", text, "--session", "notes", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sessionKey"] == "agent:main:notes"

    page = json.loads(cli(tmp_path, "sessions", "list", "--json").stdout)
    [row] = page["sessions"]
    assert row["key"] == "agent:main:notes" and row["totalTokens"] > 0
    with sqlite3.connect(tmp_path / "clawgate.db") as conn:
        stored = conn.execute("SELECT role, content FROM messages WHERE key = ? ORDER BY seq",
                              ("agent:main:notes",)).fetchall()
    assert stored == [("user", '"first"'), ("assistant", '"first"'),
                      ("user", '"second"'), ("assistant", '"second"')]  # JSON-encoded content
