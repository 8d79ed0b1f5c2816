"""Hand-built configurations mirroring the manual's chapter 2 examples, for the
lab tests (built from the model directly, independent of the parser)."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface as I
from ipaddress import IPv4Network as N

from gateway.config.model import (
    PREDEFINED_ZONES, Address, AddressRef, Config, DipPool, Interface, Mip, Policy, Route, Zone,
)


def _zones(block_untrust: bool = True) -> dict[str, Zone]:
    return {z: Zone(z, block=(z == "untrust" and block_untrust)) for z in PREDEFINED_ZONES}


def _addresses(*entries: tuple[str, str, str]) -> dict[tuple[str, str], Address]:
    return {(z, n): Address(z, n, I(ip)) for z, n, ip in entries}


def _pol(i: int, fz: str, tz: str, src: AddressRef, dst: AddressRef, nat: bool = False) -> Policy:
    return Policy(i, fz, tz, src, dst, "sip", "permit", nat_src=nat)


ANY = AddressRef("any")


def name(n: str) -> AddressRef:
    return AddressRef("name", n)


def incoming_call_with_mip() -> Config:
    """Manual ch. 2 "Example: Incoming Call with MIP"."""
    return Config(
        zones=_zones(),
        interfaces={
            "ethernet1": Interface("ethernet1", "trust", I("10.1.1.1/24"), mode="nat"),
            "ethernet3": Interface("ethernet3", "untrust", I("1.1.1.1/24"), mode="route",
                                   mips=(Mip(A("1.1.1.3"), A("10.1.1.3")),)),
        },
        addresses=_addresses(("trust", "phone1", "10.1.1.3/24"), ("untrust", "phone2", "1.1.1.4/24"),
                             ("untrust", "proxy", "1.1.1.3/24")),
        policies=(_pol(1, "untrust", "trust", ANY, AddressRef("mip", "1.1.1.3")),),
        routes=(),
    )


def incoming_call_interface_dip() -> Config:
    """Manual ch. 2 "Example: Incoming Call (Interface DIP)"."""
    return Config(
        zones=_zones(),
        interfaces={
            "ethernet1": Interface("ethernet1", "trust", I("10.1.1.1/24"), mode="nat"),
            "ethernet3": Interface("ethernet3", "untrust", I("1.1.1.1/24"), mode="route",
                                   dip_interface_incoming=True),
        },
        addresses=_addresses(("trust", "phone1", "10.1.1.3/24"), ("untrust", "phone2", "1.1.1.4/24"),
                             ("untrust", "proxy", "1.1.1.3/24")),
        policies=(_pol(1, "trust", "untrust", name("phone1"), ANY, nat=True),
                  _pol(2, "untrust", "trust", ANY, AddressRef("dip", "ethernet3"))),
        routes=(),
    )


def incoming_call_dip_pool() -> Config:
    """Manual ch. 2 "Example: Incoming Call (DIP Pool)"."""
    return Config(
        zones=_zones(),
        interfaces={
            "ethernet1": Interface("ethernet1", "trust", I("10.1.1.1/24"), mode="nat"),
            "ethernet3": Interface("ethernet3", "untrust", I("1.1.1.1/24"), mode="route",
                                   dips=(DipPool(5, A("1.1.1.20"), A("1.1.1.40"), incoming=True),)),
        },
        addresses=_addresses(("trust", "phone1", "10.1.1.3/24"), ("untrust", "phone2", "1.1.1.4/24"),
                             ("untrust", "proxy", "1.1.1.3/24")),
        policies=(_pol(1, "untrust", "trust", ANY, AddressRef("dip", "5")),),
        routes=(),
    )


def three_zone_proxy_in_dmz() -> Config:
    """Manual ch. 2 "Example: Three-Zone, Proxy in the DMZ" (the proxy is
    written without a mask: a /32)."""
    return Config(
        zones=_zones(),
        interfaces={
            "ethernet1": Interface("ethernet1", "trust", I("10.1.1.1/24"), mode="nat"),
            "ethernet3": Interface("ethernet3", "untrust", I("1.1.1.1/24"), mode="route"),
            "ethernet2": Interface("ethernet2", "dmz", I("2.2.2.2/24"), mode="route",
                                   mips=(Mip(A("2.2.2.3"), A("10.1.1.3")),)),
        },
        addresses=_addresses(("trust", "phone1", "10.1.1.3/24"), ("untrust", "phone2", "1.1.1.4/24"),
                             ("dmz", "proxy", "2.2.2.4/32")),
        policies=(_pol(1, "trust", "dmz", name("phone1"), name("proxy"), nat=True),
                  _pol(2, "dmz", "untrust", name("proxy"), name("phone2")),
                  _pol(3, "untrust", "trust", name("phone2"), name("phone1")),
                  _pol(4, "untrust", "dmz", name("phone2"), name("proxy")),
                  _pol(5, "dmz", "trust", name("proxy"), AddressRef("mip", "2.2.2.3")),
                  _pol(6, "trust", "untrust", name("phone1"), name("phone2"), nat=True)),
        routes=(),
    )


def untrust_intrazone() -> Config:
    """Manual ch. 2 "Example: Untrust Intrazone"."""
    zones = _zones(block_untrust=False)
    return Config(
        zones=zones,
        interfaces={
            "ethernet1": Interface("ethernet1", "trust", I("10.1.1.1/24"), mode="nat"),
            "ethernet3": Interface("ethernet3", "untrust", I("1.1.2.1/24"), mode="route",
                                   loopback_group="loopback.1"),
            "ethernet4": Interface("ethernet4", "untrust", I("1.1.1.1/24"), mode="route",
                                   loopback_group="loopback.1"),
            "loopback.1": Interface("loopback.1", "untrust", I("1.1.4.1/24"), mode="route",
                                    mips=(Mip(A("1.1.4.5"), A("10.1.1.5")),)),
        },
        addresses=_addresses(("trust", "proxy", "10.1.1.5/32"), ("untrust", "phone1", "1.1.1.4/32"),
                             ("untrust", "phone2", "1.1.2.4/32")),
        policies=(_pol(1, "trust", "untrust", name("proxy"), ANY, nat=True),
                  _pol(2, "untrust", "trust", ANY, AddressRef("mip", "1.1.4.5"))),
        routes=(),
    )


def route_mode_trust_untrust() -> Config:
    """Trust and untrust both in route mode, phones directly routable: the
    plain-routing baseline (no NAT anywhere). ``set interface ethernet1 route``
    makes the trust interface route mode, as the manual allows."""
    return Config(
        zones=_zones(),
        interfaces={
            "ethernet1": Interface("ethernet1", "trust", I("10.1.1.1/24"), mode="route"),
            "ethernet3": Interface("ethernet3", "untrust", I("1.1.1.1/24"), mode="route"),
        },
        addresses=_addresses(("trust", "phone1", "10.1.1.3/24"), ("untrust", "phone2", "1.1.1.4/24")),
        policies=(_pol(1, "trust", "untrust", name("phone1"), name("phone2")),
                  _pol(2, "untrust", "trust", name("phone2"), name("phone1"))),
        routes=(),
    )


def with_default_route_and_far_hosts() -> Config:
    """The H.323 chapter's ``set vrouter trust-vr route 0.0.0.0/0 interface
    ethernet3 gateway 1.1.1.250`` with an untrust phone beyond the next hop,
    a route without gateway to an on-link subnet, and a tunnel."""
    return Config(
        zones=_zones(),
        interfaces={
            "ethernet1": Interface("ethernet1", "trust", I("10.1.1.1/24"), mode="nat"),
            "ethernet3": Interface("ethernet3", "untrust", I("1.1.1.1/24"), mode="route"),
            "tunnel.1": Interface("tunnel.1", "untrust", None),
        },
        addresses=_addresses(("trust", "phone1", "10.1.1.3/24"), ("untrust", "far", "5.5.5.5/32"),
                             ("untrust", "onlink", "7.7.7.7/32"),
                             ("untrust", "internet", "0.0.0.0/0")),
        policies=(),
        routes=(Route(N("0.0.0.0/0"), "ethernet3", A("1.1.1.250")),
                Route(N("7.7.7.0/24"), "ethernet3"),
                Route(N("10.9.0.0/16"), "tunnel.1")),
    )
