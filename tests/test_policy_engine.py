"""The policy/NAT engine on configurations built in Python (manual ch. 1-3)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from gateway.policy import Decision, Engine, Flow
from test_policy_builders import A, config, dip, iface, mip, ref, route


def flow(ingress, src, dst, proto="udp", dport=5060, sport=5060):
    return Flow(ingress, A(src), A(dst), proto, sport, dport)


# ch. 1 "Example: Outgoing Calls with NAT"
OUTGOING = config(
    interfaces=[
        iface("ethernet1", "trust", "10.1.1.1/24", mode="nat"),
        iface("ethernet3", "untrust", "1.1.1.1/24",
              mips=(mip("1.1.1.5", "10.1.1.5"), mip("1.1.1.25", "10.1.1.25"))),
    ],
    addresses=[("trust", "IP_Phone1", "10.1.1.5/32"), ("trust", "gatekeeper", "10.1.1.25/32"),
               ("untrust", "IP_Phone2", "2.2.2.5/32")],
    routes=[route("0.0.0.0/0", "ethernet3", "1.1.1.250")],
    policies=[
        ("trust", "untrust", "IP_Phone1", "IP_Phone2", "h.323"),
        ("trust", "untrust", "gatekeeper", "IP_Phone2", "h.323"),
        ("untrust", "trust", "IP_Phone2", "mip(1.1.1.5)", "h.323"),
        ("untrust", "trust", "IP_Phone2", "mip(1.1.1.25)", "h.323"),
    ])


def test_incoming_to_mip_reaches_host_by_mip_policy():
    d = Engine(OUTGOING).decide(flow("ethernet3", "2.2.2.5", "1.1.1.5", "tcp", 1720, 40000))
    assert d.action == "permit", d.reason
    assert d.policy.id == 3
    assert (d.from_zone, d.to_zone, d.egress) == ("untrust", "trust", "ethernet1")
    assert d.nat.dst == A("10.1.1.5") and d.nat.src is None and d.nat.kind == "mip"


def test_outgoing_from_mip_host_leaves_as_mip():
    d = Engine(OUTGOING).decide(flow("ethernet1", "10.1.1.5", "2.2.2.5", "tcp", 1720, 40000))
    assert d.action == "permit" and d.policy.id == 1
    assert d.egress == "ethernet3" and d.to_zone == "untrust"
    # reverse MIP takes precedence over the interface's NAT mode
    assert d.nat.src == A("1.1.1.5") and d.nat.kind == "reverse-mip"
    assert d.nat.sport is None and d.nat.dst is None


def test_flow_no_policy_allows_is_denied_with_zone_pair():
    eng = Engine(OUTGOING)
    d = eng.decide(flow("ethernet3", "3.3.3.3", "1.1.1.5", "tcp", 1720))
    assert d.action == "deny" and "untrust->trust" in d.reason and d.policy is None
    d = eng.decide(flow("ethernet1", "10.1.1.5", "2.2.2.5", "udp", 5060))   # SIP: not h.323
    assert d.action == "deny" and "trust->untrust" in d.reason
    # h.323 RAS (UDP 1719) is part of the predefined service
    assert eng.decide(flow("ethernet1", "10.1.1.5", "2.2.2.5", "udp", 1719)).permitted


def test_mip_not_reachable_through_another_interface():
    d = Engine(OUTGOING).decide(flow("ethernet1", "10.1.1.7", "1.1.1.5", "tcp", 1720))
    assert d.action == "deny" and "MIP on ethernet3" in d.reason


def test_traffic_to_interface_address_is_not_forwarded():
    d = Engine(OUTGOING).decide(flow("ethernet3", "2.2.2.5", "1.1.1.1", "tcp", 1720))
    assert d.action == "deny" and "ethernet3" in d.reason


def test_unknown_ingress_and_no_route():
    eng = Engine(OUTGOING)
    d = eng.decide(flow("ethernet9", "2.2.2.5", "1.1.1.5"))
    assert d.action == "deny" and "ethernet9" in d.reason
    cfg = config(interfaces=[iface("ethernet1", "trust", "10.1.1.1/24")])
    d = Engine(cfg).decide(flow("ethernet1", "10.1.1.5", "8.8.8.8"))
    assert d.action == "deny" and "no route to 8.8.8.8" in d.reason


def test_policy_deny_action_and_first_match_wins():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24"),
                    iface("ethernet3", "untrust", "1.1.1.1/24")],
        addresses=[("trust", "bad", "10.1.1.9/32")],
        policies=[("trust", "untrust", "bad", "any", "any", "deny"),
                  ("trust", "untrust", "any", "any", "sip")])
    eng = Engine(cfg)
    d = eng.decide(flow("ethernet1", "10.1.1.9", "1.1.1.7"))
    assert d.action == "deny" and d.policy.id == 1 and "policy 1" in d.reason
    d = eng.decide(flow("ethernet1", "10.1.1.8", "1.1.1.7"))
    assert d.permitted and d.policy.id == 2
    # route mode: no interface NAT, the source is kept
    assert d.nat.src is None and d.nat.kind == "none"


def test_interface_nat_mode_translates_to_egress_address():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24", mode="nat"),
                    iface("ethernet3", "untrust", "1.1.1.1/24")],
        routes=[route("0.0.0.0/0", "ethernet3", "1.1.1.250")],
        policies=[("trust", "untrust", "any", "any", "sip")])
    d = Engine(cfg).decide(flow("ethernet1", "10.1.1.3", "6.6.6.6", sport=5070))
    assert d.permitted and d.nat.src == A("1.1.1.1") and d.nat.kind == "interface-nat"
    assert d.nat.sport is None          # signalling keeps its source port


def test_intra_zone_blocking():
    ifs = [iface("ethernet3", "untrust", "1.1.2.1/24"), iface("ethernet4", "untrust", "1.1.1.1/24"),
           iface("ethernet1", "trust", "10.1.1.1/24"), iface("ethernet2", "trust", "10.1.2.1/24")]
    blocked = Engine(config(interfaces=ifs))
    d = blocked.decide(flow("ethernet4", "1.1.1.4", "1.1.2.4"))
    assert d.action == "deny" and "blocked in untrust" in d.reason
    # trust: blocking off by default
    d = blocked.decide(flow("ethernet1", "10.1.1.3", "10.1.2.2"))
    assert d.permitted and d.policy is None and d.egress == "ethernet2"
    unblocked = Engine(config(interfaces=ifs, unblock=("untrust",)))
    assert unblocked.decide(flow("ethernet4", "1.1.1.4", "1.1.2.4")).permitted


def test_global_policies_after_pair():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24"),
                    iface("ethernet3", "untrust", "1.1.1.1/24", mips=(mip("1.1.1.5", "10.1.1.5"),))],
        policies=[("untrust", "global", "any", "mip(1.1.1.5)", "sip"),
                  ("global", "global", "any", "any", "mgcp-ca")])
    eng = Engine(cfg)
    d = eng.decide(flow("ethernet3", "2.2.2.2", "1.1.1.5"))
    assert d.permitted and d.policy.id == 1 and d.nat.dst == A("10.1.1.5")
    d = eng.decide(flow("ethernet1", "10.1.1.7", "1.1.1.9", dport=2727))
    assert d.permitted and d.policy.id == 2
    # a "to global" policy only covers destinations in the global zone
    cfg2 = config(interfaces=cfg.interfaces.values(),
                  policies=[("untrust", "global", "any", "any", "sip")])
    assert Engine(cfg2).decide(flow("ethernet3", "2.2.2.2", "10.1.1.7")).action == "deny"
    assert Engine(cfg2).decide(flow("ethernet3", "2.2.2.2", "1.1.1.5")).permitted


# ch. 1 "Example: Incoming Calls with NAT" / ch. 2 "Incoming Call (DIP Pool)"
def dip_pool_config(sticky=True):
    return config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24", mode="nat"),
                    iface("ethernet3", "untrust", "1.1.1.1/24",
                          dips=(dip(5, "1.1.1.20", "1.1.1.40", incoming=True),))],
        addresses=[("trust", "phone1", "10.1.1.3/24")],
        policies=[("trust", "untrust", "phone1", "any", "sip", {"nat_src": True, "nat_dip": 5}),
                  ("untrust", "trust", "any", "dip(5)", "sip")],
        dip_sticky=sticky)


def test_dip_pool_outgoing_sticky_address():
    eng = Engine(dip_pool_config())
    seen = set()
    for sport in (5060, 5061, 40000):
        for dst in ("1.1.1.3", "1.1.1.4"):
            d = eng.decide(flow("ethernet1", "10.1.1.3", dst, sport=sport))
            assert d.permitted and d.nat.kind == "nat-src-dip"
            seen.add(d.nat.src)
    assert len(seen) == 1
    (addr,) = seen
    assert A("1.1.1.20") <= addr <= A("1.1.1.40")
    assert eng.dip_address_for(5, A("10.1.1.3")) == addr
    # hosts spread over the pool
    others = {eng.dip_address_for(5, A(f"10.1.1.{n}")) for n in range(2, 60)}
    assert len(others) > 5


def test_dip_pool_non_sticky_is_per_session_and_deterministic():
    eng = Engine(dip_pool_config(sticky=False))
    addrs = {eng.decide(flow("ethernet1", "10.1.1.3", "1.1.1.4", sport=p)).nat.src
             for p in range(5060, 5100)}
    assert len(addrs) > 1
    f = flow("ethernet1", "10.1.1.3", "1.1.1.4", sport=5077)
    assert eng.decide(f) == Engine(dip_pool_config(sticky=False)).decide(f)


def test_incoming_dip_needs_binding():
    eng = Engine(dip_pool_config())
    d = eng.decide(flow("ethernet3", "1.1.1.3", "1.1.1.25"))
    assert d.action == "deny" and "no incoming-DIP binding" in d.reason
    d = eng.decide(flow("ethernet3", "1.1.1.3", "1.1.1.25"), incoming_dip=(A("10.1.1.3"), 5060))
    assert d.permitted and d.policy.id == 2 and d.to_zone == "trust"
    assert (d.nat.dst, d.nat.dport, d.nat.kind) == (A("10.1.1.3"), 5060, "incoming-dip")


def test_interface_dip_incoming():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24", mode="nat"),
                    iface("ethernet3", "untrust", "1.1.1.1/24", dip_interface_incoming=True)],
        policies=[("trust", "untrust", "any", "any", "sip", {"nat_src": True}),
                  ("untrust", "trust", "any", "dip(ethernet3)", "sip")])
    eng = Engine(cfg)
    d = eng.decide(flow("ethernet1", "10.1.1.3", "1.1.1.3"))
    assert d.nat.src == A("1.1.1.1") and d.nat.kind == "nat-src-interface"
    # the INVITE goes to the registered contact port, not 5060: the SIP ALG
    # names the service it found the binding for
    f = flow("ethernet3", "1.1.1.3", "1.1.1.1", sport=5060, dport=5555)
    d = eng.decide(f, incoming_dip=(A("10.1.1.3"), 1234))
    assert d.action == "deny" and "no policy" in d.reason
    d = eng.decide(f, incoming_dip=(A("10.1.1.3"), 1234), service="sip")
    assert d.permitted and (d.nat.dst, d.nat.dport) == (A("10.1.1.3"), 1234)
    assert not eng.decide(flow("ethernet3", "1.1.1.3", "1.1.1.1")).permitted
    assert eng.is_incoming_dip(A("1.1.1.1"))


def test_missing_dip_pool_in_policy_is_a_deny_with_reason():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24"),
                    iface("ethernet3", "untrust", "1.1.1.1/24")],
        policies=[("trust", "untrust", "any", "any", "sip", {"nat_src": True, "nat_dip": 9})])
    d = Engine(cfg).decide(flow("ethernet1", "10.1.1.3", "1.1.1.3"))
    assert d.action == "deny" and "dip 9" in d.reason


def test_loopback_group_mip():
    # ch. 2 "Example: Untrust Intrazone"
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24", mode="nat"),
                    iface("ethernet3", "untrust", "1.1.2.1/24", mode="route",
                          loopback_group="loopback.1"),
                    iface("ethernet4", "untrust", "1.1.1.1/24", mode="route",
                          loopback_group="loopback.1"),
                    iface("loopback.1", "untrust", "1.1.4.1/24", mode="route",
                          mips=(mip("1.1.4.5", "10.1.1.5"),))],
        addresses=[("trust", "proxy", "10.1.1.5/32")],
        policies=[("trust", "untrust", "proxy", "any", "sip", {"nat_src": True}),
                  ("untrust", "trust", "any", "mip(1.1.4.5)", "sip")],
        unblock=("untrust",))
    eng = Engine(cfg)
    for ingress, src in (("ethernet4", "1.1.1.4"), ("ethernet3", "1.1.2.4")):
        d = eng.decide(flow(ingress, src, "1.1.4.5"))
        assert d.permitted and d.nat.dst == A("10.1.1.5"), d.reason
    for dst, out in (("1.1.1.4", "ethernet4"), ("1.1.2.4", "ethernet3")):
        d = eng.decide(flow("ethernet1", "10.1.1.5", dst))
        assert d.permitted and d.egress == out
        assert d.nat.src == A("1.1.4.5") and d.nat.kind == "reverse-mip"
    assert eng.decide(flow("ethernet4", "1.1.1.4", "1.1.2.4")).permitted
    owned = eng.owned_addresses_by_interface()
    assert A("1.1.4.5") in owned["ethernet3"] and A("1.1.4.5") in owned["ethernet4"]
    assert "loopback.1" not in owned


def test_subnet_mip_maps_host_bits():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24"),
                    iface("ethernet3", "untrust", "1.1.1.1/24",
                          mips=(mip("1.1.2.0", "10.1.1.0", "255.255.255.0"),))],
        routes=[route("1.1.2.0/24", "ethernet3")],
        policies=[("untrust", "trust", "any", "mip(1.1.2.0)", "sip")])
    eng = Engine(cfg)
    d = eng.decide(flow("ethernet3", "9.9.9.9", "1.1.2.77"))
    assert d.permitted and d.nat.dst == A("10.1.1.77")
    assert eng.mip_host(A("1.1.2.77")) == A("10.1.1.77")
    assert eng.mip_for(A("10.1.1.77")) == A("1.1.2.77")


def test_helpers_public_address_is_local_owned():
    eng = Engine(OUTGOING)
    assert eng.public_address_for(A("10.1.1.5"), "ethernet3") == A("1.1.1.5")
    assert eng.public_address_for(A("10.1.1.9"), "ethernet3") == A("1.1.1.1")
    assert eng.mip_host(A("1.1.1.25")) == A("10.1.1.25")
    assert eng.mip_host(A("1.1.1.26")) is None
    assert eng.mip_for(A("10.1.1.5"), "ethernet1") is None
    assert eng.is_local(A("1.1.1.5")) and eng.is_local(A("10.1.1.1"))
    assert not eng.is_local(A("1.1.1.6"))
    assert eng.owned_addresses() == tuple(map(A, ("1.1.1.1", "1.1.1.5", "1.1.1.25", "10.1.1.1")))
    assert eng.route(A("8.8.8.8")) == ("ethernet3", "untrust")
    eng2 = Engine(dip_pool_config())
    assert eng2.is_local(A("1.1.1.33")) and len(eng2.owned_addresses()) == 2 + 21


def test_unknown_policy_references_never_match_and_are_reported():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24"),
                    iface("ethernet3", "untrust", "1.1.1.1/24")],
        policies=[("trust", "untrust", "nobody", "any", "sip"),
                  ("trust", "untrust", "any", "mip(1.1.1.77)", "sip"),
                  ("trust", "untrust", "any", "any", "no-such-service")])
    eng = Engine(cfg)
    assert len(eng.warnings) == 3
    assert not eng.decide(flow("ethernet1", "10.1.1.3", "1.1.1.9")).permitted
