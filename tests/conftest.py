"""Shared fixtures: async tests run on asyncio through AnyIO's pytest plugin."""

from __future__ import annotations

import pytest

# The mock OpenAI-compatible server's fixtures (mock_openai, mock_openai_factory) for every suite.
pytest_plugins = ["tests.support.mock_openai"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
