"""Durability: an acknowledged message survives SIGKILL of the process that accepted it.

A child process (same interpreter and venv) starts an engine whose echo provider takes ten
minutes, submits messages and prints ``acked <run id>`` once each ``submit`` has returned; the
test then SIGKILLs it, reopens the store and starts an engine (which recovers open runs).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN, texts
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only]  # reads the SQLite file
REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent('''
    import asyncio, sys
    from pathlib import Path

    from clawgate import config
    from clawgate.agents.bus import RunEvent
    from clawgate.agents.turn import Submission
    from clawgate.runtime import Runtime


    async def main(state, wait_for_start, messages):
        data = {"plugins": {"entries": {"echo": {"config": {"delay_ms": 600000}}}}}
        settings = config.Settings(config.parse(data), state_dir=state,
                                   config_path=state / "clawgate.toml")
        runtime = Runtime(settings)
        await runtime.start()
        engine = runtime.engine
        with engine.bus.subscribe() as events:
            for n, text in enumerate(messages):
                run = await engine.submit(Submission(text, run_id=f"run-{n}"))
                print(f"acked {run.run_id}", flush=True)
                if n == 0 and wait_for_start:
                    while True:  # the first run is in the provider call: the next one queues
                        event = await events.get()
                        if isinstance(event, RunEvent) and event.stream == "lifecycle" \
                                and event.run_id == run.run_id:
                            break
                    print("started run-0", flush=True)
        await asyncio.Event().wait()  # until killed


    asyncio.run(main(Path(sys.argv[1]), sys.argv[2] == "wait", sys.argv[3:]))
''')


async def run_child_and_kill(tmp_path: Path, mode: str, messages: list[str]) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(state), mode, *messages, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    wanted = len(messages) + (mode == "wait")
    try:
        async with asyncio.timeout(30):
            while len(lines) < wanted:
                line = await proc.stdout.readline()
                if not line:
                    err = await proc.stderr.read()
                    raise AssertionError(f"child exited early: {err.decode()[-2000:]}")
                lines.append(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return lines


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


async def test_acked_running_and_queued_messages_survive_sigkill(make_engine, tmp_path):
    lines = await run_child_and_kill(tmp_path, "wait", ["first message", "second message"])
    assert lines == ["acked run-0", "started run-0", "acked run-1"]
    state = tmp_path / "state"

    # engine.start() recovers the open runs; "mark" is the behaviour without resuming.
    h = await make_engine(state=state, engine={"resume_interrupted": "mark"})

    assert texts(await h.store.transcript(MAIN)) == [
        ("user", "first message"), ("user", "second message")]
    for run_id in ("run-0", "run-1"):
        record = await h.store.get_run(run_id)
        assert record is not None and record.status == "interrupted"
    assert await asyncio.to_thread(integrity, state / "clawgate.db") == "ok"
    assert await h.store.recover_runs() == (0, [])  # nothing left open

    result = await h.engine.run(Submission("after the restart"))  # the session works again
    assert (result.status, result.text) == ("ok", "after the restart")


async def test_message_killed_right_after_its_ack_survives(make_engine, tmp_path):
    lines = await run_child_and_kill(tmp_path, "nowait", ["only message"])
    assert lines == ["acked run-0"]

    h = await make_engine(state=tmp_path / "state", engine={"resume_interrupted": "mark"})

    assert texts(await h.store.transcript(MAIN)) == [("user", "only message")]
    record = await h.store.get_run("run-0")
    assert record is not None and record.status == "interrupted"
    assert await asyncio.to_thread(integrity, tmp_path / "state" / "clawgate.db") == "ok"


async def test_recovery_keeps_admission_order_within_one_millisecond(tmp_path, anyio_backend):
    from clawgate.sessions.store import SessionStore

    async with SessionStore(tmp_path / "clawgate.db", clock=lambda: 1_700_000_000_000) as store:
        await store.ensure(MAIN)
        for run_id, text in (("zzz", "first"), ("mmm", "second"), ("aaa", "third")):
            await store.admit(run_id, MAIN, [{"role": "user", "content": text}])
        assert await store.recover_runs() == (3, [])
        assert [m.content for m in await store.transcript(MAIN)] == ["first", "second", "third"]


async def test_rerun_answers_the_acknowledged_messages_that_had_not_started(make_engine,
                                                                            tmp_path):
    """``resume_interrupted = "rerun"`` (the default): the queued message is run again after
    the restart and gets its reply; the one that was running is marked interrupted."""
    lines = await run_child_and_kill(tmp_path, "wait", ["first message", "second message",
                                                        "third message"])
    assert lines == ["acked run-0", "started run-0", "acked run-1", "acked run-2"]
    state = tmp_path / "state"

    h = await make_engine(state=state)

    async def answered() -> bool:
        runs = [await h.store.get_run(f"run-{n}") for n in (1, 2)]
        return all(r is not None and r.status == "ok" for r in runs)

    await until(answered)
    record = await h.store.get_run("run-0")
    assert record is not None and record.status == "interrupted"
    assert texts(await h.store.transcript(MAIN)) == [
        ("user", "first message"), ("user", "second message"), ("assistant", "second message"),
        ("user", "third message"), ("assistant", "third message")]
    assert await asyncio.to_thread(integrity, state / "clawgate.db") == "ok"


async def test_a_message_on_an_idle_session_starts_in_its_admission_transaction(make_engine):
    """One trip to the store for admission and start: when ``submit`` returns on an idle
    session the run is already ``running`` with its message in the transcript; behind a busy
    run, or in ``collect`` mode, the message waits ``queued`` (durable in the run record)."""
    h = await make_engine(echo={"delay_ms": 600000})
    first = await h.engine.submit(Submission("first", run_id="first"))
    record = await h.store.get_run("first")
    assert record is not None and record.status == "running"
    assert texts(await h.store.transcript(MAIN)) == [("user", "first")]

    second = await h.engine.submit(Submission("second", run_id="second"))
    record = await h.store.get_run("second")
    assert record is not None and record.status == "queued"
    assert texts(await h.store.transcript(MAIN)) == [("user", "first")]

    other = "agent:main:other"
    collected = await h.engine.submit(Submission("later", run_id="collected",
                                                 session_key=other, mode="collect"))
    record = await h.store.get_run("collected")
    assert record is not None and record.status == "queued"

    for key in (MAIN, other):
        h.engine.abort(key)
    results = [await t.result() for t in (first, second, collected)]
    assert [r.status for r in results] == ["aborted"] * 3
    expected = [("user", "first"), ("assistant", ""), ("user", "second")]

    async def recorded() -> bool:  # the lane records the queued run's abort after its answer
        return texts(await h.store.transcript(MAIN)) == expected

    await until(recorded)
