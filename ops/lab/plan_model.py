"""What a lab plan is made of: segments, host, router and gateway namespaces,
the veth ports between them and the switch, the addresses the active gateway
holds, its routes, and the plan itself (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

# The HA link between the pair: link-local, never routed (RFC 3927).
HA_NETWORK = IPv4Network("169.254.100.0/30")
HA_DEVICE = "ha0"


@dataclass(frozen=True, slots=True)
class Port:
    """A veth pair: ``switch_end`` on bridge ``segment`` in the switch
    namespace, ``ifname`` inside its node's namespace."""

    segment: str
    switch_end: str
    ifname: str


@dataclass(frozen=True, slots=True)
class Segment:
    bridge: str                       # bridge name in the switch namespace
    label: str                        # config interface name, or "behind <next hop>"
    network: IPv4Network
    zone: str | None
    gateway_ip: IPv4Interface | None  # the gateway's address here (None: far segment)


@dataclass(frozen=True, slots=True)
class HostNs:
    netns: str
    label: str                        # address book name
    zone: str
    address: IPv4Interface            # as configured inside the namespace
    port: Port
    gateway: IPv4Address              # default route
    onlink: bool = False              # default gateway outside the address's prefix


@dataclass(frozen=True, slots=True)
class RouterNs:
    """The next hop of a configured route (e.g. ``gateway 1.1.1.250``)."""

    netns: str
    address: IPv4Interface            # on the route's segment
    near: Port
    upstream: IPv4Address             # the gateway interface address: default route
    far: Port | None = None
    far_address: IPv4Interface | None = None
    far_hosts: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True, slots=True)
class GatewayNs:
    netns: str
    role: str                         # "gw-a" or "gw-b"
    legs: tuple[Port, ...]
    dummies: tuple[str, ...]          # loopback interfaces
    ha_address: IPv4Interface


@dataclass(frozen=True, slots=True)
class OwnedAddress:
    """An address the active gateway holds and a takeover moves."""

    address: IPv4Interface
    device: str                       # device inside the gateway namespace
    kind: Literal["interface", "loopback", "mip", "dip"]
    announce: bool                    # on a segment: gratuitous ARP on takeover


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    prefix: IPv4Network
    device: str
    via: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    lab: str
    switch: str                       # namespace holding the bridges
    segments: tuple[Segment, ...]
    hosts: tuple[HostNs, ...]
    routers: tuple[RouterNs, ...]
    gateways: tuple[GatewayNs, ...]
    owned: tuple[OwnedAddress, ...]
    routes: tuple[GatewayRoute, ...]
    notes: tuple[str, ...] = ()

    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the lab, the switch first."""
        return ((self.switch,) + tuple(g.netns for g in self.gateways)
                + tuple(r.netns for r in self.routers) + tuple(h.netns for h in self.hosts))

    def gateway(self, role: str) -> GatewayNs:
        for g in self.gateways:
            if g.role == role:
                return g
        raise KeyError(role)

    def host(self, key: str) -> HostNs:
        """A host by address book name, namespace name or address."""
        for h in self.hosts:
            if key in (h.label, h.netns, str(h.address.ip), f"{h.zone}/{h.label}"):
                return h
        raise KeyError(key)

    def describe(self) -> str:
        out = [f"lab {self.lab}: switch namespace {self.switch}"]
        for s in self.segments:
            gw = f", gateway {s.gateway_ip}" if s.gateway_ip else ""
            out.append(f"  segment {s.bridge}: {s.label} {s.network} zone {s.zone or '-'}{gw}")
        for g in self.gateways:
            legs = " ".join(f"{p.ifname}@{p.segment}" for p in g.legs)
            out.append(f"  gateway {g.role} = {g.netns}: {legs} {HA_DEVICE} {g.ha_address}"
                       + (f" dummies {' '.join(g.dummies)}" if g.dummies else ""))
        for r in self.routers:
            far = f", far {r.far_address}@{r.far.segment}" if r.far and r.far_address else ""
            out.append(f"  router {r.netns}: {r.address}@{r.near.segment} "
                       f"default via {r.upstream}{far}")
        for h in self.hosts:
            out.append(f"  host {h.netns}: {h.zone}/{h.label} {h.address}@{h.port.segment} "
                       f"default via {h.gateway}{' onlink' if h.onlink else ''}")
        for a in self.owned:
            out.append(f"  owned {a.kind} {a.address} dev {a.device}")
        for rt in self.routes:
            out.append(f"  route {rt.prefix} dev {rt.device}" + (f" via {rt.via}" if rt.via else ""))
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)


class PlanError(ValueError):
    """The configuration cannot be made into a lab."""
