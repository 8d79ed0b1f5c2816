"""gwctl demo: real SIP calls through the gateway pair, with a failover in the middle.

Builds the namespace lab for a SIP NAT example with the gatewayd pair, places
SIPp calls with RTP through it, forces a failover (or SIGKILLs the active) while
the calls are up, lets the calls finish, prints what SIPp, the hosts' packet
counters and the nodes measured, and takes the lab down whatever happened.
Exit 0 only if every call completed and RTP flowed both ways after the failover.
"""

from __future__ import annotations

import sys
import time

DEFAULT_EXAMPLE = "ch2-incoming-call-with-mip"
DEMO_LAB = "demo"


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="calls with RTP through the HA pair in a namespace lab, failover mid-call",
        description="Build a network-namespace lab for a SIP NAT example with two gatewayd nodes "
                    "(active/standby), place SIPp calls with RTP through the active, force a "
                    "failover while the calls are up, and report calls and RTP before and after. "
                    "Needs root, SIPp (sip-tester) and nft. The lab is always removed at the end.")
    p.add_argument("--example", default=DEFAULT_EXAMPLE,
                   help=f"SIP example under examples/ (default {DEFAULT_EXAMPLE})")
    p.add_argument("--calls", type=int, default=20, help="number of calls (default 20)")
    p.add_argument("--rate", type=float, default=5.0, help="calls per second (default 5)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds each call lasts (default 8)")
    p.add_argument("--crash", action="store_true",
                   help="SIGKILL the active gatewayd instead of a graceful failover")
    p.add_argument("--name", default=DEMO_LAB, help=f"lab name (default {DEMO_LAB})")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(args) -> int:
    import shutil

    from gateway.config import load_file
    from ops.commands.lab import resolve_config
    from ops.lab import gateway_starter as gs
    from ops.lab import netns, sipp
    from ops.lab.plan import PlanError, build_plan, suggest_call

    why = netns.available()
    if why is None and shutil.which(sipp.SIPP) is None:
        why = "SIPp is not installed (Debian sip-tester)"
    if why is None and not sipp.G711A_PCAP.exists():
        why = f"{sipp.G711A_PCAP} is missing (Debian sip-tester)"
    if why:
        print(f"gwctl demo: {why}", file=sys.stderr)
        return 1
    if args.calls < 1 or args.rate <= 0 or args.duration <= 0:
        print("gwctl demo: --calls >= 1, --rate > 0, --duration > 0", file=sys.stderr)
        return 2
    path = resolve_config(args.example)
    cfg = load_file(path)
    try:
        plan = build_plan(cfg, lab=args.name)
        call = suggest_call(plan, cfg)
    except PlanError as exc:
        print(f"gwctl demo: {exc}", file=sys.stderr)
        return 1

    if netns.running(args.name) is not None:
        print(f"gwctl demo: lab {args.name} is up: the demo builds and removes its own lab; take "
              f"that one down first (gwctl lab down --name {args.name}) or name another "
              f"(--name)", file=sys.stderr)
        return 1
    ok = False
    try:
        _say(f"1. lab up: {path.name} with two gatewayd nodes (lab {args.name})")
        t = time.monotonic()
        state = netns.up(plan, starter=gs.NAME, config=str(path))
        nodes = gs.node_status(state)
        for role, st in nodes.items():
            _say(f"   {role}: {st.get('role')} (epoch {st.get('epoch')}) in "
                 f"{plan.gateway(role).netns}")
        _say(f"   ready in {time.monotonic() - t:.1f}s; logs in {gs.lab_dir(state)}")
        # Calls start during calls/rate seconds and each lasts duration: the
        # middle of the whole span is when the most calls are up.
        at = (args.calls / args.rate + args.duration) / 2
        how = "SIGKILL of the active" if args.crash else "forced failover"
        _say(f"2. {args.calls} SIPp calls at {args.rate:g}/s, {args.duration:g}s each with G.711 "
             f"RTP: {call.caller.label} ({call.caller.address.ip}) dials {call.dial} "
             f"-> {call.callee.label} ({call.callee.address.ip})")
        _say(f"3. {how} at t={at:.1f}s, while the calls are up")
        runres = gs.calls_with_failover(state, call.caller, call.callee, call.dial,
                                        calls=args.calls, rate=args.rate,
                                        duration_ms=int(args.duration * 1000), failover_at=at,
                                        crash=args.crash)
        nodes = gs.node_status(state)
        ok = _report(args, runres, nodes)
    except netns.LabError as exc:
        print(f"gwctl demo: {exc}", file=sys.stderr)
    finally:
        rep = netns.take_down(args.name)
        _say(f"lab down: removed {len(rep.namespaces)} namespaces"
             + (f"; logs kept in {rep.kept}" if rep.kept else ""))
    return 0 if ok else 1


def _report(args, r, nodes) -> bool:
    c = r.calls
    rows = [("calls attempted", c.calls_attempted), ("calls completed", c.calls_completed),
            ("calls failed", c.calls_failed)]
    b, a = r.rtp_before, r.rtp_after
    rtp = [("caller -> callee", b.caller_sent, b.callee_received, a.caller_sent, a.callee_received),
           ("callee -> caller", b.callee_sent, b.caller_received, a.callee_sent, a.caller_received)]
    _say("")
    _say("summary (SIPp statistics, nft counters in the host namespaces, the nodes' control sockets)")
    for name, v in rows:
        _say(f"  {name:<18} {v:>8}")
    _say(f"  {'RTP packets':<18} {'before failover':>22} {'after failover':>22}")
    _say(f"  {'':<18} {'sent':>10} {'received':>11} {'sent':>10} {'received':>11}")
    for name, s0, r0, s1, r1 in rtp:
        _say(f"  {name:<18} {s0:>10} {r0:>11} {s1:>10} {r1:>11}")
    fo = r.failover
    if fo is not None:
        kind = "SIGKILL" if fo.crash else "graceful"
        _say(f"  failover ({kind}) {fo.from_role} -> {fo.to_role} at t={r.failover_at:.1f}s: "
             f"{fo.seconds * 1000:.0f} ms until {fo.to_role} was active and forwarding "
             f"(epoch {fo.epoch})")
        node_ms = ((nodes.get(fo.to_role) or {}).get("last_failover") or {}).get("takeover_ms")
        if node_ms is not None:
            _say(f"  address takeover on {fo.to_role}: {node_ms} ms (node's own measure)")
    else:
        _say(f"  failover FAILED: {r.failover_error}")
    for role, st in nodes.items():
        if st.get("reachable"):
            drops = st.get("drops") or {}
            _say(f"  node {role}: {st.get('role')} epoch {st.get('epoch')}, "
                 f"SIP forwarded {st.get('counters', {}).get('sip_forwarded')}, "
                 f"calls still held {st.get('calls')} (5 s BYE teardown), pinholes {st.get('pinholes')}"
                 + (", drops " + ", ".join(f"{k}: {v}" for k, v in drops.items()) if drops else ""))
        else:
            _say(f"  node {role}: not reachable")
    if c.errors:
        _say("  SIPp errors (tail):\n" + "\n".join("    " + ln for ln in c.errors.splitlines()[-10:]))
    ok = (c.calls_attempted == args.calls == c.calls_completed and c.calls_failed == 0
          and fo is not None and a.both_ways())
    _say(f"result: {'PASS' if ok else 'FAIL'}: "
         + ("every call completed and RTP flowed both ways after the failover" if ok else
            "; ".join(x for x in (
                f"{c.calls_completed}/{args.calls} calls completed"
                if c.calls_completed != args.calls or c.calls_failed else "",
                "no failover" if fo is None else "",
                "RTP did not flow both ways after the failover" if not a.both_ways() else "") if x)))
    return ok
