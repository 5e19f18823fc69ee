"""Leases (``store.lease``): one holder across processes on one store, handed over when the
holder releases it or is killed — on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from clawgate.sessions.store import SessionStore
from tests.support.poll import until

HOLD = """
import asyncio, sys
from clawgate.sessions.store import SessionStore

async def main():
    location = sys.argv[1]
    async with SessionStore(location) as store:
        lease = store.lease("cron")
        print("held" if await lease.acquire() else "refused", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_one_holder_at_a_time_until_released(db_path: Path | str,
                                                   anyio_backend: str) -> None:
    async with SessionStore(db_path) as one, SessionStore(db_path) as two:
        a, b = one.lease("cron"), two.lease("cron")
        assert await a.acquire() and a.held and await a.check()
        assert not await b.acquire() and not b.held
        assert await a.acquire()  # acquiring a held lease again keeps it
        assert await b.acquire() is False
        other = two.lease("channels.telegram")  # another name is another lease
        assert await other.acquire()
        await a.release()
        assert not a.held and not await a.check()
        assert await b.acquire() and await b.check()
        await b.release()
        await other.release()


def _holder(location: Path | str) -> subprocess.Popen[str]:
    """A child process holding the ``cron`` lease of the store (once it says so)."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(location)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.kill()  # kill -9: no release, no goodbye
    child.wait(10)


async def test_a_killed_holder_hands_the_lease_over(db_path: Path | str,
                                                    anyio_backend: str) -> None:
    async with SessionStore(db_path) as store:  # creates the store before the child opens it
        holder = await anyio.to_thread.run_sync(_holder, db_path)
        try:
            lease = store.lease("cron")
            assert not await lease.acquire()
            await anyio.to_thread.run_sync(_kill, holder)
            await until(lease.acquire, within=15)  # the kernel / the server saw it end
            assert await lease.check()
            await lease.release()
        finally:
            await anyio.to_thread.run_sync(_kill, holder)


def test_a_lease_name_is_checked(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "x.db")
    with pytest.raises(ValueError, match="lease name"):
        store.lease("Not OK")
