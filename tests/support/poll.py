"""Waiting for a condition in tests: poll with a deadline, never sleep for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(condition: Callable[[], Any], within: float = 10.0) -> None:
    """Poll ``condition`` (sync, or returning an awaitable) until it is truthy, yielding to the
    event loop between checks; raise TimeoutError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met before the deadline")
        await asyncio.sleep(0)
