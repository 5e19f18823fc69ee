"""Replica identity (``sessions.replica``): each process names itself and holds a liveness
lease, so another process learns that it died — on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clawgate.sessions.leases import check_name
from clawgate.sessions.replica import Replica, lease_name, new_id
from clawgate.sessions.store import SessionStore

LIVE = """
import asyncio, sys
from clawgate.sessions.replica import Replica
from clawgate.sessions.store import SessionStore

async def main():
    async with SessionStore(sys.argv[1]) as store:
        replica = Replica(store)
        await replica.start()
        print(replica.id, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def _live(location: Path | str) -> tuple[subprocess.Popen[str], str]:
    """A child process running a replica on the store, and that replica's id."""
    child = subprocess.Popen([sys.executable, "-c", LIVE, str(location)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_ids_are_distinct_lease_names() -> None:
    ids = {new_id() for _ in range(50)}
    assert len(ids) == 50
    for replica_id in ids:
        assert check_name(lease_name(replica_id)) == lease_name(replica_id)


async def test_alive_until_killed(db_path: Path | str, anyio_backend: str) -> None:
    async with SessionStore(db_path) as store:
        me = Replica(store)
        await me.start()
        assert await me.alive(me.id) and await me.holding()
        assert not await me.alive(new_id())  # never started: not alive
        child, other = _live(db_path)
        try:
            assert other and other != me.id
            assert await me.alive(other)
            assert await me.alive(other)  # probing does not take the lease away
        finally:
            child.kill()  # kill -9: no goodbye
            child.wait(10)
        assert not await me.alive(other)
        await me.stop()
        assert not await me.holding()
