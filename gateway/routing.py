"""Zones and routes: where a packet comes from and where it leaves.

A packet's source zone is the zone of its ingress interface; its destination
zone is the zone of the egress interface found by a longest-prefix match over
the connected subnets of the interfaces and the configured routes
(``set vrouter VR route ...`` and ``set route ...``) of the virtual router the
ingress zone is bound to. At equal prefix length a connected subnet wins over a
static route (it is the more trusted source), and among static routes the one
configured first wins.

Loopback interfaces carry no traffic themselves: their subnet is not a
forwarding entry. What they hold (MIPs) is reachable through every interface of
their loopback group (manual ch. 2 "Example: Untrust Intrazone": "Creating a
loopback interface enables you to use a single MIP ... add ethernet3 and
ethernet4 to a loopback group"). An ``ip unnumbered`` tunnel borrows the address
of the interface it names (manual ch. 2 "Example: Full-Mesh VPN for SIP").

Everything is precomputed from the frozen :class:`~gateway.config.model.Config`
so that a lookup is a handful of dict probes."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from gateway.config.model import DEFAULT_BLOCKING, DEFAULT_VROUTER, Config, Interface, Zone


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One forwarding entry: a prefix, the interface it leaves by, and the next
    hop (None for a connected subnet or a route without a gateway)."""

    prefix: IPv4Network
    interface: str
    gateway: IPv4Address | None = None
    connected: bool = False


def _zone_obj(config: Config, name: str) -> Zone:
    zone = config.zones.get(name)
    if zone is not None:
        return zone
    # A zone named by an interface but absent from the zone table still has
    # the manual's default blocking (on in Untrust only).
    return Zone(name, block=DEFAULT_BLOCKING.get(name, False))


def interface_address(config: Config, name: str) -> IPv4Interface | None:
    """The address an interface uses as a source: its own ``ip``, or for
    ``ip unnumbered interface X`` the address of X (followed a few levels, a
    loop gives None)."""
    seen: set[str] = set()
    iface = config.interfaces.get(name)
    while iface is not None and iface.name not in seen:
        if iface.ip is not None:
            return iface.ip
        if iface.unnumbered is None:
            return None
        seen.add(iface.name)
        iface = config.interfaces.get(iface.unnumbered)
    return None


class Routing:
    """Zone and egress lookups over one configuration."""

    __slots__ = ("config", "_zone_of_iface", "_zones", "_tables", "_reach", "_members",
                 "_iface_ip")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._zone_of_iface: dict[str, str] = {
            i.name: i.zone for i in config.interfaces.values() if i.zone is not None}
        self._zones: dict[str, Zone] = {
            name: _zone_obj(config, name)
            for name in set(config.zones) | set(self._zone_of_iface.values())}
        self._iface_ip: dict[str, IPv4Interface] = {}
        for name in config.interfaces:
            addr = interface_address(config, name)
            if addr is not None:
                self._iface_ip[name] = addr
        # Loopback groups: a member interface reaches what its loopback holds.
        self._members: dict[str, tuple[str, ...]] = {}
        for iface in config.interfaces.values():
            if iface.loopback_group:
                self._members.setdefault(iface.loopback_group, ())
                self._members[iface.loopback_group] += (iface.name,)
        self._reach: dict[str, frozenset[str]] = {}
        for iface in config.interfaces.values():
            names = {iface.name}
            if iface.loopback_group:
                names.add(iface.loopback_group)
            self._reach[iface.name] = frozenset(names)
        self._tables = self._build_tables(config)

    # -- tables -----------------------------------------------------------------

    def _build_tables(self, config: Config) -> dict[str, list[tuple[int, int, dict[int, RouteEntry]]]]:
        # vrouter -> prefix length -> network (as int) -> entry
        by_vr: dict[str, dict[int, dict[int, RouteEntry]]] = {}

        def add(vr: str, entry: RouteEntry) -> None:
            plen = entry.prefix.prefixlen
            slot = by_vr.setdefault(vr, {}).setdefault(plen, {})
            key = int(entry.prefix.network_address)
            old = slot.get(key)
            if old is None or (entry.connected and not old.connected):
                slot[key] = entry

        for iface in config.interfaces.values():
            if iface.zone is None or iface.ip is None or iface.kind == "loopback":
                continue
            vr = self._zones[iface.zone].vrouter
            add(vr, RouteEntry(iface.ip.network, iface.name, None, True))
        for route in config.routes:
            add(route.vrouter, RouteEntry(route.prefix, route.interface, route.gateway, False))
        tables = {}
        for vr, by_len in by_vr.items():
            tables[vr] = [(plen, (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF, slot)
                          for plen, slot in sorted(by_len.items(), reverse=True)]
        return tables

    # -- zones ------------------------------------------------------------------

    def zone_of(self, ifname: str) -> str | None:
        """The zone an interface is bound to (None: unknown or unbound)."""
        return self._zone_of_iface.get(ifname)

    def zone(self, name: str) -> Zone:
        z = self._zones.get(name)
        return z if z is not None else Zone(name, block=DEFAULT_BLOCKING.get(name, False))

    def vrouter_of(self, ifname: str) -> str:
        zone = self._zone_of_iface.get(ifname)
        return self.zone(zone).vrouter if zone is not None else DEFAULT_VROUTER

    def interface(self, name: str) -> Interface | None:
        return self.config.interfaces.get(name)

    def interface_ip(self, name: str) -> IPv4Interface | None:
        """The source address of an interface (unnumbered resolved)."""
        return self._iface_ip.get(name)

    # -- loopback groups ---------------------------------------------------------

    def reaches(self, ifname: str) -> frozenset[str]:
        """Interfaces whose MIPs and DIPs are reachable through ``ifname``:
        itself and the loopback interface of its group."""
        return self._reach.get(ifname, frozenset((ifname,)))

    def members(self, loopback: str) -> tuple[str, ...]:
        """The interfaces in the loopback group of ``loopback``."""
        return self._members.get(loopback, ())

    # -- routes -----------------------------------------------------------------

    def lookup(self, dst: IPv4Address, vrouter: str = DEFAULT_VROUTER) -> RouteEntry | None:
        """Longest-prefix match of ``dst`` in ``vrouter``; None: no route."""
        table = self._tables.get(vrouter)
        if not table:
            return None
        d = int(dst)
        for _plen, mask, slot in table:
            entry = slot.get(d & mask)
            if entry is not None:
                return entry
        return None

    def egress(self, dst: IPv4Address, *, ingress: str | None = None) -> tuple[str, str | None] | None:
        """``(egress interface, its zone)`` for ``dst`` in the virtual router of
        the ingress zone (trust-vr without an ingress); None: no route."""
        vr = self.vrouter_of(ingress) if ingress is not None else DEFAULT_VROUTER
        entry = self.lookup(dst, vr)
        if entry is None:
            return None
        return entry.interface, self._zone_of_iface.get(entry.interface)
