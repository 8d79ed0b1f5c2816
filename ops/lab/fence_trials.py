"""Fencing trials on the gatewayd pair in the lab: SIPp calls in progress, then
a fault in the active node (a SIGKILL, not restarted, or a stall of every
thread of the process), while a watcher samples, every 50 ms, which of the
pair's owned addresses each gateway namespace holds and the hosts' RTP
counters.

What a trial reports: the calls (SIPp's counts), whether the watcher ever saw
an owned address on both nodes at once (it must not: gateway/ha.py's lease,
actors/fence.py's supervisor), how long the killed node kept its addresses
(the supervisor removes them when its pipe closes), and the longest RTP gap
around the fault. Used by tests/test_e2e_crash_fence.py and
bench/bench_fence.py."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field

from ops.lab import gateway_starter as gs
from ops.lab.netns import LabError, ns_cmd, read_counters, run

PERIOD = 0.05
# sigkill: the active is SIGKILLed, not restarted; stall: every thread of the
# active stands still (gwctl debug stall); handover: graceful failover.
FAULTS = ("sigkill", "stall", "handover")


@dataclass(slots=True)
class Sample:
    t: float                                  # monotonic
    held: dict[str, frozenset[str]]           # gateway role -> owned addresses present
    rtp: tuple[int, int]                      # (caller received, callee received)


class AddressWatcher:
    """A thread sampling the gateway namespaces' IPv4 addresses (only the
    plan's owned ones count) and the two hosts' media counters."""

    def __init__(self, plan, caller_ns: str, callee_ns: str, period: float = PERIOD) -> None:
        self.gateways = {g.role: g.netns for g in plan.gateways}
        self.owned = frozenset(str(a.address.ip) for a in plan.owned)
        self.caller_ns, self.callee_ns = caller_ns, callee_ns
        self.period = period
        self.samples: list[Sample] = []
        # Every namespace reading in the order taken: (time after it, role, held).
        self.readings: list[tuple[float, str, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="address-watcher", daemon=True)

    def held(self, netns: str) -> frozenset[str]:
        out = run(["ip", "-n", netns, "-4", "-o", "addr", "show"], check=False).stdout
        ips = {tok.split("/")[0] for line in out.splitlines()
               for i, tok in enumerate(line.split()) if i > 0 and line.split()[i - 1] == "inet"}
        return frozenset(ips & self.owned)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            held = {}
            for role, ns in self.gateways.items():
                held[role] = self.held(ns)
                self.readings.append((time.monotonic(), role, held[role]))
            try:
                rtp = (read_counters(self.caller_ns)[0], read_counters(self.callee_ns)[0])
            except (LabError, ValueError, KeyError):
                rtp = self.samples[-1].rtp if self.samples else (0, 0)
            self.samples.append(Sample(t, held, rtp))
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t)))

    def __enter__(self) -> "AddressWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def both_held(self) -> list[tuple[float, dict]]:
        """Instants at which both nodes held an owned address, as the readings
        prove it: a node seen holding, then its peer seen holding, then the
        node seen holding again. Two namespaces cannot be read at one
        instant, and on a loaded box the two ``ip`` processes of a sample
        ran up to hundreds of ms apart: a sample that read the old active
        before it let go and the new one after it took over showed "both"
        where the log showed 70 ms between the removal and the addition.
        The bracketing reading rules that out, unless a node removed and
        re-added its addresses between two readings 50 ms apart."""
        out = []
        r = self.readings
        for prev, mid, nxt in zip(r, r[1:], r[2:]):
            if prev[1] == nxt[1] != mid[1] and prev[2] and mid[2] and nxt[2]:
                out.append((mid[0], {prev[1]: sorted(prev[2]), mid[1]: sorted(mid[2])}))
        return out

    def released_after(self, role: str, t0: float) -> float | None:
        """Seconds from ``t0`` to the first sample showing ``role`` without any
        owned address (None: never within the samples)."""
        for s in self.samples:
            if s.t >= t0 and not s.held[role]:
                return s.t - t0
        return None

    def rtp_gap(self, t_from: float, t_to: float) -> float:
        """The longest time (s) either host's received counter stood still
        within [t_from, t_to]."""
        win = [s for s in self.samples if t_from <= s.t <= t_to]
        worst = 0.0
        for k in (0, 1):
            last_t = win[0].t if win else t_from
            for a, b in zip(win, win[1:]):
                if b.rtp[k] != a.rtp[k]:
                    worst = max(worst, b.t - last_t)
                    last_t = b.t
        return worst


@dataclass(slots=True)
class FenceTrial:
    fault: str                      # one of FAULTS
    calls_attempted: int
    calls_completed: int
    calls_failed: int
    both_held: list = field(default_factory=list)
    removal_s: float | None = None  # sigkill, stall: the faulty node's addresses gone after
    takeover_s: float | None = None  # until the other node reported active and forwarding
    rtp_gap_s: float = 0.0
    roles_after: dict = field(default_factory=dict)
    error: str | None = None
    sipp_errors: str = ""           # SIPp's error log (the failed calls' reasons)

    @property
    def ok(self) -> bool:
        return (self.error is None and not self.both_held and self.calls_failed == 0
                and self.calls_completed == self.calls_attempted
                and (self.fault != "sigkill" or (self.removal_s is not None and self.removal_s <= 1.0)))


def trial(state, call, *, fault: str = "sigkill", calls: int = 6, rate: float = 3.0,
          hold_ms: int = 4000, stall_s: float = 2.0, timeout: float = 15.0) -> FenceTrial:
    """One trial on a running pair: calls, the fault at their middle, figures.
    A SIGKILLed node is not restarted (its addresses must go without it). A
    stall needs the nodes started with GATEWAYD_DEBUG_COMMANDS=1."""
    from ops.lab import sipp
    if fault not in FAULTS:
        raise ValueError(f"fault is one of {', '.join(FAULTS)}, not {fault!r}")
    plan = state.get_plan()
    paths = gs.node_paths(state, plan)
    src = gs.active_role(state)
    if src is None:
        raise LabError("no node reports active")
    dst = next(r for r in paths if r != src)
    gs.wait_standby_joined(paths[src], timeout=timeout)
    result: dict = {}

    def place() -> None:
        try:
            result["calls"] = sipp.run_calls(call.caller, call.callee, dial=call.dial, calls=calls,
                                             rate=rate, duration_ms=hold_ms, per_call_media_port=True)
        except BaseException as exc:
            result["error"] = exc

    fault_at = (calls / rate + hold_ms / 1000) / 2 + 0.3
    out = FenceTrial(fault, calls, 0, 0)
    with AddressWatcher(plan, call.caller.netns, call.callee.netns) as w:
        th = threading.Thread(target=place, name="sipp-calls", daemon=True)
        t_calls = time.monotonic()
        th.start()
        while time.monotonic() - t_calls < fault_at and th.is_alive():
            time.sleep(0.02)
        t0 = time.monotonic()
        try:
            if fault == "sigkill":
                os.kill(state.daemons[src], signal.SIGKILL)
                gs.wait_role(paths[dst], "active", timeout=timeout, forwarding=True)
                out.takeover_s = round(time.monotonic() - t0, 3)
                state.active = dst
            elif fault == "handover":
                fo = gs.failover(state, crash=False, timeout=timeout)
                out.takeover_s = fo.seconds
            else:
                gs.node_call(paths[src].socket, "debug-stall", {"seconds": stall_s})
                time.sleep(stall_s + 1.5)
        except (LabError, ConnectionError, RuntimeError, OSError) as exc:
            out.error = f"{fault}: {exc}"
        th.join(calls / rate + hold_ms / 1000.0 + 60)
        time.sleep(0.2)
    r = result.get("calls")
    if r is None:
        out.error = out.error or f"SIPp: {result.get('error')!r}"
    else:
        out.calls_attempted, out.calls_completed, out.calls_failed = (
            r.calls_attempted, r.calls_completed, r.calls_failed)
        out.sipp_errors = (r.errors or "")[-2000:]
    out.both_held = w.both_held()
    if fault in ("sigkill", "stall"):
        # stall: from the command; the supervisor removes them at the lease's end
        out.removal_s = w.released_after(src, t0)
    out.rtp_gap_s = round(w.rtp_gap(t0 - 0.5, t0 + 4.0), 3)
    for role, st in gs.node_status(state).items():
        out.roles_after[role] = st.get("role") if st.get("reachable") else "down"
    if fault == "stall" and out.roles_after.get(src) == "active" and out.roles_after.get(dst) == "active":
        out.error = out.error or "both nodes report active after the stall"
    return out


def summary(trials: list[FenceTrial]) -> dict:
    """Figures over several trials (bench/bench_fence.py)."""
    removal = [t.removal_s for t in trials if t.removal_s is not None]
    gaps = [t.rtp_gap_s for t in trials]
    return {
        "trials": len(trials),
        "ok": sum(t.ok for t in trials),
        "calls": f"{sum(t.calls_completed for t in trials)}/{sum(t.calls_attempted for t in trials)}",
        "both_held_samples": sum(len(t.both_held) for t in trials),
        "removal_s_median": round(statistics.median(removal), 3) if removal else None,
        "removal_s_worst": round(max(removal), 3) if removal else None,
        "removal_missing": sum(1 for t in trials if t.fault == "sigkill" and t.removal_s is None),
        "rtp_gap_s_median": round(statistics.median(gaps), 3) if gaps else None,
        "rtp_gap_s_worst": round(max(gaps), 3) if gaps else None,
        "takeover_s_median": round(statistics.median([t.takeover_s for t in trials
                                                      if t.takeover_s is not None] or [0]), 3),
        "errors": sorted({t.error for t in trials if t.error}),
    }


__all__ = ["AddressWatcher", "FenceTrial", "trial", "summary", "ns_cmd"]
