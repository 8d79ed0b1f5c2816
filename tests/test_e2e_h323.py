"""End to end: H.323 calls through the gatewayd pair in the namespace lab, for
every example of manual chapter 1, with the lab's own H.323 peer
(``ops/lab/h323peer.py``: Debian packages no H.323 endpoint).

A gatekeeper and two phones run in their namespaces (``ops/lab/h323.py``
says who is who); both phones register (GRQ/RRQ), the caller asks admission
(ARQ/ACF) and calls the callee at the ACF's address: Setup, CallProceeding,
Alerting (the callee's ARQ in between), Connect; H.245 as fastStart, on its
own TCP connection (h245Address) or tunnelled (h245Control); G.711 RTP both
ways to the addresses the other side signalled (the gateway translates them
where NAT applies); CloseLogicalChannel, EndSessionCommand, ReleaseComplete,
DRQ/DCF. Every segment is captured and tshark must find no malformed packet;
the active node must hold no pinhole of the calls afterwards.

Then calls with a SIGKILL of the active gatewayd in the middle: they complete
and are released on the new active, RTP resumes.


Needs root, ip netns, tcpdump, tshark and netfilterqueue; skipped with the
reason otherwise. Run under ``flock /tmp/voip-lab.lock``."""

from __future__ import annotations

import os
import shutil
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from gateway.config import load_file
from ops.lab import gateway_starter as gs
from ops.lab import h323, netns
from ops.lab.plan import build_plan

import lab_requirements as lab
from test_e2e_calls import Captures, _malformed, _nat_view, _private_leaks, _wait_no_pinholes

pytestmark = pytest.mark.netns

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CH1 = ["ch1-gatekeeper-in-trust-zone", "ch1-gatekeeper-in-untrust-zone",
       "ch1-outgoing-calls-with-nat", "ch1-incoming-calls-with-nat",
       "ch1-gatekeeper-in-untrust-zone-with-nat"]
INCOMING = "ch1-incoming-calls-with-nat"
SECONDS = 2.0                       # RTP per call: 100 packets each way



WHY = lab.missing(lab.tools("tcpdump", "tshark", "iptables"), lab.netfilterqueue)


@pytest.fixture(scope="module", params=CH1)
def lab(request, tmp_path_factory):
    if WHY:
        pytest.skip(f"end-to-end lab unavailable: {WHY}")
    example = request.param
    name = f"h{os.getpid() % 10000}"
    tmp = tmp_path_factory.mktemp(example)
    path = EXAMPLES / f"{example}.cfg"
    cfg = load_file(path)
    state = netns.up(build_plan(cfg, lab=name), starter=gs.NAME, config=str(path),
                     state_dir=tmp / "state")
    try:
        yield example, cfg, state, tmp
    finally:
        for f in gs.lab_dir(state).glob("*.log"):
            shutil.copy(f, tmp / f.name)
        netns.down(name, state_dir=tmp / "state")
        assert not [ns for ns in os.listdir(netns.NETNS_DIR) if ns.startswith(f"{name}-")]


def _check_calls(rep, n: int, min_ratio: float = 0.9) -> None:
    assert rep.error is None, rep.error
    assert rep.gatekeeper_errors == []
    assert len(rep.calls) == n
    for c in rep.calls:
        assert c.callee is not None, c.caller
        assert c.caller["error"] is None and c.callee["error"] is None, (c.caller, c.callee)
        assert c.caller["connected"] and c.callee["connected"]
        assert c.caller["released"] and c.callee["released"], (c.caller["steps"], c.callee["steps"])
        assert c.caller["rtp_sent"] > 0 and c.callee["rtp_sent"] > 0
        assert c.callee["rtp_received"] >= min_ratio * c.caller["rtp_sent"], (c.mode, c.caller, c.callee)
        assert c.caller["rtp_received"] >= min_ratio * c.callee["rtp_sent"], (c.mode, c.caller, c.callee)
    assert rep.ok(min_ratio)


MODE_CASES = list(h323.MODES)

@pytest.mark.parametrize("mode", MODE_CASES)
def test_call_through_the_pair(lab, mode) -> None:
    example, cfg, state, tmp = lab
    plan = state.get_plan()
    (tmp / mode).mkdir()
    caps = Captures(plan, tmp / mode, bpf="tcp or udp")
    try:
        rep = h323.run_calls(state, cfg, modes=(mode,), calls=2, seconds=SECONDS)
    finally:
        caps.stop()
    for br, f in caps.files.items():
        assert _malformed(f) == [], f"malformed packets on {br}"
    _check_calls(rep, 2)
    # Where NAT applies, the untrust phone was told, and received media from,
    # public addresses only (the ALG translated what the trust phone signalled),
    # and no packet on an untrust segment carries a private address.
    private, egress = _nat_view(cfg, plan)
    untrust_side = "caller" if rep.parties["caller"] == rep.parties["untrust"]["name"] else "callee"
    for c in rep.calls:
        leg = getattr(c, untrust_side)
        for addr in [leg["media_to"]] + leg["rtp_sources"]:
            assert not any(IPv4Address(addr.split(":")[0]) in n for n in private), (addr, leg)
    for br in egress:
        assert _private_leaks(caps.files[br], private) == [], f"private address on {br}"
    assert _wait_no_pinholes(state) == []


def test_registration_through_nat(lab) -> None:
    """RRQ callSignalAddress as the gatekeeper holds it: translated where the
    phone's RAS crosses NAT (MIP, or a DIP for incoming calls)."""
    example, cfg, state, _tmp = lab
    parties = h323.choose_parties(state, cfg)
    from ops.lab.h323peer import Endpoint, Gatekeeper
    gk = Gatekeeper(parties.gatekeeper.netns, parties.gatekeeper.ip).start()
    eps = []
    try:
        for p in (parties.trust, parties.untrust):
            ep = Endpoint(p.netns, p.ip, p.name)
            eps.append(ep)
            ep.register((parties.gk_address[p.name], 1719))
        held = {a: r.signal for a, r in gk.registrations.items()}
        for ep in eps:
            ep.unregister()
    finally:
        for ep in eps:
            ep.close()
        gk.close()
    from ops.lab.h323msg import from_transport
    trust_addr = from_transport(held[parties.trust.name][0])
    if parties.gatekeeper.zone == "trust":
        assert trust_addr == (parties.trust.ip, 1720)
    elif example == INCOMING:
        # "nat src dip 5": a DIP 5 address (1.1.1.12-1.1.1.150) with incoming NAT.
        assert IPv4Address("1.1.1.12") <= IPv4Address(trust_addr[0]) <= IPv4Address("1.1.1.150")
    elif any(i.mode == "nat" for i in cfg.interfaces.values()):
        assert trust_addr == ("1.1.1.5", 1720)      # the phone's MIP
    else:
        assert trust_addr == (parties.trust.ip, 1720)
    assert gk.registrations == {}                    # both unregistered (URQ/UCF)


def _pair_lab(example: str, prefix: str, tmp_path):
    if WHY:
        pytest.skip(f"end-to-end lab unavailable: {WHY}")
    name = f"{prefix}{os.getpid() % 10000}"
    path = EXAMPLES / f"{example}.cfg"
    cfg = load_file(path)
    state = netns.up(build_plan(cfg, lab=name), starter=gs.NAME, config=str(path),
                     state_dir=tmp_path / "state")
    try:
        yield cfg, state, tmp_path
    finally:
        for f in gs.lab_dir(state).glob("*.log"):
            shutil.copy(f, tmp_path / f.name)
        netns.down(name, state_dir=tmp_path / "state")
        assert not [ns for ns in os.listdir(netns.NETNS_DIR) if ns.startswith(f"{name}-")]


@pytest.fixture
def failover_lab(tmp_path):
    yield from _pair_lab("ch1-outgoing-calls-with-nat", "f", tmp_path)


@pytest.fixture
def untrust_gatekeeper_lab(tmp_path):
    """The caller's RAS crosses the pair: IP_Phone1 10.1.1.5 (MIP 1.1.1.5)
    and the gatekeeper 2.2.2.25 outside. In "Outgoing Calls with NAT" the
    caller and its gatekeeper (10.1.1.25) share the trust segment, so its
    DRQ/DCF never reach the gateway."""
    yield from _pair_lab("ch1-gatekeeper-in-untrust-zone-with-nat", "d", tmp_path)


@pytest.mark.parametrize("mode,how", [("faststart", "crash"), ("h245", "crash"), ("h245", "graceful")])
def test_calls_survive_failover(failover_lab, mode, how) -> None:
    """Calls through MIPs ("Outgoing Calls with NAT"), the pair failing over
    while they hold RTP (a SIGKILL of the active gatewayd, or its `failover`
    command): the other node takes over, RTP resumes (a crash loses the
    heartbeat detection time and the ARP takeover), and each call is
    released on the new active (ReleaseComplete, H.245 closing, DRQ)."""
    cfg, state, tmp = failover_lab
    caps = Captures(state.get_plan(), tmp, bpf="tcp or udp")
    try:
        rep = h323.run_calls(state, cfg, modes=(mode,), calls=3, seconds=6.0, stagger=0.3,
                             failover=how)
    finally:
        caps.stop()
    assert rep.failover is not None and rep.failover["crash"] == (how == "crash")
    assert rep.failover["to_role"] != rep.failover["from_role"]
    _check_calls(rep, 3, min_ratio=0.6 if how == "crash" else 0.9)
    for br, f in caps.files.items():
        assert _malformed(f) == [], f"malformed packets on {br}"
    statuses = gs.node_status(state)
    assert statuses[rep.failover["to_role"]]["role"] == "active"
    assert statuses[rep.failover["from_role"]]["role"] == "standby"
    assert _wait_no_pinholes(state) == []


def test_disengage_ends_the_call(untrust_gatekeeper_lab) -> None:
    """H.225.0 7.9: DRQ/DCF tell the gatekeeper the call is over; the caller
    disengages before its ReleaseComplete and the active node, right after
    the DCF crossed it, must no longer hold the call."""
    cfg, state, _tmp = untrust_gatekeeper_lab
    rep = h323.run_calls(state, cfg, modes=("faststart",), calls=1, seconds=1.0, disengage_first=True,
                         snapshot=True)
    _check_calls(rep, 1)
    assert rep.calls[0].caller["steps"][-2:] == ["DCF", "releaseComplete"]
    [view] = rep.snapshots
    assert view["step"] == "DCF"
    assert view["call"] is None and view["media_pinholes"] == [], view


def test_close_logical_channel_closes_its_pinholes(failover_lab) -> None:
    """H.245 on its own connection, channels numbered like their session
    (1): once both CloseLogicalChannels crossed, the call holds no RTP/RTCP
    pinhole (the RTCP ones, never used by the peer, would otherwise stay)."""
    cfg, state, _tmp = failover_lab
    rep = h323.run_calls(state, cfg, modes=("h245",), calls=1, seconds=1.0, snapshot=True)
    _check_calls(rep, 1)
    view = rep.snapshots[0]
    assert view["step"] == "h245-closed" and view["call"] is not None
    assert view["media_pinholes"] == [], view


def test_close_logical_channel_by_its_number(failover_lab) -> None:
    """The same with channel numbers 101 and 102 for session 1 (H.245
    lets the opener choose any number)."""
    cfg, state, _tmp = failover_lab
    rep = h323.run_calls(state, cfg, modes=("h245",), calls=1, seconds=1.0, snapshot=True,
                         h245_channels=(101, 102))
    _check_calls(rep, 1)
    view = rep.snapshots[0]
    assert view["step"] == "h245-closed" and view["call"] is not None
    assert view["media_pinholes"] == [], view
