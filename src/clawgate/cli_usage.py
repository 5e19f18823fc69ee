"""The handler of a CLI command group run without an action (``clawgate store``): the usage
line and the actions to choose from on stderr, exit 2 — the same for every group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def needs_action(parser: argparse.ArgumentParser,
                 actions: Any) -> Callable[[argparse.Namespace], int]:
    """``actions`` is the group's ``add_subparsers()`` table; its names are read when the
    handler runs, so the sub-commands may be added after this is set as the default."""
    def handler(args: argparse.Namespace) -> int:
        names = list(actions.choices)
        listed = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: choose an action: {listed}", file=sys.stderr)
        return 2

    return handler
