"""Highest SIPp call rate with zero failed calls: the gatewayd pair beside plain
routing and the Linux kernel's own SIP helper, same topology, same run.

    sudo .venv/bin/python bench/bench_calls.py [--example NAME] [--seconds 3] [--hold-ms 500]

Three gateways in turn, each in a fresh namespace lab built from one example
(the call the configuration is written for, suggest_call):

* ``plain``: Linux forwarding only (no NAT; the untrust host routes back to the
  private address through the gateway namespace);
* ``kernel``: nf_conntrack_sip + nf_nat_sip with the same NAT (static DNAT/SNAT
  for a MIP, masquerade on the callee's leg otherwise), the helper assigned
  explicitly (an nft ``ct helper`` rule: since Linux 4.7 helpers are not
  assigned by port automatically);
* ``gatewayd``: the active/standby pair, sync replication to the standby;
* ``gatewayd-async``: the same pair with ``set nsrp rto-mirror async`` added
  to the configuration (the held packet is released after the active's own
  fsync; the standby follows), for comparison.

For each, a ladder of call rates (each step ``--seconds`` worth of calls, each
call held ``--hold-ms`` with RTP both ways) runs until a step has a failed
call, a call not completed, or RTP that did not arrive; the result is the
highest rate that passed. Every step is bounded by SIPp's global timeout.
Numbers come from SIPp's statistics and the hosts' nft counters.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import load_file  # noqa: E402
from ops.lab import gateway_starter as gs  # noqa: E402
from ops.lab import netns, sipp  # noqa: E402
from ops.lab.plan import CallPlan, Plan, build_plan, suggest_call  # noqa: E402

# Incoming calls to a MIP: each call's media gets its own public pair. (With
# interface NAT, concurrent calls from one private host to one media address
# meet the datapath's destination-only pinhole match; see ARCHITECTURE.md.)
DEFAULT_EXAMPLE = "ch2-incoming-call-with-mip"
LADDER = (10, 20, 40, 80, 160, 240, 320, 480, 640, 960, 1280, 1600, 1920, 2560, 3200, 4800, 6400,
          9600, 12800)
LAB = "bc0"
ASYNC = "gatewayd-async"
# The pair with `set flow media-offload` (established media forwarded by the
# kernel, actors/kernel_media.py); run with `--only gatewayd-offload`.
OFFLOAD = "gatewayd-offload"
STARTERS = ("plain-routing", "kernel-sip-helper", gs.NAME, ASYNC)
CHOICES = STARTERS + (OFFLOAD,)


def async_config(example: Path, directory: Path, extra: str = "set nsrp rto-mirror async") -> Path:
    """The example with asynchronous replication to the standby (or
    another line added: ``extra``)."""
    out = directory / f"{example.stem}-{extra.split()[-1]}.cfg"
    out.write_text(example.read_text().rstrip("\n") + f"\n{extra}\n")
    return out


def config_with(example: Path, lines: list[str], directory: Path) -> Path:
    """The example with configuration lines added before its ``save``
    (``--set``: e.g. ``set flow overload source-rate 0`` for a comparison)."""
    out = directory / example.name
    text = example.read_text()
    if "\nsave" not in text:
        raise ValueError(f"{example}: no 'save' line to add --set lines before")
    out.write_text(text.replace("\nsave", "\n" + "\n".join(lines) + "\nsave", 1))
    return out


def kernel_helper_rules(plan: Plan, nat_leg: str, dial: str, callee: str) -> str:
    """The kernel's SIP helper with the same NAT: a call to a MIP is a static
    DNAT to the host (and the host's own traffic leaves as the MIP); a call
    to the callee's own address leaves masqueraded."""
    if dial != callee:
        nat = (f" chain natpre {{ type nat hook prerouting priority -100; policy accept;\n"
               f"   ip daddr {dial} dnat to {callee}; }}\n"
               f" chain post {{ type nat hook postrouting priority 100; policy accept;\n"
               f"   ip saddr {callee} snat to {dial}; }}\n")
    else:
        nat = (f" chain post {{ type nat hook postrouting priority 100; policy accept;\n"
               f"   oifname \"{nat_leg}\" masquerade; }}\n")
    # The helper is set on the flow's conntrack entry, which exists only after
    # conntrack's own prerouting hook (priority -200): at an earlier priority
    # ``ct helper set`` finds no entry and does nothing, silently.
    return (f"table ip voipbench {{\n"
            f" ct helper sip5060 {{ type \"sip\" protocol udp; }}\n"
            f" chain pre {{ type filter hook prerouting priority filter; policy accept;\n"
            f"   udp dport {sipp.SIP_PORT} ct helper set \"sip5060\"; }}\n"
            + nat + "}\n")


def start_kernel_helper(plan: Plan, state: netns.LabState) -> None:
    """plain routing plus the kernel's SIP helper and masquerade on the leg
    of the callee's segment, in the gateway namespace holding the addresses."""
    netns.start_plain_routing(plan, state)
    call = suggest_call(plan, load_file(state.config) if state.config else None)
    leg = next(p.ifname for p in plan.gateway("gw-a").legs if p.segment == call.callee.port.segment)
    netns.run(netns.ns_cmd(plan.gateway("gw-a").netns, "nft", "-f", "-"),
              input=kernel_helper_rules(plan, leg, str(call.dial), str(call.callee.address.ip)))


netns.register_gateway_starter("kernel-sip-helper", start_kernel_helper)


def step_ok(r: sipp.CallResult, calls: int, media: bool = True) -> bool:
    if not media:
        return r.calls_attempted == calls == r.calls_completed and r.calls_failed == 0
    return (r.calls_attempted == calls == r.calls_completed and r.calls_failed == 0
            and r.rtp_sent > 0 and r.callee_rtp_received >= 0.95 * r.rtp_sent
            and r.rtp_received >= 0.95 * r.callee_rtp_sent)


def wait_idle(state, timeout: float = 10.0) -> None:
    """gatewayd: let the calls of a step end (the ALG's 5 s BYE teardown) so
    the next step's calls do not meet their media ports."""
    if state.starter != gs.NAME:
        return
    paths = gs.node_paths(state, state.get_plan())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        role = gs.active_role(state)
        if role and gs.node_call(paths[role].socket, "status").get("calls") == 0:
            return
        time.sleep(0.25)


@contextmanager
def gateway_lab(example: Path, starter: str, lab: str = LAB,
                ) -> Iterator[tuple[netns.LabState, CallPlan, IPv4Address]]:
    """The example's namespace lab with one of STARTERS in the gateway
    namespaces; yields (lab state, the call, the address the caller dials).
    The lab is torn down however the block ends."""
    tmp = None
    if starter in (ASYNC, OFFLOAD):
        extra = "set nsrp rto-mirror async" if starter == ASYNC else "set flow media-offload"
        starter = gs.NAME
        tmp = Path(tempfile.mkdtemp(prefix="bench-calls-"))
        example = async_config(example, tmp, extra)
    cfg = load_file(example)
    plan = build_plan(cfg, lab=lab)
    call = suggest_call(plan, cfg)
    # Plain routing translates nothing: the caller reaches the callee at its
    # own address (a MIP exists only where something answers for it).
    dial = call.callee.address.ip if starter == "plain-routing" else call.dial
    try:
        # Outside the block that takes the lab down: a lab of that name
        # already up makes up() fail (LabRunning) and is left as it is.
        state = netns.up(plan, starter=starter, config=str(example))
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        yield state, call, dial
    finally:
        netns.down(lab)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def pair_report(state: netns.LabState) -> dict:
    """The active gatewayd's replication state and epoch (empty for other
    gateways): an epoch above 1 means the pair changed roles during the run."""
    if state.starter != gs.NAME:
        return {}
    st = gs.node_status(state)
    active = st.get(gs.active_role(state) or "gw-a", {})
    return {"replication": active.get("replication"),
            "journal_head": active.get("journal_head"),
            "ack_lapses": (active.get("journal") or {}).get("ack_lapses"),
            "failovers": active.get("epoch"),
            # New dialogs shed (by the kernel's per-source screen, by the budget).
            "drop_codes": {k: v for k, v in ((active.get("ingest") or {}).get("drop_codes")
                                             or {}).items() if k.startswith("overload")}}


def measure(example: Path, starter: str, seconds: float, hold_ms: int, max_rate: float,
            log, ladder: tuple[int, ...] = LADDER, media: bool = True) -> dict:
    name = starter
    best = 0.0
    steps = []
    with gateway_lab(example, starter) as (state, call, dial):
        shed_before = pair_report(state).get("drop_codes") or {}
        for rate in ladder:
            if rate > max_rate:
                break
            calls = max(3, int(rate * seconds))
            r = sipp.run_calls(call.caller, call.callee, dial=dial, calls=calls, rate=rate,
                               duration_ms=hold_ms, per_call_media_port=True, media=media,
                               timeout=calls / rate + hold_ms / 1000 + 20)
            ok = step_ok(r, calls, media)
            # What the step's new dialogs met of shedding (an INVITE dropped
            # is retransmitted 500 ms later, RFC 3261 17.1.1.2: the call
            # completes, late), and how long its calls took in all.
            shed_now = pair_report(state).get("drop_codes") or {}
            shed = {k: v - shed_before.get(k, 0) for k, v in shed_now.items()
                    if v != shed_before.get(k, 0)}
            shed_before = shed_now
            steps.append({"rate": rate, "calls": calls, "completed": r.calls_completed,
                          "failed": r.calls_failed, "rtp_sent": r.rtp_sent,
                          "rtp_echoed_back": r.rtp_received, "seconds": r.seconds, "ok": ok,
                          "shed": shed})
            log(f"  {name:>18} {rate:>5}/s: {r.calls_completed}/{calls} completed, "
                f"{r.calls_failed} failed, RTP {r.callee_rtp_received}/{r.rtp_sent} there, "
                f"{r.rtp_received}/{r.callee_rtp_sent} back {'ok' if ok else 'FAIL'} "
                f"in {r.seconds:.1f} s" + (f", shed {shed}" if shed else ""))
            if not ok:
                break
            best = float(rate)
            wait_idle(state)
        return {"starter": name, "best_rate": best, "steps": steps, **pair_report(state)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default=DEFAULT_EXAMPLE)
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds of calls per step")
    ap.add_argument("--hold-ms", type=int, default=500, help="call hold time with RTP")
    ap.add_argument("--max-rate", type=float, default=LADDER[-1])
    ap.add_argument("--only", choices=list(CHOICES), action="append")
    ap.add_argument("--ladder", help="comma-separated call rates to try in turn "
                                     f"(default {','.join(map(str, LADDER))})")
    ap.add_argument("--no-rtp", action="store_true",
                    help="signalling only: the same calls (SDP offered and answered) without RTP, "
                         "so the rate is what the signalling path carries")
    ap.add_argument("--set", action="append", default=[], metavar="LINE",
                    help="a configuration line added to the example (repeatable), e.g. "
                         "'set flow overload source-rate 0'")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    why = netns.available()
    if why:
        print(f"bench_calls: {why}", file=sys.stderr)
        return 1
    example = ROOT / "examples" / f"{args.example}.cfg"
    tmp = Path(tempfile.mkdtemp(prefix="bench-calls-set-"))
    if args.set:
        example = config_with(example, args.set, tmp)
    try:
        return _run(args, example)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, example: Path) -> int:
    starters = args.only or list(STARTERS)
    ladder = tuple(int(x) for x in args.ladder.split(",")) if args.ladder else LADDER
    results = {}
    for s in starters:
        print(f"{s}:", flush=True)
        results[s] = measure(example, s, args.seconds, args.hold_ms, args.max_rate,
                             lambda m: print(m, flush=True), ladder, media=not args.no_rtp)
    print()
    what = "(signalling only, no RTP)" if args.no_rtp else "and RTP both ways"
    print(f"highest call rate with every call completed {what} "
          f"({args.example}, {args.seconds:g}s of calls per step, {args.hold_ms} ms hold):")
    base = results.get("plain-routing", {}).get("best_rate") or 0
    for s, r in results.items():
        ratio = f"{r['best_rate'] / base:.2f}x plain routing" if base else ""
        print(f"  {s:>18}: {r['best_rate']:>6g} calls/s  {ratio}")
    k = results.get("kernel-sip-helper", {}).get("best_rate")
    g = results.get(gs.NAME, {}).get("best_rate")
    if k and g is not None:
        print(f"  gatewayd / kernel SIP helper: {g / k:.2f}")
    for s, r in results.items():
        if r.get("drop_codes"):
            print(f"  {s}: shed {r['drop_codes']}")
        if r.get("failovers", 1) > 1:
            print(f"  {s}: the pair changed roles during the run (epoch {r['failovers']})")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
