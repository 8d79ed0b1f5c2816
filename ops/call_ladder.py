"""`gwctl call ladder ID` and `gwctl call list`: a call's ladder (gateway/ladder.py)
and the calls a journal holds, from a running node (its control channel:
``ladder``, ``call-list``) or from a journal directory (``--journal DIR``,
read without its lock as ``gwctl replay`` does)."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

from gateway.ladder import Ladder, render_text


def add_arguments(csub, common) -> None:
    h = csub.add_parser("ladder", help="draw one call's ladder: messages, times, NAT, pinholes",
                        description="Draw the messages between the call's parties with their times, "
                                    "the addresses before and after NAT, and the pinholes opened and "
                                    "closed, from the node's journal (or --journal DIR), like sngrep's "
                                    "call flow. ID: a SIP Call-ID as either side sees it, an MGCP "
                                    "CallId, an H.323 callIdentifier (hex); `gwctl call list` shows them.")
    common(h)
    h.add_argument("--journal", metavar="DIR", help="read this journal directory instead of a running node")
    h.add_argument("call_id", metavar="ID")
    h.set_defaults(func=run_ladder)
    ls = csub.add_parser("list", help="the calls in the journal, oldest first, with how they ended")
    common(ls)
    ls.add_argument("--journal", metavar="DIR", help="read this journal directory instead of a running node")
    ls.add_argument("--last", type=int, metavar="N", help="only the newest N calls")
    ls.set_defaults(func=run_list)


def _journal_dir(path: str) -> None:
    from pathlib import Path

    from journal.segment import list_segments
    if not os.path.isdir(path):
        raise SystemExit(f"gwctl call: {path} is not a directory")
    if not list_segments(Path(path)):
        raise SystemExit(f"gwctl call: {path} holds no journal segments (*.seg): is it a node's "
                         "journal directory?")


def _node(args, cmd: str, payload: dict):
    from ops.control_client import call
    try:
        return call(cmd, payload, node=args.node, timeout=60.0)
    except (ConnectionError, RuntimeError) as exc:
        print(f"gwctl: {exc}", file=sys.stderr)
        raise SystemExit(1)


def get_ladder(args) -> Ladder | None:
    if args.journal:
        from journal.call_ladder import ladder
        _journal_dir(args.journal)
        return ladder(args.journal, args.call_id)
    found = _node(args, "ladder", {"call": args.call_id})
    return None if found is None else Ladder.from_dict(found)


def clock(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def run_ladder(args) -> int:
    lad = get_ladder(args)
    if lad is None:
        print(f"gwctl call ladder: no call {args.call_id!r} in the journal (`gwctl call list` shows "
              "the calls it holds; calls older than the journal's retention are gone)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(lad.to_dict(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_text(lad, clock=clock))
    return 0


def run_list(args) -> int:
    if args.journal:
        from journal.call_ladder import calls
        _journal_dir(args.journal)
        rows = [c.to_dict() for c in calls(args.journal, limit=args.last)]
    else:
        rows = _node(args, "call-list", {"limit": args.last} if args.last else {})
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print("no calls in the journal")
    for r in rows:
        end = "in progress" if r["ended_at"] is None else f"ended {clock(r['ended_at'])}: {r['end_reason']}"
        print(f"{r['protocol']:<5} {r['call']}  {r['parties']}  started "
              f"{datetime.fromtimestamp(r['started_at'], timezone.utc):%Y-%m-%d %H:%M:%S}  {end}")
    return 0
