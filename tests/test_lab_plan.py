"""The lab plan: topology computed from a configuration, without root."""

from __future__ import annotations

import json
from pathlib import Path
from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface as I
from ipaddress import IPv4Network as N

import pytest

from ops.lab.plan import (
    HA_DEVICE, Plan, PlanError, build_plan, device_name, plan_from_data, suggest_call, to_data,
)
from test_lab_plan_configs import (
    incoming_call_dip_pool, incoming_call_interface_dip, incoming_call_with_mip,
    route_mode_trust_untrust, three_zone_proxy_in_dmz, untrust_intrazone,
    with_default_route_and_far_hosts,
)

ALL = [incoming_call_with_mip, incoming_call_interface_dip, incoming_call_dip_pool,
       three_zone_proxy_in_dmz, untrust_intrazone, route_mode_trust_untrust,
       with_default_route_and_far_hosts]


def _names_ok(plan: Plan) -> None:
    """Interface names fit Linux (15 chars) and are unique in each namespace."""
    per_ns: dict[str, list[str]] = {plan.switch: [s.bridge for s in plan.segments]}
    for g in plan.gateways:
        per_ns[g.netns] = [p.ifname for p in g.legs] + list(g.dummies) + [HA_DEVICE]
        per_ns[plan.switch] += [p.switch_end for p in g.legs]
    for r in plan.routers:
        per_ns[r.netns] = [r.near.ifname] + ([r.far.ifname] if r.far else [])
        per_ns[plan.switch] += [r.near.switch_end] + ([r.far.switch_end] if r.far else [])
    for h in plan.hosts:
        per_ns[h.netns] = [h.port.ifname]
        per_ns[plan.switch].append(h.port.switch_end)
    for ns, names in per_ns.items():
        assert len(names) == len(set(names)), (ns, names)
        assert all(0 < len(n) <= 15 for n in names), names
    assert len(plan.namespaces()) == len(set(plan.namespaces()))
    assert all(ns.startswith(plan.lab + "-") for ns in plan.namespaces())


@pytest.mark.parametrize("make", ALL)
def test_every_example_gives_a_consistent_plan(make) -> None:
    plan = build_plan(make(), lab="t1")
    _names_ok(plan)
    bridges = {s.bridge for s in plan.segments}
    for h in plan.hosts:
        assert h.port.segment in bridges
    for g in plan.gateways:
        assert {p.segment for p in g.legs} == {s.bridge for s in plan.segments if s.gateway_ip}
    # The plan round-trips through its JSON form (the state file).
    assert plan_from_data(json.loads(json.dumps(to_data(plan)))) == plan
    assert plan.describe().startswith("lab t1")


def test_incoming_call_with_mip() -> None:
    plan = build_plan(incoming_call_with_mip(), lab="vg0")
    assert [(s.bridge, s.label, s.network, s.zone) for s in plan.segments] == [
        ("br1", "ethernet1", N("10.1.1.0/24"), "trust"),
        ("br2", "ethernet3", N("1.1.1.0/24"), "untrust")]
    # The proxy entry 1.1.1.3 is also the MIP: the gateway answers for it.
    assert [(h.netns, h.address, h.gateway) for h in plan.hosts] == [
        ("vg0-phone1", I("10.1.1.3/24"), A("10.1.1.1")),
        ("vg0-phone2", I("1.1.1.4/24"), A("1.1.1.1"))]
    assert any("1.1.1.3" in n and "held by the gateway" in n for n in plan.notes)
    owned = {(str(o.address), o.device, o.kind, o.announce) for o in plan.owned}
    assert owned == {("10.1.1.1/24", "ethernet1", "interface", True),
                     ("1.1.1.1/24", "ethernet3", "interface", True),
                     ("1.1.1.3/32", "ethernet3", "mip", True)}
    a, b = plan.gateways
    assert (a.netns, a.role, a.ha_address) == ("vg0-gw-a", "gw-a", I("169.254.100.1/30"))
    assert (b.netns, b.role, b.ha_address) == ("vg0-gw-b", "gw-b", I("169.254.100.2/30"))
    assert [p.ifname for p in a.legs] == ["ethernet1", "ethernet3"]
    # The call the example is written for: phone2 dials the MIP to reach phone1.
    call = suggest_call(plan, incoming_call_with_mip())
    assert (call.caller.label, call.callee.label, call.dial) == ("phone2", "phone1", A("1.1.1.3"))


def test_interface_dip_needs_no_extra_address() -> None:
    plan = build_plan(incoming_call_interface_dip())
    assert {o.kind for o in plan.owned} == {"interface"}
    assert [h.label for h in plan.hosts] == ["phone1", "phone2", "proxy"]
    call = suggest_call(plan, incoming_call_interface_dip())
    assert (call.caller.label, call.callee.label, call.dial) == ("phone1", "phone2", A("1.1.1.4"))


def test_dip_pool_addresses_are_held_on_the_interface() -> None:
    plan = build_plan(incoming_call_dip_pool())
    dips = [o for o in plan.owned if o.kind == "dip"]
    assert len(dips) == 21
    assert dips[0].address == I("1.1.1.20/32") and dips[-1].address == I("1.1.1.40/32")
    assert all(o.device == "ethernet3" and o.announce for o in dips)


def test_three_zone_dmz() -> None:
    plan = build_plan(three_zone_proxy_in_dmz())
    assert [s.label for s in plan.segments] == ["ethernet1", "ethernet3", "ethernet2"]
    proxy = plan.host("proxy")
    # Written without a mask (a /32), it takes its segment's prefix.
    assert proxy.address == I("2.2.2.4/24") and proxy.gateway == A("2.2.2.2")
    assert proxy.zone == "dmz" and proxy.port.segment == "br3"
    assert any(o.address == I("2.2.2.3/32") and o.device == "ethernet2" for o in plan.owned)
    call = suggest_call(plan, three_zone_proxy_in_dmz())
    # proxy (dmz) -> mip(2.2.2.3) -> phone1, as policy 5 of the example permits.
    assert (call.caller.label, call.callee.label, call.dial) == ("proxy", "phone1", A("2.2.2.3"))


def test_untrust_intrazone_loopback_and_hosts_on_two_untrust_segments() -> None:
    plan = build_plan(untrust_intrazone())
    assert [s.label for s in plan.segments] == ["ethernet1", "ethernet3", "ethernet4"]
    a = plan.gateway("gw-a")
    assert a.dummies == ("loopback.1",)
    assert {(str(o.address), o.device, o.kind, o.announce) for o in plan.owned if o.device == "loopback.1"} \
        == {("1.1.4.1/24", "loopback.1", "loopback", False), ("1.1.4.5/32", "loopback.1", "mip", False)}
    p1, p2 = plan.host("phone1"), plan.host("phone2")
    assert (p1.address, p1.gateway) == (I("1.1.1.4/24"), A("1.1.1.1"))
    assert (p2.address, p2.gateway) == (I("1.1.2.4/24"), A("1.1.2.1"))
    assert p1.port.segment != p2.port.segment
    assert plan.host("proxy").address == I("10.1.1.5/24")
    call = suggest_call(plan, untrust_intrazone())
    assert (call.caller.label, call.callee.label, call.dial) == ("phone1", "proxy", A("1.1.4.5"))


def test_default_route_next_hop_becomes_a_router_with_far_hosts() -> None:
    plan = build_plan(with_default_route_and_far_hosts(), lab="vg1")
    (router,) = plan.routers
    assert router.netns == "vg1-rt1"
    assert router.address == I("1.1.1.250/24") and router.upstream == A("1.1.1.1")
    assert router.far_hosts == (A("5.5.5.5"),)
    far = plan.host("far")
    assert far.address == I("5.5.5.5/32") and far.onlink
    assert far.port.segment == router.far.segment and far.gateway == router.far_address.ip
    # A route without gateway: the host sits on the route's segment, on-link.
    onlink = plan.host("onlink")
    assert onlink.address == I("7.7.7.7/32") and onlink.onlink and onlink.gateway == A("1.1.1.1")
    assert onlink.port.segment == "br2"
    assert [(str(r.prefix), r.device, r.via) for r in plan.routes] == [
        ("0.0.0.0/0", "ethernet3", A("1.1.1.250")), ("7.7.7.0/24", "ethernet3", None)]
    assert any("tunnel.1" in n and "skipped" in n for n in plan.notes)
    # 0.0.0.0/0 names a network, not a host.
    with pytest.raises(KeyError):
        plan.host("internet")


def test_unreachable_host_is_noted_not_made() -> None:
    cfg = route_mode_trust_untrust()
    from gateway.config.model import Address, Config
    addrs = dict(cfg.addresses)
    addrs[("untrust", "lost")] = Address("untrust", "lost", I("9.9.9.9/32"))
    plan = build_plan(Config(cfg.zones, cfg.interfaces, addrs, cfg.policies, cfg.routes))
    assert [h.label for h in plan.hosts] == ["phone1", "phone2"]
    assert any("9.9.9.9" in n and "no host made" in n for n in plan.notes)


def test_lab_names_are_checked() -> None:
    for bad in ("", "Vg", "toolongname", "a-b", "1ab"):
        with pytest.raises(PlanError):
            build_plan(route_mode_trust_untrust(), lab=bad)


def test_device_names_fit_linux() -> None:
    assert device_name("ethernet3", 1) == "ethernet3"
    assert device_name("ethernet0/1", 2) == "ethernet0-1"
    assert device_name("loopback.1", 3) == "loopback.1"
    assert device_name("ethernet1/1.1234567", 4) == "if4"


EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.cfg"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_shipped_example_plans(path: Path) -> None:
    from gateway.config import load_file
    plan = build_plan(load_file(path), lab="ex1")
    _names_ok(plan)
    assert plan_from_data(json.loads(json.dumps(to_data(plan)))) == plan
    # Every host has a default route through a lab address: a gateway
    # interface, a router's far side, or an on-link gateway address.
    gateway_side = {s.gateway_ip.ip for s in plan.segments if s.gateway_ip} \
        | {r.far_address.ip for r in plan.routers if r.far_address}
    assert all(h.gateway in gateway_side for h in plan.hosts)


def test_shipped_mip_example_is_called_through_its_mip() -> None:
    from gateway.config import load_file
    path = Path(__file__).resolve().parents[1] / "examples" / "ch2-incoming-call-with-mip.cfg"
    if not path.exists():
        pytest.skip("example not shipped")
    cfg = load_file(path)
    plan = build_plan(cfg)
    call = suggest_call(plan, cfg)
    (mip,) = cfg.interfaces["ethernet3"].mips
    assert (call.caller.zone, call.callee.address.ip, call.dial) == ("untrust", mip.host, mip.ip)
