"""RTP through the gateway: the kernel's media offload beside plain
forwarding, the kernel's SIP helper and the userspace path, same run.

    sudo .venv/bin/python bench/bench_media_offload.py [--packets 100000] [--flows 1 2] [--repeat 1]

Three namespaces (caller, gateway, callee) as in bench/bench_datapath.py.
For each gateway and each number of flows: every flow is a call (an INVITE
from the caller, a 200 OK from the callee, both with SDP), then one sender
process per flow sends ``--packets`` datagrams of 200 bytes (IP) to the
callee's media address as fast as it can; the callee counts what arrives
(an iptables rule that also drops it: no replies). Gateways:

* ``plain``: Linux forwarding, no NAT (the callee routes back);
* ``kernel-sip-helper``: nf_conntrack_sip + nf_nat_sip, masquerade on the
  callee's leg, the helper assigned by an nft ``ct helper`` rule;
* ``userspace``: the NFQUEUE worker with the SIP ALG inline
  (``python -m actors.ingest --sip-inline``), interface NAT, media on the
  userspace fast path;
* ``offload``: the same with ``set flow media-offload`` (the "maps" layout
  of gateway/datapath/offload.py: one rule, the rewrite looked up by flow id);
* ``offload-chains``: the "chains" layout (a verdict map to a chain per flow
  writing constants);
* ``offload-bpf``: the "bpf" layout, the gateway's tc ingress program
  (gateway/datapath/offload_bpf.py: next hop from the kernel's routes,
  counters, redirect), what a node runs wherever the program loads;
* ``tc-bpf``: not the gateway: an experiment for the offload's next layout
  (bench/tc_bpf_forward.py), a tc ingress BPF program forwarding each flow
  with the gateway's source NAT (the caller's address becomes 1.1.1.1), the
  calls' signalling forwarded plainly. Not in the default list.

With ``--perf DIR`` the sends are recorded machine-wide (``perf record -a
-g``, DIR/<gateway>-<flows>.data) and each run also reports the CPU per
delivered packet of the whole machine and of netfilter's functions (kernel
symbols ``nft_*``, ``nf_*``, ``ipt_*``, ``xt_*``, ``*conntrack*``) from the
samples: where the forwarding path's time goes.

Reported: delivered packets/s (all flows; the senders' wall time), the
ratio to plain forwarding, and the worker's CPU time (user + system, from
/proc, its whole process: the ALG, the offload's nft calls are children and
are added from the process's cumulative children times) per media packet
delivered. The worker is the same datapath as a pair's active node; the
pair's standby sees no media.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CONFIG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set policy from trust to untrust any any any permit
"""
QUEUE = 12
MEDIA_BASE = 7000

# The callee: answers each INVITE with SDP at its own media port
# (MEDIA_BASE + 2 per call), until killed.
UAS = """
import socket, sys
sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sig.bind(("0.0.0.0", 5060))
print("listening", flush=True)
n = 0
while True:
    data, peer = sig.recvfrom(65535)
    if not data.startswith(b"INVITE"):
        continue
    lines = data.decode("latin-1").split("\\r\\n")
    keep = [ln for ln in lines if ln.split(":", 1)[0] in ("Via", "From", "Call-ID", "CSeq")]
    to = next(ln for ln in lines if ln.startswith("To:")) + ";tag=b%d" % n
    sdp = ("v=0\\r\\no=b 1 1 IN IP4 1.1.1.9\\r\\ns=-\\r\\nc=IN IP4 1.1.1.9\\r\\nt=0 0\\r\\n"
           "m=audio %d RTP/AVP 0\\r\\n" % (%MEDIA% + 2 * n)).encode()
    head = "\\r\\n".join(["SIP/2.0 200 OK", *keep, to, "Contact: <sip:b@1.1.1.9:5060>",
                         "Content-Type: application/sdp", "Content-Length: %d" % len(sdp), "", ""])
    sig.sendto(head.encode() + sdp, peer)
    n += 1
""".replace("%MEDIA%", str(MEDIA_BASE))

# A caller: one call (signalling port 5060 + 2i, media 4000 + 2i), then
# ``--packets`` datagrams to the answer's media address; prints the seconds
# the sending took. It waits for a line on stdin before sending, so that all
# flows start together.
UAC = """
import select, socket, sys, time
i, n = int(sys.argv[1]), int(sys.argv[2])
sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sig.bind(("0.0.0.0", 5060 + 2 * i))
rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rtp.bind(("0.0.0.0", 4000 + 2 * i))
sdp = ("v=0\\r\\no=a 1 1 IN IP4 10.1.1.3\\r\\ns=-\\r\\nc=IN IP4 10.1.1.3\\r\\nt=0 0\\r\\n"
       "m=audio %d RTP/AVP 0\\r\\n" % (4000 + 2 * i)).encode()
head = "\\r\\n".join(["INVITE sip:b@1.1.1.9 SIP/2.0",
                     "Via: SIP/2.0/UDP 10.1.1.3:%d;branch=z9hG4bK%d" % (5060 + 2 * i, i),
                     "From: <sip:a@10.1.1.3>;tag=a%d" % i, "To: <sip:b@1.1.1.9>",
                     "Call-ID: bench-%d@10.1.1.3" % i, "CSeq: 1 INVITE",
                     "Contact: <sip:a@10.1.1.3:%d>" % (5060 + 2 * i),
                     "Content-Type: application/sdp", "Content-Length: %d" % len(sdp), "", ""])
for _ in range(3):
    sig.sendto(head.encode() + sdp, ("1.1.1.9", 5060))
    if select.select([sig], [], [], 2)[0]:
        break
else:
    print("no answer", flush=True); sys.exit(1)
text = sig.recvfrom(65535)[0].decode("latin-1")
dst = (text.split("c=IN IP4 ", 1)[1].split()[0], int(text.split("m=audio ", 1)[1].split()[0]))
data = b"\\x80" * 172
rtp.sendto(data, dst)          # the first packet opens the media session
print("answered", flush=True)
sys.stdin.readline()
t = time.perf_counter()
for _ in range(n):
    try:
        rtp.sendto(data, dst)
    except OSError:
        pass
print(time.perf_counter() - t, flush=True)
"""


def sh(*args: str, check: bool = True, input: str | None = None) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its waited-for children, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _delivered(ns: str) -> int:
    out = sh("ip", "netns", "exec", ns, "iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n")
    for line in out.splitlines():
        if "dpts:" in line and "DROP" in line:
            return int(line.split()[0])
    return 0


HELPER = """
table ip bench_helper {
  ct helper sip5060 { type "sip" protocol udp; l3proto ip; }
  chain pre { type filter hook prerouting priority filter; policy accept;
    udp dport 5060 ct helper set "sip5060"; }
  chain post { type nat hook postrouting priority 100; policy accept;
    oifname "gwb" masquerade; }
}
"""


class Lab:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.a, self.gw, self.b = f"moA{tag}", f"moG{tag}", f"moB{tag}"
        self.tag = tag
        self.made: list[str] = []
        self.py = str(ROOT / ".venv" / "bin" / "python")
        self.tmp = Path(tempfile.mkdtemp())

    def up(self) -> None:
        a, gw, b, tag = self.a, self.gw, self.b, self.tag
        for ns in (a, gw, b):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", "name", "gwa", "netns", gw)
        sh("ip", "link", "add", f"vb{tag}", "netns", b, "type", "veth", "peer", "name", "gwb", "netns", gw)
        for ns, dev, addr in ((a, f"va{tag}", "10.1.1.3/24"), (b, f"vb{tag}", "1.1.1.9/24"),
                              (gw, "gwa", "10.1.1.1/24"), (gw, "gwb", "1.1.1.1/24")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", a, "route", "add", "default", "via", "10.1.1.1")
        sh("ip", "-n", b, "route", "add", "10.1.1.0/24", "via", "1.1.1.1")
        sh("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", b, "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "udp",
           "--dport", f"{MEDIA_BASE}:{MEDIA_BASE + 98}", "-j", "DROP")

    def down(self) -> None:
        for ns in self.made:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                subprocess.run(["kill", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def _link(self, ns: str, dev: str) -> tuple[int, str]:
        """(ifindex, MAC) of ``dev`` in ``ns``."""
        words = sh("ip", "-n", ns, "-o", "link", "show", "dev", dev).split()
        return int(words[0].rstrip(":")), words[words.index("link/ether") + 1]

    def _tc_bpf(self, flows: int):
        """Load, pin and attach the experiment's program; its flows' entries
        (the caller's media to the callee's, leaving as 1.1.1.1)."""
        import tc_bpf_forward as tb
        pins = Path(f"/tmp/bench-bpffs-{self.tag}")
        pins.mkdir(exist_ok=True)
        if subprocess.run(["mountpoint", "-q", str(pins)]).returncode != 0:
            sh("mount", "-t", "bpf", "bpf", str(pins))
        map_fd = tb.create_map()
        prog_fd = tb.load(map_fd)
        pinned = str(pins / "media_fwd")
        if os.path.exists(pinned):
            os.unlink(pinned)
        tb.pin(prog_fd, pinned)
        tb.attach(self.gw, ("gwa", "gwb"), pinned)
        out_index, out_mac = self._link(self.gw, "gwb")
        _i, callee_mac = self._link(self.b, f"vb{self.tag}")
        keys = []
        for i in range(flows):
            key = tb.flow_key("10.1.1.3", "1.1.1.9", 4000 + 2 * i, MEDIA_BASE + 2 * i)
            tb.put(map_fd, key, tb.flow_value("1.1.1.1", "1.1.1.9", 4000 + 2 * i, MEDIA_BASE + 2 * i,
                                              out_index, callee_mac, out_mac))
            keys.append(key)

        def done() -> str:
            n = sum(tb.VALUE.unpack(tb.get(map_fd, k))[7] for k in keys)
            tb.detach(self.gw, ("gwa", "gwb"))
            os.unlink(pinned)
            os.close(prog_fd)
            os.close(map_fd)
            sh("umount", str(pins), check=False)
            return f"{n} packets by the program"
        return done

    def run(self, gateway: str, flows: int, packets: int, perf_dir: Path | None = None) -> dict:
        worker = None
        extra_cleanup = []
        tc_bpf_done = self._tc_bpf(flows) if gateway == "tc-bpf" else None
        if gateway == "kernel-sip-helper":
            sh("ip", "netns", "exec", self.gw, "nft", "-f", "-", input=HELPER)
            extra_cleanup.append(["nft", "delete", "table", "ip", "bench_helper"])
        elif gateway in ("userspace", "offload", "offload-chains", "offload-bpf"):
            cfg = self.tmp / f"{gateway}.cfg"
            cfg.write_text(CONFIG + ("set flow media-offload\n" if gateway != "userspace" else ""))
            cmd = ["ip", "netns", "exec", self.gw, self.py, "-m", "actors.ingest", "--config",
                   str(cfg), "--queue", str(QUEUE), "--iface", "gwa=ethernet1", "--iface",
                   "gwb=ethernet3", "--sip-inline"]
            if gateway == "offload":
                cmd += ["--media-offload", "maps"]
            elif gateway == "offload-chains":
                cmd += ["--media-offload", "chains"]
            elif gateway == "offload-bpf":
                cmd += ["--media-offload", "bpf"]
            worker = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=open(self.tmp / f"{gateway}.log", "w"), text=True)
            assert worker.stdout.readline().strip() == "ready"
        uas = subprocess.Popen(["ip", "netns", "exec", self.b, self.py, "-c", UAS],
                               stdout=subprocess.PIPE, text=True)
        senders = []
        try:
            assert uas.stdout.readline().strip() == "listening"
            for i in range(flows):
                p = subprocess.Popen(["ip", "netns", "exec", self.a, self.py, "-c", UAC, str(i),
                                      str(packets)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
                senders.append(p)
                line = p.stdout.readline().strip()
                if line != "answered":
                    raise RuntimeError(f"{gateway}: call {i} not answered ({line!r})")
            time.sleep(1.5)                  # the offload installs its flows meanwhile
            before = _delivered(self.b)
            cpu0 = _cpu_seconds(worker.pid) if worker is not None else 0.0
            recording = None
            if perf_dir is not None:
                recording = perf_dir / f"{gateway}-{flows}.data"
                perf = subprocess.Popen(["perf", "record", "-a", "-g", "-q", "-o", str(recording)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            for p in senders:
                p.stdin.write("go\n")
                p.stdin.flush()
            took = max(float(p.stdout.readline()) for p in senders)
            if recording is not None:
                perf.send_signal(signal.SIGINT)
                perf.wait()
            time.sleep(0.5)
            got = _delivered(self.b) - before
            cpu = _cpu_seconds(worker.pid) - cpu0 if worker is not None else None
        finally:
            for p in senders + [uas]:
                p.kill()
                p.wait()
            stats = None
            if worker is not None:
                worker.terminate()
                out = worker.communicate(timeout=30)[0]
                stats = json.loads(out.strip().splitlines()[-1])
            for cmd in extra_cleanup:
                sh("ip", "netns", "exec", self.gw, *cmd, check=False)
            sh("ip", "netns", "exec", self.gw, "conntrack", "-F", check=False)
        result = {"gateway": gateway, "flows": flows, "sent": packets * flows, "delivered": got,
                  "rate": got / took, "cpu_us": None if cpu is None else cpu / max(got, 1) * 1e6}
        if tc_bpf_done is not None:
            result["path"] = tc_bpf_done()
        if recording is not None:
            result.update(perf_shares(recording, took + 0.5, got))
        if stats is not None:
            result["queued"] = stats["worker"]["packets"]
            if "media_offload" in stats:
                result["path"] = stats["media_offload"]["media_path"]
        return result


_NETFILTER = ("nft_", "nf_", "ipt_", "xt_", "__nf_", "__nft_")


def perf_shares(recording: Path, seconds: float, delivered: int) -> dict:
    """CPU per delivered packet (us) from a machine-wide recording of
    ``seconds``: all busy CPU, and netfilter's functions among it."""
    out = sh("perf", "report", "-i", str(recording), "--no-children", "--sort", "symbol",
             "-g", "none", "-q", "--stdio", check=False)
    idle = netfilter = 0.0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%"):
            continue
        share, name = float(parts[0][:-1]) / 100, parts[2]
        if name in ("pv_native_safe_halt", "default_idle", "native_safe_halt", "acpi_safe_halt"):
            idle += share
        elif name.startswith(_NETFILTER) or "conntrack" in name:
            netfilter += share
    cpu_s = seconds * (os.cpu_count() or 1)
    per = cpu_s / max(delivered, 1) * 1e6
    return {"busy_us": round(per * (1 - idle), 2), "netfilter_us": round(per * netfilter, 2)}


SCALE = """
import json, sys, time, subprocess
sys.path.insert(0, sys.argv[3])
from ipaddress import IPv4Address
from gateway.config import parse_text
from gateway.datapath import Datapath
from gateway.datapath.offload import OffloadTable, parse_chain_counters, parse_counters, table_script
from gateway.packet import build_udp
from gateway.sip.state import Pinhole
calls, mode = int(sys.argv[1]), sys.argv[2]
cfg = open(sys.argv[4]).read()
dp = Datapath(parse_text(cfg))
# With the tc program, the first SAMPLE calls are between the lab's real
# phones (the caller 10.1.1.3, the callee 1.1.1.9): their RTP is sent
# while all the calls are installed.
SAMPLE = min(int(sys.argv[5]), calls) if mode == "bpf" else 0
def ends(i):
    if i < SAMPLE:
        return ("10.1.1.3", 5000 + 2 * i), ("1.1.1.9", 8000 + i)
    return ("10.1.1.%d" % (3 + i // 20000), 4000), (str(IPv4Address("2.0.0.0") + i), 6000)
holes = [Pinhole(f"c{i}#p", f"c{i}", f"c{i}#g", "media", "udp", "inbound",
                 ("1.1.1.1", 20000 + 2 * (i % 20000)), ends(i)[0], None, None)
         for i in range(calls)]
dp.install_pinholes(holes)
for i in range(calls):
    (inside, iport), (far, fport) = ends(i)
    dp.process(build_udp(far, "1.1.1.1", fport, 20000 + 2 * (i % 20000), b"x"), "ethernet3", 0.0)
    dp.process(build_udp(inside, far, iport, fport, b"x"), "ethernet1", 0.0)
def nft(text):
    r = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:500]
def slab():
    for line in open("/proc/meminfo"):
        if line.startswith("Slab:"):
            return int(line.split()[1]) * 1024
t = OffloadTable()
if mode == "bpf":
    # The program attached, its map filled through bpf(2) as a node does.
    from actors.kernel_media_bpf import BpfFlows
    bpf = BpfFlows(99, ["gwa", "gwb"], subprocess.run)
    why = bpf.install()
    assert not why, why
    apply = lambda plan: bpf.apply(plan.adds, plan.deletes)
else:
    nft(table_script("scale", ["gwa", "gwb"], mode))
    apply = lambda plan: nft(chr(10).join(plan.script("scale", mode)) + chr(10))
plan = t.plan(dp.sessions.fast)
m0 = slab(); t0 = time.perf_counter()
apply(plan)
t_add = time.perf_counter() - t0; m1 = slab()
sample = {}
if SAMPLE:
    print(json.dumps({"installed": len(plan.adds)}), flush=True)
    sys.stdin.readline()                       # the sample's RTP was sent meanwhile
    caller = bytes([10, 1, 1, 3])
    sample = {k[8:10].hex(): v[0] for k, v in bpf.counts().items() if k[:4] == caller}
t0 = time.perf_counter()
if mode == "bpf":
    n = len(bpf.counts())
else:
    what = ["map", "inet", "scale", "flows"] if mode == "maps" else ["table", "inet", "scale"]
    out = subprocess.run(["nft", "-j", "list", *what], capture_output=True, text=True).stdout
    n = len(parse_counters(out)) if mode == "maps" else len(parse_chain_counters(out))
t_read = time.perf_counter() - t0
for s in list(dp.sessions):
    dp.sessions.remove(s)
plan = t.plan(dp.sessions.fast)
t0 = time.perf_counter()
apply(plan)
t_del = time.perf_counter() - t0
if mode == "bpf":
    bpf.remove()
else:
    subprocess.run(["nft", "delete", "table", "inet", "scale"])
print(json.dumps({"mode": mode, "calls": calls, "directions": n, "install_s": t_add,
                  "directions_per_s_in": n / t_add, "read_s": t_read, "remove_s": t_del,
                  "slab_bytes_per_call": (m1 - m0) / calls,
                  **({"sample_counted": sum(sample.values()), "sample_flows": len(sample)} if SAMPLE else {})}))
"""

# The sample's RTP (--scale with the tc program): a receiver in the callee's
# namespace on ports 8000.. (past the range the callee drops unread), a
# sender in the caller's from 10.1.1.3:5000+2i.
SAMPLE_RX = """
import json, selectors, socket, sys, time
n, seconds = int(sys.argv[1]), float(sys.argv[2])
sel = selectors.DefaultSelector(); got = {}
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("1.1.1.9", 8000 + i))
    s.setblocking(False); sel.register(s, selectors.EVENT_READ, 8000 + i)
print("listening", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(0.1):
        while True:
            try:
                key.fileobj.recv(2048)
            except BlockingIOError:
                break
            got[key.data] = got.get(key.data, 0) + 1
print(json.dumps(got), flush=True)
"""
SAMPLE_TX = """
import socket, sys, time
n, packets = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.1.1.3", 5000 + 2 * i))
    socks.append((s, ("1.1.1.9", 8000 + i)))
for _ in range(packets):
    for s, to in socks:
        s.sendto(bytes(172), to)
    time.sleep(0.02)                            # 50 packets/s per flow, as G.711 at 20 ms
"""
SAMPLE_CALLS, SAMPLE_PACKETS = 20, 100


def scale(lab: Lab, calls: int) -> None:
    cfg = lab.tmp / "scale.cfg"
    cfg.write_text(CONFIG)
    for mode in ("maps", "chains"):
        print(sh("ip", "netns", "exec", lab.gw, lab.py, "-c", SCALE, str(calls), mode, str(ROOT),
                 str(cfg), "0").strip(), flush=True)
    # The tc program: the calls installed, then RTP on a sample of them.
    p = subprocess.Popen(["ip", "netns", "exec", lab.gw, lab.py, "-c", SCALE, str(calls), "bpf", str(ROOT),
                          str(cfg), str(SAMPLE_CALLS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    installed = json.loads(p.stdout.readline())
    seconds = SAMPLE_PACKETS * 0.02 + 3
    rx = subprocess.Popen(["ip", "netns", "exec", lab.b, lab.py, "-c", SAMPLE_RX, str(SAMPLE_CALLS),
                           str(seconds)], stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "listening"
    sh("ip", "netns", "exec", lab.a, lab.py, "-c", SAMPLE_TX, str(SAMPLE_CALLS), str(SAMPLE_PACKETS))
    got = json.loads(rx.stdout.readline())
    rx.wait(10)
    p.stdin.write("\n")
    p.stdin.flush()
    result = json.loads(p.stdout.readline())
    p.wait(60)
    result.update(installed_directions=installed["installed"], sample_sent=SAMPLE_CALLS * SAMPLE_PACKETS,
                  sample_delivered=sum(got.values()), sample_flows_delivered=len(got))
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=100_000, help="per flow")
    ap.add_argument("--flows", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--scale", type=int, default=0, metavar="CALLS",
                    help="also install CALLS calls' media (two directions each) in the kernel "
                         "at once: install and removal rate, counter read time, kernel memory; "
                         "with the tc program, RTP on 20 of them meanwhile (delivered, counted)")
    ap.add_argument("--perf", type=Path, metavar="DIR",
                    help="record the sends with perf (machine-wide) into DIR and report the CPU "
                         "per packet, all and netfilter's")
    ap.add_argument("--gateways", nargs="+",
                    default=["plain", "kernel-sip-helper", "userspace", "offload",
                             "offload-chains", "offload-bpf"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    if args.perf is not None:
        args.perf.mkdir(parents=True, exist_ok=True)
    lab = Lab()
    rows: dict[tuple[str, int], list[dict]] = {}
    try:
        lab.up()
        if args.scale:
            scale(lab, args.scale)
        for _ in range(args.repeat):
            for flows in args.flows:
                for gw in args.gateways:
                    r = lab.run(gw, flows, args.packets, args.perf)
                    rows.setdefault((gw, flows), []).append(r)
                    print(json.dumps(r), flush=True)
    finally:
        lab.down()
    print(f"\n| gateway | flows | delivered/s (median of {args.repeat}) | ratio to plain | "
          "delivered | gateway CPU per media packet | packets through the queue |"
          + (" machine CPU per packet (perf) |" if args.perf is not None else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if args.perf is not None else ""))
    for flows in args.flows:
        plain = statistics.median(r["rate"] for r in rows.get(("plain", flows), [{"rate": 0}]))
        for gw in args.gateways:
            rs = rows[(gw, flows)]
            rate = statistics.median(r["rate"] for r in rs)
            cpu = [r["cpu_us"] for r in rs if r["cpu_us"] is not None]
            print(f"| {gw} | {flows} | {rate:,.0f} | {rate / plain:.2f} | "
                  f"{min(r['delivered'] for r in rs):,} of {rs[0]['sent']:,} | "
                  + (f"{statistics.median(cpu):.2f} us" if cpu else "-") + " | "
                  + (f"{max(r.get('queued', 0) for r in rs):,}" if "queued" in rs[0] else "-")
                  + " |" + (f" {statistics.median(r['busy_us'] for r in rs):.2f} us busy, "
                            f"{statistics.median(r['netfilter_us'] for r in rs):.2f} us netfilter |"
                            if "busy_us" in rs[0] else ""))


if __name__ == "__main__":
    main()
