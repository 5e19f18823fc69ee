"""``clawgate memory status | index [--force] | search QUERY``: the memory plugin of the running
gateway, over its WebSocket (the ``memory.*`` methods memory-core registers).

Errors are one line on stderr: exit 2 for a usage error, 1 when the gateway refuses or cannot
be reached, 0 otherwise. ``--json`` prints the method's result as it came.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

import orjson

from clawgate.cli_usage import needs_action

MAX_RESULTS = 50  # memory_search's own cap


def add_parser(commands: Any) -> None:
    """Register ``clawgate memory ...`` on the CLI's sub-command table."""
    memory = commands.add_parser("memory", help="the agents' memory (memory-core) in the "
                                                "running gateway")
    sub = memory.add_subparsers(metavar="ACTION")
    memory.set_defaults(handler=needs_action(memory, sub))
    status = sub.add_parser("status", help="each agent's index: files, chunks, vectors, "
                                           "staleness")
    _common(status)
    status.set_defaults(handler=_status)
    index = sub.add_parser("index", help="sync the index with the files (--force: rebuild)")
    index.add_argument("--force", action="store_true",
                       help="rebuild from scratch (needed after an embedding model change)")
    _common(index)
    index.set_defaults(handler=_index)
    search = sub.add_parser("search", help="search the memory files as memory_search does")
    search.add_argument("query", help="what to look for")
    search.add_argument("--max", type=int, default=None, metavar="N",
                        help=f"at most N results (1-{MAX_RESULTS}; default: the plugin's, 6)")
    _common(search)
    search.set_defaults(handler=_search)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", metavar="ID", help="one agent (default: the default "
                                                      "agent; status: every agent)")
    parser.add_argument("--json", action="store_true", help="print the JSON result")



def _call(method: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The method's result, or None after printing a one-line error."""
    # Lazy: the client (websockets, urllib, http.client) is for the commands that use it.
    from clawgate.client import GatewayError, GatewayUnreachable, call_remote, gateway_url

    try:
        return call_remote(method, params)
    except GatewayUnreachable:
        raise  # the one line every client command prints (exit 2), from cli.main
    except GatewayError as exc:
        if exc.code == "INVALID_REQUEST" and "unknown method" in str(exc):
            _error(f"the gateway has no memory plugin loaded ({method} is unknown); "
                   "see plugins.slots.memory")
        else:
            _error(str(exc))
    except (OSError, TimeoutError) as exc:
        _error(f"cannot reach the gateway at {gateway_url()}: {exc or type(exc).__name__} "
               "(is `clawgate gateway` running?)")
    return None


def _error(message: str) -> None:
    print(f"clawgate: error: {message}", file=sys.stderr)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {"agentId": args.agent} if args.agent else {}


def _status(args: argparse.Namespace) -> int:
    result = _call("memory.status", _params(args))
    if result is None:
        return 1
    if args.json:
        _print_json(result)
        return 0
    for row in result.get("agents", []):
        mode = "hybrid" if row.get("embeddingModel") else "keyword only"
        print(f"{row.get('agentId')}: {row.get('files', 0)} files, {row.get('chunks', 0)} "
              f"chunks, {row.get('vectors', 0)} vectors, {_size(row.get('indexBytes'))} "
              f"({mode}, {row.get('backend') or '-'})")
        print(f"  workspace {row.get('workspace')}; last indexed "
              f"{_when(row.get('lastIndexedAt'))}")
        if row.get("stale"):
            print("  stale: the embedding model changed; run `clawgate memory index --force`")
        if row.get("embeddingError"):
            print(f"  embeddings: {row['embeddingError']}")
        for skipped in row.get("skipped") or ():
            print(f"  skipped: {skipped}")
    return 0


def _index(args: argparse.Namespace) -> int:
    params = {**_params(args), "force": bool(args.force)}
    result = _call("memory.index", params)
    if result is None:
        return 1
    if args.json:
        _print_json(result)
        return 0
    verb = "rebuilt" if result.get("force") else "synced"
    print(f"{result.get('agentId')}: {verb}: {result.get('indexed', 0)} files indexed, "
          f"{result.get('removed', 0)} removed, {result.get('chunks', 0)} chunks, "
          f"{result.get('embedded', 0)} embedded in {float(result.get('seconds') or 0):.2f} s")
    return 0


def _search(args: argparse.Namespace) -> int:
    if not args.query.strip():
        _error("QUERY must not be empty")
        return 2
    if args.max is not None and not 1 <= args.max <= MAX_RESULTS:
        _error(f"--max must be between 1 and {MAX_RESULTS}")
        return 2
    params = {**_params(args), "query": args.query}
    if args.max is not None:
        params["maxResults"] = args.max
    result = _call("memory.search", params)
    if result is None:
        return 1
    if args.json:
        _print_json(result)
        return 0
    results = result.get("results", [])
    for hit in results:
        print(f"{float(hit.get('score', 0)):.3f}  {hit.get('path')}:"
              f"{hit.get('startLine')}-{hit.get('endLine')}")
        for line in str(hit.get("snippet", "")).strip().splitlines()[:4]:
            print(f"    {line}")
    if result.get("warning"):
        print(f"warning: {result['warning']}", file=sys.stderr)
    print(f"{len(results)} result(s) ({result.get('mode', 'keyword')})")
    return 0


def _size(value: Any) -> str:
    size = float(value or 0)
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _when(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value:
        return "never"
    seconds = value / 1000 if value > 10**11 else value  # ms or s
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
