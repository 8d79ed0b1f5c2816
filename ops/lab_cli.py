"""What the ``gwctl lab`` subcommands share: their failure message and the
running lab they act on."""

from __future__ import annotations

import sys


def _fail(msg: str) -> int:
    print(f"gwctl lab: {msg}", file=sys.stderr)
    return 1


def _lab(args):
    from ops.lab import netns
    state = netns.load_state(args.name)
    if state is None or state.plan is None or not state.complete:
        raise SystemExit(f"gwctl lab: no lab {args.name!r} is up (gwctl lab up EXAMPLE)")
    return state, state.get_plan()
