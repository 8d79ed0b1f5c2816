"""End to end: real SIPp calls with RTP through the gatewayd pair in the
namespace lab (NFQUEUE, datapath, SIP ALG, pinholes, HA), one lab per manual
example, then the same with a forced failover and with a SIGKILL of the active
node in the middle of the calls.

Checked for every example: every call completes; RTP flows both ways; no
pinhole is left 5 s after the BYE (the ALG's teardown delay) plus timer slack,
on the active node's control socket; tshark finds no malformed packet on any
segment; and no private address (a subnet of a ``nat`` mode interface) appears
in a header or in the SIP/SDP text of a packet on any other segment.

Needs root, ip netns, nft, SIPp, tcpdump and tshark; skipped with the reason
otherwise."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from gateway.config import load_file
from ops.lab import gateway_starter as gs
from ops.lab import netns, sipp
from ops.lab.plan import Plan, build_plan, suggest_call

import lab_requirements as lab

pytestmark = pytest.mark.netns

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# From the failover's start (the command, or the SIGKILL) until the other
# node reports active and forwarding: a few hundred ms on a quiet box (a
# crash is seen when the dead process's HA connection closes); this bound
# holds with both cores busy with other work.
TAKEOVER_BOUND_S = 5.0
# The SIP examples a SIPp UAC/UAS pair exercises (suggest_call picks the call
# each configuration is written for).
SIP_EXAMPLES = ["ch2-incoming-call-with-mip", "ch2-proxy-in-public-zone",
                "ch2-incoming-call-interface-dip", "ch2-incoming-call-dip-pool",
                "ch2-proxy-in-private-zone", "ch2-three-zone-proxy-in-dmz",
                "ch2-untrust-intrazone", "ch2-trust-intrazone"]
PINHOLE_GRACE = 5.0 + 3.0       # the ALG's teardown delay, then timer and housekeeping slack


WHY = lab.missing(lab.tools("nft", sipp.SIPP, "tcpdump", "tshark", "iptables"),
                  lab.file(sipp.G711A_PCAP, "sip-tester"), lab.netfilterqueue)


class Captures:
    """tcpdump of ``bpf`` (default UDP) on every segment's bridge, in the
    switch namespace (the pair's HA link is not a segment). Immediate mode: by
    default libpcap hands packets over in blocks (up to a second late), and
    a stop right after the calls would lose their last BYEs."""

    def __init__(self, plan: Plan, d: Path, bpf: str = "udp") -> None:
        self.files = {s.bridge: d / f"{s.bridge}.pcap" for s in plan.segments}
        self.procs = [subprocess.Popen(netns.ns_cmd(plan.switch, "tcpdump", "-i", br, "-U", "-n",
                                                    "--immediate-mode",
                                                    "-s", "0", "-w", str(f), bpf),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for br, f in self.files.items()]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(f.exists() for f in self.files.values()):
            time.sleep(0.05)
        time.sleep(0.2)

    def stop(self) -> None:
        time.sleep(0.3)         # what is in flight reaches the capture
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _malformed(pcap: Path) -> list[str]:
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "_ws.malformed",
                          "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [ln for ln in out.stdout.splitlines() if ln.strip()]


_DOTTED = re.compile(rb"(?<![0-9.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![0-9])")


def _private_leaks(pcap: Path, private: list[IPv4Network]) -> list[str]:
    """Packets whose IP header or SIP text (UDP or TCP payload) names a
    private address."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import PcapReader

    def is_private(text: str) -> bool:
        try:
            ip = IPv4Address(text)
        except ValueError:
            return False
        return any(ip in n for n in private)

    leaks = []
    with PcapReader(str(pcap)) as rd:
        for n, pkt in enumerate(rd, start=1):
            if IP not in pkt:
                continue
            ip = pkt[IP]
            if is_private(ip.src) or is_private(ip.dst):
                leaks.append(f"#{n} header {ip.src} -> {ip.dst}")
                continue
            l4 = pkt[TCP] if TCP in pkt else pkt[UDP] if UDP in pkt else None
            if l4 is None:
                continue
            payload = bytes(l4.payload)
            if payload[:1] in (b"\x80", b"\x81", b"\x90"):   # RTP/RTCP: binary
                continue
            for m in _DOTTED.findall(payload):
                if is_private(m.decode()):
                    leaks.append(f"#{n} payload names {m.decode()}")
                    break
    return leaks


def _nat_view(cfg, plan: Plan) -> tuple[list[IPv4Network], list[str]]:
    """(private subnets, bridges of the segments translated traffic leaves by)."""
    nat_ifaces = {n for n, i in cfg.interfaces.items() if i.mode == "nat" and i.ip is not None}
    private = [cfg.interfaces[n].ip.network for n in nat_ifaces]
    egress = [s.bridge for s in plan.segments if s.gateway_ip is not None
              and s.label not in nat_ifaces]
    return private, egress


def _wait_no_pinholes(state, timeout: float = PINHOLE_GRACE) -> list:
    paths = gs.node_paths(state, state.get_plan())
    deadline = time.monotonic() + timeout
    rows: list = []
    while time.monotonic() < deadline:
        role = gs.active_role(state)
        rows = gs.node_call(paths[role].socket, "show", {"what": "pinholes"}) if role else rows
        if role and not rows:
            return []
        time.sleep(0.25)
    return rows


@contextmanager
def lab_of(tmp_path: Path, prefix: str):
    """A lab of namespaces named ``<prefix><pid>-*``: yields ``make(path)``,
    which builds it from the configuration at ``path`` with the gatewayd
    pair and returns (config, plan, lab state). Torn down however the block
    ends, the nodes' logs left in ``tmp_path`` for a failing run."""
    if WHY:
        pytest.skip(f"end-to-end lab unavailable: {WHY}")
    name = f"{prefix}{os.getpid() % 10000}"
    state_dir = tmp_path / "state"
    made: dict = {}

    def make(path: Path):
        cfg = load_file(path)
        plan = build_plan(cfg, lab=name)
        state = netns.up(plan, starter=gs.NAME, config=str(path), state_dir=state_dir)
        made["state"] = state
        return cfg, plan, state

    try:
        yield make
    finally:
        state = made.get("state")
        if state is not None:
            for f in gs.lab_dir(state).glob("*.log"):
                shutil.copy(f, tmp_path / f.name)
        netns.down(name, state_dir=state_dir)
        assert not [ns for ns in os.listdir(netns.NETNS_DIR) if ns.startswith(f"{name}-")]


@pytest.fixture
def lab(tmp_path):
    with lab_of(tmp_path, "e") as make:
        yield lambda example: make(EXAMPLES / f"{example}.cfg")


def _assert_calls(r, calls: int) -> None:
    assert r.calls_attempted == calls and r.calls_completed == calls and r.calls_failed == 0, r
    assert r.rtp_sent > 0 and r.callee_rtp_received >= 0.95 * r.rtp_sent, r
    assert r.callee_rtp_sent > 0 and r.rtp_received >= 0.95 * r.callee_rtp_sent, r


@pytest.mark.parametrize("example", SIP_EXAMPLES)
def test_calls_through_the_pair(lab, example, tmp_path) -> None:
    cfg, plan, state = lab(example)
    call = suggest_call(plan, cfg)
    caps = Captures(plan, tmp_path)
    try:
        r = sipp.run_calls(call.caller, call.callee, dial=call.dial, calls=3, rate=5,
                           duration_ms=1500, per_call_media_port=True)
        _assert_calls(r, 3)
        left = _wait_no_pinholes(state)
        assert left == [], f"pinholes left {PINHOLE_GRACE}s after the BYE: {left}"
    finally:
        caps.stop()
    for br, f in caps.files.items():
        assert _malformed(f) == [], f"malformed packets on {br}"
    private, egress = _nat_view(cfg, plan)
    for br in egress:
        assert _private_leaks(caps.files[br], private) == [], f"private address on {br}"
    # The calls went through the gateway, not around it: the active node's
    # ALG forwarded their signalling.
    st = gs.node_status(state)[gs.active_role(state)]
    assert st["counters"]["sip_forwarded"] >= 3 * 4, st["counters"]


FAILOVER_CASES = [("ch2-incoming-call-with-mip", False), ("ch2-incoming-call-with-mip", True),
                  ("ch2-incoming-call-interface-dip", False), ("ch2-incoming-call-interface-dip", True)]


@pytest.mark.parametrize("example,crash", FAILOVER_CASES,
                         ids=[f"{e}-{'sigkill' if c else 'failover'}" for e, c in FAILOVER_CASES])
def test_calls_survive_failover(lab, example, crash) -> None:
    cfg, plan, state = lab(example)
    call = suggest_call(plan, cfg)
    calls, rate, hold_ms = 6, 3.0, 4000
    run = gs.calls_with_failover(state, call.caller, call.callee, call.dial, calls=calls,
                                 rate=rate, duration_ms=hold_ms,
                                 failover_at=(calls / rate + hold_ms / 1000) / 2, crash=crash)
    assert run.failover is not None, run.failover_error
    assert run.failover.to_role != run.failover.from_role
    # Right after taking over, the new active holds the calls in progress with
    # their timers (a next deadline in the future) and their pinholes.
    taken = run.calls_after_failover
    assert taken, run
    assert all(c["deadline"] is not None and c["deadline"] > time.time() for c in taken), taken
    assert run.pinholes_after_failover, run
    calls_with_media = {c["call"] for c in taken if c["media"]}
    assert calls_with_media and {p["call"] for p in run.pinholes_after_failover} & calls_with_media
    r = run.calls
    # Every call completes: its BYE went through the new active and was answered.
    assert r.calls_attempted == calls and r.calls_completed == calls and r.calls_failed == 0, r
    assert run.rtp_before.both_ways(0.95), run.rtp_before
    # RTP goes on through the new active once it took over (what the
    # takeover itself loses is its time, bounded here generously for a
    # loaded box; bench/bench_fence.py measures the RTP gap).
    assert run.failover.seconds <= TAKEOVER_BOUND_S, run.failover
    assert run.rtp_after.both_ways(0.9 if not crash else 0.8), run.rtp_after
    if crash:
        assert run.failover.restarted
    statuses = gs.node_status(state)
    assert statuses[run.failover.to_role]["role"] == "active"
    assert statuses[run.failover.from_role]["role"] == "standby"
    assert _wait_no_pinholes(state) == []
