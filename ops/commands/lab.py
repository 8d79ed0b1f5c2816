"""gwctl lab: build a network-namespace test network from a configuration,
place real SIP calls through it with SIPp, show it, take it down.

The calls (``call``, ``mgcp-call``, ``h323-call``) are run by
:mod:`ops.lab_calls`, the example configurations are found by
:mod:`ops.lab.examples`; this module is the parser, ``up`` and the pair's
status, takeover, failover and ``down``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ops.lab.examples import hosts_lacking, resolve_config
from ops.lab_calls import run_call, run_h323_call, run_mgcp_call
from ops.lab_cli import _fail, _lab

DEFAULT_LAB = "vg0"


def register(sub) -> None:
    p = sub.add_parser(
        "lab", help="namespace lab: build a test network from a configuration and place calls",
        description="A test network in Linux network namespaces built from a gateway "
                    "configuration: one bridge per interface subnet, one namespace per host "
                    "of the address book, and the active/standby gateway pair. Needs root.")
    lab_sub = p.add_subparsers(dest="lab_command", metavar="ACTION")
    lab_sub.required = True

    up = lab_sub.add_parser("up", help="build the lab for an example or a configuration file")
    up.add_argument("config", metavar="EXAMPLE",
                    help="a name under examples/ (with or without .cfg) or a configuration path")
    how = up.add_mutually_exclusive_group()
    how.add_argument("--plain-routing", action="store_true",
                     help="the gateway pair only forwards (Linux routing, no filter, no NAT)")
    how.add_argument("--gateway", metavar="STARTER",
                     help="a registered gateway starter to run in the gateway namespaces")
    up.add_argument("--replace", action="store_true",
                    help="take down a lab of this name that is up (its gateways stop, its calls "
                         "end) and build this one; without it such a lab is an error")
    up.add_argument("--json", action="store_true", help="print the plan as JSON")
    up.set_defaults(func=run_up)

    call = lab_sub.add_parser("call", help="place SIPp calls with RTP between two lab hosts")
    call.add_argument("--from", dest="caller", metavar="HOST",
                      help="calling host (address book name, namespace or address)")
    call.add_argument("--to", dest="callee", metavar="HOST", help="called host")
    call.add_argument("--dial", metavar="ADDR",
                      help="address the caller dials (the callee's own, its MIP or a DIP address)")
    call.add_argument("--calls", type=int, default=5, help="number of calls (default 5)")
    call.add_argument("--rate", type=float, default=10.0, help="calls per second (default 10)")
    call.add_argument("--duration", type=float, default=1.0,
                      help="seconds each call is held with RTP flowing (default 1)")
    call.add_argument("--transport", choices=("udp", "tcp"), default="udp",
                      help="signalling transport (tcp: one connection per call; default udp)")
    call.add_argument("--json", action="store_true", help="print one JSON object")
    call.set_defaults(func=run_call)

    mg = lab_sub.add_parser("mgcp-call", help="an MGCP call agent drives osmo-mgw through the pair",
                            description="In a gatewayd lab of a chapter 3 example: a call agent "
                                        "(the address book's, from the MGCP-CA policies) controls "
                                        "osmo-mgw on a media gateway host: AUEP, CRCX without and "
                                        "with SDP, MDCX with the far end's SDP, RTP both ways, the "
                                        "pinholes on the active node, DLCX. --failover fails the "
                                        "pair over in the middle (RTP must resume, MDCX succeed).")
    mg.add_argument("--failover", choices=("graceful", "crash"),
                    help="fail over in the middle of the call (crash: SIGKILL of the active)")
    mg.add_argument("--packets", type=int, default=20, help="RTP packets each way per check")
    mg.add_argument("--no-capture", action="store_true",
                    help="do not capture the media gateway's segment with tshark")
    mg.add_argument("--json", action="store_true", help="print one JSON object")
    mg.set_defaults(func=run_mgcp_call)

    h3 = lab_sub.add_parser("h323-call", help="H.323 calls (gatekeeper, two phones) through the pair",
                            description="In a gatewayd lab of a chapter 1 example: the lab's H.323 "
                                        "peer runs a gatekeeper and two phones (the address book's, "
                                        "or made where the example names none), both register, "
                                        "then calls with RTP both ways, H.245 as fastStart, on its "
                                        "own connection or tunnelled, each released "
                                        "(ReleaseComplete, DRQ). Reports each call.")
    h3.add_argument("--mode", choices=("faststart", "h245", "tunnel", "all"), default="all",
                    help="H.245 mode of the calls (all: in turn; default all)")
    h3.add_argument("--calls", type=int, default=None,
                    help="number of calls (default one per mode)")
    h3.add_argument("--duration", type=float, default=3.0,
                    help="seconds of RTP in each call (default 3)")
    h3.add_argument("--failover", choices=("graceful", "crash"),
                    help="fail the pair over in the middle of the calls (crash: SIGKILL)")
    h3.add_argument("--json", action="store_true", help="print one JSON object")
    h3.set_defaults(func=run_h323_call)

    st = lab_sub.add_parser("status", help="namespaces and which gateway holds the addresses")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)

    tk = lab_sub.add_parser("takeover", help="move the gateway addresses to ROLE and announce them "
                                               "(--plain-routing labs; gatewayd nodes do it themselves)")
    tk.add_argument("role", choices=("gw-a", "gw-b"))
    tk.set_defaults(func=run_takeover)

    fo = lab_sub.add_parser("failover", help="force a failover of the gatewayd pair and time it",
                            description="Graceful: the active node's `failover` command (it hands "
                                        "over to the standby). --crash: SIGKILL the active "
                                        "gatewayd; the standby takes over when the heartbeats stop, "
                                        "and the killed node is started again as standby. Prints "
                                        "the time until the other node reports active and "
                                        "forwarding on its control socket.")
    fo.add_argument("--crash", action="store_true", help="SIGKILL the active instead of asking it")
    fo.add_argument("--timeout", type=float, default=15.0, help="seconds to wait (default 15)")
    fo.add_argument("--json", action="store_true")
    fo.set_defaults(func=run_failover)

    dn = lab_sub.add_parser("down", help="remove the lab (also after a crash), keeping its logs",
                            description="Stop every process the lab runs (gatewayd, its fence "
                                        "supervisors, SIPp, osmo-mgw, the H.323 peer): SIGTERM, "
                                        "a bounded wait, SIGKILL for the rest; delete its "
                                        "namespaces; move its node files, logs and journals under "
                                        "the kept folder it prints (the newest runs are kept).")
    dn.add_argument("--json", action="store_true")
    dn.set_defaults(func=run_down)
    for action in (up, call, mg, h3, st, tk, fo, dn):
        action.add_argument("--name", default=DEFAULT_LAB,
                            help=f"lab name, prefix of its namespaces (default {DEFAULT_LAB})")


def run_up(args) -> int:
    from gateway.config import load_file
    from ops.lab import gateway_starter, netns  # noqa: F401 (registers the gatewayd starter)
    from ops.lab.plan import PlanError, build_plan, to_data

    why = netns.available()
    if why:
        return _fail(why)
    path = resolve_config(args.config)
    config = load_file(path)
    try:
        plan = build_plan(config, lab=args.name)
    except PlanError as exc:
        return _fail(str(exc))
    lacking = hosts_lacking(config, plan, path)
    starter = "plain-routing" if args.plain_routing else args.gateway
    if starter is None:
        others = sorted(set(netns.STARTERS) - {"plain-routing"})
        if not others:
            return _fail("no gateway daemon starter is registered; use --plain-routing "
                         "for the Linux-forwarding baseline")
        starter = gateway_starter.NAME if gateway_starter.NAME in others else others[0]
    if args.replace and netns.running(args.name) is not None:
        rep = netns.take_down(args.name)
        print(f"lab {args.name} replaced: its {len(rep.namespaces)} namespaces removed"
              + (f", its logs kept in {rep.kept}" if rep.kept else ""),
              file=sys.stderr if args.json else sys.stdout)
        if not rep.clean:
            return _fail(f"processes of the old lab still run after SIGKILL: "
                         f"{' '.join(map(str, rep.processes.left))}")
    try:
        netns.up(plan, starter=starter, config=str(path), replace=args.replace,
                 log=None if args.json else (lambda m: print(f"  made {m}")))
    except netns.LabRunning as exc:
        return _fail(str(exc))
    except netns.LabError as exc:
        kept = _newest_kept(args.name)
        return _fail(f"up failed, everything made was removed: {exc}"
                     + (f"\n(its files, logs included, are kept in {kept})" if kept else ""))
    if args.json:
        print(json.dumps(to_data(plan) | ({"warning": lacking} if lacking else {}), indent=1))
    else:
        print(plan.describe())
        if lacking:
            print(f"warning: {lacking}")
        print(f"gateway pair: {starter}; active gw-a ({plan.gateway('gw-a').netns})")
        if starter == gateway_starter.NAME:
            state = netns.load_state(args.name)
            print(f"node files, logs and journals: {gateway_starter.lab_dir(state)} (moved "
                  f"under {netns.kept_root()} by gwctl lab down)")
            print(f"control sockets: GWCTL_RUN_DIR={gateway_starter.run_dir(state)} "
                  f"gwctl status --node gw-a")
    return 0


def _newest_kept(lab: str) -> Path | None:
    from ops.lab import netns
    root = netns.kept_root()
    runs = sorted(root.glob(f"{lab}-2*"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    return runs[-1] if runs else None


def run_status(args) -> int:
    from ops.lab import gateway_starter, netns
    info = netns.status(args.name)
    state = netns.load_state(args.name) if info["exists"] else None
    if state is not None and state.starter == gateway_starter.NAME and state.plan is not None:
        info["nodes"] = gateway_starter.node_status(state)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0 if info["exists"] else 1
    if not info["exists"]:
        print(f"lab {args.name}: not up")
        return 1
    print(f"lab {args.name}: {'up' if info['complete'] else 'half made (run gwctl lab down)'}, "
          f"config {info['config']}, gateway {info['starter']}")
    print(f"  addresses held by: {info.get('holder') or 'nobody'} (recorded active: {info['active']})")
    added = set(info.get("added", ()))
    for ns, present in info["namespaces"].items():
        pids = info["processes"].get(ns, [])
        print(f"  {ns}: {'present' if present else 'MISSING'}"
              + (" (added after up, e.g. by mgcp-call)" if ns in added else "")
              + (f", processes {' '.join(map(str, pids))}" if pids else ""))
    for label, h in info.get("hosts", {}).items():
        print(f"  host {label}: {h['zone']} {h['address']} in {h['netns']}")
    for role, st in info.get("nodes", {}).items():
        if not st.get("reachable"):
            print(f"  node {role}: control socket does not answer "
                  f"({'running' if st.get('running') else 'not running'}, log {st.get('log')})")
            continue
        print(f"  node {role}: {st['role']} (epoch {st['epoch']}), "
              f"{'forwarding' if st.get('forwarding') else 'not forwarding'}, calls {st.get('calls')}, "
              f"pinholes {st.get('pinholes')}, journal head {st.get('journal_head')}")
    return 0


def run_takeover(args) -> int:
    from ops.lab import gateway_starter, netns
    why = netns.available()
    if why:
        return _fail(why)
    state, _plan = _lab(args)
    if state.starter in netns.SELF_ADDRESSED:
        return _fail(f"the {state.starter} nodes hold the addresses themselves: "
                     f"use gwctl lab failover [--crash]")
    moved = netns.move_addresses(args.name, args.role)
    print(f"{args.role} now holds {len(moved)} addresses (gratuitous ARP sent)")
    return 0


def run_failover(args) -> int:
    from ops.lab import gateway_starter, netns
    why = netns.available()
    if why:
        return _fail(why)
    state, _plan = _lab(args)
    if state.starter != gateway_starter.NAME:
        return _fail(f"failover needs the gatewayd pair (this lab runs {state.starter}); "
                     f"gwctl lab takeover moves plain-routing addresses")
    try:
        res = gateway_starter.failover(state, crash=args.crash, timeout=args.timeout)
    except (netns.LabError, ConnectionError, RuntimeError) as exc:
        return _fail(f"failover: {exc}")
    if args.json:
        from dataclasses import asdict
        print(json.dumps(asdict(res)))
    else:
        how = "SIGKILL of" if res.crash else "failover command to"
        print(f"{how} {res.from_role}: {res.to_role} active and forwarding after "
              f"{res.seconds * 1000:.0f} ms (epoch {res.epoch})")
        if res.restarted:
            print(f"{res.from_role} restarted and rejoined as standby")
    return 0


def run_down(args) -> int:
    from ops.lab import netns
    why = netns.available()
    if why:
        return _fail(why)
    rep = netns.take_down(args.name)
    procs = rep.processes
    if args.json:
        print(json.dumps({"lab": rep.lab, "namespaces": rep.namespaces, "stopped": procs.stopped,
                          "killed": procs.killed, "left": procs.left,
                          "kept": str(rep.kept) if rep.kept else None, "clean": rep.clean}))
        return 0 if rep.clean else 1
    print(f"lab {args.name}: removed {len(rep.namespaces)} namespaces" +
          (f" ({' '.join(rep.namespaces)})" if rep.namespaces else ""))
    n = len(procs.stopped) + len(procs.killed)
    if n or procs.left:
        print(f"  {n} processes exited ({len(procs.stopped)} on SIGTERM"
              + (f", {len(procs.killed)} on SIGKILL: {' '.join(map(str, procs.killed))}"
                 if procs.killed else "") + ")")
    if rep.kept:
        print(f"  logs, node files and journals kept in {rep.kept}")
    if procs.left:
        return _fail(f"processes still running after SIGKILL: {' '.join(map(str, procs.left))}")
    return 0
