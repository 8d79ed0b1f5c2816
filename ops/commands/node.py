"""gwctl status | failover | show | call history | exec: talk to a running node."""

from __future__ import annotations

import json
import sys

from ops.control_client import call

SHOW = ("calls", "registrations", "endpoints", "pinholes")


def register(sub) -> None:
    def common(p):
        p.add_argument("--node", help="node name or control socket path (default: the only node "
                                      "running here)")
        p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("status", help="role, epoch, peer, replication lag, journal head, counters",
                       description="Show the node's HA role and epoch, its peer as last heard, the "
                                   "replication mode and lag (events and ms), the journal head, and "
                                   "the datapath and ALG counters, overload control, and drops by "
                                   "code (gateway/drops.py).")
    common(p)
    p.set_defaults(func=run_status)

    p = sub.add_parser("failover", help="graceful switch-over: the active hands over to the standby",
                       description="Run on the active node: it stops taking packets, flushes its "
                                   "journal to the standby, and hands over; the standby becomes "
                                   "active (epoch + 1) and this node becomes the standby. The same "
                                   "as `gwctl exec nsrp vsd-group 0 mode backup`.")
    common(p)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the handover")
    p.set_defaults(func=run_failover)

    p = sub.add_parser("exec", help="ScreenOS-style operational commands (exec nsrp vsd-group 0 mode backup)",
                       description="Operational commands in the manual's words. Supported: "
                                   "`nsrp vsd-group 0 mode backup` (graceful failover of the active).")
    common(p)
    p.add_argument("words", nargs="+", metavar="WORD")
    p.set_defaults(func=run_exec)

    p = sub.add_parser("show", help="list calls, registrations, endpoints or pinholes",
                       description="List the node's live ALG entities (the standby shows the same, "
                                   "mirrored from the journal).")
    common(p)
    p.add_argument("what", choices=SHOW)
    p.set_defaults(func=run_show)

    p = sub.add_parser("call", help="call history|ladder|list: one call's events or ladder, the calls")
    common(p)
    csub = p.add_subparsers(dest="call_cmd", metavar="history|ladder|list")
    csub.required = True
    h = csub.add_parser("history", help="the journaled events of one call, by Call-ID")
    common(h)
    h.add_argument("call_id", metavar="ID", help="the call's Call-ID (as either side sees it)")
    h.set_defaults(func=run_history)
    from ops.call_ladder import add_arguments
    add_arguments(csub, common)


def _out(args, value, human) -> int:
    if args.json:
        print(json.dumps(value, indent=2, sort_keys=True, default=str))
    else:
        human(value)
    return 0


def _call(args, cmd, payload=None):
    try:
        return call(cmd, payload or {}, node=args.node)
    except (ConnectionError, RuntimeError) as exc:
        print(f"gwctl: {exc}", file=sys.stderr)
        raise SystemExit(1)


def run_status(args) -> int:
    st = _call(args, "status")

    def human(s):
        print(f"node {s['node']}: {s['role']} (epoch {s['epoch']}), "
              f"{'forwarding' if s['forwarding'] else 'not forwarding'}")
        print(f"replication: {s['replication']}; journal head {s['journal_head']}, applied {s['applied']}")
        snaps = s.get("snapshots")
        if snaps:
            last = snaps.get("last") or {}
            print(f"journal: records from {snaps['journal_first']}, {snaps['disk_bytes'] / 2**20:.0f} MiB "
                  f"with snapshots; last snapshot "
                  + (f"at record {last['seq']} ({last['bytes'] / 2**20:.1f} MiB)" if last else "none yet")
                  + (f"; SNAPSHOTS FAILED: {snaps['failed']}" if snaps.get("failed") else ""))
        peer = s.get("peer")
        if peer:
            seen = peer.get("seen_ago_ms")
            print(f"peer: {peer.get('role') or 'unknown'} (epoch {peer.get('epoch')}), "
                  f"last heard {'never' if seen is None else f'{seen:.0f} ms ago'}, "
                  f"head {peer.get('head')}, applied {peer.get('applied')}"
                  + (f", lag {peer['lag_events']} events" if peer.get("lag_events") is not None else ""))
        else:
            print("peer: none configured (a lone node)")
        print(f"calls {s['calls']}, registrations {s['registrations']}, pinholes {s['pinholes']}, "
              f"actors {s['actors']}")
        if s.get("last_failover"):
            lf = s["last_failover"]
            print(f"last takeover: epoch {lf['epoch']} ({lf['reason']}), {lf['takeover_ms']} ms")
        for k, v in sorted((s.get("datapath") or {}).items()):
            if k not in ("drop_codes", "drop_reasons"):
                print(f"datapath {k}: {v}")
        mo = s.get("media_offload")
        if mo:
            layout = {"bpf": "tc program", "maps": "nftables", "chains": "nftables chains"}.get(
                mo.get("layout", ""), mo.get("layout"))
            print(f"media path: {mo['media_path']}"
                  + (f" ({layout})" if layout and mo["media_path"] == "kernel" else "")
                  + (f" ({mo['reason']})" if mo.get("reason") else "")
                  + (f"; {mo['flows']} flow direction(s) in the kernel, {mo['packets']} packets "
                     f"forwarded there" if "flows" in mo else ""))
            if mo.get("bpf_unavailable"):
                print(f"media tc program not in use: {mo['bpf_unavailable']}")
        ingest = s.get("ingest") or {}
        ov = ingest.get("overload")
        if ov:
            print(f"overload: {'OVERLOADED' if ov['overloaded'] else 'normal'}, new dialogs "
                  f"{ov['budget']:.0f}/s of {ov['rate']:.0f}/s among {ov['active_sources']} "
                  f"source(s); admitted {ov['admitted']}, shed {ov['shed']}")
        # Every packet the node dropped, once, by code (gateway/drops.py):
        # the worker's count when it runs, else the datapath's own.
        codes = ingest.get("drop_codes")
        if codes is None:
            codes = (s.get("datapath") or {}).get("drop_codes") or {}
        for code, n in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"drop {n:8d}  {code}")
        for reason, n in sorted((s.get("drops") or {}).items(), key=lambda kv: -kv[1]):
            print(f"alg drop {n:8d}  {reason}")
        for line in shaping_lines(s.get("shaping") or []):
            print(line)
    return _out(args, st, human)


def shaping_lines(interfaces: list[dict]) -> list[str]:
    """Per shaped interface and class (gateway/shaping.py): the policy,
    guaranteed/maximum rate, priority, current rate and drops."""
    out = []
    for i in interfaces:
        state = "" if i.get("installed") else " (NOT INSTALLED)"
        out.append(f"shaping {i['interface']} ({i['device']}): {i['bandwidth_kbit']} Kbps{state}")
        for c in i.get("classes", []):
            who = f"policy {c['policy']}" if c["policy"] is not None else "default"
            out.append(f"  class {c['class']:<6} {who:<12} gbw {c['gbw_kbit']} mbw {c['mbw_kbit']} "
                       f"Kbps prio {c['priority']}: rate {c['rate_bps'] / 1000:.0f} Kbit/s "
                       f"{c['rate_pps']} pps, sent {c['packets']} pkt {c['bytes']} B, "
                       f"dropped {c['dropped']}, overlimits {c['overlimits']}")
    return out


def run_failover(args) -> int:
    res = _call(args, "failover", {"timeout": args.timeout})

    def human(r):
        if r.get("ok"):
            print(f"failover done in {r['ms']} ms: this node is now {r['role']} "
                  f"(epoch {r['from_epoch']} -> {r['epoch']})")
        else:
            print(f"failover did not complete: {r.get('reason')}; this node is {r['role']} "
                  f"(epoch {r['epoch']})")
    _out(args, res, human)
    return 0 if res.get("ok") else 1


def run_exec(args) -> int:
    words = [w.lower() for w in args.words]
    if words[:1] == ["nsrp"] and words[1:2] == ["vsd-group"] and words[3:] == ["mode", "backup"]:
        if words[2] != "0":
            print(f"gwctl exec: this gateway has one VSD group, 0 (got {args.words[2]})", file=sys.stderr)
            return 1
        return run_failover(type(args)(**{**vars(args), "timeout": 3.0}))
    print("gwctl exec: supported: nsrp vsd-group 0 mode backup", file=sys.stderr)
    return 2


def run_show(args) -> int:
    rows = _call(args, "show", {"what": args.what})

    def human(rs):
        if not rs:
            print(f"no {args.what}")
        for r in rs:
            print("  ".join(f"{k}={v}" for k, v in r.items() if k != "media") +
                  ("" if not r.get("media") else "  media=" + ",".join(
                      f"{m['dst']}->{m['public']}" for m in r["media"])))
    return _out(args, rows, human)


def run_history(args) -> int:
    rows = _call(args, "history", {"call": args.call_id})

    def human(rs):
        if not rs:
            print(f"no events for call {args.call_id}")
        for r in rs:
            print(f"#{r['seq']} epoch {r['epoch']} {r['at']:.3f} {r['type']} {r['event']}")
    return _out(args, rows, human)
