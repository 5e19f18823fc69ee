"""New identifiers are version-7 UUIDs: unique, and ordered by when they were made."""

from __future__ import annotations

import os
import time
import uuid

from clawgate.ids import new_id


def test_ids_are_version_7_uuids_in_canonical_form():
    text = new_id()
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_begin_with_their_creation_time_and_sort_by_it():
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.003)
    second = new_id()
    after = time.time_ns() // 1_000_000
    assert first < second
    made = uuid.UUID(first).int >> 80
    assert before <= made <= after


def test_ids_made_in_one_millisecond_are_still_distinct():
    many = [new_id() for _ in range(20_000)]
    assert len(set(many)) == len(many)


def test_a_forked_child_makes_other_ids_than_its_parent():
    new_id()  # the parent holds unused randomness now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = new_id()
    low = (1 << 74) - 1  # the random bits (12 + 62)
    assert uuid.UUID(child).int & low != uuid.UUID(mine).int & low
