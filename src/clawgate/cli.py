"""The ``clawgate`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from clawgate import config as config_module
from clawgate.errors import ClawgateError
from clawgate.plugins.host import Generation, PluginHost

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clawgate`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except ClawgateError as exc:
        print(f"clawgate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clawgate", description="Self-hosted AI gateway.")
    commands = parser.add_subparsers(metavar="COMMAND")

    plugins = commands.add_parser("plugins", help="inspect the plugin runtime")
    sub = plugins.add_subparsers(metavar="ACTION")
    listing = sub.add_parser("list", help="every plugin found, with status and reason")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_plugins_list)
    inspect = sub.add_parser("inspect", help="one plugin in detail")
    inspect.add_argument("plugin_id")
    inspect.set_defaults(handler=_plugins_inspect)
    doctor = sub.add_parser("doctor", help="diagnostics; exits 1 when something is broken")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(handler=_plugins_doctor)
    return parser


def _load_generation() -> Generation:
    settings = config_module.load()

    async def build() -> Generation:
        host = PluginHost(settings)
        generation = await host.start(services=False)
        await host.aclose()
        return generation

    return asyncio.run(build())


def _plugins_list(args: argparse.Namespace) -> int:
    generation = _load_generation()
    rows = [r.as_dict() for r in generation.registry.records.values()]
    if args.json:
        _print_json({"generation": generation.id, "plan": generation.key, "plugins": rows})
        return 0
    width = max([len(r["id"]) for r in rows] + [2])
    print(f"{'ID':<{width}}  {'ORIGIN':<9}  {'STATUS':<10}  REASON")
    for row in rows:
        print(f"{row['id']:<{width}}  {row['origin']:<9}  {row['status']:<10}  {row['reason']}")
    return 0


def _plugins_inspect(args: argparse.Namespace) -> int:
    generation = _load_generation()
    record = generation.registry.record(args.plugin_id)
    if record is None:
        print(f"clawgate: error: no plugin {args.plugin_id!r}", file=sys.stderr)
        return 1
    detail: dict[str, Any] = record.as_dict()
    meta = generation.snapshot.by_id.get(args.plugin_id)
    if meta is not None and meta.decision is not None:
        detail["decision"] = {"enabled": meta.decision.enabled, "source": meta.decision.source,
                              "rule": meta.decision.rule, "reason": meta.decision.reason}
        detail["config"] = dict(meta.config)
    detail["diagnostics"] = [
        d.as_dict() for d in generation.registry.diagnostics if d.plugin_id == args.plugin_id
    ]
    _print_json(detail)
    return 0


def _plugins_doctor(args: argparse.Namespace) -> int:
    generation = _load_generation()
    registry = generation.registry
    diagnostics = [d.as_dict() for d in registry.diagnostics]
    warnings = list(generation.snapshot.warnings)
    broken = [r.as_dict() for r in registry.records.values() if r.status in ("error", "blocked")]
    refused = [
        {"origin": m.origin, "root": str(m.root), "pluginId": m.id, "status": m.status,
         "reason": m.reason}
        for m in generation.snapshot.plugins if m.status in ("blocked", "overridden", "error")
    ]
    ok = not broken and not any(d["level"] == "error" for d in diagnostics)
    if args.json:
        _print_json({"ok": ok, "broken": broken, "refused": refused, "diagnostics": diagnostics,
                     "warnings": warnings})
    else:
        loaded = sum(r.status == "loaded" for r in registry.records.values())
        print(f"{loaded} plugin(s) loaded, {len(broken)} broken, {len(refused)} refused")
        for item in refused:
            print(f"  refused  {item['pluginId'] or '?'} ({item['origin']} {item['root']}): "
                  f"{item['reason']}")
        for d in diagnostics:
            print(f"  {d['level']:<7}  {d['message']}")
        for w in warnings:
            print(f"  warn     {w}")
        print("ok" if ok else "problems found")
    return 0 if ok else 1


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
