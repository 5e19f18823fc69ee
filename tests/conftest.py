"""Shared fixtures: async tests run on asyncio through AnyIO's pytest plugin."""

from __future__ import annotations

import pytest

# The mock OpenAI-compatible server's fixtures (mock_openai, mock_openai_factory) for every suite.
# The throwaway PostgreSQL cluster (pg_cluster, store_location) for the store's tests.
pytest_plugins = ["tests.support.mock_openai", "tests.support.postgres"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that asks for ``store_backend`` (through ``store_location``) runs on SQLite
    and on PostgreSQL, unless marked ``sqlite_only`` (it inspects the SQLite file itself)."""
    if "store_backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("store_backend", ["sqlite"] if only else ["sqlite", "postgres"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
