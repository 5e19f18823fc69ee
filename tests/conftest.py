"""Shared fixtures: async tests run on asyncio through AnyIO's pytest plugin."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
