"""``clawgate models list | auth [--reset [PROVIDER[/PROFILE]]]``: the model catalogue and the
auth profiles of the running gateway, over its WebSocket (``models.list``,
``models.authStatus``, ``models.authReset``).

Errors are one line on stderr: exit 2 for a usage error or no gateway, 1 when the gateway
refuses, 0 otherwise. ``--json`` prints the method's result as it came. Secrets never appear:
the gateway reports where a key comes from (``env:NAME``), not the key.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import orjson

from clawgate.cli_usage import needs_action

Remote = Callable[[argparse.Namespace], tuple[str, str | None]]


def add_parser(commands: Any, remote_options: Callable[[argparse.ArgumentParser], None],
               remote: Remote) -> None:
    """Register ``clawgate models ...`` on the CLI's sub-command table. ``remote_options`` adds
    the CLI's --url/--port/--token options to a parser, ``remote`` reads them back."""
    models = commands.add_parser("models", help="model catalogue and auth profiles of the "
                                                "running gateway")
    sub = models.add_subparsers(metavar="ACTION")
    models.set_defaults(handler=needs_action(models, sub))
    listing = sub.add_parser("list", help="every model of the loaded providers, with prices")
    listing.add_argument("--provider", metavar="ID", help="only this provider's models")
    listing.add_argument("--json", action="store_true", help="print the JSON result")
    remote_options(listing)
    listing.set_defaults(handler=functools.partial(_list, remote=remote))
    auth = sub.add_parser("auth", help="each provider's auth profiles: key source, cooldown, "
                                       "last use")
    auth.add_argument("--reset", nargs="?", const="", metavar="PROVIDER[/PROFILE]",
                      help="clear cooldowns: of every profile, of one provider's, or of one "
                           "profile")
    auth.add_argument("--json", action="store_true", help="print the JSON result")
    remote_options(auth)
    auth.set_defaults(handler=functools.partial(_auth, remote=remote))



def _list(args: argparse.Namespace, *, remote: Remote) -> int:
    from clawgate.client import call_remote  # lazy: see cli.main

    url, token = remote(args)
    params = {"provider": args.provider} if args.provider else {}
    result = call_remote("models.list", params, url=url, token=token)
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    for model in result.get("models", []):
        line = f"{model['provider']}/{model['id']}"
        if model.get("aliases"):
            line += f" ({', '.join(model['aliases'])})"
        if model.get("contextWindow"):
            line += f"  context {model['contextWindow']:,}"
        if not model.get("available", True):
            line += f"  unavailable: {model.get('unavailableReason', 'no credentials')}"
        print(line)
    return 0


def _auth(args: argparse.Namespace, *, remote: Remote) -> int:
    from clawgate.client import call_remote  # lazy: see cli.main

    url, token = remote(args)
    if args.reset is not None:
        provider, _, profile = args.reset.partition("/")
        params: dict[str, Any] = {}
        if provider:
            params["provider"] = provider
        if profile:
            params["profileId"] = profile
        reset = call_remote("models.authReset", params, url=url, token=token)
        if args.json:
            print(orjson.dumps(reset, option=orjson.OPT_INDENT_2).decode())
            return 0
        for row in reset.get("reset", []):
            print(f"{row['provider']}: reset {', '.join(row['profiles']) or 'nothing'}")
        return 0
    status = call_remote("models.authStatus", {}, url=url, token=token)
    if args.json:
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
        return 0
    for provider in status.get("providers", []):
        print(f"{provider['provider']}: {provider['status']}")
        for profile in provider.get("profiles", []):
            line = f"  {profile['profileId']}: {profile['status']} ({profile['source']})"
            if profile.get("reasonCode") == "cooldown":
                line += f", cooling down {profile['cooldownRemainingMs'] / 1000:.0f} s more"
            print(line)
    return 0
