"""Datapath speed, as ratios to baselines measured in the same run.

    .venv/bin/python bench/bench_datapath.py [--seconds 0.3] [--packets 100000] [--no-netns]

1. In process: packets per second through ``Datapath.process`` on the
   session fast path (an RTP-sized UDP packet of an established NAT session,
   header rewritten with incremental checksums), beside a header parse alone
   (``gateway.packet.parse``), and for comparison a new flow per packet
   (policy decision + session creation) and a media packet opening a session
   through a pinhole.
2. As root: a namespace pair with a gateway namespace between them; a bounded
   UDP loop from one side to the other; the datagrams arriving are counted by
   an iptables rule on the far side. Plain forwarding, NFQUEUE with an
   accept-only callback, and NFQUEUE through the datapath (interface NAT,
   session fast path), each as delivered packets/s and as a ratio to
   accept-only.
   Beside it, the worker's own CPU time (user + system, from /proc) per
   packet it handled: a measure that does not depend on whether the sender
   or the worker is the bottleneck (accept-only keeps up with one sender, so
   its delivered rate is the sender's, and the delivered ratio cannot show
   how much headroom either has). The kernel's reinjection and forwarding of
   an accepted packet run in the worker's verdict system call, so they are
   counted for both. And a second baseline: accept-only with the verdicts
   batched as the datapath worker batches them (one system call per drain
   of the queue instead of one per packet): the worker's floor, a stricter
   comparison than accept-only's one verdict call per packet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import parse_text  # noqa: E402
from gateway.datapath import Datapath, Forward  # noqa: E402
from gateway.datapath.fastpath import FastPath  # noqa: E402
from gateway.packet import build_udp, parse  # noqa: E402
from gateway.sip.state import Pinhole  # noqa: E402

CONFIG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set policy from trust to untrust any any any permit
"""
RTP = b"\x80\x00" + b"\x00" * 170


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn``, best of 3 runs of about ``seconds`` each."""
    n = 1
    while True:
        t = timeit.timeit(fn, number=n)
        if t >= seconds / 10:
            break
        n *= 4
    n = max(1, int(n * seconds / max(t, 1e-9)))
    return n / min(timeit.repeat(fn, number=n, repeat=3))


def in_process(seconds: float) -> None:
    dp = Datapath(parse_text(CONFIG))
    out = build_udp("10.1.1.3", "1.1.1.9", 40000, 30000, RTP)
    first = dp.process(out, "ethernet1", 0.0)
    assert isinstance(first, Forward) and first.path == "policy"
    back = build_udp("1.1.1.9", "1.1.1.1", 30000, 40000, RTP)
    assert dp.process(back, "ethernet1", 0.0).path == "fast-session"

    base = rate(lambda: parse(out), seconds)
    fwd = rate(lambda: dp.process(out, "ethernet1", 1.0), seconds)
    rev = rate(lambda: dp.process(back, "ethernet3", 1.0), seconds)
    # What the NFQUEUE worker tries first for such packets (same result).
    fast = FastPath.of(dp)
    assert fast.process(out, 1.0) == dp.process(out, "ethernet1", 1.0).data
    fast_fwd = rate(lambda: fast.process(out, 1.0), seconds)

    # New flows: a different source port each time (sessions accumulate).
    pkts = [build_udp("10.1.1.3", "1.1.1.9", 1024 + i % 60000, 9, b"x" * 32) for i in range(60000)]
    it = iter(pkts)
    new = rate(lambda: dp.process(next(it), "ethernet1", 2.0), min(seconds, 0.05))

    # Media through a pinhole: each packet from a new source opens a session.
    dp.install_pinholes([Pinhole("c#p1", "c", "c#g1", "media", "udp", "inbound",
                                 ("1.1.1.1", 20000), ("10.1.1.3", 4000), None, None)])
    media = [build_udp("2.2.%d.%d" % (i // 250, i % 250 + 1), "1.1.1.1", 6000, 20000, RTP)
             for i in range(60000)]
    mt = iter(media)
    hole = rate(lambda: dp.process(next(mt), "ethernet3", 3.0), min(seconds, 0.05))

    print("in-process (packets/s; ratio to parse-only)")
    print(f"  parse only (baseline)          {base:12,.0f}   1.00")
    for name, r in (("session hit, NAT out (rewrite)", fwd), ("session hit, NAT back (rewrite)", rev),
                    ("fast path, NAT out (rewrite)", fast_fwd),
                    ("new flow (policy + session)", new), ("pinhole -> media session", hole)):
        print(f"  {name:31s}{r:12,.0f}   {r / base:.2f}")


# ------------------------------------------------------------------ NFQUEUE in namespaces

def sh(*args: str, check: bool = True) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


SENDER = """
import socket, sys, time
n = int(sys.argv[1]); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40000)); data = b"\\x80" * 172; dst = ("1.1.1.9", 9000)
t = time.perf_counter()
for _ in range(n):
    try:
        s.sendto(data, dst)
    except OSError:
        pass
print(time.perf_counter() - t)
"""


def _delivered(ns: str) -> int:
    out = sh("ip", "netns", "exec", ns, "iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n")
    for line in out.splitlines():
        if "dpt:9000" in line:
            return int(line.split()[0])
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def netns(packets: int, repeat: int = 1) -> None:
    tag = f"{os.getpid() % 100000}"
    a, gw, b = f"bdA{tag}", f"bdG{tag}", f"bdB{tag}"
    py = str(ROOT / ".venv" / "bin" / "python")
    made = []
    try:
        for ns in (a, gw, b):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", "name", "gwa", "netns", gw)
        sh("ip", "link", "add", f"vb{tag}", "netns", b, "type", "veth", "peer", "name", "gwb", "netns", gw)
        for ns, dev, addr in ((a, f"va{tag}", "10.1.1.3/24"), (b, f"vb{tag}", "1.1.1.9/24"),
                              (gw, "gwa", "10.1.1.1/24"), (gw, "gwb", "1.1.1.1/24")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", a, "route", "add", "default", "via", "10.1.1.1")
        sh("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The far side counts and drops what arrives (no replies, no ICMP).
        sh("ip", "netns", "exec", b, "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "udp",
           "--dport", "9000", "-j", "DROP")
        cfg = Path(tempfile.mkdtemp()) / "gw.cfg"
        cfg.write_text(CONFIG)

        cpu: dict[str, float] = {}

        def run(mode: str | None) -> tuple[float, int]:
            before = _delivered(b)
            worker = None
            cpu0 = 0.0
            if mode is not None:
                cmd = ["ip", "netns", "exec", gw, py, "-m", "actors.ingest", "--config", str(cfg),
                       "--queue", "11", "--iface", "gwa=ethernet1", "--iface", "gwb=ethernet3"]
                if mode == "accept":
                    cmd.append("--accept-only")
                elif mode == "accept-batched":
                    cmd.append("--accept-only-batched")
                worker = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
                assert worker.stdout.readline().strip() == "ready"
                cpu0 = _cpu_seconds(worker.pid)       # `ip netns exec` execs python: same pid
            try:
                took = float(sh("ip", "netns", "exec", a, py, "-c", SENDER, str(packets)))
                time.sleep(0.5)
                if worker is not None:
                    used = _cpu_seconds(worker.pid) - cpu0
            finally:
                if worker is not None:
                    worker.terminate()
                    tail = worker.communicate(timeout=20)[0]
            if worker is not None:
                handled = json.loads(tail.strip().splitlines()[-1])["worker"]["packets"]
                cpu[mode] = used / max(handled, 1)
            return took, _delivered(b) - before

        ratios, cpu_ratios = [], []
        for _ in range(repeat):
            print(f"\nNFQUEUE in namespaces ({packets:,} UDP datagrams of 200 bytes, one sender)")
            results = {}
            for name, mode in (("plain forwarding", None), ("NFQUEUE accept-only", "accept"),
                               ("NFQUEUE accept-only, batched", "accept-batched"),
                               ("NFQUEUE datapath (NAT session)", "datapath")):
                took, got = run(mode)
                results[name] = got / took
                print(f"  {name:31s}{got / took:12,.0f} delivered/s  ({got:,} of {packets:,} "
                      f"in {took:.2f} s)")
            base = results["NFQUEUE accept-only"]
            ratios.append(results["NFQUEUE datapath (NAT session)"] / base)
            cpu_ratios.append(cpu["accept"] / cpu["datapath"])
            print(f"  ratio datapath / accept-only: {ratios[-1]:.2f}")
            print(f"  worker CPU per packet handled: accept-only {cpu['accept'] * 1e6:.2f} us, "
                  f"datapath {cpu['datapath'] * 1e6:.2f} us; "
                  f"ratio accept-only / datapath: {cpu_ratios[-1]:.2f}")
            print(f"  (accept-only with batched verdicts, the floor of the worker's cost: "
                  f"{cpu['accept-batched'] * 1e6:.2f} us per packet, delivered ratio datapath / it: "
                  f"{results['NFQUEUE datapath (NAT session)'] / results['NFQUEUE accept-only, batched']:.2f})")
        if repeat > 1:
            # The machine may be shared: the median of several runs.
            print(f"\nmedian of {repeat} runs: ratio datapath / accept-only "
                  f"{statistics.median(ratios):.2f}, CPU ratio {statistics.median(cpu_ratios):.2f}")
    finally:
        for ns in made:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                subprocess.run(["kill", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--packets", type=int, default=100000)
    ap.add_argument("--no-netns", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the NFQUEUE part this many times and print the medians")
    args = ap.parse_args()
    in_process(args.seconds)
    if args.no_netns:
        return
    if os.geteuid() != 0:
        print("\nNFQUEUE part skipped: needs root")
        return
    netns(args.packets, args.repeat)


if __name__ == "__main__":
    main()
