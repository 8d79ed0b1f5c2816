"""The lab's life cycle for real: what the hosts' counters count, and a
gatewayd lab whose peer epochs agree, that refuses a second ``up``, lists a
namespace added after ``up``, and whose ``down`` returns once every process
it ran has exited and keeps its logs. Needs root, ip netns, nft and
netfilterqueue (gatewayd's datapath)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from gateway.config import load_file
from ops.lab import gateway_starter as gs
from ops.lab import mgcp, netns
from ops.lab.plan import build_plan

import lab_requirements as lab
from test_lab_plan_configs import route_mode_trust_untrust

pytestmark = pytest.mark.netns

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ch2-incoming-call-with-mip.cfg"
WHY = lab.missing(lab.tools("nft", "ip"))
WHY_GW = WHY or lab.missing(lab.netfilterqueue)


def _leftovers(name: str) -> list[str]:
    return [ns for ns in os.listdir(netns.NETNS_DIR) if ns.startswith(f"{name}-")] \
        if netns.NETNS_DIR.is_dir() else []


@pytest.fixture
def lab_name(tmp_path):
    name = f"lc{os.getpid() % 10000}"
    state_dir = tmp_path / "state"
    try:
        yield name, state_dir
    finally:
        netns.down(name, state_dir=state_dir)
        assert _leftovers(name) == []


def _send(ns: str, to: tuple[str, int], payload: bytes, sport: int) -> None:
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("0.0.0.0", sport))
            s.sendto(payload, to)
    mgcp.in_netns(ns, send)


def test_counters_count_rtp_not_any_udp(lab_name):
    if WHY:
        pytest.skip(WHY)
    name, state_dir = lab_name
    plan = build_plan(route_mode_trust_untrust(), lab=name)
    netns.up(plan, state_dir=state_dir)
    a, b = plan.host("phone1"), plan.host("phone2")
    to = (str(b.address.ip), 9999)
    before = netns.read_counters(b.netns), netns.read_counters(b.netns, "udp")
    _send(a.netns, to, b"a probe that is not media", 7000)             # not RTP
    _send(a.netns, to, bytes([0x80, 201]) + bytes(30), 7001)           # RTCP receiver report
    _send(a.netns, to, bytes([0x80, 8, 0, 1]) + bytes(8) + b"\xd5" * 160, 7002)   # RTP
    deadline = time.monotonic() + 5
    while netns.read_counters(b.netns, "udp")[0] - before[1][0] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    rtp_in = netns.read_counters(b.netns)[0] - before[0][0]
    udp_in = netns.read_counters(b.netns, "udp")[0] - before[1][0]
    assert (rtp_in, udp_in) == (1, 3)
    assert netns.read_counters(a.netns)[1] == 1                        # sent: the RTP one


def _lab_processes(lab_dir: Path) -> list[int]:
    """Processes whose command line names the lab's files (gatewayd)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and netns.process_alive(int(p.name)):
            try:
                if str(lab_dir) in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def test_gatewayd_lab_life_cycle(lab_name):
    if WHY_GW:
        pytest.skip(WHY_GW)
    name, state_dir = lab_name
    cfg = load_file(EXAMPLE)
    plan = build_plan(cfg, lab=name)
    state = netns.up(plan, starter=gs.NAME, config=str(EXAMPLE), state_dir=state_dir)
    lab_dir = gs.lab_dir(state)

    # Each node shows its peer in the epoch the peer reports itself.
    deadline = time.monotonic() + 10
    while True:
        nodes = gs.node_status(state)
        a, b = nodes["gw-a"], nodes["gw-b"]
        if a["peer"]["epoch"] == b["epoch"] and b["peer"]["epoch"] == a["epoch"] \
                or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert a["role"] == "active" and b["role"] == "standby"
    assert a["epoch"] >= 1 and (a["peer"]["epoch"], b["peer"]["epoch"]) == (b["epoch"], a["epoch"])

    # A second up is refused and leaves the pair running.
    with pytest.raises(netns.LabRunning):
        netns.up(plan, starter=gs.NAME, config=str(EXAMPLE), state_dir=state_dir)
    assert gs.active_role(netns.load_state(name, state_dir)) == "gw-a"

    # A host added after up (as mgcp-call adds its media gateways) is listed.
    seg = plan.segments[0]
    extra = mgcp.add_host(name, "iad9", f"{seg.network.network_address + 200}/{seg.network.prefixlen}",
                          seg.bridge, str(seg.gateway_ip.ip), state_dir=state_dir)
    info = netns.status(name, state_dir=state_dir)
    assert info["namespaces"].get(extra) is True and extra in info["added"]

    daemons = _lab_processes(lab_dir)
    assert len(daemons) >= 2
    rep = netns.take_down(name, state_dir=state_dir)
    # Returned once every process of the lab has exited.
    assert rep.clean, rep
    assert set(daemons) <= set(rep.processes.stopped + rep.processes.killed)
    assert _lab_processes(lab_dir) == [] and _leftovers(name) == []
    assert extra in rep.namespaces
    # The logs it pointed at are kept, journals too; the secrets are not.
    assert rep.kept is not None and not lab_dir.exists()
    log = (rep.kept / "gw-a.log").read_text()
    assert "gw-a" in log and (rep.kept / "journal" / "gw-b").is_dir()
    assert not (rep.kept / "keys").exists()
