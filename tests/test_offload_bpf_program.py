"""The media offload's tc program (gateway/datapath/offload_bpf.py) run in
the kernel on crafted frames (BPF_PROG_TEST_RUN), in a namespace of its own
whose routes and neighbours give the next hop: a flow in the map leaves
translated, one hop older, with the policy's DSCP and mark, right
checksums, the lookup's MAC addresses, counted and redirected; whenever the
kernel has no next hop for it (no neighbour, a smaller MTU, forwarding off)
and for anything else, the frame goes on to the stack as it arrived and is
not counted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from test_tc_bpf_forward import _checksums_right

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
PROBE = str(ROOT / "tests" / "netns_bpf_probe.py")
TC_ACT_OK, TC_ACT_REDIRECT = 0, 7
NEXT_MAC, SMALL_MTU_MAC = "02:00:00:00:00:02", "02:00:00:00:00:03"
MARK, DSCP, CLASS = 0x5000_0002, 46, 0x1_0011


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture(scope="module")
def ns():
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, BPF)")
    name = f"bpfp{os.getpid() % 100000}"
    sh("ip", "netns", "add", name)
    try:
        # in0: where media comes in; out0: towards 1.1.1.0/24 (1.1.1.9 has a
        # neighbour entry, 1.1.1.8 none); mtu0: towards 2.2.2.0/24 with a
        # 150-octet MTU; in2: an interface with forwarding off.
        for dev in ("in0", "out0", "mtu0", "in2"):
            sh("ip", "-n", name, "link", "add", dev, "type", "veth", "peer", "name", dev + "p")
        for dev, addr in (("in0", "10.1.1.1/24"), ("out0", "1.1.1.1/24"), ("mtu0", "2.2.2.1/24"),
                          ("in2", "10.2.2.1/24")):
            sh("ip", "-n", name, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", name, "link", "set", "mtu0", "mtu", "150")
        for dev in ("in0", "out0", "mtu0", "in2"):
            sh("ip", "-n", name, "link", "set", dev, "up")
            sh("ip", "-n", name, "link", "set", dev + "p", "up")
        sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.conf.in2.forwarding=0")
        sh("ip", "-n", name, "neigh", "add", "1.1.1.9", "lladdr", NEXT_MAC, "dev", "out0", "nud", "permanent")
        sh("ip", "-n", name, "neigh", "add", "2.2.2.9", "lladdr", SMALL_MTU_MAC, "dev", "mtu0", "nud",
           "permanent")
        out_mac = subprocess.run(["ip", "netns", "exec", name, "cat", "/sys/class/net/out0/address"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        yield name, out_mac
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def key(src, dst, sport, dport) -> str:
    return (socket.inet_aton(src) + socket.inet_aton(dst) + sport.to_bytes(2, "big")
            + dport.to_bytes(2, "big")).hex()


# The MIP example's outbound media: the phone 10.1.1.3:4000 to 1.1.1.9:7000
# leaves from the MIP's 1.1.1.5:4000 (as the datapath rewrites it).
FLOW = key("10.1.1.3", "1.1.1.9", 4000, 7000)
HEAD = key("1.1.1.5", "1.1.1.9", 4000, 7000)


def frame(src="10.1.1.3", dst="1.1.1.9", sport=4000, dport=7000, ttl=64, tos=0x01, chksum=None,
          size=172, **ip) -> str:
    udp = UDP(sport=sport, dport=dport) if chksum is None else UDP(sport=sport, dport=dport, chksum=chksum)
    return bytes(Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb")
                 / IP(src=src, dst=dst, ttl=ttl, tos=tos, **ip) / udp / Raw(b"\x80" * size)).hex()


def probe(ns_name: str, flows, frames) -> dict:
    r = subprocess.run(["ip", "netns", "exec", ns_name, sys.executable, PROBE],
                       input=json.dumps({"flows": flows, "frames": frames}), capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0 and "BPF" in r.stderr + r.stdout:
        pytest.skip(f"BPF not available here: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_flow_leaves_translated_marked_and_redirected_to_the_next_hop(ns):
    name, out_mac = ns
    out = probe(name, [[FLOW, HEAD, MARK, DSCP, CLASS]], [[frame(), "in0"]])
    (rc, data, mark, priority), = out["runs"]
    assert rc == TC_ACT_REDIRECT
    p = Ether(bytes.fromhex(data))
    assert (p[IP].src, p[UDP].sport, p[IP].dst, p[UDP].dport) == ("1.1.1.5", 4000, "1.1.1.9", 7000)
    assert p[IP].ttl == 63
    assert p[IP].tos == (DSCP << 2) | 0x01                  # the policy's DSCP, the ECN bits kept
    assert (p.dst, p.src) == (NEXT_MAC, out_mac)             # the kernel's neighbour and interface
    assert _checksums_right(bytes(p))
    assert mark == MARK and priority == CLASS              # the egress qdisc's class
    assert out["counters"] == {FLOW: [1, len(bytes.fromhex(frame()))]}


def test_without_a_policy_the_tos_and_the_mark_stay(ns):
    name, _ = ns
    (rc, data, mark, priority), = probe(name, [[FLOW, HEAD, 0, None, 0]], [[frame(tos=0xb8), "in0"]])["runs"]
    p = Ether(bytes.fromhex(data))
    assert rc == TC_ACT_REDIRECT and p[IP].tos == 0xb8 and (mark, priority) == (0, 0) and _checksums_right(bytes(p))


def test_a_zero_udp_checksum_stays_zero(ns):
    name, _ = ns
    (rc, data, _m, _p), = probe(name, [[FLOW, HEAD, MARK, DSCP, CLASS]], [[frame(chksum=0), "in0"]])["runs"]
    p = Ether(bytes.fromhex(data))
    assert rc == TC_ACT_REDIRECT and p[UDP].chksum == 0 and p[IP].src == "1.1.1.5"


@pytest.mark.parametrize("case", ["no neighbour", "mtu", "forwarding off", "unknown flow", "ttl 1",
                                  "fragment", "options", "not udp"])
def test_what_the_kernel_cannot_forward_goes_on_as_it_arrived(ns, case):
    name, _ = ns
    flows = [[FLOW, HEAD, MARK, DSCP, CLASS],
             [key("10.1.1.3", "1.1.1.8", 4000, 7000), key("1.1.1.5", "1.1.1.8", 4000, 7000), 0, None, 0],
             [key("10.1.1.3", "2.2.2.9", 4000, 7000), key("1.1.1.5", "2.2.2.9", 4000, 7000), 0, None, 0],
             [key("10.2.2.3", "1.1.1.9", 4000, 7000), HEAD, 0, None, 0]]
    sent, dev = {
        "no neighbour": (frame(dst="1.1.1.8"), "in0"),
        "mtu": (frame(dst="2.2.2.9"), "in0"),             # 200 octets of IP, a 150-octet MTU
        "forwarding off": (frame(src="10.2.2.3"), "in2"),
        "unknown flow": (frame(sport=4002), "in0"),
        "ttl 1": (frame(ttl=1), "in0"),
        "fragment": (frame(flags="MF"), "in0"),
        "options": (frame(options=b"\x01\x01\x01\x01"), "in0"),
        "not udp": (bytes(Ether() / IP(src="10.1.1.3", dst="1.1.1.9") / Raw(b"x" * 40)).hex(), "in0"),
    }[case]
    out = probe(name, flows, [[sent, dev]])
    (rc, data, mark, priority), = out["runs"]
    assert (rc, data, mark, priority) == (TC_ACT_OK, sent, 0, 0)
    assert all(c == [0, 0] for c in out["counters"].values()), out["counters"]


def test_the_mtu_case_fits_when_the_packet_does(ns):
    """The MTU case above is the MTU's doing: a packet that fits goes."""
    name, _ = ns
    flow = [key("10.1.1.3", "2.2.2.9", 4000, 7000), key("1.1.1.5", "2.2.2.9", 4000, 7000), 0, None, 0]
    (rc, data, _m, _p), = probe(name, [flow], [[frame(dst="2.2.2.9", size=40), "in0"]])["runs"]
    assert rc == TC_ACT_REDIRECT and Ether(bytes.fromhex(data)).dst == SMALL_MTU_MAC
