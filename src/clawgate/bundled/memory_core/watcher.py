"""The file watcher: re-sync an agent's index after its memory files change (watchfiles).

Per agent, one task follows each watch root (the workspace itself, flat, for ``MEMORY.md``
and a new ``memory/`` folder; ``memory/`` and the extra folders recursively) and records that
something changed; one more task waits until nothing has changed for the debounce (1.5 s by
default) and then syncs. A sync that finds the set of roots changed (``memory/`` was created)
restarts the root tasks. ``stop()`` sets the stop event, cancels every task and awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import watchfiles

from .files import MEMORY_DIR, MEMORY_FILE
from .manager import AgentMemory

_NO_ROOTS_RETRY_S = 5.0  # a workspace that does not exist yet is looked for again this often
# How often watchfiles' thread wakes to look for changes and the stop event, at most: each
# wake takes the GIL, so at 50 ms (its default) one watch root cost 20 wake-ups a second of
# an idle gateway. A change is then held for the debounce anyway, so waking a few times per
# debounce period delays nothing noticeable.
_MAX_STEP_MS = 500


class AgentWatcher:
    """Watches one agent's memory files and syncs its index after changes settle."""

    def __init__(self, memory: AgentMemory, *, debounce_s: float,
                 logger: logging.Logger) -> None:
        self.memory = memory
        self.debounce_s = debounce_s
        self._step_ms = max(50, min(_MAX_STEP_MS, int(debounce_s * 1000 / 3)))
        self.log = logger
        self.changes_total = 0
        self.syncs_total = 0
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._roots: list[tuple[Path, bool]] = []
        self._followers: list[asyncio.Task[None]] = []
        self._main: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(
            self._run(), name=f"memory-watch-{self.memory.agent_id}")

    async def stop(self) -> None:
        self._stop.set()
        tasks = [t for t in (self._main, *self._followers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._followers.clear()

    async def _run(self) -> None:
        try:
            # Follow first, then sync: an edit made during the first sync is not missed.
            await self._follow()
            await self._sync("startup")
            while not self._stop.is_set():
                if not self._roots:
                    # Nothing to watch yet: look for the workspace again later.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), _NO_ROOTS_RETRY_S)
                    await self._sync("rescan")
                else:
                    await self._changed.wait()
                    await self._settle()
                    await self._sync("change")
                if await self._follow():
                    # A file written before the new roots were followed would be missed.
                    await self._sync("new roots")
        finally:
            await self._unfollow()

    async def _settle(self) -> None:
        """Wait until no change has arrived for the debounce period."""
        while True:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), self.debounce_s)
            except TimeoutError:
                return

    async def _sync(self, reason: str) -> None:
        self._changed.clear()
        try:
            await self.memory.sync(reason)
            self.syncs_total += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bad file or a full disk must not kill the watcher
            self.log.error("memory %s: sync after %s failed: %s", self.memory.agent_id, reason,
                           exc)

    async def _follow(self) -> bool:
        """(Re)start the root tasks when the set of existing roots changed; True if it did."""
        roots = await asyncio.to_thread(self.memory.files.watch_roots)
        if roots == self._roots and all(not t.done() for t in self._followers):
            return False
        await self._unfollow()
        self._roots = roots
        relevant = _relevance(self.memory)
        for root, recursive in roots:
            self._followers.append(asyncio.get_running_loop().create_task(
                self._watch(root, recursive, relevant),
                name=f"memory-watch-{self.memory.agent_id}-{root.name}"))
        # One turn of the loop lets each task run up to its first await; watchfiles creates
        # its OS watches synchronously there, so changes from now on are seen.
        await asyncio.sleep(0)
        return True

    async def _unfollow(self) -> None:
        for task in self._followers:
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)
        self._followers.clear()

    async def _watch(self, root: Path, recursive: bool,
                     relevant: Callable[[watchfiles.Change, str], bool]) -> None:
        # Its own stop event: awatch sets the event it is given when it is cancelled, and a
        # shared one would stop the followers started after it.
        stop = asyncio.Event()
        try:
            async for batch in watchfiles.awatch(
                    root, watch_filter=relevant, recursive=recursive, stop_event=stop,
                    debounce=200, step=self._step_ms, ignore_permission_denied=True):
                if batch:
                    self.changes_total += len(batch)
                    self.memory.dirty = True
                    self._changed.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the folder was removed: re-sync and re-plan the roots
            self.log.info("memory %s: watching %s ended: %s", self.memory.agent_id, root, exc)
        self._changed.set()


def _relevance(memory: AgentMemory) -> Callable[[watchfiles.Change, str], bool]:
    extras = {str(e.root) for e in memory.files.extras}

    def relevant(change: watchfiles.Change, path: str) -> bool:
        name = os.path.basename(path)
        return (name.lower().endswith(".md") or name == MEMORY_DIR or name == MEMORY_FILE
                or path in extras)

    return relevant
