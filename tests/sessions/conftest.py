"""Fixtures for the session store tests: a settable clock and an open store in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clawgate.sessions.store import SessionStore

START_MS = 1_700_000_000_000


class Clock:
    """A clock the test moves by hand (epoch milliseconds)."""

    def __init__(self, now: int = START_MS, step: int = 0) -> None:
        self.now = now
        self.step = step  # added after every reading, for tests that want distinct times

    def __call__(self) -> int:
        now = self.now
        self.now += self.step
        return now

    def advance(self, ms: int = 1) -> int:
        self.now += ms
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(store_location: Path | str) -> Path | str:
    """The store's location: an SQLite file, or (the same test again) a PostgreSQL URL."""
    return store_location


@pytest.fixture
async def store(db_path: Path | str, clock: Clock,
                anyio_backend: str) -> AsyncIterator[SessionStore]:
    async with SessionStore(db_path, clock=clock) as s:
        yield s
