"""``clawgate store migrate [--url URL]`` and ``clawgate store copy --from A --to B``: the
session store's schema and moving an installation between backends (SQLite and PostgreSQL).

A location is a ``postgresql://user:password@host:port/database`` URL, ``sqlite:PATH`` or a
plain path; without ``--url`` a command uses the configured store (``[store] url`` or
``CLAWGATE_STORE_URL``, else ``<state>/clawgate.db``). Passwords are never printed. Errors are
one line on stderr: exit 1 when the store refuses or cannot be reached, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from clawgate import config as config_module
from clawgate.cli_usage import needs_action
from clawgate.errors import ClawgateError


def add_parser(commands: Any) -> None:
    """Register ``clawgate store ...`` on the CLI's sub-command table."""
    store = commands.add_parser("store", help="the session store: schema migrations, copying "
                                              "between SQLite and PostgreSQL")
    sub = store.add_subparsers(metavar="ACTION")
    store.set_defaults(handler=needs_action(store, sub))
    migrate = sub.add_parser("migrate", help="create or upgrade the store's schema and print "
                                             "its version")
    migrate.add_argument("--url", metavar="URL", help="postgresql://... or sqlite:PATH "
                                                      "(default: the configured store)")
    migrate.set_defaults(handler=_migrate)
    copy = sub.add_parser("copy", help="copy every table into an empty store (e.g. SQLite to "
                                       "PostgreSQL)")
    copy.add_argument("--from", dest="source", metavar="URL",
                      help="the store to copy (default: the configured store)")
    copy.add_argument("--to", dest="target", metavar="URL", required=True,
                      help="the empty store to fill: postgresql://... or sqlite:PATH")
    copy.add_argument("--batch", type=int, default=1000, metavar="N",
                      help="rows per batch (default 1000)")
    copy.set_defaults(handler=_copy)



def _location(url: str | None) -> Path | str:
    if url is None:
        return config_module.load().store_location()
    try:
        config_module.check_store_url(url)
    except ValueError:
        if "://" in url:
            raise ClawgateError(f"store URL {_shown(url)!r} must be postgresql://... or "
                                "sqlite:PATH") from None
        return Path(url).expanduser()  # a plain path: an SQLite file
    return url


def _shown(location: Path | str) -> str:
    from clawgate.sessions.postgres import redact

    return redact(str(location))


def _migrate(args: argparse.Namespace) -> int:
    from clawgate.sessions.backend import backend_for
    from clawgate.sessions.schema import SCHEMA_VERSION

    backend = backend_for(_location(args.url))
    conn = backend.open_writer()  # creates and migrates, as a gateway does at start-up
    conn.close()
    print(f"{backend.where}: schema version {SCHEMA_VERSION} ({backend.kind})")
    return 0


def _copy(args: argparse.Namespace) -> int:
    from clawgate.sessions import copy
    from clawgate.sessions.backend import backend_for

    if not 1 <= args.batch <= 100_000:
        print("clawgate store copy: error: --batch must be 1-100000", file=sys.stderr)
        return 2
    source = backend_for(_location(args.source))
    target = backend_for(_location(args.target))
    if source.where == target.where:
        raise ClawgateError(f"--from and --to are the same store ({source.where})")
    src = source.open_writer()
    try:
        dst = target.open_writer()
        try:
            done = copy.copy(src, dst, target_kind=target.kind, batch=args.batch)
        finally:
            dst.close()
    finally:
        src.close()
    total = sum(c.rows for c in done)
    for c in done:
        print(f"{c.table:<18} {c.rows:>10}")
    print(f"copied {total} row(s) from {source.where} to {target.where}; counts verified")
    return 0
