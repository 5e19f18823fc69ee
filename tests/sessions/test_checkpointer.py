"""The WAL is copied back into the database by the checkpoint thread, beside the writer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from clawgate.sessions import checkpointer
from clawgate.sessions.store import SessionStore
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only]  # SQLite's WAL


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "clawgate-db-checkpoint"]


async def test_commits_reach_the_database_file_long_before_the_backstop(db_path: Path) -> None:
    async with SessionStore(db_path) as store:
        await store.ensure("agent:main:main")
        before = _size(db_path)
        # Each ensure is its own commit; far fewer pages than the writer's own checkpoint needs.
        for n in range(checkpointer.EVERY_COMMITS * 2):
            await store.ensure(f"agent:main:main:n{n}", label="x" * 500)
        grown = await until(lambda: _size(db_path) > before, interval=0.01)
        assert grown
        assert len(_checkpoint_threads()) == 1
    assert _checkpoint_threads() == []  # stopped with the store
    assert _size(Path(f"{db_path}-wal")) == 0  # the writer's close checkpointed the rest

