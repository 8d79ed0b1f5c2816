"""Zones and routes: ingress zone, longest prefix, loopback groups, tunnels."""

from __future__ import annotations

from gateway.routing import Routing, interface_address
from gateway.config.model import Zone
from test_policy_builders import A, config, iface, route


def test_longest_prefix_connected_then_routes():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24"),
                    iface("ethernet3", "untrust", "1.1.1.1/24"),
                    iface("tunnel.1", "untrust", "6.6.6.6/24")],
        routes=[route("0.0.0.0/0", "ethernet3", "1.1.1.250"),
                route("10.1.0.0/16", "tunnel.1"),
                route("10.1.1.0/24", "tunnel.1")])          # same prefix as connected
    r = Routing(cfg)
    assert r.lookup(A("10.1.1.9")).interface == "ethernet1"   # connected wins a tie
    assert r.lookup(A("10.1.1.9")).connected
    assert r.lookup(A("10.1.2.9")).interface == "tunnel.1"
    e = r.lookup(A("8.8.8.8"))
    assert e.interface == "ethernet3" and e.gateway == A("1.1.1.250")
    assert r.lookup(A("6.6.6.1")).interface == "tunnel.1"
    assert r.egress(A("8.8.8.8"), ingress="ethernet1") == ("ethernet3", "untrust")


def test_first_static_route_wins_among_equal_prefixes():
    cfg = config(interfaces=[iface("ethernet3", "untrust", "1.1.1.1/24"),
                             iface("ethernet4", "untrust", "5.5.5.5/24")],
                 routes=[route("0.0.0.0/0", "ethernet4"), route("0.0.0.0/0", "ethernet3")])
    assert Routing(cfg).lookup(A("9.9.9.9")).interface == "ethernet4"


def test_vrouters_are_separate_tables():
    cfg = config(
        interfaces=[iface("ethernet1", "trust", "10.1.1.1/24"),
                    iface("ethernet3", "untrust", "1.1.1.1/24")],
        routes=[route("0.0.0.0/0", "ethernet3", vrouter="untrust-vr")],
        zones={"untrust": Zone("untrust", block=True, vrouter="untrust-vr")})
    r = Routing(cfg)
    assert r.lookup(A("9.9.9.9"), "trust-vr") is None
    assert r.egress(A("9.9.9.9"), ingress="ethernet3") == ("ethernet3", "untrust")
    assert r.egress(A("9.9.9.9"), ingress="ethernet1") is None
    # the trust subnet is not in untrust-vr: its default route is taken
    assert r.lookup(A("10.1.1.5"), "untrust-vr").interface == "ethernet3"


def test_loopback_is_not_a_forwarding_entry_and_groups_reach_it():
    cfg = config(interfaces=[
        iface("ethernet3", "untrust", "1.1.2.1/24", loopback_group="loopback.1"),
        iface("ethernet4", "untrust", "1.1.1.1/24", loopback_group="loopback.1"),
        iface("ethernet5", "untrust", "1.1.5.1/24"),
        iface("loopback.1", "untrust", "1.1.4.1/24")])
    r = Routing(cfg)
    assert r.lookup(A("1.1.4.9")) is None
    assert r.reaches("ethernet3") == {"ethernet3", "loopback.1"}
    assert r.reaches("ethernet5") == {"ethernet5"}
    assert r.members("loopback.1") == ("ethernet3", "ethernet4")


def test_unnumbered_tunnel_borrows_address():
    # ch. 2 "Example: Full-Mesh VPN for SIP", branch office 2
    cfg = config(interfaces=[
        iface("ethernet3", "untrust", "2.2.2.2/24"),
        iface("tunnel.1", "untrust", unnumbered="ethernet3"),
        iface("tunnel.8", "untrust", unnumbered="tunnel.9"),
        iface("tunnel.9", "untrust", unnumbered="tunnel.8")],
        routes=[route("10.1.3.0/24", "tunnel.1")])
    r = Routing(cfg)
    assert r.interface_ip("tunnel.1").ip == A("2.2.2.2")
    assert interface_address(cfg, "tunnel.8") is None        # a loop resolves to nothing
    assert r.lookup(A("10.1.3.3")).interface == "tunnel.1"


def test_zone_defaults_and_unbound_interfaces():
    cfg = config(interfaces=[iface("ethernet7", None, "7.7.7.1/24"),
                             iface("ethernet1", "lab", "10.9.9.1/24")])
    r = Routing(cfg)
    assert r.zone_of("ethernet7") is None and r.zone_of("nope") is None
    assert r.lookup(A("7.7.7.7")) is None       # an unbound interface forwards nothing
    assert r.zone("lab").block is False and r.zone("untrust").block is True
