"""New identifiers: UUIDs that begin with their creation time (version 7, RFC 9562).

Why not ``uuid4``: run ids, session ids and generated session keys are primary keys and index
entries. A random one lands on a random B-tree page, so each new run or session dirties pages
that no other write in its transaction shares (more WAL frames, a colder page cache); a
time-ordered one goes next to the previous one. They are as unique (74 random bits per
millisecond) and still UUIDs to every client; they tell when they were made, which the stored
records say anyway.
"""

from __future__ import annotations

import os
import threading
import time

_RANDOM_LOW = (1 << 62) - 1
_POOL_IDS = 256  # ids per read of the system's randomness


class _Randomness:
    """``os.urandom`` bytes, read 256 ids' worth at a time: each call is a system call that
    releases the GIL, a chance for another thread (the store's writer) to take it from the
    event loop, which then waits for it back; a gateway makes several ids per turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._at + size > len(self._pool):
                self._pool, self._at = os.urandom(size * _POOL_IDS), 0
            start = self._at
            self._at += size
            return self._pool[start:self._at]


    def forget(self) -> None:
        """After a fork: the child must not hand out the bytes its parent will."""
        self._lock = threading.Lock()
        self._pool, self._at = b"", 0


_RANDOMNESS = _Randomness()
os.register_at_fork(after_in_child=_RANDOMNESS.forget)


def new_id() -> str:
    """A version-7 UUID in its canonical text form."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_RANDOMNESS.take(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 64 & 0xFFF) << 64 \
        | 0b10 << 62 | rand & _RANDOM_LOW
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
