"""gwctl: the operator's command for the VoIP ALG gateway.

Subcommands live in :mod:`ops.commands`; each module registers its own, so a
new command is a new file there."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ops import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gwctl",
        description="Operate a VoIP ALG gateway node or pair: check configurations, "
                    "inspect calls, force failover, replay journals, run the lab.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
