"""The lab's topology, computed from a gateway configuration (pure: no I/O).

A plan says which network namespaces, bridges, veth pairs, addresses and routes
make a test network that looks like the network a configuration describes
(manual ch. 2 "Examples"): one Ethernet segment per gateway interface with an IP
subnet, one namespace per single-host address book entry placed on the segment
that holds it, and two gateway namespaces (the active/standby pair) with one
leg on every segment and a direct HA link between them.

Decisions (see ARCHITECTURE.md, "Network-namespace lab"):

* Every link lives inside a lab namespace, none in the host's: the segments'
  bridges sit in a "switch" namespace ``<lab>-sw``. Deleting the lab's
  namespaces therefore removes everything the lab made, and the host's own
  firewall (e.g. ``br_netfilter`` with a DROP forward policy) never sees lab
  traffic. Names only have to be unique inside their namespace, so they stay
  short (Linux limits interface names to 15 characters).
* Loopback interfaces (``loopback.N``) are addresses of the gateway itself: a
  dummy device of that name in the gateway namespace carries them.
* Tunnel interfaces (``tunnel.N``) belong to IPsec, which the host does; they
  are skipped with a note, and so are routes through them.
* A host outside every interface subnet is reached the way the configuration
  says: through the longest configured route that covers it. A route with a
  ``gateway`` gets a router namespace holding that next-hop address on the
  route's segment and a second segment behind it for the far hosts, so the
  gateway really forwards to a next hop. A route without a gateway puts the
  host directly on the route's segment with an on-link (/32) address, which is
  what "the destination is on that wire" means.
* The gateway owns its interface addresses, MIPs and DIP pool addresses; only
  the active namespace holds them. An address book entry that equals one of
  them (the manual's MIP example names the proxy 1.1.1.3 and maps the MIP
  1.1.1.3 too) is not made into a host: the gateway answers for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import NoneType, UnionType
from typing import Literal, Union, get_args, get_origin, get_type_hints

from gateway.config.model import Config

GATEWAY_ROLES = ("gw-a", "gw-b")
# The HA link between the pair: link-local, never routed (RFC 3927).
HA_NETWORK = IPv4Network("169.254.100.0/30")
HA_DEVICE = "ha0"
# Far segments behind a route's next hop: link-local too; the far hosts keep
# their configured address as a /32 and reach the router on-link.
FAR_NETWORK_BASE = 200
# A DIP pool or subnet MIP larger than this is cut with a note: the lab only
# needs enough addresses to place calls, not a /16 of ARP entries.
MAX_ADDRESSES_PER_ITEM = 256
LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,5}$")
LINUX_IFNAMSIZ = 15


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


def device_name(ifname: str, index: int) -> str:
    """The Linux name of a configured interface inside a gateway namespace:
    the configured name where Linux accepts it (``ethernet3``, ``loopback.1``),
    otherwise ``ifN``."""
    name = ifname.replace("/", "-").replace(":", "-")
    if len(name) <= LINUX_IFNAMSIZ and re.fullmatch(r"[A-Za-z0-9_.-]+", name) and name not in (".", ".."):
        return name
    return f"if{index}"


def _netns_label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40] or "_"


def _expand(first: IPv4Address, last: IPv4Address) -> list[IPv4Address]:
    n = int(last) - int(first) + 1
    return [IPv4Address(int(first) + i) for i in range(max(0, min(n, MAX_ADDRESSES_PER_ITEM)))]


def build_plan(config: Config, lab: str = "vg0") -> Plan:
    """Compute the lab for ``config``. ``lab`` prefixes every namespace."""
    if not LAB_NAME.match(lab):
        raise PlanError(f"lab name {lab!r}: 1-6 lower-case letters/digits, starting with a letter")
    notes: list[str] = []
    switch = f"{lab}-sw"
    gw_ns = {role: f"{lab}-{role}" for role in GATEWAY_ROLES}

    # Segments: one per Ethernet interface with a subnet.
    segments: list[Segment] = []
    leg_names: dict[str, str] = {}          # config interface -> device in gateway ns
    seg_of_iface: dict[str, Segment] = {}
    dummies: list[str] = []
    owned: list[OwnedAddress] = []
    used_devices: set[str] = {HA_DEVICE, "lo"}
    for index, iface in enumerate(config.interfaces.values(), start=1):
        if iface.kind == "tunnel":
            notes.append(f"{iface.name}: tunnel interface skipped (IPsec is the host's)")
            continue
        if iface.ip is None:
            why = f"unnumbered ({iface.unnumbered})" if iface.unnumbered else "no IP address"
            notes.append(f"{iface.name}: {why}, no segment")
            continue
        dev = device_name(iface.name, index)
        if dev in used_devices:
            dev = f"if{index}"
        used_devices.add(dev)
        leg_names[iface.name] = dev
        if iface.kind == "loopback":
            dummies.append(dev)
            owned.append(OwnedAddress(iface.ip, dev, "loopback", announce=False))
            continue
        for other in segments:
            if other.network.overlaps(iface.ip.network):
                notes.append(f"{iface.name}: subnet {iface.ip.network} overlaps {other.label} "
                             f"{other.network}")
        seg = Segment(f"br{len(segments) + 1}", iface.name, iface.ip.network, iface.zone, iface.ip)
        segments.append(seg)
        seg_of_iface[iface.name] = seg
        owned.append(OwnedAddress(iface.ip, dev, "interface", announce=True))

    # MIPs and DIP pools: more addresses the active gateway answers for.
    for iface in config.interfaces.values():
        dev = leg_names.get(iface.name)
        if dev is None:
            if iface.mips or iface.dips:
                notes.append(f"{iface.name}: MIP/DIP on an interface without a segment skipped")
            continue
        announce = iface.name in seg_of_iface
        for mip in iface.mips:
            public = mip.public
            addrs = _expand(public.network_address, public.broadcast_address) \
                if public.prefixlen < 32 else [mip.ip]
            if public.num_addresses > MAX_ADDRESSES_PER_ITEM:
                notes.append(f"MIP {public}: only the first {MAX_ADDRESSES_PER_ITEM} addresses held")
            owned.extend(OwnedAddress(IPv4Interface(f"{a}/32"), dev, "mip", announce)
                         for a in addrs)
        for dip in iface.dips:
            addrs = _expand(dip.first, dip.last)
            if int(dip.last) - int(dip.first) + 1 > MAX_ADDRESSES_PER_ITEM:
                notes.append(f"DIP {dip.id}: only the first {MAX_ADDRESSES_PER_ITEM} addresses held")
            owned.extend(OwnedAddress(IPv4Interface(f"{a}/32"), dev, "dip", announce)
                         for a in addrs)
    # One address, one holder: the first declaration wins (an interface IP
    # inside a DIP range stays the interface's).
    seen: set[IPv4Address] = set()
    unique: list[OwnedAddress] = []
    for a in owned:
        if a.address.ip not in seen:
            seen.add(a.address.ip)
            unique.append(a)
    owned = unique
    owned_ips = seen

    # Routes the active gateway installs, and the next hops they need.
    routes: list[GatewayRoute] = []
    for rt in config.routes:
        iface = config.interfaces.get(rt.interface)
        if iface is not None and iface.kind == "tunnel":
            notes.append(f"route {rt.prefix} via {rt.interface}: tunnel, skipped")
            continue
        if rt.interface not in seg_of_iface:
            notes.append(f"route {rt.prefix} via {rt.interface}: no such segment, skipped")
            continue
        if rt.gateway is not None and rt.gateway not in seg_of_iface[rt.interface].network:
            notes.append(f"route {rt.prefix}: gateway {rt.gateway} outside "
                         f"{seg_of_iface[rt.interface].network}, skipped")
            continue
        if rt.vrouter != "trust-vr":
            notes.append(f"route {rt.prefix}: vrouter {rt.vrouter} shares the lab's one table")
        routes.append(GatewayRoute(rt.prefix, leg_names[rt.interface], rt.gateway))

    # Hosts.
    hosts_by_ip: dict[IPv4Address, tuple[str, str]] = {}
    placed: list[tuple[str, str, IPv4Address, Segment | None, GatewayRoute | None]] = []
    for (zone, name), entry in config.addresses.items():
        if not entry.is_host:
            continue
        ip = entry.ip.ip
        if ip in owned_ips:
            notes.append(f"address {zone}/{name} {ip} is held by the gateway (interface, MIP "
                         f"or DIP): no host made")
            continue
        if ip in hosts_by_ip:
            z, n = hosts_by_ip[ip]
            notes.append(f"address {zone}/{name} {ip} is the same host as {z}/{n}")
            continue
        segs = [s for s in segments if ip in s.network]
        if segs:
            seg = max(segs, key=lambda s: s.network.prefixlen)
            if ip in (seg.network.network_address, seg.network.broadcast_address):
                notes.append(f"address {zone}/{name} {ip} is not a usable host of {seg.network}")
                continue
            if seg.zone and seg.zone != zone:
                notes.append(f"address {zone}/{name} {ip} lies on {seg.label} in zone {seg.zone}")
            hosts_by_ip[ip] = (zone, name)
            placed.append((zone, name, ip, seg, None))
            continue
        covering = [r for r in routes if ip in r.prefix]
        if not covering:
            notes.append(f"address {zone}/{name} {ip}: no interface subnet or route reaches it, "
                         f"no host made")
            continue
        hosts_by_ip[ip] = (zone, name)
        placed.append((zone, name, ip, None, max(covering, key=lambda r: r.prefix.prefixlen)))

    # Router namespaces: one per distinct next hop of a kept route.
    dev_to_seg = {leg_names[i]: s for i, s in seg_of_iface.items()}
    next_hops: list[tuple[IPv4Address, Segment]] = []
    for rt in routes:
        if rt.via is not None and all(rt.via != v for v, _ in next_hops):
            seg = dev_to_seg[rt.device]
            if rt.via in owned_ips:
                notes.append(f"route {rt.prefix}: next hop {rt.via} is the gateway's own address")
                continue
            next_hops.append((rt.via, seg))
    far_hosts: dict[IPv4Address, list[IPv4Address]] = {v: [] for v, _ in next_hops}
    for _, _, ip, seg, rt in placed:
        if seg is None and rt is not None and rt.via in far_hosts:
            far_hosts[rt.via].append(ip)

    routers: list[RouterNs] = []
    far_segments: dict[IPv4Address, tuple[Segment, IPv4Interface]] = {}
    for n, (via, seg) in enumerate(next_hops, start=1):
        assert seg.gateway_ip is not None
        near = Port(seg.bridge, f"r{n}", "near0")
        far = far_addr = None
        if far_hosts[via]:
            net = IPv4Network(f"169.254.{FAR_NETWORK_BASE + n}.0/24")
            fseg = Segment(f"brf{n}", f"behind {via}", net, seg.zone, None)
            segments.append(fseg)
            far = Port(fseg.bridge, f"rf{n}", "far0")
            far_addr = IPv4Interface(f"{next(net.hosts())}/{net.prefixlen}")
            far_segments[via] = (fseg, far_addr)
        routers.append(RouterNs(f"{lab}-rt{n}", IPv4Interface(f"{via}/{seg.network.prefixlen}"),
                                near, seg.gateway_ip.ip, far, far_addr, tuple(far_hosts[via])))
    if routers and any(ip == r.address.ip for r in routers for ip in hosts_by_ip):
        notes.append("a next hop is also an address book host: the router namespace is it")

    hosts: list[HostNs] = []
    netns_used: set[str] = set(gw_ns.values()) | {switch} | {r.netns for r in routers}
    router_ips = {r.address.ip for r in routers}
    for i, (zone, name, ip, seg, rt) in enumerate(placed, start=1):
        if ip in router_ips:
            continue
        netns = f"{lab}-{_netns_label(name)}"
        if netns in netns_used:
            netns = f"{lab}-{_netns_label(zone)}-{_netns_label(name)}"
        k = 2
        base = netns
        while netns in netns_used:
            netns, k = f"{base}-{k}", k + 1
        netns_used.add(netns)
        if seg is not None:
            assert seg.gateway_ip is not None
            hosts.append(HostNs(netns, name, zone, IPv4Interface(f"{ip}/{seg.network.prefixlen}"),
                                Port(seg.bridge, f"h{i}", "eth0"), seg.gateway_ip.ip))
        elif rt is not None and rt.via is None:
            eseg = dev_to_seg[rt.device]
            assert eseg.gateway_ip is not None
            hosts.append(HostNs(netns, name, zone, IPv4Interface(f"{ip}/32"),
                                Port(eseg.bridge, f"h{i}", "eth0"), eseg.gateway_ip.ip, onlink=True))
        elif rt is not None and rt.via in far_segments:
            fseg, faddr = far_segments[rt.via]
            hosts.append(HostNs(netns, name, zone, IPv4Interface(f"{ip}/32"),
                                Port(fseg.bridge, f"h{i}", "eth0"), faddr.ip, onlink=True))
        else:
            notes.append(f"address {zone}/{name} {ip}: its route has no usable next hop")

    ha = list(HA_NETWORK.hosts())
    gateways = tuple(
        GatewayNs(gw_ns[role], role,
                  tuple(Port(s.bridge, f"{role[-1]}{k}", leg_names[s.label])
                        for k, s in enumerate(segments, start=1) if s.gateway_ip is not None),
                  tuple(dummies), IPv4Interface(f"{ha[j]}/{HA_NETWORK.prefixlen}"))
        for j, role in enumerate(GATEWAY_ROLES))

    return Plan(lab, switch, tuple(segments), tuple(hosts), tuple(routers), gateways,
                tuple(owned), tuple(routes), tuple(notes))


@dataclass(frozen=True, slots=True)
class CallPlan:
    caller: HostNs
    callee: HostNs
    dial: IPv4Address


def suggest_call(plan: Plan, config: Config | None = None) -> CallPlan:
    """The call the configuration is written for.

    A MIP to a lab host that a policy lets some zone reach (``... mip(IP) sip
    permit``, manual ch. 2 "Example: Incoming Call with MIP") is dialled from a
    host of that zone; otherwise a host in a non-untrust zone calls an untrust
    host at its own address (outgoing calls: the policy's NAT handles them)."""
    if len(plan.hosts) < 2:
        raise PlanError("the lab needs at least two hosts to place a call")
    by_ip = {h.address.ip: h for h in plan.hosts}
    mips = {m.ip: m for i in config.interfaces.values() for m in i.mips} if config else {}
    for pol in config.policies if config else ():
        if pol.action != "permit" or pol.dst.kind != "mip":
            continue
        try:
            mip = mips.get(IPv4Address(pol.dst.value))
        except ValueError:
            continue
        if mip is None or mip.host not in by_ip:
            continue
        callee = by_ip[mip.host]
        callers = [h for h in plan.hosts if h.zone == pol.from_zone and h is not callee]
        if callers:
            return CallPlan(callers[0], callee, mip.ip)
    callers = [h for h in plan.hosts if h.zone != "untrust"]
    callees = [h for h in plan.hosts if h.zone == "untrust"]
    if callers and callees:
        return CallPlan(callers[0], callees[0], callees[0].address.ip)
    return CallPlan(plan.hosts[0], plan.hosts[1], plan.hosts[1].address.ip)


# --- JSON form, for the state file -------------------------------------------

def to_data(obj: object) -> object:
    """Plain JSON data for a plan (or any part of it)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [to_data(x) for x in obj]
    if isinstance(obj, (IPv4Address, IPv4Interface, IPv4Network)):
        return str(obj)
    return obj


def _from(tp: object, value: object) -> object:
    origin = get_origin(tp)
    if origin in (Union, UnionType):
        args = [a for a in get_args(tp) if a is not NoneType]
        return None if value is None else _from(args[0], value)
    if origin is tuple:
        (item, _) = get_args(tp)
        assert isinstance(value, list)
        return tuple(_from(item, v) for v in value)
    if origin is Literal:
        return value
    if isinstance(tp, type) and is_dataclass(tp):
        assert isinstance(value, dict)
        hints = get_type_hints(tp)
        return tp(**{f.name: _from(hints[f.name], value[f.name]) for f in fields(tp)})
    if tp in (IPv4Address, IPv4Interface, IPv4Network):
        return tp(value)  # type: ignore[operator]
    return value


def plan_from_data(data: object) -> Plan:
    plan = _from(Plan, data)
    assert isinstance(plan, Plan)
    return plan


__all__ = ["Plan", "Segment", "HostNs", "RouterNs", "GatewayNs", "Port", "OwnedAddress",
           "GatewayRoute", "CallPlan", "PlanError", "build_plan", "suggest_call", "device_name",
           "to_data", "plan_from_data", "HA_DEVICE", "GATEWAY_ROLES"]
