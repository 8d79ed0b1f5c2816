"""The policy engine's answers for the ALGs and the node (a part of
:class:`gateway.policy.Engine`, a base class): zones and routes, MIP and
DIP addresses, and the addresses the active node owns and announces."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Mapping

from gateway.nat import pool_address


class EngineAddresses:
    """What an :class:`gateway.policy.Engine` tells about addresses; reads
    the engine's ``config``, ``routing``, ``mips``, ``dips`` and its own
    interface addresses."""

    def zone_of(self, ifname: str) -> str | None:
        return self.routing.zone_of(ifname)

    def route(self, dst: IPv4Address, *, ingress: str | None = None) -> tuple[str, str | None] | None:
        """``(egress interface, zone)`` for ``dst`` (None: no route)."""
        return self.routing.egress(dst, ingress=ingress)

    def mip_host(self, public: IPv4Address) -> IPv4Address | None:
        """The internal host a MIP address maps to (None: not a MIP)."""
        b = self.mips.by_public(public)
        return b.to_host(public) if b is not None else None

    def is_mip_address(self, addr: str) -> bool:
        """Whether the address text ``addr`` is a MIP's public address (the
        SIP ALG's ``dedicated`` test; text that is no address: False)."""
        try:
            public = IPv4Address(addr)
        except ValueError:
            return False
        return self.mips.by_public(public) is not None

    def mip_for(self, host: IPv4Address, egress: str | None = None) -> IPv4Address | None:
        """The MIP address of ``host`` (when leaving by ``egress``, if given)."""
        for b in self.mips.by_host(host):
            if egress is None or b.interface in self.routing.reaches(egress):
                return b.to_public(host)
        return None

    def public_address_for(self, private: IPv4Address, egress: str) -> IPv4Address | None:
        """What a private host appears as when leaving by ``egress`` without a
        DIP pool: its MIP there, else the interface's address (None: neither)."""
        mip = self.mip_for(private, egress)
        if mip is not None:
            return mip
        addr = self.routing.interface_ip(egress)
        return addr.ip if addr is not None else None

    def dip_address_for(self, pool_id: int, host: IPv4Address,
                        session: tuple[int, ...] = ()) -> IPv4Address | None:
        """The address of pool ``pool_id`` that ``host`` leaves with."""
        b = self.dips.pools.get(pool_id)
        if b is None:
            return None
        return pool_address(b.pool, host, sticky=self.config.dip_sticky, session=session)

    def is_incoming_dip(self, ip: IPv4Address) -> bool:
        """True for an address that accepts incoming calls by DIP."""
        return self.dips.incoming_owner(ip) is not None

    def is_local(self, ip: IPv4Address) -> bool:
        """True for the gateway's own addresses: interface IPs, MIPs, DIP pools."""
        return (int(ip) in self._iface_by_ip or self.mips.by_public(ip) is not None
                or self.dips.pool_owning(ip) is not None)

    def owned_addresses_by_interface(self) -> Mapping[str, tuple[IPv4Address, ...]]:
        """Addresses to take over and announce, per interface: interface IPs,
        MIPs and DIP pool addresses. A loopback's addresses are announced on
        every member of its group (the loopback itself has no link)."""
        out: dict[str, list[IPv4Address]] = {}

        def add(ifname: str, ip: IPv4Address) -> None:
            iface = self.routing.interface(ifname)
            targets = (self.routing.members(ifname)
                       if iface is not None and iface.kind == "loopback" else (ifname,))
            for t in targets:
                lst = out.setdefault(t, [])
                if ip not in lst:
                    lst.append(ip)

        for iface in self.config.interfaces.values():
            if iface.ip is not None:
                add(iface.name, iface.ip.ip)
        for b in self.mips.bindings:
            for ip in (b.mip.public if b.mip.public.num_addresses <= 4096 else (b.mip.ip,)):
                add(b.interface, ip)
        for b in self.dips.pools.values():
            if b.size <= 4096:
                for n in range(int(b.pool.first), int(b.pool.last) + 1):
                    add(b.interface, IPv4Address(n))
        return {k: tuple(v) for k, v in out.items()}

    def owned_addresses(self) -> tuple[IPv4Address, ...]:
        """Every address the active node owns (sorted, unique)."""
        seen: set[IPv4Address] = set()
        for iface in self.config.interfaces.values():
            if iface.ip is not None:
                seen.add(iface.ip.ip)
        for addrs in self.owned_addresses_by_interface().values():
            seen.update(addrs)
        return tuple(sorted(seen))
