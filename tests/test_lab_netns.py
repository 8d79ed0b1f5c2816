"""The namespace lab for real: build a route-mode lab with plain routing, place
SIPp calls with RTP through the gateway namespace, move the addresses to the
standby, and take everything down. Needs root, ``ip netns``, nft and SIPp."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ops.lab import netns, sipp
from ops.lab.plan import build_plan

import lab_requirements as lab
from test_lab_plan_configs import route_mode_trust_untrust, with_default_route_and_far_hosts

pytestmark = pytest.mark.netns


WHY = lab.missing(lab.tools("nft", sipp.SIPP), lab.file(sipp.G711A_PCAP, "sip-tester"))
skip_reason = WHY or ""


def _leftovers(lab: str, state_dir: Path) -> list[str]:
    spaces = [ns for ns in os.listdir(netns.NETNS_DIR) if ns.startswith(f"{lab}-")] \
        if netns.NETNS_DIR.is_dir() else []
    return spaces + [p.name for p in state_dir.glob(f"{lab}.*")]


@pytest.fixture
def lab(tmp_path):
    if WHY:
        pytest.skip(f"namespace lab unavailable: {WHY}")
    name = f"t{os.getpid() % 100000}"
    state_dir = tmp_path / "state"
    try:
        yield name, state_dir
    finally:
        netns.down(name, state_dir=state_dir)
        assert _leftovers(name, state_dir) == []


def _assert_calls(result: sipp.CallResult, calls: int) -> None:
    assert result.calls_attempted == calls, result
    assert result.calls_completed == calls and result.calls_failed == 0, result
    # RTP flowed both ways: the caller's stream reached the callee, and the
    # echo came back. (Nothing drops on veth; allow a packet in flight at BYE.)
    assert result.rtp_sent > 0 and result.callee_rtp_received >= result.rtp_sent - 2, result
    assert result.callee_rtp_sent > 0 and result.rtp_received >= result.callee_rtp_sent - 2, result


def _mac(ns: str, dev: str) -> str:
    out = netns.run(["ip", "-n", ns, "-j", "link", "show", "dev", dev]).stdout
    return json.loads(out)[0]["address"]


def _neigh(ns: str, ip: str) -> str | None:
    out = netns.run(["ip", "-n", ns, "-j", "neigh", "show", ip]).stdout
    entries = json.loads(out or "[]")
    return entries[0].get("lladdr") if entries else None


def test_calls_through_plain_routing_survive_takeover_and_down_leaves_nothing(lab) -> None:
    name, state_dir = lab
    plan = build_plan(route_mode_trust_untrust(), lab=name)
    state = netns.up(plan, state_dir=state_dir)
    assert state.complete and netns.state_path(name, state_dir).exists()
    assert all(netns.ns_exists(ns) for ns in plan.namespaces())
    assert netns.held_by(plan) == "gw-a"
    phone1, phone2 = plan.host("phone1"), plan.host("phone2")

    _assert_calls(sipp.run_calls(phone1, phone2, calls=3, rate=10, duration_ms=500), 3)

    # Takeover: gw-b now holds the addresses, and the gratuitous ARP made the
    # phones send to gw-b's MAC (gw-a has no routes left: calls prove it).
    netns.move_addresses(name, "gw-b", state_dir=state_dir)
    assert netns.held_by(plan) == "gw-b"
    gw_b = plan.gateway("gw-b").netns
    assert _neigh(phone1.netns, "10.1.1.1") == _mac(gw_b, "ethernet1")
    assert _neigh(phone2.netns, "1.1.1.1") == _mac(gw_b, "ethernet3")
    _assert_calls(sipp.run_calls(phone2, phone1, calls=2, rate=10, duration_ms=300), 2)

    removed = netns.down(name, state_dir=state_dir)
    assert sorted(removed) == sorted(plan.namespaces())
    assert _leftovers(name, state_dir) == []
    assert netns.down(name, state_dir=state_dir) == []      # idempotent


def test_far_host_behind_a_configured_next_hop(lab) -> None:
    name, state_dir = lab
    plan = build_plan(with_default_route_and_far_hosts(), lab=name)
    netns.up(plan, state_dir=state_dir)
    # phone1 -> gateway -> router 1.1.1.250 -> far 5.5.5.5, and the on-link
    # host 7.7.7.7 straight on the untrust segment.
    _assert_calls(sipp.run_calls(plan.host("phone1"), plan.host("far"), calls=1,
                                 duration_ms=300), 1)
    _assert_calls(sipp.run_calls(plan.host("onlink"), plan.host("phone1"), calls=1,
                                 duration_ms=300), 1)


def test_failed_up_removes_what_it_made_and_up_again_works(lab) -> None:
    name, state_dir = lab
    plan = build_plan(route_mode_trust_untrust(), lab=name)

    def broken(_plan, _state):
        raise netns.LabError("gateway failed to start")

    netns.register_gateway_starter("broken-for-test", broken)
    try:
        with pytest.raises(netns.LabError, match="failed to start"):
            netns.up(plan, starter="broken-for-test", state_dir=state_dir)
    finally:
        netns.STARTERS.pop("broken-for-test", None)
    assert _leftovers(name, state_dir) == []

    # A crash in the middle: namespaces and a state file left, a process
    # still running in one namespace. ``up`` clears it and builds afresh.
    netns.up(plan, state_dir=state_dir)
    sleeper = subprocess.Popen(netns.ns_cmd(plan.host("phone2").netns, "sleep", "30"))
    try:
        state = netns.load_state(name, state_dir)
        assert state is not None
        state.complete = False
        netns.save_state(state, state_dir)
        netns.up(plan, state_dir=state_dir)
        assert sleeper.wait(timeout=5) != 0                     # stopped by the clean-up
        assert netns.load_state(name, state_dir).complete
        _assert_calls(sipp.run_calls(plan.host("phone1"), plan.host("phone2"), calls=1,
                                     duration_ms=200), 1)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(timeout=5)


def test_down_from_a_torn_state_file(lab) -> None:
    name, state_dir = lab
    plan = build_plan(route_mode_trust_untrust(), lab=name)
    netns.up(plan, state_dir=state_dir)
    netns.state_path(name, state_dir).write_text('{"lab": "' + name + '", "namesp')
    # The torn file names nothing: the lab's namespace prefix finds them.
    removed = netns.down(name, state_dir=state_dir)
    assert sorted(removed) == sorted(plan.namespaces())
