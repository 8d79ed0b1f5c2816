"""Builders of configuration objects shared by the policy/NAT engine tests
(imported by test_policy_*.py and test_nat_*.py; holds no tests itself)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import MappingProxyType

from gateway.config.model import (DEFAULT_BLOCKING, PREDEFINED_ZONES, Address, AddressRef,
                                  Config, DipPool, Interface, Mip, Policy, Route, Zone)

A = IPv4Address


def iface(name: str, zone: str | None, ip: str | None = None, **kw) -> Interface:
    return Interface(name, zone=zone, ip=IPv4Interface(ip) if ip else None, **kw)


def mip(ip: str, host: str, netmask: str = "255.255.255.255") -> Mip:
    return Mip(A(ip), A(host), A(netmask))


def dip(pool_id: int, first: str, last: str, incoming: bool = False) -> DipPool:
    return DipPool(pool_id, A(first), A(last), incoming)


def ref(text: str) -> AddressRef:
    if text == "any":
        return AddressRef("any")
    for kind in ("mip", "dip"):
        if text.startswith(kind + "("):
            return AddressRef(kind, text[len(kind) + 1:-1])
    return AddressRef("name", text)


def route(prefix: str, interface: str, gateway: str | None = None,
          vrouter: str = "trust-vr") -> Route:
    return Route(IPv4Network(prefix), interface, A(gateway) if gateway else None, vrouter)


def config(interfaces=(), addresses=(), policies=(), routes=(), *, zones=None,
           dip_sticky: bool = False, unblock=()) -> Config:
    """``addresses``: (zone, name, cidr); ``policies``: (from, to, src, dst,
    service[, action][, {nat options}])."""
    zone_names = set(PREDEFINED_ZONES) | {i.zone for i in interfaces if i.zone}
    zs = {z: Zone(z, block=DEFAULT_BLOCKING.get(z, False) and z not in unblock)
          for z in zone_names}
    if zones:
        zs.update(zones)
    pols = []
    for n, p in enumerate(policies, 1):
        frm, to, src, dst, svc, *rest = p
        action = "permit"
        opts = {}
        for r in rest:
            if isinstance(r, dict):
                opts = r
            else:
                action = r
        pols.append(Policy(n, frm, to, ref(src), ref(dst), svc, action, **opts))
    return Config(
        zones=MappingProxyType(zs),
        interfaces=MappingProxyType({i.name: i for i in interfaces}),
        addresses=MappingProxyType({(z, n): Address(z, n, IPv4Interface(c))
                                    for z, n, c in addresses}),
        policies=tuple(pols),
        routes=tuple(routes),
        dip_sticky=dip_sticky,
    )
