"""Address translation tables: MIP, DIP pools and incoming DIP.

* MIP (``mip IP host IP [netmask M]``): static one-to-one NAT. Traffic to the
  mapped address goes to the host; traffic from the host leaving by the MIP's
  interface leaves as the mapped address (manual ch. 1 "Example: Outgoing Calls
  with NAT": "you must map a public IP address to each device that needs to
  receive incoming traffic"). A MIP on a loopback interface is reachable
  through, and used for traffic leaving by, every member of its loopback group
  (ch. 2 "Example: Untrust Intrazone").
* DIP pool (``dip ID IP1 IP2 [incoming]``): source addresses for ``nat src dip
  ID``. With ``set dip sticky`` one internal host always gets the same pool
  address (ch. 2 "Example: Incoming Call (DIP Pool)"); here the choice is a
  stable hash of the host over the pool, a pure function, so the live node, a
  replay and the standby all pick the same address.
* Incoming DIP (``incoming`` on a pool, or ``dip interface-ip incoming``): the
  pool or interface addresses are in the global zone and accept incoming calls;
  which internal host a call is for is known only to the SIP/H.323 ALG from its
  registration table (ch. 2 "Incoming SIP Call Support Using the SIP
  Registrar")."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address

from gateway.config.model import Config, DipPool, Mip

_ALL = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Translation:
    """What NAT does to a flow. None means the field is left unchanged;
    ``kind`` names the rules used, joined by ``+`` (e.g. ``mip``,
    ``reverse-mip``, ``incoming-dip``, ``nat-src-interface``, ``nat-src-dip``,
    ``interface-nat``; ``none`` when nothing is translated)."""

    src: IPv4Address | None = None
    sport: int | None = None
    dst: IPv4Address | None = None
    dport: int | None = None
    kind: str = "none"


NO_TRANSLATION = Translation()


@dataclass(frozen=True, slots=True)
class MipBinding:
    """A MIP and the interface it is configured on."""

    mip: Mip
    interface: str

    def to_host(self, public: IPv4Address) -> IPv4Address:
        mask = int(self.mip.netmask)
        return IPv4Address((int(self.mip.host) & mask) | (int(public) & ~mask & _ALL))

    def to_public(self, host: IPv4Address) -> IPv4Address:
        mask = int(self.mip.netmask)
        return IPv4Address((int(self.mip.ip) & mask) | (int(host) & ~mask & _ALL))


def _ranges(bindings, key):
    """Index of network ranges: prefix length -> network int -> binding."""
    out: dict[int, dict[int, MipBinding]] = {}
    for b in bindings:
        net = key(b.mip)
        out.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), b)
    return [(plen, (_ALL << (32 - plen)) & _ALL, slot)
            for plen, slot in sorted(out.items(), reverse=True)]


class MipTable:
    """MIPs by public address and by host address."""

    __slots__ = ("bindings", "_public", "_private", "_by_ip")

    def __init__(self, config: Config) -> None:
        self.bindings: tuple[MipBinding, ...] = tuple(
            MipBinding(m, iface.name)
            for iface in config.interfaces.values() for m in iface.mips)
        self._public = _ranges(self.bindings, lambda m: m.public)
        # The same host can be mapped on several interfaces (one MIP each).
        self._private: dict[int, dict[int, list[MipBinding]]] = {}
        for b in self.bindings:
            net = b.mip.private
            self._private.setdefault(net.prefixlen, {}).setdefault(
                int(net.network_address), []).append(b)
        self._by_ip = {b.mip.ip: b for b in self.bindings}

    def by_public(self, ip: IPv4Address) -> MipBinding | None:
        """The MIP whose mapped range holds ``ip``."""
        d = int(ip)
        for _plen, mask, slot in self._public:
            b = slot.get(d & mask)
            if b is not None:
                return b
        return None

    def by_ip(self, ip: IPv4Address) -> MipBinding | None:
        """The MIP configured with exactly this mapped address (``mip(IP)``)."""
        return self._by_ip.get(ip)

    def by_host(self, host: IPv4Address) -> list[MipBinding]:
        """Every MIP whose host range holds ``host``."""
        d = int(host)
        out: list[MipBinding] = []
        for plen, slot in self._private.items():
            mask = (_ALL << (32 - plen)) & _ALL
            found = slot.get(d & mask)
            if found:
                out.extend(found)
        return out

    def public_addresses(self) -> list[IPv4Address]:
        # A subnet MIP owns every address of its range; a huge range is
        # announced by its first address only (ARP for a /16 is not sensible).
        return [a for b in self.bindings for a in
                (b.mip.public if b.mip.public.num_addresses <= 4096 else [b.mip.ip])]


@dataclass(frozen=True, slots=True)
class DipBinding:
    pool: DipPool
    interface: str

    @property
    def size(self) -> int:
        return max(0, int(self.pool.last) - int(self.pool.first) + 1)

    def contains(self, ip: IPv4Address) -> bool:
        return self.pool.first <= ip <= self.pool.last


def pool_address(pool: DipPool, host: IPv4Address, *, sticky: bool,
                 session: tuple[int, ...] = ()) -> IPv4Address:
    """The pool address a host's traffic leaves with.

    Sticky: a function of the host alone. Otherwise the session (e.g. source
    port and destination) is mixed in, spreading one host's sessions over the
    pool while each session keeps one address."""
    size = int(pool.last) - int(pool.first) + 1
    if size <= 1:
        return pool.first
    key = int(host).to_bytes(4, "big")
    if not sticky:
        key += b"".join((v & _ALL).to_bytes(4, "big") for v in session)
    return IPv4Address(int(pool.first) + zlib.crc32(key) % size)


class DipTable:
    """DIP pools by id, and the addresses that accept incoming calls."""

    __slots__ = ("pools", "_incoming_ranges", "_incoming_iface", "_iface_ip_dip")

    def __init__(self, config: Config, interface_ip) -> None:
        self.pools: dict[int, DipBinding] = {}
        for iface in config.interfaces.values():
            for pool in iface.dips:
                self.pools.setdefault(pool.id, DipBinding(pool, iface.name))
        self._incoming_ranges = tuple(
            (int(b.pool.first), int(b.pool.last), b)
            for b in self.pools.values() if b.pool.incoming)
        # Interface DIP: the interface's own address, named dip(IFACE).
        self._iface_ip_dip: dict[str, IPv4Address] = {}
        self._incoming_iface: dict[IPv4Address, str] = {}
        for iface in config.interfaces.values():
            addr = interface_ip(iface.name)
            if addr is None:
                continue
            self._iface_ip_dip[iface.name] = addr.ip
            if iface.dip_interface_incoming:
                self._incoming_iface[addr.ip] = iface.name

    def incoming_owner(self, ip: IPv4Address) -> tuple[str, int | None] | None:
        """``(interface, pool id)`` when ``ip`` is an incoming DIP address
        (pool id None for interface DIP); else None."""
        name = self._incoming_iface.get(ip)
        if name is not None:
            return name, None
        d = int(ip)
        for lo, hi, b in self._incoming_ranges:
            if lo <= d <= hi:
                return b.interface, b.pool.id
        return None

    def pool_owning(self, ip: IPv4Address) -> DipBinding | None:
        for b in self.pools.values():
            if b.contains(ip):
                return b
        return None

    def interface_dip_address(self, ifname: str) -> IPv4Address | None:
        return self._iface_ip_dip.get(ifname)
