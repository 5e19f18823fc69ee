"""A committed append survives SIGKILL of the process that wrote it."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from clawgate.sessions.store import SessionStore

CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from clawgate.sessions.store import SessionStore

    async def main():
        store = SessionStore(Path(sys.argv[1]))
        await store.open()
        await store.ensure("agent:main:main")
        await store.append("agent:main:main", [{"role": "user", "content": "survive me"}])
        print("committed", flush=True)
        sys.stdin.read()  # block until killed; the store is never closed

    asyncio.run(main())
""")


def _wait_for_line(proc: subprocess.Popen[str], deadline_s: float) -> str:
    assert proc.stdout is not None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], end - time.monotonic())
        if ready:
            return proc.stdout.readline()
    return ""


def test_sigkill_after_commit_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "clawgate.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = _wait_for_line(proc, 30)
        assert line.strip() == "committed", proc.stderr.read() if proc.poll() is not None else ""
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    async def reopen() -> list[object]:
        async with SessionStore(db) as store:
            return [m.content for m in await store.transcript("agent:main:main")]

    assert asyncio.run(reopen()) == ["survive me"]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
