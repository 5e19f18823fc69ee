"""LoopBatchedHandler: a loop pass's records in one write, in order, nothing held past it."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

from clawgate.diagnostics.logbatch import LoopBatchedHandler


class Stream(io.StringIO):
    """A text stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(f"test.logbatch.{name}")
    log.propagate = False
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    return log


def test_records_of_one_loop_pass_are_one_write_at_its_end() -> None:
    stream = Stream()
    handler = LoopBatchedHandler(stream)
    log = logger_with(handler, "pass")

    async def main() -> list[str]:
        handler.bind(asyncio.get_running_loop())
        for n in range(3):
            log.info("turn %d", n)
        during = list(stream.writes)
        await asyncio.sleep(0)  # the pass ends: the batch goes out
        await asyncio.sleep(0)
        return during

    during = asyncio.run(main())
    assert during == []
    assert stream.writes == ["turn 0\nturn 1\nturn 2\n"]


def test_another_threads_record_comes_after_what_is_held() -> None:
    stream = Stream()
    handler = LoopBatchedHandler(stream)
    log = logger_with(handler, "thread")

    async def main() -> None:
        handler.bind(asyncio.get_running_loop())
        log.info("first, on the loop")
        other = threading.Thread(target=log.info, args=("second, from a thread",))
        other.start()
        other.join()
        log.info("third, on the loop")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert stream.writes == ["first, on the loop\nsecond, from a thread\n", "third, on the loop\n"]


def test_without_a_running_bound_loop_each_record_is_written_at_once() -> None:
    stream = Stream()
    handler = LoopBatchedHandler(stream)
    log = logger_with(handler, "unbound")
    log.info("before any loop")
    assert stream.writes == ["before any loop\n"]

    async def bind() -> None:
        handler.bind(asyncio.get_running_loop())

    asyncio.run(bind())
    log.info("after the loop stopped")
    assert stream.writes == ["before any loop\n", "after the loop stopped\n"]


def test_closing_writes_what_is_held() -> None:
    stream = Stream()
    handler = LoopBatchedHandler(stream)
    log = logger_with(handler, "close")

    async def main() -> None:
        handler.bind(asyncio.get_running_loop())
        log.info("held")
        handler.close()  # e.g. logging.shutdown at exit, before the callback ran
        assert stream.writes == ["held\n"]

    asyncio.run(main())
    assert stream.writes == ["held\n"]
