"""CPU, events and journal bytes per call at a steady, moderate call rate, and
the cost of an idle node: the gatewayd pair beside plain routing and the
kernel's SIP helper, same topology, same run.

    sudo .venv/bin/python bench/bench_cost.py [--rate 100] [--seconds 20] [--no-rtp]

For each gateway (bench_calls.py's STARTERS, default the pair, plain routing
and the kernel helper) in a fresh namespace lab built from one example:

* idle: ``--idle`` seconds with no traffic; the CPU of each gatewayd
  process (and of its supervisor) from /proc/PID/stat, per thread from
  /proc/PID/task/*/stat (the threads carry their names, actors/thread_names.py);
* a steady step: ``--rate`` calls/s for ``--seconds`` s (SIPp uac -> uas, the
  example's call, ``--hold-ms`` each). CPU is read at ``--warmup`` s after the
  first call and again ``--window`` s later, so the figure is the steady
  state's, not the start's or the teardown's; calls in that window are
  rate x window. Per call: each gatewayd's CPU (µs), per thread, both SIPp
  processes' CPU (the same work whatever the gateway: the same-run yardstick)
  and the whole machine's busy time (/proc/stat, which includes the kernel's
  forwarding and helper work but also anything else running on the machine);
* journal: the active's journal head and segment bytes before the step and
  once its calls have ended (the ALG's BYE teardown included): records
  (a step's events on one entity are one record), events and bytes per call.

Every lab is torn down however the run ends.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_calls as bc  # noqa: E402
from bench_cost_proc import (TICK, Sample, _stat_fields, children, diff, machine_busy,  # noqa: E402,F401
                             netns_pids, proc_cpu, proc_sys, thread_cpu, thread_switches)
from ops.lab import gateway_starter as gs  # noqa: E402
from ops.lab import netns, sipp  # noqa: E402

DEFAULT_STARTERS = (gs.NAME, "plain-routing", "kernel-sip-helper")


# --- the lab -----------------------------------------------------------------------------

def gatewayd_pids(state) -> dict[str, int]:
    """node role -> gatewayd pid, and role-fence -> its supervisor's pid."""
    out = {}
    for role, pid in (state.daemons or {}).items():
        out[role] = pid
        for c in children(pid):
            out[f"{role}-fence"] = c
    return out


def journal_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.seg"))


def journal_mark(state) -> dict[str, tuple[int, int, int, int]]:
    """role -> (journal head, segment bytes, the journal writer's batches, the
    events its records hold: a step's events on one entity are one record)."""
    plan = state.get_plan()
    out = {}
    for role, p in gs.node_paths(state, plan).items():
        st = gs.try_status(p.socket) or {}
        j = st.get("journal") or {}
        out[role] = (int(st.get("journal_head") or 0), journal_bytes(p.journal),
                     int(j.get("batches") or 0), int(j.get("events") or 0))
    return out


def measure(example: Path, starter: str, *, rate: float, seconds: float, hold_ms: int,
            warmup: float, window: float, idle: float, media: bool, log,
            py_spy: Path | None = None, yappi_dir: Path | None = None) -> dict:
    calls = int(rate * seconds)
    out: dict = {"starter": starter, "rate": rate, "calls": calls}
    with bc.gateway_lab(example, starter) as (state, call, dial):
        pair = state.starter == gs.NAME
        pids = gatewayd_pids(state) if pair else {}
        if pair:
            time.sleep(2.0)                      # let the join settle
            a = Sample(pids)
            time.sleep(idle)
            out["idle"] = diff(a, Sample(pids))
            j0 = journal_mark(state)
        result: dict = {}

        def run() -> None:
            result["r"] = sipp.run_calls(call.caller, call.callee, dial=dial, calls=calls,
                                         rate=rate, duration_ms=hold_ms, per_call_media_port=True,
                                         media=media, settle=0.3,
                                         timeout=calls / rate + hold_ms / 1000 + 20)

        t = threading.Thread(target=run, name="sipp-step")
        started = time.monotonic()
        t.start()
        # SIPp's processes appear once it runs; the first INVITE goes ~0.3 s in.
        time.sleep(0.3 + warmup)
        watched = dict(pids)
        for i, pid in enumerate(netns_pids(call.caller.netns, "sipp")):
            watched[f"sipp-uac{i or ''}"] = pid
        for i, pid in enumerate(netns_pids(call.callee.netns, "sipp")):
            watched[f"sipp-uas{i or ''}"] = pid
        spies = start_py_spy(pids, py_spy, window) if py_spy and pair else []
        if yappi_dir and pair:
            for role, pid in pids.items():
                if not role.endswith("-fence"):
                    os.kill(pid, signal.SIGUSR1)
        a = Sample(watched)
        time.sleep(max(0.0, min(window, started + 0.3 + seconds - time.monotonic() - 0.5)))
        b = Sample(watched)
        if yappi_dir and pair:
            for role, pid in pids.items():
                if not role.endswith("-fence"):
                    os.kill(pid, signal.SIGUSR2)
        for p in spies:
            p.wait(timeout=window + 30)
        t.join()
        r = result.get("r")
        step = diff(a, b)
        step["calls"] = rate * step["seconds"]
        out["step"] = step
        if r is not None:
            out["sipp"] = {"completed": r.calls_completed, "failed": r.calls_failed,
                           "attempted": r.calls_attempted}
            out["ok"] = bc.step_ok(r, calls, media)
        if pair:
            bc.wait_idle(state, timeout=15.0)
            j1 = journal_mark(state)
            out["journal"] = {role: {"records": j1[role][0] - j0[role][0],
                                     "events": j1[role][3] - j0[role][3],
                                     "bytes": j1[role][1] - j0[role][1],
                                     "batches": j1[role][2] - j0[role][2]} for role in j0}
            out.update(bc.pair_report(state))
    log(summary(out))
    return out


def start_py_spy(pids: dict[str, int], out: Path, seconds: float) -> list:
    """py-spy (if installed beside this Python) sampling each gatewayd over the
    window, in its raw (collapsed stacks) format, threads kept, idle
    frames left out, without pausing the process (--nonblocking)."""
    import subprocess
    exe = Path(sys.executable).with_name("py-spy")
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([str(exe), "record", "--pid", str(pid), "--format", "raw",
                              "--threads", "--nonblocking", "--rate", "200",
                              "--duration", str(int(seconds)), "-o", str(out / f"{role}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for role, pid in pids.items() if not role.endswith("-fence")]


# --- report ------------------------------------------------------------------------------

def per_call_us(cpu: float, calls: float) -> float:
    return cpu / calls * 1e6 if calls else 0.0


def summary(r: dict) -> str:
    lines = []
    st = r.get("step") or {}
    n = st.get("calls") or 0
    s = r.get("sipp") or {}
    lines.append(f"{r['starter']}: {r['rate']:g} calls/s, {s.get('completed')}/{r['calls']} "
                 f"completed, {s.get('failed')} failed; steady window {st.get('seconds', 0):.1f} s "
                 f"({n:.0f} calls)")
    if st:
        lines.append(f"  machine busy: {per_call_us(st['machine'], n):8.0f} us/call, of which "
                     f"softirq {per_call_us(st['softirq'], n):.0f} us/call")
        for k, v in sorted(st["procs"].items()):
            lines.append(f"  {k:>14}: {per_call_us(v, n):8.0f} us/call "
                         f"({v / st['seconds'] * 100:5.1f}% of a core; "
                         f"kernel {per_call_us(st['sys'][k], n):.0f} us/call)")
            if not k.startswith("sipp"):
                sw = st["switches"].get(k, {})
                lines.append(f"  {'':>14}  {'wake-ups/call':>16} {sum(sw.values()) / n:8.1f}")
                for name, c in sorted(st["threads"].get(k, {}).items(), key=lambda x: -x[1]):
                    lines.append(f"  {'':>14}  {name:>16} {per_call_us(c, n):8.0f} us/call "
                                 f"{sw.get(name, 0) / n:6.1f} wake-ups/call")
    idle = r.get("idle")
    if idle:
        for k, v in sorted(idle["procs"].items()):
            lines.append(f"  idle {k:>9}: {v / idle['seconds'] * 100:5.2f}% of a core "
                         f"({v * 1000:.0f} ms CPU in {idle['seconds']:.1f} s)")
            sw = idle["switches"].get(k, {})
            for name, c in sorted(idle["threads"].get(k, {}).items(), key=lambda x: -x[1]):
                lines.append(f"  {'':>14}  {name:>16} {c * 1000:6.0f} ms")
            lines.append(f"  {'':>14}  wake-ups/s: " + ", ".join(
                f"{name} {c / idle['seconds']:.1f}" for name, c in sorted(sw.items(), key=lambda x: -x[1])))
    for role, j in (r.get("journal") or {}).items():
        calls = r["calls"]
        lines.append(f"  journal {role}: {j.get('records', j['events']) / calls:.1f} records/call "
                     f"({j['events'] / calls:.1f} events), "
                     f"{j['bytes'] / calls:.0f} B/call, {j['batches'] / calls:.1f} writer batches/call")
    if r.get("failovers", 1) and r.get("failovers", 1) > 1:
        lines.append(f"  the pair changed roles during the run (epoch {r['failovers']})")
    return "\n".join(lines)


def table(results: dict[str, dict]) -> str:
    """One line per gateway: the per-call figures and ratios to SIPp's own CPU."""
    rows = ["| gateway | step | machine us/call | softirq us/call | SIPp uac+uas us/call | active us/call | "
            "standby us/call | active / SIPp | idle active % | idle standby % | "
            "records/call | journal B/call |", "|" + "---|" * 12]
    for name, r in results.items():
        st = r.get("step") or {}
        n = st.get("calls") or 0
        procs = st.get("procs", {})
        sip = sum(v for k, v in procs.items() if k.startswith("sipp"))
        act, sby = procs.get("gw-a"), procs.get("gw-b")
        idle = (r.get("idle") or {})
        ip = idle.get("procs", {})
        isec = idle.get("seconds") or 1
        j = (r.get("journal") or {}).get("gw-a")
        s = r.get("sipp") or {}
        cell = lambda v: f"{per_call_us(v, n):.0f}" if v is not None else "-"  # noqa: E731
        rows.append("| " + " | ".join([
            name, f"{s.get('completed')}/{r['calls']} at {r['rate']:g}/s",
            cell(st.get("machine")), cell(st.get("softirq")), cell(sip), cell(act), cell(sby),
            f"{act / sip:.2f}" if act is not None and sip else "-",
            f"{ip['gw-a'] / isec * 100:.2f}" if "gw-a" in ip else "-",
            f"{ip['gw-b'] / isec * 100:.2f}" if "gw-b" in ip else "-",
            f"{j.get('records', j['events']) / r['calls']:.1f}" if j else "-",
            f"{j['bytes'] / r['calls']:.0f}" if j else "-"]) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default=bc.DEFAULT_EXAMPLE)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of calls in the step")
    ap.add_argument("--hold-ms", type=int, default=500)
    ap.add_argument("--warmup", type=float, default=4.0,
                    help="seconds after the first call before the CPU window opens")
    ap.add_argument("--window", type=float, default=12.0, help="seconds the CPU window lasts")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured (pair)")
    ap.add_argument("--only", choices=list(bc.STARTERS), action="append")
    ap.add_argument("--no-rtp", action="store_true", help="signalling only (SDP, no RTP)")
    ap.add_argument("--py-spy", type=Path, metavar="DIR",
                    help="profile each gatewayd with py-spy over the window (collapsed stacks "
                         "per thread in DIR/<node>.txt); py-spy's own sampling adds CPU")
    ap.add_argument("--yappi", type=Path, metavar="DIR",
                    help="run gatewayd under yappi's CPU-time profiler over the window "
                         "(bench/profiled_gatewayd.py; DIR/<node>.txt); the hooks slow it down")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    why = netns.available()
    if why:
        print(f"bench_cost: {why}", file=sys.stderr)
        return 1
    example = ROOT / "examples" / f"{args.example}.cfg"
    if args.yappi:
        args.yappi.mkdir(parents=True, exist_ok=True)
        os.environ["COST_PROFILE_DIR"] = str(args.yappi.resolve())
        gs.gatewayd_command = lambda: [sys.executable, str(ROOT / "bench" / "profiled_gatewayd.py")]
    results = {}
    for s in args.only or DEFAULT_STARTERS:
        results[s] = measure(example, s, rate=args.rate, seconds=args.seconds,
                             hold_ms=args.hold_ms, warmup=args.warmup, window=args.window,
                             idle=args.idle, media=not args.no_rtp,
                             log=lambda m: print(m, flush=True), py_spy=args.py_spy,
                             yappi_dir=args.yappi)
    print()
    print(f"{args.example}, {args.rate:g} calls/s for {args.seconds:g} s, {args.hold_ms} ms hold, "
          f"{'signalling only' if args.no_rtp else 'RTP both ways'}; CPU over a "
          f"{args.window:g} s window from {args.warmup:g} s in; idle over {args.idle:g} s:")
    print(table(results))
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
