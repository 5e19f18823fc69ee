"""A log handler that writes the records of one event-loop pass with one write.

``clawgate gateway`` logs one ``turn {...}`` record per turn at INFO. Written one by one, each
is a ``write`` system call on stderr that releases the GIL, which the store's writer thread
then takes while the event loop waits to get it back: at 16 connections INFO cost 4-14% of the
turns per second that WARNING gave. :class:`LoopBatchedHandler` keeps the lines the event
loop's thread logs during one pass of the loop and writes them together from a callback at the
end of that pass (``loop.call_soon``), so nothing waits longer than the pass it was logged in.
Lines from any other thread, or when no loop is bound or running, are written at once, after
whatever is still held, so the output keeps the order the records were made in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TextIO


class LoopBatchedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that batches the records of a bound loop's thread per loop pass."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Batch the records logged on ``loop``'s thread while it runs (call on that thread)."""
        self.acquire()
        try:
            self._loop, self._thread = loop, threading.get_ident()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        # Runs under the handler's lock (Handler.handle takes it).
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        loop = self._loop
        if loop is not None and self._thread == threading.get_ident() and loop.is_running():
            if not self._held:
                loop.call_soon(self.flush)
            self._held.append(line)
            return
        self._write(line)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write("")
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write(self, line: str) -> None:
        """Write what is held, then ``line``, as one write (the caller holds the lock)."""
        if self._held:
            line = "".join(self._held) + line
            self._held.clear()
        if line and self.stream is not None:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing to log to
                pass
