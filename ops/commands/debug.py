"""gwctl debug stall: test-only fault injection on a running node."""

from __future__ import annotations

import sys

from ops.control_client import call


def register(sub) -> None:
    p = sub.add_parser("debug", help="test-only fault injection (needs gatewayd --debug-commands)",
                       description="Fault injection for tests. A node serves these only when "
                                   "started with --debug-commands (or GATEWAYD_DEBUG_COMMANDS=1).")
    dsub = p.add_subparsers(dest="debug_cmd", metavar="stall")
    dsub.required = True
    s = dsub.add_parser("stall", help="hold the node's GIL for SECONDS, as a long GC pause does",
                        description="Every thread of the node stands still for SECONDS (packets, "
                                    "heartbeats, lease renewals); the fence supervisor still runs.")
    s.add_argument("--node", help="node name or control socket path (default: the only node "
                                  "running here)")
    s.add_argument("--seconds", type=float, required=True, help="how long (0 < SECONDS <= 30)")
    s.set_defaults(func=run_stall)


def run_stall(args) -> int:
    try:
        r = call("debug-stall", {"seconds": args.seconds}, node=args.node, timeout=5.0)
    except (ConnectionError, RuntimeError, OSError, ValueError) as exc:
        print(f"gwctl debug stall: {exc}", file=sys.stderr)
        return 1
    print(f"node stalls for {r['seconds']} s")
    return 0
