"""What bench/bench_cost.py reads of /proc: a process's and each of its
threads' CPU and voluntary context switches, a process's children, the
machine's busy and softirq time, the processes of a network namespace, and
two samples' difference."""

from __future__ import annotations

import os
import time

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: str) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of a /proc stat file; None if it is gone."""
    try:
        with open(path, "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lp, rp = raw.index("("), raw.rindex(")")
    return raw[lp + 1:rp], raw[rp + 2:].split()


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process, exited threads included (seconds)."""
    s = _stat_fields(f"/proc/{pid}/stat")
    if s is None:
        return None
    f = s[1]
    return (int(f[11]) + int(f[12])) / TICK


def proc_sys(pid: int) -> float | None:
    """stime alone (seconds): the kernel's share, syscalls such as fsync and wake-ups."""
    s = _stat_fields(f"/proc/{pid}/stat")
    return None if s is None else int(s[1][12]) / TICK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of one name summed)."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        s = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        if s is None:
            continue
        name, f = s
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / TICK
    return out


def thread_switches(pid: int) -> dict[str, int]:
    """Voluntary context switches per thread name: how often each thread went
    to sleep (and so was woken again), whatever woke it."""
    out: dict[str, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                text = f.read()
        except OSError:
            continue
        name = n = None
        for line in text.splitlines():
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("voluntary_ctxt_switches:"):
                n = int(line.split()[1])
        if name is not None and n is not None:
            out[name] = out.get(name, 0) + n
    return out


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def machine_busy() -> tuple[float, float]:
    """(busy, softirq) CPU seconds of the whole machine: busy is all but idle
    and iowait; softirq is where the kernel forwards, NATs and runs its SIP
    helper (the plain-routing and kernel-helper gateways' own cost, which
    no process is charged with)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK, v[6] / TICK


def netns_pids(netns_name: str, comm: str) -> list[int]:
    """Processes named ``comm`` in the network namespace ``netns_name``."""
    try:
        want = os.stat(f"/run/netns/{netns_name}").st_ino
    except OSError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != comm:
                    continue
            if os.stat(f"/proc/{d}/ns/net").st_ino == want:
                out.append(int(d))
        except OSError:
            continue
    return out


class Sample:
    """CPU of the watched processes, their threads, and the machine, at one instant."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.t = time.monotonic()
        self.machine, self.softirq = machine_busy()
        self.proc = {k: proc_cpu(p) for k, p in pids.items()}
        self.sys = {k: proc_sys(p) for k, p in pids.items()}
        self.threads = {k: thread_cpu(p) for k, p in pids.items()}
        self.switches = {k: thread_switches(p) for k, p in pids.items()}


def diff(a: Sample, b: Sample) -> dict:
    """CPU seconds between two samples: per process, per thread, machine."""
    procs = {k: (b.proc[k] - a.proc[k]) for k in a.proc
             if a.proc.get(k) is not None and b.proc.get(k) is not None}
    sys_ = {k: (b.sys[k] - a.sys[k]) for k in procs}
    threads = {}
    for k in a.threads:
        ta, tb = a.threads[k], b.threads.get(k, {})
        threads[k] = {n: tb[n] - ta.get(n, 0.0) for n in tb if tb[n] - ta.get(n, 0.0) > 0}
    switches = {}
    for k in a.switches:
        sa, sb = a.switches[k], b.switches.get(k, {})
        switches[k] = {n: sb[n] - sa.get(n, 0) for n in sb if sb[n] - sa.get(n, 0) > 0}
    return {"seconds": b.t - a.t, "switches": switches, "machine": b.machine - a.machine,
            "softirq": b.softirq - a.softirq, "procs": procs,
            "sys": sys_, "threads": threads}
