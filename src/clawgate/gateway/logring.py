"""The gateway's recent log records for ``logs.tail``, and tailing a log file.

:class:`LogRing` is a logging handler the gateway attaches to the ``clawgate`` logger for its
serving lifetime (one per gateway object, removed when it stops). It keeps the newest records
as JSON lines, numbered from 1. Records below the loggers' configured level never reach it.

Lines are in OpenClaw's file-log shape (tslog JSONL) so its Logs panel and ``openclaw logs``
show them: the message as positional field ``"0"`` and as ``message``, ``_meta`` with
``logLevelName``/``logLevelId``, the date and ``name`` (``{"subsystem": ...}`` as JSON, which
is where those readers take the subsystem from), and ``time``. The subsystem is the logger
name without ``clawgate.`` and with ``/`` for ``.`` (``gateway/ws``), as OpenClaw names its own.
"""

from __future__ import annotations

import logging
import re
import socket
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

REDACTED = "__REDACTED__"
URL_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
LOG_RING_SIZE = 2000
# tslog's level ids, which OpenClaw's log readers understand.
LEVEL_IDS = {"TRACE": 1, "DEBUG": 2, "INFO": 3, "WARN": 4, "ERROR": 5, "FATAL": 6}
LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def subsystem(logger_name: str) -> str:
    """``clawgate.gateway.ws`` -> ``gateway/ws`` (OpenClaw's subsystem naming)."""
    name = logger_name.removeprefix("clawgate.") if logger_name != "clawgate" else "gateway"
    return name.replace(".", "/")


class _Unformatted:
    """A record kept as its fields until a reader asks for its line: most records of a busy
    gateway (one per turn) are never read, and formatting was ~5% of a turn's loop time."""

    __slots__ = ("created", "level", "name", "message", "text")

    def __init__(self, record: logging.LogRecord) -> None:
        self.created = record.created
        self.level = record.levelname
        self.name = record.name
        self.message = record.getMessage()  # now: its arguments may change later
        self.text: str | None = None

    def line(self, host: str) -> str:
        if self.text is None:
            self.text = log_line(self.created, self.level, self.name, self.message, host)
            self.message = ""
        return self.text


def log_line(created: float, levelname: str, logger: str, raw: str, host: str) -> str:
    """One record's fields as an OpenClaw JSONL log line (credentials in URLs removed)."""
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    level = LEVEL_NAMES.get(levelname, levelname)
    name = orjson.dumps({"subsystem": subsystem(logger)}).decode()
    message = URL_USERINFO.sub(r"\1" + REDACTED + "@", raw)
    return orjson.dumps({
        "0": message,
        "_meta": {"runtime": "python", "date": stamp, "logLevelId": LEVEL_IDS.get(level, 3),
                  "logLevelName": level, "name": name, "hostname": host},
        "time": stamp, "hostname": host, "message": message,
    }).decode()


# Which gateway the current task works for: set by the gateway for its lifespan and for every
# request it serves (tasks inherit it), so one gateway's log ring skips another's records (I6).
SERVING: ContextVar[object | None] = ContextVar("clawgate_serving_gateway", default=None)


class LogRing(logging.Handler):
    """The newest ``capacity`` log records as JSON lines, numbered from 1: those of its own
    gateway, and untagged ones (plugin threads, libraries) that no gateway can claim."""

    def __init__(self, capacity: int = LOG_RING_SIZE, owner: object | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: deque[tuple[int, _Unformatted]] = deque(maxlen=capacity)
        self.last = 0
        self.owner = owner
        self.host = socket.gethostname()
        # Told after each record (on the logging thread): the LogFeed's wake-up, when it runs.
        self.on_record: Callable[[], None] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        serving = SERVING.get()
        return (serving is None or serving is self.owner) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = _Unformatted(record)
        except Exception:
            self.handleError(record)
            return
        self.last += 1  # emit runs under the handler's lock
        self.lines.append((self.last, line))
        notify = self.on_record
        if notify is not None:
            notify()

    def attach(self) -> None:
        """Start receiving the ``clawgate`` loggers' records (once; a second call is a no-op)."""
        logger = logging.getLogger("clawgate")
        if self not in logger.handlers:
            logger.addHandler(self)

    def detach(self) -> None:
        logging.getLogger("clawgate").removeHandler(self)

    def snapshot(self) -> tuple[list[tuple[int, str]], int]:
        with self.lock or _NO_LOCK:
            return [(seq, line.line(self.host)) for seq, line in self.lines], self.last


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def tail_ring(ring: LogRing, cursor: int | None, limit: int, max_bytes: int) -> dict[str, Any]:
    lines, last = ring.snapshot()
    first = lines[0][0] if lines else last + 1
    reset = cursor is not None and (cursor > last or cursor < first - 1)
    if cursor is None or reset:  # the newest lines that fit
        chosen: list[tuple[int, str]] = []
        used = 0
        for seq, line in reversed(lines[-limit:]):
            if used + len(line) + 1 > max_bytes:
                break
            chosen.append((seq, line))
            used += len(line) + 1
        chosen.reverse()
        truncated = len(chosen) < len(lines)
    else:  # the oldest lines after the cursor that fit
        after = [(s, line) for s, line in lines if s > cursor]
        chosen, used = [], 0
        for seq, line in after[:limit]:
            if used + len(line) + 1 > max_bytes:
                break
            chosen.append((seq, line))
            used += len(line) + 1
        truncated = len(chosen) < len(after)
    end = chosen[-1][0] if chosen else (last if cursor is None or reset else cursor)
    out: dict[str, Any] = {"file": "memory:clawgate", "cursor": end, "size": last,
                           "lines": [line for _, line in chosen]}
    if truncated:
        out["truncated"] = True
    if reset:
        out["reset"] = True
    return out


def tail_file(path: Path, cursor: int | None, limit: int, max_bytes: int) -> dict[str, Any]:
    """Complete lines of a log file; ``cursor`` is a byte offset. Blocking."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return {"file": str(path), "cursor": 0, "size": 0, "lines": []}
    reset = cursor is not None and cursor > size
    tail = cursor is None or reset
    start = max(0, size - max_bytes) if tail else int(cursor or 0)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(min(max_bytes, size - start))
    skip = data.find(b"\n") + 1 if tail and start > 0 else 0
    end = data.rfind(b"\n") + 1
    body = data[skip:end] if end > skip else b""
    lines = body.decode("utf-8", "replace").splitlines()
    consumed = start + skip + len(body)
    truncated = consumed < size
    if len(lines) > limit:
        truncated = True
        if tail:
            lines = lines[-limit:]
        else:
            lines = lines[:limit]
            consumed = start + skip + sum(len(x.encode()) + 1 for x in lines)
    out: dict[str, Any] = {"file": str(path), "cursor": consumed, "size": size, "lines": lines}
    if truncated:
        out["truncated"] = True
    if reset:
        out["reset"] = True
    return out
