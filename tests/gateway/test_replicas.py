"""Two and three `clawgate gateway` processes on one PostgreSQL database behave as one gateway:
one session's turns never overlap across them, a replica killed with SIGKILL mid-turn has its
turn taken over and answered once, and a database restart under load loses nothing that was
acknowledged."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.test_process import GatewayProcess
from tests.support.postgres import Cluster

FAST = """
[engine]
takeover_interval_s = 0.5
[plugins.entries.echo.config]
delay_ms = {delay}
"""


def _chat(gateway: GatewayProcess, user: str, text: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                      json={"model": "clawgate", "user": user,
                            "messages": [{"role": "user", "content": text}]}, timeout=timeout)


def _rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql, args)]  # type: ignore[call-overload]


def _transcript(url: str, user: str) -> list[tuple[str, str]]:
    return [(str(r), orjson.loads(c)) for r, c in _rows(
        url, "SELECT role, content FROM messages WHERE key = %s AND archived = 0 ORDER BY seq",
        f"agent:main:openai-user:{user}")]


def _poll(condition: Callable[[], Any], within: float) -> Any:
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)
    return value


@pytest.fixture
def replicas(pg_cluster: Cluster, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[GatewayProcess]]]:
    url = pg_cluster.database()
    monkeypatch.setenv("CLAWGATE_STORE_URL", url)
    started: list[GatewayProcess] = []

    def start(count: int, delay_ms: int = 0) -> list[GatewayProcess]:
        for _ in range(count):  # one after the other: each binds its port before the next
            gateway = GatewayProcess(tmp_path / f"r{len(started)}",
                                     config=FAST.format(delay=delay_ms))
            started.append(gateway)
            gateway.wait_ready(60)
            out = gateway.proc.stdout  # read, or a full log pipe would block the gateway
            if out is not None:
                threading.Thread(target=lambda o=out: all(iter(o.readline, "")),
                                 daemon=True).start()
        return started[-count:]

    start.url = url  # type: ignore[attr-defined]
    yield start
    for gateway in started:
        gateway.stop()
    pg_cluster.release(url)


@pytest.mark.parametrize("count", [2, 3])
def test_one_sessions_turns_through_several_replicas_never_overlap(
        replicas: Callable[..., list[GatewayProcess]], count: int) -> None:
    gateways = replicas(count, delay_ms=100)
    url: str = replicas.url  # type: ignore[attr-defined]
    sent = [f"m{i}" for i in range(4 * count)]
    # All at once, spread over the replicas: each replica admits some of them while another
    # is running the session's turn.
    with concurrent.futures.ThreadPoolExecutor(len(sent)) as pool:
        replies = list(pool.map(lambda i: _chat(gateways[i % count], "bob", sent[i]),
                                range(len(sent))))
    assert [r.status_code for r in replies] == [200] * len(sent)
    assert [r.json()["choices"][0]["message"]["content"] for r in replies] == sent
    stored = _transcript(url, "bob")
    # user, assistant, user, assistant ...: each reply right after its own message.
    assert [role for role, _ in stored] == ["user", "assistant"] * len(sent)
    assert all(stored[i][1] == stored[i + 1][1] for i in range(0, len(stored), 2))
    assert sorted(text for role, text in stored if role == "user") == sorted(sent)
    # FIFO by the session's sequence: turns started in the order their runs were admitted.
    started = [r[0] for r in _rows(url, "SELECT seq FROM runs ORDER BY started_at, seq")]
    assert started == sorted(started)
    owners = {r[0] for r in _rows(url, "SELECT DISTINCT owner FROM runs")}
    assert len(owners) == count  # every replica ran turns


def test_a_turn_of_a_replica_killed_with_sigkill_is_answered_once_by_another(
        replicas: Callable[..., list[GatewayProcess]]) -> None:
    victim, survivor = replicas(2, delay_ms=3000)
    url: str = replicas.url  # type: ignore[attr-defined]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_chat, victim, "carol", "hello")
        _poll(lambda: _rows(url, "SELECT 1 FROM runs WHERE status = 'running'"), 30)
        victim.proc.kill()  # kill -9 mid-turn: its reply was never recorded
        victim.proc.wait(10)
        killed = time.monotonic()
        with pytest.raises(httpx.HTTPError):
            pending.result()
    answered = _poll(lambda: len(_transcript(url, "carol")) >= 2, 30)
    assert answered
    failover = time.monotonic() - killed
    time.sleep(1.0)  # a second answer would show up by now (takeover every 0.5 s)
    assert _transcript(url, "carol") == [("user", "hello"), ("assistant", "hello")]
    runs = _rows(url, "SELECT status, owner FROM runs")
    assert len(runs) == 1 and runs[0][0] == "ok"
    assert failover < 10
    # The survivor serves the session on: its next turn follows the taken-over one.
    reply = _chat(survivor, "carol", "again")
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == \
        "again"


def test_a_database_restart_under_load_loses_nothing_acknowledged(
        replicas: Callable[..., list[GatewayProcess]], pg_cluster: Cluster) -> None:
    gateways = replicas(2, delay_ms=20)
    url: str = replicas.url  # type: ignore[attr-defined]
    stop_at = time.monotonic() + 8
    acknowledged: dict[str, list[str]] = {}

    def client(n: int) -> None:
        user, i = f"u{n}", 0
        acknowledged[user] = []
        while time.monotonic() < stop_at:
            i += 1
            text = f"{user}-{i}"
            try:
                reply = _chat(gateways[(n + i) % 2], user, text, timeout=20)
            except httpx.HTTPError:
                continue
            if reply.status_code == 200:
                assert reply.json()["choices"][0]["message"]["content"] == text
                acknowledged[user].append(text)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        clients = [pool.submit(client, n) for n in range(6)]
        time.sleep(2.5)
        pg_cluster.restart()  # every connection of both replicas is cut
        for done in clients:
            done.result()
    for user, texts in acknowledged.items():
        stored = _transcript(url, user)
        users = [t for role, t in stored if role == "user"]
        answers = [t for role, t in stored if role == "assistant"]
        assert set(texts) <= set(users) and set(texts) <= set(answers), (user, texts, stored)
        assert len(answers) == len(set(answers)), f"{user}: a message answered twice"
    assert sum(len(t) for t in acknowledged.values()) > 12
    # No run was left open to hold its session (a run whose end could not be recorded while
    # the database was away is recorded once it is back, or run again).
    _poll(lambda: not _rows(url, "SELECT 1 FROM runs WHERE status IN ('queued', 'running')"), 30)
    for gateway in gateways:  # both serve again after the restart
        reply = _chat(gateway, "after", "ping")
        assert reply.status_code == 200, reply.text
