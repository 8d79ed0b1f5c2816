"""Legitimate calls during an INVITE flood: the gatewayd pair (overload
control, gateway/overload.py) beside the kernel's SIP helper, same lab, same run.

    sudo flock /tmp/voip-lab.lock .venv/bin/python bench/bench_flood.py \
        [--capacity N] [--multiples 1,2,4,10] [--flood-seconds 10]

In the ch2-incoming-call-with-mip lab one SIPp UAS on phone1 (behind its MIP
1.1.1.5, RTP echo) answers two callers in the untrust zone:

* phone2 places the legitimate calls: ``--legit-calls`` (20) at
  ``--legit-rate`` (2/s), each held ``--hold-ms`` with G.711 RTP both ways;
* proxy floods: SIPp's UAC (full calls, INVITE/ACK/BYE, SDP offered, no RTP)
  at a multiple of the pair's capacity for ``--flood-seconds``, started half
  a second before the legitimate calls.

The pair runs with its defaults: the kernel's per-source screen ahead of the
queue (actors/kernel_screen.py) and the new-dialog budget behind it.

The capacity is the highest step of a short signalling-only ladder the pair
passes with every call completed (measured first, in the same lab), unless
``--capacity`` gives it. The same pair with overload control off
(``gatewayd-no-shed``: ``set flow overload new-dialog-rate 0``) and the kernel helper (bench_calls.py's
``kernel-sip-helper``: nf_conntrack_sip, static NAT for the MIP) meets the same
absolute flood rates. Reported per step: legitimate calls completed (%), their
RTP both ways, the flood's completed calls, the active's shed count, role
changes of the pair (epochs), and each gatewayd's RSS before and after.
Every SIPp run is bounded by its global timeout and killed past it; the lab is
removed however the run ends.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_calls  # noqa: E402  (registers the kernel-sip-helper starter)
from ops.lab import gateway_starter as gs  # noqa: E402
from ops.lab import netns, sipp  # noqa: E402
from ops.lab.netns import LabError, ns_cmd, read_counters  # noqa: E402

EXAMPLE = ROOT / "examples" / "ch2-incoming-call-with-mip.cfg"
LAB = "fl0"
CAPACITY_LADDER = (80, 160, 240, 320, 480, 640, 960)
FLOOD_HOST = "proxy"               # the second untrust host of the example
NO_SHED = "gatewayd-no-shed"
STARTERS = (gs.NAME, NO_SHED, "kernel-sip-helper")


@dataclass
class Sipp:
    proc: subprocess.Popen
    stat: Path
    err: Path
    bound: float


def start_uas(callee, workdir: Path, bound: float) -> subprocess.Popen:
    ip = str(callee.address.ip)
    uas = subprocess.Popen(
        ns_cmd(callee.netns, sipp.SIPP, "-sn", "uas", "-i", ip, "-p", str(sipp.SIP_PORT),
               "-mi", ip, "-mp", str(sipp.MEDIA_PORT), "-rtp_echo", "-nostdin",
               "-timeout", f"{int(bound)}s"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    time.sleep(0.3)
    if uas.poll() is not None:
        raise LabError(f"SIPp UAS in {callee.netns} exited at once")
    return uas


def start_uac(caller, dial, workdir: Path, name: str, *, calls: int, rate: float, hold_ms: int,
              media: bool, bound: float, port: int = sipp.SIP_PORT,
              media_port: int = sipp.MEDIA_PORT) -> Sipp:
    scenario = workdir / f"{name}.xml"
    scenario.write_text(sipp.uac_scenario(per_call_media_port=media, media=media))
    stat, err = workdir / f"{name}_stat.csv", workdir / f"{name}_errors.log"
    ip = str(caller.address.ip)
    proc = subprocess.Popen(
        ns_cmd(caller.netns, sipp.SIPP, f"{dial}:{sipp.SIP_PORT}", "-sf", str(scenario),
               "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media_port),
               "-m", str(calls), "-r", str(rate), "-l", str(max(calls, 100)),
               "-d", str(hold_ms), "-nostdin", "-timeout", f"{int(bound)}s", "-timeout_error",
               "-trace_stat", "-stf", str(stat), "-fd", "1", "-trace_err", "-error_file", str(err)),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    return Sipp(proc, stat, err, bound)


def finish(s: Sipp, *, kill_after: float | None = None) -> tuple[int, int]:
    """Wait for a UAC (at most its bound, or ``kill_after`` seconds): (attempted, completed)."""
    try:
        s.proc.wait(timeout=kill_after if kill_after is not None else s.bound + 5)
    except subprocess.TimeoutExpired:
        sipp._stop(s.proc)
    if not s.stat.exists():
        return 0, 0
    try:
        attempted, completed, _failed = sipp.parse_stats(s.stat)
    except LabError:
        return 0, 0
    return attempted, completed


def rss_kb(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pair_view(state) -> dict:
    """Per node: role, epoch, RSS (kB), shed so far; empty for the kernel helper."""
    if state.starter != gs.NAME:
        return {}
    out = {}
    for role, st in gs.node_status(state).items():
        ov = ((st.get("ingest") or {}).get("overload") or {}) if st.get("reachable") else {}
        codes = (st.get("ingest") or {}).get("drop_codes") or {}
        # New dialogs shed: by the node's budget, and before the queue by the
        # kernel's per-source screen (actors/kernel_screen.py).
        shed = None if ov.get("shed") is None else ov["shed"] + codes.get("overload-source-rate", 0)
        out[role] = {"role": st.get("role"), "epoch": st.get("epoch"),
                     "rss_kb": rss_kb(st.get("pid")), "shed": shed, "drop_codes": codes}
    return out


class LoadSampler:
    """The active's overload state once a second during a step (budget,
    messages held, shed so far), for the report; nothing for the kernel helper."""

    def __init__(self, state) -> None:
        self.state = state
        self.samples: list = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.state.starter == gs.NAME:
            self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._t.is_alive():
            self._t.join(5)

    def _run(self) -> None:
        paths = gs.node_paths(self.state, self.state.get_plan())
        t0 = time.monotonic()
        while not self._stop.wait(1.0):
            st = gs.try_status(paths[self.state.active or "gw-a"].socket, timeout=1.0) or {}
            ing = st.get("ingest") or {}
            ov = ing.get("overload") or {}
            self.samples.append((round(time.monotonic() - t0, 1), ov.get("budget"),
                                 ov.get("overloaded"), ing.get("held_now"), ov.get("shed")))


def role_changes(before: dict, after: dict) -> int:
    return sum(1 for r in before if before[r].get("role") != (after.get(r) or {}).get("role"))


# A flood sent from a host that also places legitimate calls uses its own
# ports there (SIPp binds its SIP and media ports); the source address, what
# per-source shedding keys on, is the host's all the same.
FLOOD_PORT_BESIDE_LEGIT = 5070
FLOOD_MEDIA_PORT_BESIDE_LEGIT = 30000


def flood_step(state, call, flooder, dial, *, flood_rate: float, flood_seconds: float,
               legit_calls: int, legit_rate: float, hold_ms: int, more_legit=()) -> dict:
    """One flood with the legitimate calls beside it (module docstring).

    ``flooder`` is one host or several: the flood rate is shared evenly among
    them. ``more_legit``: further hosts that place the same legitimate calls
    as ``call.caller`` at the same time (a flooding host among them too);
    each host's (attempted, completed) is in ``legit_by_host``. The RTP
    figures are ``call.caller``'s."""
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    legit_span = legit_calls / legit_rate + hold_ms / 1000.0
    bound = max(flood_seconds, legit_span) + 25.0
    flooders = list(flooder) if isinstance(flooder, (list, tuple)) else [flooder]
    callers = [call.caller, *more_legit]
    legit_ns = {h.netns for h in callers}
    before = pair_view(state)
    c0, e0 = read_counters(call.caller.netns), read_counters(call.callee.netns)
    uas = start_uas(call.callee, work, bound + 10)
    sampler = LoadSampler(state).__enter__()
    floods, legits = [], []
    try:
        t_start = time.monotonic()
        for i, h in enumerate(flooders):
            beside = h.netns in legit_ns
            floods.append(start_uac(
                h, dial, work, f"flood{i}", calls=int(flood_rate * flood_seconds / len(flooders)),
                rate=flood_rate / len(flooders), hold_ms=0, media=False, bound=flood_seconds + 5,
                port=FLOOD_PORT_BESIDE_LEGIT if beside else sipp.SIP_PORT,
                media_port=FLOOD_MEDIA_PORT_BESIDE_LEGIT if beside else sipp.MEDIA_PORT))
        time.sleep(0.5)
        for i, h in enumerate(callers):
            legits.append(start_uac(h, dial, work, f"legit{i}", calls=legit_calls, rate=legit_rate,
                                    hold_ms=hold_ms, media=True, bound=legit_span + 20))
        # The flood stops sending (retransmissions too) 3 s after its span.
        f_done = [finish(f, kill_after=max(0.1, t_start + flood_seconds + 3.5 - time.monotonic()))
                  for f in floods]
        f_att, f_ok = sum(a for a, _ in f_done), sum(c for _, c in f_done)
        t_flood = time.monotonic() - t0
        l_done = [finish(lg) for lg in legits]
        t_legit = time.monotonic() - t0
        time.sleep(0.3)
    finally:
        sampler.__exit__()
        for s in (*floods, *legits):
            if s.proc.poll() is None:
                sipp._stop(s.proc)
        sipp._stop(uas)
    c1, e1 = read_counters(call.caller.netns), read_counters(call.callee.netns)
    after = pair_view(state)
    legit = legits[0]
    errors = legit.err.read_text(errors="replace")[-600:] if legit.err.exists() else ""
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    shed = None
    if after:
        shed = sum((a.get("shed") or 0) for a in after.values()) - \
            sum((b.get("shed") or 0) for b in before.values())
    l_att, l_ok = l_done[0]
    return {"flood_rate": flood_rate, "flood_attempted": f_att, "flood_completed": f_ok,
            "flooders": [h.netns for h in flooders],
            "legit_calls": legit_calls, "legit_attempted": l_att, "legit_completed": l_ok,
            "legit_pct": round(100.0 * l_ok / legit_calls, 1),
            "legit_by_host": {h.netns: d for h, d in zip(callers, l_done)},
            "rtp_sent": c1[1] - c0[1], "rtp_at_callee": e1[0] - e0[0],
            "rtp_echoed": e1[1] - e0[1], "rtp_back": c1[0] - c0[0],
            "seconds": {"flood": round(t_flood, 1), "legit": round(t_legit, 1),
                        "total": round(time.monotonic() - t0, 1)},
            "load": sampler.samples, "shed": shed, "role_changes": role_changes(before, after) if before else 0,
            "nodes_before": before, "nodes_after": after, "legit_errors": errors}


def settle(state, timeout: float = 8.0) -> None:
    """Let the calls of a step end before the next one (bench_calls.wait_idle)."""
    try:
        bench_calls.wait_idle(state, timeout)
    except (LabError, ConnectionError, RuntimeError, OSError):
        pass


def measure_capacity(state, call, dial, log, seconds: float = 2.0) -> float:
    """The highest signalling-only step (no RTP) the pair passes with every
    call completed, from CAPACITY_LADDER."""
    best = 0.0
    for rate in CAPACITY_LADDER:
        calls = int(rate * seconds)
        r = sipp.run_calls(call.caller, call.callee, dial=dial, calls=calls, rate=rate,
                           duration_ms=200, per_call_media_port=True, media=False,
                           timeout=seconds + 15)
        ok = r.calls_completed == calls == r.calls_attempted
        ov = {k: v.get("shed") for k, v in pair_view(state).items()}
        log(f"  capacity step {rate}/s: {r.calls_completed}/{calls} {'ok' if ok else 'FAIL'}"
            + (f" (shed so far: {ov})" if ov else ""))
        if not ok:
            break
        best = float(rate)
        settle(state)
    return best


@contextmanager
def flood_lab(starter: str):
    """bench_calls.gateway_lab; ``gatewayd-no-shed`` is the pair with
    overload control off (``set flow overload new-dialog-rate 0``): the
    same-run baseline of the pair without it."""
    if starter != NO_SHED:
        with bench_calls.gateway_lab(EXAMPLE, starter, lab=LAB) as lab:
            yield lab
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-flood-cfg-"))
    cfg = tmp / EXAMPLE.name
    cfg.write_text(EXAMPLE.read_text().replace("\nsave", "\nset flow overload new-dialog-rate 0\nsave"))
    try:
        with bench_calls.gateway_lab(cfg, gs.NAME, lab=LAB) as lab:
            yield lab
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(starter: str, rates: list[float], args, log, capacity_out: list) -> list[dict]:
    rows = []
    with flood_lab(starter) as (state, call, dial):
        plan = state.get_plan()
        flooder = next(h for h in plan.hosts if h.label == FLOOD_HOST)
        if not rates:
            cap = measure_capacity(state, call, dial, log)
            if cap <= 0:
                raise LabError("the pair passed no step of the capacity ladder; give --capacity")
            capacity_out.append(cap)
            rates = [cap * m for m in args.multiples]
            settle(state)
        first = pair_view(state)
        for rate in rates:
            row = flood_step(state, call, flooder, dial, flood_rate=rate,
                             flood_seconds=args.flood_seconds, legit_calls=args.legit_calls,
                             legit_rate=args.legit_rate, hold_ms=args.hold_ms)
            row["starter"] = starter
            rows.append(row)
            log(f"  {starter:>18} flood {rate:>6.0f}/s: legitimate {row['legit_completed']}/"
                f"{row['legit_calls']} ({row['legit_pct']}%), RTP {row['rtp_at_callee']}/"
                f"{row['rtp_sent']} there {row['rtp_back']}/{row['rtp_echoed']} back; flood "
                f"completed {row['flood_completed']}/{row['flood_attempted']}; shed {row['shed']}; "
                f"role changes {row['role_changes']}; {row['seconds']} s")
            settle(state)
        last = pair_view(state)
        for r in rows:
            r["rss_kb_start"] = {k: v.get("rss_kb") for k, v in first.items()}
            r["rss_kb_end"] = {k: v.get("rss_kb") for k, v in last.items()}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capacity", type=float, help="the pair's capacity, calls/s (default: measure it)")
    ap.add_argument("--multiples", default="1,2,4,10",
                    type=lambda s: [float(x) for x in s.split(",")])
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--legit-calls", type=int, default=20)
    ap.add_argument("--legit-rate", type=float, default=2.0)
    ap.add_argument("--hold-ms", type=int, default=1000)
    ap.add_argument("--only", choices=list(STARTERS), action="append")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    why = netns.available()
    if why:
        print(f"bench_flood: {why}", file=sys.stderr)
        return 1
    log = lambda m: print(m, flush=True)  # noqa: E731
    rates = [args.capacity * m for m in args.multiples] if args.capacity else []
    cap: list = []
    rows: list[dict] = []
    for starter in args.only or list(STARTERS):
        log(f"{starter}:")
        rows += run(starter, rates, args, log, cap)
        if not rates and cap:
            rates = [cap[0] * m for m in args.multiples]   # the same absolute rates for the helper
    capacity = args.capacity or (cap[0] if cap else None)
    print()
    print(f"legitimate calls ({args.legit_calls} at {args.legit_rate:g}/s, {args.hold_ms} ms RTP) during "
          f"an INVITE flood of {args.flood_seconds:g} s from a second host; pair capacity "
          f"{capacity:g} calls/s ({'given' if args.capacity else 'measured, signalling only'}):")
    print(f"  {'gateway':>18} {'flood/s':>8} {'x cap':>6} {'legit %':>8} {'RTP there/back %':>17} "
          f"{'flood done':>11} {'shed':>7} {'roles':>6}  RSS kB start->end")
    for r in rows:
        there = 100.0 * r["rtp_at_callee"] / r["rtp_sent"] if r["rtp_sent"] else 0.0
        back = 100.0 * r["rtp_back"] / r["rtp_echoed"] if r["rtp_echoed"] else 0.0
        rss = ", ".join(f"{k} {r['rss_kb_start'].get(k)}->{r['rss_kb_end'].get(k)}"
                        for k in r["rss_kb_start"]) or "n/a"
        print(f"  {r['starter']:>18} {r['flood_rate']:>8.0f} {r['flood_rate'] / capacity:>6.1f} "
              f"{r['legit_pct']:>8.1f} {there:>8.0f}/{back:<8.0f} {r['flood_completed']:>11} "
              f"{str(r['shed']):>7} {r['role_changes']:>6}  {rss}")
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
