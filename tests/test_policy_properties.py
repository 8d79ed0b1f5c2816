"""Properties of decide(): a Decision for every flow, never an exception."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings, strategies as st

from gateway.policy import Decision, Engine, Flow
from test_policy_builders import A, config, dip, iface, mip, route

# One configuration with every kind of rule: MIP on an interface and on a
# loopback group, incoming DIP pool and interface DIP, nat src, interface NAT
# mode, tunnels (numbered and unnumbered), a deny policy, global policies.
CFG = config(
    interfaces=[
        iface("ethernet1", "trust", "10.1.1.1/24", mode="nat"),
        iface("ethernet2", "dmz", "2.2.2.2/24", mips=(mip("2.2.2.3", "10.1.1.3"),)),
        iface("ethernet3", "untrust", "1.1.1.1/24", loopback_group="loopback.1",
              mips=(mip("1.1.1.5", "10.1.1.5"), mip("1.1.3.0", "10.1.3.0", "255.255.255.0")),
              dips=(dip(5, "1.1.1.20", "1.1.1.40", incoming=True), dip(6, "1.1.1.60", "1.1.1.61"))),
        iface("ethernet4", "untrust", "5.5.5.5/24", loopback_group="loopback.1",
              dip_interface_incoming=True),
        iface("loopback.1", "untrust", "1.1.4.1/24", mips=(mip("1.1.4.5", "10.1.1.6"),)),
        iface("tunnel.1", "untrust", "6.6.6.6/24"),
        iface("tunnel.2", "untrust", unnumbered="ethernet4"),
        iface("ethernet9", None, "9.9.9.1/24"),
    ],
    addresses=[("trust", "phone1", "10.1.1.3/24"), ("untrust", "phone2", "1.1.1.4/24"),
               ("dmz", "proxy", "2.2.2.4/32")],
    routes=[route("0.0.0.0/0", "ethernet3", "1.1.1.250"), route("10.2.0.0/16", "tunnel.2"),
            route("10.3.0.0/16", "ethernet8"), route("10.4.0.0/16", "ethernet9")],
    policies=[
        ("trust", "untrust", "phone1", "any", "sip", {"nat_src": True, "nat_dip": 5}),
        ("trust", "untrust", "any", "any", "h.323", {"nat_src": True}),
        ("trust", "untrust", "any", "any", "mgcp-ua", {"nat_src": True, "nat_dip": 99}),
        ("untrust", "trust", "any", "dip(5)", "sip"),
        ("untrust", "trust", "any", "dip(ethernet4)", "sip"),
        ("untrust", "trust", "phone2", "mip(1.1.1.5)", "h.323"),
        ("untrust", "global", "any", "mip(1.1.4.5)", "sip"),
        ("dmz", "trust", "proxy", "mip(2.2.2.3)", "sip"),
        ("trust", "dmz", "phone1", "proxy", "sip", {"nat_src": True}),
        ("untrust", "dmz", "any", "any", "any", "deny"),
        ("global", "global", "any", "any", "mgcp-ca"),
    ])
ENGINE = Engine(CFG)

INGRESS = st.sampled_from(sorted(CFG.interfaces) + ["ethernet77", ""])
NEAR = ["10.1.1.3", "10.1.1.5", "10.1.1.6", "10.1.3.9", "2.2.2.3", "2.2.2.4", "1.1.1.1",
        "1.1.1.4", "1.1.1.5", "1.1.1.25", "1.1.1.60", "1.1.3.7", "1.1.4.5", "1.1.4.1",
        "5.5.5.5", "6.6.6.1", "10.2.0.1", "10.3.0.1", "10.4.0.1", "9.9.9.9"]
ADDR = st.one_of(st.sampled_from([A(a) for a in NEAR]),
                 st.integers(0, 2**32 - 1).map(A))
PORT = st.one_of(st.sampled_from([0, 1718, 1719, 1720, 2427, 2727, 5060]), st.integers(0, 65535))
FLOWS = st.builds(Flow, INGRESS, ADDR, ADDR,
                  st.sampled_from(["udp", "tcp", "icmp", "sctp"]), PORT, PORT)
BINDING = st.one_of(st.none(), st.tuples(ADDR, PORT))
SERVICE = st.one_of(st.none(), st.sampled_from(["sip", "h.323", "nonsense"]))


@settings(max_examples=300, deadline=None)
@given(FLOWS, BINDING, SERVICE)
def test_every_flow_gets_a_decision(flow, binding, service):
    d = ENGINE.decide(flow, incoming_dip=binding, service=service)
    assert isinstance(d, Decision)
    assert d.action in ("permit", "deny") and d.reason and "\n" not in d.reason
    assert d == ENGINE.decide(flow, incoming_dip=binding, service=service)
    if d.action == "permit":
        assert d.egress is not None and d.to_zone is not None and d.from_zone is not None
        target = d.nat.dst or flow.dst
        assert ENGINE.routing.lookup(target, ENGINE.mips.by_public(flow.dst).mip.vrouter
                                     if d.nat.kind.startswith("mip") else "trust-vr").interface == d.egress
        if d.nat.dst is not None:
            assert ENGINE.is_local(flow.dst)
        if d.nat.src is not None:
            assert ENGINE.is_local(d.nat.src)
        if d.policy is None:
            assert d.from_zone == d.to_zone
    else:
        assert d.nat.kind == "none"


# The same rule over every manual example file, with flows drawn from each
# file's own interfaces and addresses.
from pathlib import Path  # noqa: E402

from gateway.config import load_file  # noqa: E402

_EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.cfg"))
_EXAMPLE_ENGINES = [Engine(load_file(p)) for p in _EXAMPLES]


def _near(eng: Engine) -> list[IPv4Address]:
    out = [a.ip.ip for a in eng.config.addresses.values()]
    out += list(eng.owned_addresses())
    out += [i.ip.ip + 1 for i in eng.config.interfaces.values() if i.ip is not None]
    return out or [A("10.0.0.1")]


@st.composite
def example_flow(draw):
    eng = draw(st.sampled_from(_EXAMPLE_ENGINES))
    near = st.sampled_from(_near(eng))
    addr = st.one_of(near, near, st.integers(0, 2**32 - 1).map(A))
    ingress = st.sampled_from(sorted(eng.config.interfaces) or ["ethernet1"])
    f = draw(st.builds(Flow, ingress, addr, addr, st.sampled_from(["udp", "tcp", "icmp"]),
                       PORT, PORT))
    return eng, f


@settings(max_examples=300, deadline=None)
@given(example_flow(), BINDING, SERVICE)
def test_every_flow_over_the_manual_examples_gets_a_decision(case, binding, service):
    eng, flow = case
    d = eng.decide(flow, incoming_dip=binding, service=service)
    assert d.action in ("permit", "deny") and d.reason and "\n" not in d.reason
    if d.action == "permit":
        assert d.egress is not None and d.to_zone is not None
