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

The plan's parts are in ``plan_model``, its JSON form in ``plan_json`` and the
call it suggests in ``plan_call``; this module builds the plan.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from gateway.config.model import Config
from ops.lab.plan_call import CallPlan, suggest_call
from ops.lab.plan_json import plan_from_data, to_data
from ops.lab.plan_model import (
    HA_DEVICE, HA_NETWORK, GatewayNs, GatewayRoute, HostNs, OwnedAddress, Plan, PlanError, Port, RouterNs,
    Segment,
)

GATEWAY_ROLES = ("gw-a", "gw-b")
# Far segments behind a route's next hop: link-local too; the far hosts keep
# their configured address as a /32 and reach the router on-link.
FAR_NETWORK_BASE = 200
# A DIP pool or subnet MIP larger than this is cut with a note: the lab only
# needs enough addresses to place calls, not a /16 of ARP entries.
MAX_ADDRESSES_PER_ITEM = 256
LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,5}$")
LINUX_IFNAMSIZ = 15


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


__all__ = ["Plan", "Segment", "HostNs", "RouterNs", "GatewayNs", "Port", "OwnedAddress",
           "GatewayRoute", "CallPlan", "PlanError", "build_plan", "suggest_call", "device_name",
           "to_data", "plan_from_data", "HA_DEVICE", "GATEWAY_ROLES"]
