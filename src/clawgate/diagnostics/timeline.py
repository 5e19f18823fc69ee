"""The diagnostics timeline: JSONL span records in OpenClaw's ``openclaw.diagnostics.v1`` shape.

Enabled by ``CLAWGATE_DIAGNOSTICS=1`` (or ``timeline``) together with a non-empty
``CLAWGATE_DIAGNOSTICS_TIMELINE_PATH``; the ``OPENCLAW_`` names are accepted too, so OpenClaw's
tooling reads our timeline unchanged. Writing is best-effort: the first failure is reported once
on stderr and the timeline turns itself off. The parent span travels in a ContextVar, so
concurrent requests never see each other's spans.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

SCHEMA = "openclaw.diagnostics.v1"
Attr = str | int | float | bool | None


def _env(env: Mapping[str, str], name: str) -> str:
    return env.get(f"CLAWGATE_{name}") or env.get(f"OPENCLAW_{name}") or ""


class Timeline:
    """Writes span records to a JSONL file, or does nothing when disabled."""

    def __init__(self, path: Path | None, *, run_id: str | None = None,
                 env_name: str | None = None) -> None:
        self.path = path
        self._run_id = run_id
        self._env_name = env_name
        self._file: IO[bytes] | None = None
        self._parent: ContextVar[str | None] = ContextVar(f"timeline-{id(self)}", default=None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Timeline:
        env = os.environ if env is None else env
        flag = _env(env, "DIAGNOSTICS").strip().lower()
        path = _env(env, "DIAGNOSTICS_TIMELINE_PATH").strip()
        on = flag in ("1", "true", "yes", "on", "timeline")
        return cls(
            Path(path) if on and path else None,
            run_id=_env(env, "DIAGNOSTICS_RUN_ID") or None,
            env_name=_env(env, "DIAGNOSTICS_ENV") or None,
        )

    @property
    def enabled(self) -> bool:
        return self.path is not None

    @contextmanager
    def span(self, name: str, *, phase: str | None = None, **attributes: Attr) -> Iterator[str]:
        """Record ``span.start`` now and ``span.end`` (or ``span.error``) when the block ends."""
        if self.path is None:
            yield ""
            return
        span_id = str(uuid.uuid4())
        parent = self._parent.get()
        token = self._parent.set(span_id)
        base: dict[str, Any] = {"name": name, "spanId": span_id}
        if parent:
            base["parentSpanId"] = parent
        if phase:
            base["phase"] = phase
        self._write({"type": "span.start", **base, "attributes": attributes})
        started = time.perf_counter()
        try:
            yield span_id
        except BaseException as exc:
            self._write({"type": "span.error", **base, "durationMs": _ms(started),
                         "errorName": type(exc).__name__, "errorMessage": str(exc)[:500],
                         "attributes": attributes})
            raise
        else:
            self._write({"type": "span.end", **base, "durationMs": _ms(started),
                         "attributes": attributes})
        finally:
            self._parent.reset(token)

    def event(self, type_: str, name: str, **fields: Any) -> None:
        """Write a point record (e.g. a per-turn latency record)."""
        if self.path is not None:
            self._write({"type": type_, "name": name, **fields})

    def _write(self, record: dict[str, Any]) -> None:
        record = {"schemaVersion": SCHEMA, "timestamp": _now(), "pid": os.getpid(), **record}
        if self._run_id:
            record["runId"] = self._run_id
        if self._env_name:
            record["envName"] = self._env_name
        if not record.get("attributes"):
            record.pop("attributes", None)
        try:
            if self._file is None:
                assert self.path is not None
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab")
            self._file.write(orjson.dumps(record) + b"\n")
            self._file.flush()
        except OSError as exc:
            print(f"clawgate: diagnostics timeline disabled: {exc}", file=sys.stderr)
            self.path = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
