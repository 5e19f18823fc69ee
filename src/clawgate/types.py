"""The vocabulary every layer shares: mode and status literals, and the wall clock.

Declared once here (the bottom layer), so config, the store, the engine and the wire schemas
spell each concept the same way.
"""

from __future__ import annotations

import time
from typing import Literal, get_args

QueueMode = Literal["followup", "collect", "interrupt", "steer"]
QUEUE_MODES: tuple[QueueMode, ...] = get_args(QueueMode)

RunStatus = Literal["queued", "running", "ok", "error", "aborted", "timeout", "interrupted"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
# How a run can end in this process (``interrupted`` is only written by crash recovery).
EndStatus = Literal["ok", "error", "aborted", "timeout"]

DmScope = Literal["main", "per-peer", "per-channel-peer", "per-account-channel-peer"]


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def queue_mode(value: object) -> QueueMode | None:
    """``value`` as a QueueMode when it is one (a stored session's ``queue_mode``), else None."""
    for mode in QUEUE_MODES:
        if value == mode:
            return mode
    return None
