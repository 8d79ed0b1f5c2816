"""``gwctl lab call``, ``mgcp-call`` and ``h323-call``: calls placed through a
running lab (SIPp, the MGCP call agent with osmo-mgw, the H.323 peer) and what
they saw, printed."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

from ops.lab.examples import hosts_lacking
from ops.lab_cli import _fail, _lab


def run_call(args) -> int:
    from gateway.config import load_file
    from ops.lab import netns, sipp
    from ops.lab.plan import PlanError, suggest_call

    why = netns.available()
    if why:
        return _fail(why)
    state, plan = _lab(args)
    config = None
    if state.config:
        try:
            config = load_file(state.config)
        except Exception:  # the file may have changed or gone: the plan still stands
            config = None
    try:
        suggested = suggest_call(plan, config)
        caller = plan.host(args.caller) if args.caller else suggested.caller
        callee = plan.host(args.callee) if args.callee else suggested.callee
    except KeyError as exc:
        return _fail(f"no host {exc.args[0]!r} (hosts: {', '.join(h.label for h in plan.hosts)})")
    except PlanError as exc:
        lacking = hosts_lacking(config, plan, Path(state.config)) if config and state.config else None
        return _fail(f"{exc}" + (f"\n{lacking}" if lacking else ""))
    if args.dial:
        dial = IPv4Address(args.dial)
    elif args.callee or args.caller:
        dial = suggested.dial if callee is suggested.callee else callee.address.ip
    else:
        dial = suggested.dial
    try:
        result = sipp.run_calls(caller, callee, dial=dial, calls=args.calls, rate=args.rate,
                                duration_ms=int(args.duration * 1000), per_call_media_port=True,
                                transport=args.transport)
    except (netns.LabError, ValueError) as exc:
        return _fail(str(exc))
    ok = (result.calls_completed == result.calls_attempted == args.calls
          and result.rtp_received > 0 and result.callee_rtp_received > 0)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"{result.caller} -> {result.callee} dialling {result.dial} over "
              f"{result.transport.upper()}: "
              f"{result.calls_attempted} attempted, {result.calls_completed} completed, "
              f"{result.calls_failed} failed in {result.seconds:.1f}s")
        print(f"  RTP caller->callee: sent {result.rtp_sent}, received {result.callee_rtp_received}")
        print(f"  RTP callee->caller: sent {result.callee_rtp_sent}, received {result.rtp_received}")
        if result.errors:
            print("  SIPp errors:\n" + result.errors)
    return 0 if ok else 1


def run_mgcp_call(args) -> int:
    from ops.lab import mgcp, netns

    why = netns.available()
    if why:
        return _fail(why)
    _lab(args)
    try:
        rep = mgcp.run_call(args.name, failover=args.failover, packets=args.packets,
                            capture=not args.no_capture)
    except netns.LabError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(rep.__dict__ | {"ok": rep.ok}))
        return 0 if rep.ok else 1
    p = rep.parties
    print(f"call agent {p['ca']['ip']} -> osmo-mgw on {p['mgw']['ip']}, far RTP end {p['far']['ip']}")
    for n in rep.notes:
        print(f"  note: {n}")
    for s in rep.steps:
        print(f"  {s['name']}: {s['code']}" + (f" ({s['tries']} sends)" if s["tries"] > 1 else ""))
    print(f"  pinholes of the call on the active node: {rep.pinholes}"
          + (f"; far end's public pair {rep.far_public}" if rep.far_public else ""))

    def rtp(label, r):
        if r is not None:
            print(f"  RTP {label}: far->mgw {r['local_received']}/{r['far_sent']}, "
                  f"mgw->far {r['far_received']}/{r['local_sent']}")
    rtp("in the call", rep.rtp)
    if rep.failover:
        fo = rep.failover
        print(f"  failover ({'SIGKILL' if fo['crash'] else 'graceful'}) {fo['from_role']} -> "
              f"{fo['to_role']} in {fo['seconds'] * 1000:.0f} ms; pinholes there: "
              f"{rep.pinholes_after_failover}")
        rtp("after failover", rep.rtp_after_failover)
        rtp("after MDCX on the new active", rep.rtp_after_mdcx)
    print(f"  pinholes after DLCX: {rep.pinholes_after_delete}")
    rtp("after DLCX (must be 0)", rep.rtp_after_delete)
    if rep.capture_segment:
        print(f"  capture on {rep.capture_segment}: {rep.mgcp_frames} MGCP frames; private "
              f"addresses seen: {rep.leaks}")
    if rep.error:
        print(f"  error: {rep.error}")
    print("ok" if rep.ok else "FAILED")
    return 0 if rep.ok else 1


def run_h323_call(args) -> int:
    from dataclasses import asdict

    from gateway.config import load_file
    from ops.lab import gateway_starter, h323, netns

    why = netns.available()
    if why:
        return _fail(why)
    state, _plan = _lab(args)
    if state.starter != gateway_starter.NAME:
        return _fail(f"lab {args.name} runs {state.starter}, not the gatewayd pair")
    modes = h323.MODES if args.mode == "all" else (args.mode,)
    if args.calls is not None and args.calls < 1:
        return _fail(f"--calls {args.calls}: at least one call")
    rep = h323.run_calls(state, load_file(state.config), modes=modes, calls=args.calls,
                         seconds=args.duration, failover=args.failover)
    ok = rep.ok(0.6 if args.failover == "crash" else 0.9)
    if args.json:
        print(json.dumps({k: v for k, v in rep.__dict__.items() if k != "calls"}
                         | {"calls": [asdict(c) for c in rep.calls], "ok": ok}))
        return 0 if ok else 1
    p = rep.parties
    print(f"gatekeeper {p['gatekeeper']['ip']}; {p['caller']} calls {p['callee']}")
    for n in rep.notes:
        print(f"  note: {n}")
    for alias, addrs in rep.registrations.items():
        print(f"  registered {alias} at {', '.join(addrs)}")
    if rep.failover:
        fo = rep.failover
        print(f"  failover ({'SIGKILL' if fo['crash'] else 'graceful'}) {fo['from_role']} -> "
              f"{fo['to_role']} in {fo['seconds'] * 1000:.0f} ms")
    for i, c in enumerate(rep.calls, 1):
        a, b = c.caller, c.callee or {}
        print(f"  call {i} ({c.mode}): connected {a['connected'] and b.get('connected', False)}, "
              f"RTP caller->callee {b.get('rtp_received', 0)}/{a['rtp_sent']}, "
              f"callee->caller {a['rtp_received']}/{b.get('rtp_sent', 0)}, "
              f"released {a['released'] and b.get('released', False)}")
        for side, leg in (("caller", a), ("callee", b)):
            if leg.get("error"):
                print(f"    {side}: {leg['error']} after {leg['steps']}")
    if rep.error:
        print(f"  error: {rep.error}")
    print("ok" if ok else "FAILED")
    return 0 if ok else 1
