"""gwctl get session | clear session [filters]: a node's sessions, in ScreenOS words.

Filters: ``src-ip A``, ``dst-ip A``, ``src-port N``, ``dst-port N``,
``protocol udp|tcp|icmp|N``, ``id N`` (all must match; addresses and ports
match before or after NAT). ``clear session`` needs a filter, or ``all``.
Sessions are each node's own (not replicated): run against the node whose
sessions you mean (``--node``)."""

from __future__ import annotations

import json
import sys

from ops.control_client import call

FILTER_HELP = ("filters: src-ip A, dst-ip A, src-port N, dst-port N, protocol udp|tcp|icmp|N, id N "
               "(all must match; addresses and ports match before or after NAT)")


def register(sub) -> None:
    for verb, helptext in (("get", "show sessions: get session [filters]"),
                           ("clear", "remove sessions: clear session [filters | all]")):
        p = sub.add_parser(verb, help=helptext,
                           description=f"{helptext}. {FILTER_HELP}. Sessions live in each node's "
                                       "datapath and are not replicated: a node taking over starts "
                                       "from the ALGs' replicated state, not from the sessions.")
        p.add_argument("--node", help="node name or control socket path (default: the only node "
                                      "running here)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("what", choices=("session",), help="session")
        p.add_argument("words", nargs="*", metavar="FILTER",
                       help=FILTER_HELP + ("; `all` to clear every session" if verb == "clear" else ""))
        p.set_defaults(func=run_get if verb == "get" else run_clear)


def _call(args, cmd, payload):
    try:
        return call(cmd, payload, node=args.node)
    except (ConnectionError, RuntimeError) as exc:
        print(f"gwctl: {exc}", file=sys.stderr)
        raise SystemExit(1)


def _line(r: dict) -> str:
    nat = ""
    if (r["nat_src"], r["nat_dst"]) != (r["src"], r["dst"]):
        nat = f" as {r['nat_src']} -> {r['nat_dst']}"
    extra = "".join(f" {k} {r[k]}" for k in ("alg", "call", "group") if r.get(k))
    return (f"id {r['id']}  {r['protocol']} {r['src']} -> {r['dst']}{nat}  {r['kind']}"
            f"{extra}  {r['from_zone']}->{r['to_zone']} policy {r['policy']}  age {r['age']}s "
            f"idle-left {r['idle_left']}s  packets {r['packets'][0]}/{r['packets'][1]}")


def run_get(args) -> int:
    rows = _call(args, "get-session", {"filter": list(args.words)})
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print("no sessions")
    for r in rows:
        print(_line(r))
    if rows:
        print(f"{len(rows)} session(s)")
    return 0


def run_clear(args) -> int:
    words = list(args.words)
    all_ = [w.lower() for w in words] == ["all"]
    if not words:
        print("gwctl clear session: give a filter (" + FILTER_HELP + ") or `all`", file=sys.stderr)
        return 2
    res = _call(args, "clear-session", {"filter": [] if all_ else words, "all": all_})
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    for r in res["sessions"]:
        print("cleared " + _line(r))
    print(f"{res['cleared']} session(s) cleared"
          + (f", {res['pinholes_reopened']} media pinhole(s) of calls in progress reopened"
             if res.get("pinholes_reopened") else ""))
    return 0
