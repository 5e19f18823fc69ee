"""A throwaway PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` in a temporary
directory, on a free loopback port, started once per pytest session and stopped at its end.

``initdb`` refuses to run as root, so when the tests run as root the cluster belongs to the
unprivileged ``nobody`` (``runuser -u nobody --``). ``fsync=off`` keeps it fast; nothing in it
outlives the session. Each test gets a fresh database (``CREATE DATABASE ... TEMPLATE`` of a
database migrated once), so a test sees the schema and nothing else.

PostgreSQL missing is a failure, not a skip: the PostgreSQL backend is part of the product, and
``.ci/run`` installs the server (Debian's ``postgresql`` package) when it is absent.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

USER = "clawgate"  # the cluster's superuser (trust auth on loopback only)
TEMPLATE = "clawgate_template"
RUN_AS = "nobody"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                           "apt-get install -y postgresql")
    return Path(initdb).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running cluster; :meth:`database` makes a fresh database and returns its URL."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="clawgate-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, RUN_AS)
            self._as = ["runuser", "-u", RUN_AS, "--"]
        self._names = itertools.count(1)
        self._free: list[str] = []
        self.template_version = 0
        self.template_tables: list[str] = []

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, text=True,
                       cwd=self.root)

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        self.start_server()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """Stop the server (fast shutdown: every connection is cut) and start it again."""
        self.stop_server()
        self.start_server()

    def stop_server(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200 -c shared_buffers=32MB")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "log"), "-o", options, "-w", "-t", "60", "start")

    def sql(self, statement: str, db: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(db), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def database(self, *, empty: bool = False) -> str:
        """A database for one test: a clean copy of the migrated template (reused after
        :meth:`release` emptied it), or a new empty one."""
        if empty:
            name = f"t{next(self._names)}"
            self.sql(f"CREATE DATABASE {name}")
            return self.url(name)
        if self._free:
            return self._free.pop()
        name = f"t{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        return self.url(name)

    def release(self, url: str) -> None:
        """Empty a test's database for the next test (connections left open are cut), or drop
        it when its schema is not the template's."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            version = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version"
                                   ).fetchone() if _has_versions(conn) else None
            if version is None or version[0] != self.template_version:
                conn.close()
                self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                return
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'schema_version'")]
            if sorted(tables) != self.template_tables:
                conn.close()
                self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                return
            conn.execute("; ".join(f"DELETE FROM {t}" for t in tables))  # type: ignore[arg-type]
            conn.execute("SELECT setval(pg_get_serial_sequence(t, 'id'), 1, false) "
                         "FROM unnest(ARRAY['messages', 'cron_runs']) AS t")
        self._free.append(url)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _has_versions(conn: Any) -> bool:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    return bool(row[0])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.start()
    try:
        cluster.sql(f"CREATE DATABASE {TEMPLATE}")
        migrate_template(cluster)
        yield cluster
    finally:
        cluster.stop()


def migrate_template(cluster: Cluster) -> None:
    """Migrate the template database once; every test database is a copy of it."""
    from clawgate.sessions import postgres

    conn = postgres.connect(cluster.url(TEMPLATE))
    try:
        cluster.template_version = postgres.migrate(conn, where=TEMPLATE)
        cluster.template_tables = sorted(r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_version'"))
    finally:
        conn.close()


@pytest.fixture
def store_location(store_backend: str, tmp_path: Path,
                   request: pytest.FixtureRequest) -> Path | str:
    """Where a test's store lives: an SQLite file in tmp_path, or a fresh PostgreSQL database
    (``store_backend`` is parametrised over both by ``tests/conftest.py``)."""
    if store_backend == "sqlite":
        return tmp_path / "state" / "clawgate.db"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    url = cluster.database()
    request.addfinalizer(lambda: cluster.release(url))
    return url
