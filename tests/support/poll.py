"""Waiting for a condition in tests: poll with a deadline, never sleep for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(condition: Callable[[], Any], within: float = 10.0, *,
                interval: float = 0.0) -> Any:
    """Poll ``condition`` (sync, or returning an awaitable) until it is truthy and return that
    value, sleeping ``interval`` seconds between checks (0: just yield to the event loop; more
    when each check is a request to another process); raise TimeoutError after ``within``
    seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met before the deadline")
        await asyncio.sleep(interval)
