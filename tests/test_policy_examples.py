"""What the manual says happens to the flows of each example (chapters 1-3).

Each row: the example file (examples/*.cfg, the CLI of the manual's example),
a flow as it arrives, and the decision: action, policy (its position in the
file, from 1), egress interface, and the translation (source, destination,
rule). ``*`` in the translated source means "an address of DIP pool 5"."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from gateway.config import load_file
from gateway.policy import Engine, Flow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
A = IPv4Address
_ENGINES: dict[str, Engine] = {}


def engine(name: str) -> Engine:
    if name not in _ENGINES:
        _ENGINES[name] = Engine(load_file(EXAMPLES / name))
    return _ENGINES[name]


def F(ingress, src, dst, proto="udp", dport=5060, sport=5060):
    return Flow(ingress, A(src), A(dst), proto, sport, dport)


H323 = dict(proto="tcp", dport=1720, sport=40000)
MGCP_UA = dict(dport=2427, sport=2727)
MGCP_CA = dict(dport=2727, sport=2427)

# (file, flow, keywords for decide(), expected)
# expected: (action, policy position | None, egress | None, nat src | None | "pool5",
#            nat dst | None, nat kind, substring of the reason)
ROWS = [
    # ch. 1 "Example: Outgoing Calls with NAT"
    ("ch1-outgoing-calls-with-nat.cfg", F("ethernet3", "2.2.2.5", "1.1.1.5", **H323), {},
     ("permit", 3, "ethernet1", None, "10.1.1.5", "mip", "policy")),
    ("ch1-outgoing-calls-with-nat.cfg", F("ethernet3", "2.2.2.5", "1.1.1.25", **H323), {},
     ("permit", 4, "ethernet1", None, "10.1.1.25", "mip", "policy")),
    ("ch1-outgoing-calls-with-nat.cfg", F("ethernet1", "10.1.1.5", "2.2.2.5", **H323), {},
     ("permit", 1, "ethernet3", "1.1.1.5", None, "reverse-mip", "policy")),
    ("ch1-outgoing-calls-with-nat.cfg", F("ethernet1", "10.1.1.25", "2.2.2.5", **H323), {},
     ("permit", 2, "ethernet3", "1.1.1.25", None, "reverse-mip", "policy")),
    ("ch1-outgoing-calls-with-nat.cfg", F("ethernet3", "2.2.2.6", "1.1.1.5", **H323), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    ("ch1-outgoing-calls-with-nat.cfg", F("ethernet1", "10.1.1.7", "2.2.2.5", **H323), {},
     ("deny", None, None, None, None, "none", "trust->untrust")),
    ("ch1-outgoing-calls-with-nat.cfg", F("ethernet1", "10.1.1.5", "2.2.2.5"), {},
     ("deny", None, None, None, None, "none", "udp/5060")),
    # ch. 1 "Example: Gatekeeper in the Trust Zone" (route mode: no translation)
    ("ch1-gatekeeper-in-trust-zone.cfg", F("ethernet1", "10.1.1.25", "2.2.2.5", **H323), {},
     ("permit", 1, "ethernet3", None, None, "none", "policy")),
    ("ch1-gatekeeper-in-trust-zone.cfg", F("ethernet3", "2.2.2.5", "10.1.1.25", **H323), {},
     ("permit", 2, "ethernet1", None, None, "none", "policy")),
    ("ch1-gatekeeper-in-trust-zone.cfg", F("ethernet3", "2.2.2.6", "10.1.1.25", **H323), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    # ch. 1 "Example: Gatekeeper in the Untrust Zone"
    ("ch1-gatekeeper-in-untrust-zone.cfg", F("ethernet1", "10.1.1.5", "2.2.2.10", **H323), {},
     ("permit", 2, "ethernet3", None, None, "none", "policy")),
    ("ch1-gatekeeper-in-untrust-zone.cfg", F("ethernet3", "2.2.2.10", "10.1.1.5", "udp", 1719), {},
     ("permit", 4, "ethernet1", None, None, "none", "policy")),
    ("ch1-gatekeeper-in-untrust-zone.cfg", F("ethernet3", "2.2.2.10", "10.1.1.5"), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    # ch. 1 "Example: Incoming Calls with NAT" (DIP 5 with incoming). The CLI as
    # printed has no route beyond the connected subnets, so a peer off them
    # (IP_Phone2, 2.2.2.5) is unreachable until a default route is added.
    ("ch1-incoming-calls-with-nat.cfg", F("ethernet1", "10.1.1.5", "1.1.1.250", **H323), {},
     ("permit", 1, "ethernet3", "pool5", None, "nat-src-dip", "policy")),
    ("ch1-incoming-calls-with-nat.cfg", F("ethernet1", "10.1.1.5", "2.2.2.5", **H323), {},
     ("deny", None, None, None, None, "none", "no route to 2.2.2.5")),
    ("ch1-incoming-calls-with-nat.cfg", F("ethernet3", "2.2.2.5", "1.1.1.40", **H323),
     {"incoming_dip": (A("10.1.1.5"), 1720)},
     ("permit", 2, "ethernet1", None, "10.1.1.5", "incoming-dip", "policy")),
    ("ch1-incoming-calls-with-nat.cfg", F("ethernet3", "2.2.2.5", "1.1.1.40", **H323), {},
     ("deny", None, None, None, None, "none", "no incoming-DIP binding")),
    ("ch1-incoming-calls-with-nat.cfg", F("ethernet3", "2.2.2.6", "1.1.1.40", **H323),
     {"incoming_dip": (A("10.1.1.5"), 1720)},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    # ch. 1 "Example: Gatekeeper in the Untrust Zone with NAT"
    ("ch1-gatekeeper-in-untrust-zone-with-nat.cfg", F("ethernet3", "2.2.2.25", "1.1.1.5", **H323), {},
     ("permit", 4, "ethernet1", None, "10.1.1.5", "mip", "policy")),
    ("ch1-gatekeeper-in-untrust-zone-with-nat.cfg", F("ethernet1", "10.1.1.5", "2.2.2.25", **H323), {},
     ("permit", 2, "ethernet3", "1.1.1.5", None, "reverse-mip", "policy")),
    ("ch1-gatekeeper-in-untrust-zone-with-nat.cfg", F("ethernet1", "10.1.1.6", "2.2.2.25", **H323), {},
     ("deny", None, None, None, None, "none", "trust->untrust")),
    # ch. 2 "Example: Incoming Call (Interface DIP)"
    ("ch2-incoming-call-interface-dip.cfg", F("ethernet1", "10.1.1.3", "1.1.1.3"), {},
     ("permit", 1, "ethernet3", "1.1.1.1", None, "nat-src-interface", "policy")),
    ("ch2-incoming-call-interface-dip.cfg", F("ethernet3", "1.1.1.3", "1.1.1.1"),
     {"incoming_dip": (A("10.1.1.3"), 5060)},
     ("permit", 2, "ethernet1", None, "10.1.1.3", "incoming-dip", "policy")),
    # the INVITE comes to the registered contact port (Contact <sip: 6.6.6.1:5555>)
    ("ch2-incoming-call-interface-dip.cfg", F("ethernet3", "1.1.1.3", "1.1.1.1", dport=5555),
     {"incoming_dip": (A("10.1.1.3"), 1234), "service": "sip"},
     ("permit", 2, "ethernet1", None, "10.1.1.3", "incoming-dip", "policy")),
    ("ch2-incoming-call-interface-dip.cfg", F("ethernet3", "1.1.1.4", "1.1.1.1"), {},
     ("deny", None, None, None, None, "none", "no incoming-DIP binding")),
    # ch. 2 "Example: Incoming Call (DIP Pool)"
    ("ch2-incoming-call-dip-pool.cfg", F("ethernet1", "10.1.1.3", "1.1.1.3"), {},
     ("permit", 1, "ethernet3", "pool5", None, "nat-src-dip", "policy")),
    ("ch2-incoming-call-dip-pool.cfg", F("ethernet3", "1.1.1.4", "1.1.1.20"),
     {"incoming_dip": (A("10.1.1.3"), 5060)},
     ("permit", 2, "ethernet1", None, "10.1.1.3", "incoming-dip", "policy")),
    # just past the pool: an ordinary untrust address, and Untrust blocks intra-zone
    ("ch2-incoming-call-dip-pool.cfg", F("ethernet3", "1.1.1.4", "1.1.1.41"), {},
     ("deny", None, None, None, None, "none", "blocked in untrust")),
    # ch. 2 "Example: Incoming Call with MIP" (the example file moves the MIP to
    # 1.1.1.5: the printed 1.1.1.3 is the proxy's address)
    ("ch2-incoming-call-with-mip.cfg", F("ethernet3", "1.1.1.4", "1.1.1.5"), {},
     ("permit", 2, "ethernet1", None, "10.1.1.3", "mip", "policy")),
    # phone1 registers with the proxy: its MIP wins over the policy's nat src
    ("ch2-incoming-call-with-mip.cfg", F("ethernet1", "10.1.1.3", "1.1.1.3"), {},
     ("permit", 1, "ethernet3", "1.1.1.5", None, "reverse-mip", "policy")),
    ("ch2-incoming-call-with-mip.cfg", F("ethernet3", "1.1.1.4", "1.1.1.5", "tcp", 80), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    # ch. 2 "Example: Proxy in the Private Zone"
    ("ch2-proxy-in-private-zone.cfg", F("ethernet3", "1.1.1.4", "1.1.1.2"), {},
     ("permit", 2, "ethernet1", None, "10.1.1.4", "mip", "policy")),
    ("ch2-proxy-in-private-zone.cfg", F("ethernet1", "10.1.1.4", "1.1.1.4"), {},
     ("permit", 1, "ethernet3", "1.1.1.2", None, "reverse-mip", "policy")),
    ("ch2-proxy-in-private-zone.cfg", F("ethernet1", "10.1.1.3", "1.1.1.4"), {},
     ("permit", 1, "ethernet3", "1.1.1.1", None, "nat-src-interface", "policy")),
    ("ch2-proxy-in-private-zone.cfg", F("ethernet1", "10.1.1.3", "10.1.1.4"), {},
     ("permit", None, "ethernet1", None, None, "none", "intra-zone")),
    ("ch2-proxy-in-private-zone.cfg", F("ethernet3", "1.1.9.9", "1.1.1.2"), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    # ch. 2 "Example: Proxy in the Public Zone"
    ("ch2-proxy-in-public-zone.cfg", F("ethernet1", "10.1.1.3", "1.1.1.3"), {},
     ("permit", 1, "ethernet3", "1.1.1.1", None, "nat-src-interface", "policy")),
    ("ch2-proxy-in-public-zone.cfg", F("ethernet3", "1.1.1.3", "1.1.1.1"),
     {"incoming_dip": (A("10.1.1.3"), 5060)},
     ("permit", 2, "ethernet1", None, "10.1.1.3", "incoming-dip", "policy")),
    # ch. 2 "Example: Three-Zone, Proxy in the DMZ" (phone2 calls phone1 via the proxy)
    ("ch2-three-zone-proxy-in-dmz.cfg", F("ethernet3", "1.1.1.4", "2.2.2.4"), {},
     ("permit", 4, "ethernet2", None, None, "none", "policy")),
    ("ch2-three-zone-proxy-in-dmz.cfg", F("ethernet2", "2.2.2.4", "2.2.2.3"), {},
     ("permit", 5, "ethernet1", None, "10.1.1.3", "mip", "policy")),
    ("ch2-three-zone-proxy-in-dmz.cfg", F("ethernet1", "10.1.1.3", "2.2.2.4"), {},
     ("permit", 1, "ethernet2", "2.2.2.3", None, "reverse-mip", "policy")),
    ("ch2-three-zone-proxy-in-dmz.cfg", F("ethernet2", "2.2.2.4", "1.1.1.4"), {},
     ("permit", 2, "ethernet3", None, None, "none", "policy")),
    ("ch2-three-zone-proxy-in-dmz.cfg", F("ethernet1", "10.1.1.3", "1.1.1.4"), {},
     ("permit", 6, "ethernet3", "1.1.1.1", None, "nat-src-interface", "policy")),
    ("ch2-three-zone-proxy-in-dmz.cfg", F("ethernet3", "1.1.1.4", "2.2.2.3"), {},
     ("deny", None, None, None, None, "none", "MIP on ethernet2")),
    ("ch2-three-zone-proxy-in-dmz.cfg", F("ethernet2", "2.2.2.4", "1.1.1.4", "tcp", 80), {},
     ("deny", None, None, None, None, "none", "dmz->untrust")),
    # ch. 2 "Example: Untrust Intrazone" (MIP on loopback.1, blocking unset)
    ("ch2-untrust-intrazone.cfg", F("ethernet4", "1.1.1.4", "1.1.4.5"), {},
     ("permit", 2, "ethernet1", None, "10.1.1.5", "mip", "policy")),
    ("ch2-untrust-intrazone.cfg", F("ethernet3", "1.1.2.4", "1.1.4.5"), {},
     ("permit", 2, "ethernet1", None, "10.1.1.5", "mip", "policy")),
    ("ch2-untrust-intrazone.cfg", F("ethernet1", "10.1.1.5", "1.1.2.4"), {},
     ("permit", 1, "ethernet3", "1.1.4.5", None, "reverse-mip", "policy")),
    ("ch2-untrust-intrazone.cfg", F("ethernet1", "10.1.1.5", "1.1.1.4"), {},
     ("permit", 1, "ethernet4", "1.1.4.5", None, "reverse-mip", "policy")),
    ("ch2-untrust-intrazone.cfg", F("ethernet4", "1.1.1.4", "1.1.2.4", sport=20000, dport=20002), {},
     ("permit", None, "ethernet3", None, None, "none", "intra-zone")),
    ("ch2-untrust-intrazone.cfg", F("ethernet1", "10.1.1.9", "1.1.1.4"), {},
     ("deny", None, None, None, None, "none", "trust->untrust")),
    # ch. 2 "Example: Trust Intrazone" (interface DIP on ethernet3)
    ("ch2-trust-intrazone.cfg", F("ethernet1", "10.1.1.3", "3.3.3.4"), {},
     ("permit", 1, "ethernet3", "3.3.3.3", None, "nat-src-interface", "policy")),
    ("ch2-trust-intrazone.cfg", F("ethernet2", "10.1.2.2", "3.3.3.4"), {},
     ("permit", 1, "ethernet3", "3.3.3.3", None, "nat-src-interface", "policy")),
    ("ch2-trust-intrazone.cfg", F("ethernet3", "3.3.3.4", "3.3.3.3"),
     {"incoming_dip": (A("10.1.2.2"), 5060)},
     ("permit", 2, "ethernet2", None, "10.1.2.2", "incoming-dip", "policy")),
    ("ch2-trust-intrazone.cfg", F("ethernet1", "10.1.1.3", "10.1.2.2", sport=20000, dport=30000), {},
     ("permit", None, "ethernet2", None, None, "none", "intra-zone")),
    ("ch2-trust-intrazone.cfg", F("ethernet3", "4.4.4.4", "3.3.3.3"),
     {"incoming_dip": (A("10.1.2.2"), 5060)},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    # ch. 2 "Example: Full-Mesh VPN for SIP": private addresses cross the
    # tunnels untranslated (the trust interfaces' NAT mode does not apply to
    # tunnel interfaces: each site routes the others' private subnets)
    ("ch2-full-mesh-vpn-central.cfg", F("tunnel.2", "10.1.1.3", "10.1.3.3"), {},
     ("permit", 1, "ethernet2/8", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-central.cfg", F("ethernet2/8", "10.1.3.3", "10.1.1.3"), {},
     ("permit", 2, "tunnel.2", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-central.cfg", F("ethernet2/8", "10.1.3.3", "10.1.2.1"), {},
     ("permit", 2, "tunnel.1", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-central.cfg", F("tunnel.1", "10.1.2.1", "10.1.3.4"), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    ("ch2-full-mesh-vpn-central.cfg", F("tunnel.2", "10.1.1.3", "10.1.2.1"), {},
     ("deny", None, None, None, None, "none", "blocked in untrust")),
    ("ch2-full-mesh-vpn-branch2.cfg", F("ethernet1", "10.1.1.3", "10.1.3.3"), {},
     ("permit", 1, "tunnel.1", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-branch2.cfg", F("ethernet1", "10.1.1.3", "10.1.2.1"), {},
     ("permit", 1, "tunnel.3", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-branch2.cfg", F("tunnel.1", "10.1.3.3", "10.1.1.3"), {},
     ("permit", 2, "ethernet1", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-branch2.cfg", F("ethernet1", "10.1.1.3", "8.8.8.8"), {},
     ("deny", None, None, None, None, "none", "no route to 8.8.8.8")),
    ("ch2-full-mesh-vpn-branch1.cfg", F("ethernet1", "10.1.2.1", "10.1.3.3"), {},
     ("permit", 1, "tunnel.2", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-branch1.cfg", F("tunnel.3", "10.1.1.3", "10.1.2.1"), {},
     ("permit", 2, "ethernet1", None, None, "none", "policy")),
    ("ch2-full-mesh-vpn-branch1.cfg", F("tunnel.3", "10.1.1.3", "10.1.2.7"), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    # ch. 3 "Media Gateway in Subscribers' Homes - Call Agent at the ISP"
    ("ch3-media-gateway-in-subscribers-homes.cfg", F("ethernet4", "10.1.1.101", "2.2.2.7", **MGCP_UA), {},
     ("permit", 1, "ethernet3", None, None, "none", "policy")),
    ("ch3-media-gateway-in-subscribers-homes.cfg", F("ethernet3", "2.2.2.7", "10.1.1.101", **MGCP_CA), {},
     ("permit", 2, "ethernet4", None, None, "none", "policy")),
    ("ch3-media-gateway-in-subscribers-homes.cfg", F("ethernet3", "2.2.2.7", "10.1.1.101", **MGCP_UA), {},
     ("deny", None, None, None, None, "none", "untrust_subscriber->trust_ca")),
    # "RTP traffic between the gateways never passes through the firewall"; if it
    # did, a custom zone does not block intra-zone traffic
    ("ch3-media-gateway-in-subscribers-homes.cfg", F("ethernet3", "2.2.2.7", "2.2.2.8", dport=20000), {},
     ("permit", None, "ethernet3", None, None, "none", "intra-zone")),
    # ch. 3 "ISP-Hosted Service" (MIP for the call agent, nat src trust -> untrust)
    ("ch3-isp-hosted-service.cfg", F("ethernet6", "3.3.3.110", "3.3.3.101", **MGCP_CA), {},
     ("permit", 2, "ethernet5", None, "10.1.1.101", "mip", "policy")),
    ("ch3-isp-hosted-service.cfg", F("ethernet5", "10.1.1.101", "3.3.3.110", **MGCP_UA), {},
     ("permit", 1, "ethernet6", "3.3.3.101", None, "reverse-mip", "policy")),
    ("ch3-isp-hosted-service.cfg", F("ethernet4", "2.2.2.201", "10.1.1.101", **MGCP_CA), {},
     ("permit", 3, "ethernet5", None, None, "none", "policy")),
    ("ch3-isp-hosted-service.cfg", F("ethernet5", "10.1.1.101", "2.2.2.201", **MGCP_UA), {},
     ("permit", 4, "ethernet4", None, None, "none", "policy")),
    ("ch3-isp-hosted-service.cfg", F("ethernet4", "2.2.2.201", "3.3.3.110", **MGCP_UA), {},
     ("permit", 5, "ethernet6", "3.3.3.10", None, "nat-src-interface", "policy")),
    ("ch3-isp-hosted-service.cfg", F("ethernet6", "3.3.3.110", "2.2.2.201", **MGCP_UA), {},
     ("deny", None, None, None, None, "none", "untrust->trust")),
    ("ch3-isp-hosted-service.cfg", F("ethernet6", "3.3.3.111", "3.3.3.101", **MGCP_CA), {},
     ("deny", None, None, None, None, "none", "untrust->dmz")),
]


def _id(row):
    name, flow, kw, exp = row
    return f"{name[:-4]}:{flow.ingress}:{flow.src}->{flow.dst}/{flow.dport}:{exp[0]}"


@pytest.mark.parametrize("name,flow,kw,expected", ROWS, ids=[_id(r) for r in ROWS])
def test_manual_example_flow(name, flow, kw, expected):
    eng = engine(name)
    action, position, egress, src, dst, kind, why = expected
    d = eng.decide(flow, **kw)
    assert d.action == action, d.reason
    assert why in d.reason
    if position is None:
        assert d.policy is None
    else:
        assert d.policy is not None and eng.config.policies.index(d.policy) + 1 == position
    if action == "deny":
        return
    assert d.egress == egress
    assert d.nat.kind == kind
    if src == "pool5":
        pool = eng.dips.pools[5].pool
        assert pool.first <= d.nat.src <= pool.last
        # set dip sticky: the host keeps its pool address for every session
        if eng.config.dip_sticky:
            # set dip sticky: the host keeps its pool address for every session
            again = eng.decide(Flow(flow.ingress, flow.src, flow.dst, flow.proto,
                                    flow.sport + 1, flow.dport))
            assert again.nat.src == d.nat.src
    else:
        assert d.nat.src == (A(src) if src else None)
    assert d.nat.dst == (A(dst) if dst else None)


def test_every_example_file_is_in_the_table():
    """A new example with interfaces must get rows stating what the manual says."""
    covered = {r[0] for r in ROWS}
    with_interfaces = {p.name for p in EXAMPLES.glob("*.cfg")
                       if engine(p.name).config.interfaces}
    assert with_interfaces - covered == set()
