"""What a configuration file has said so far, while it is read: the
interfaces, zones, addresses, policies and settings of the lines applied, the
names the failed lines declared (so that they cause no cascade of
"undefined"), and the references between lines, checked once the whole file
is read (the order of the lines does not matter; manual "CLI Conventions")."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from gateway.config.lexer import Token
from gateway.config.model import (
    Address, DipPool, FlowSettings, MgcpSettings, Mip, NsrpSettings, Policy, Route, SipSettings,
    Source, TrafficShaping, Unenforced,
)


@dataclass(slots=True)
class _Ref:
    """A reference from one line to an object defined by another line."""

    line: int
    token: Token
    kind: str          # zone, interface, address, mip, dip, dip-iface, vpn, ike, loopback
    value: str
    zone: str = ""     # for addresses: the zone it must be in
    role: str = ""     # words for the message, e.g. "source address"


@dataclass(slots=True)
class _IfaceState:
    name: str
    zone: str | None = None
    zone_at: tuple[int, Token] | None = None
    ip: IPv4Interface | None = None
    ip_at: tuple[int, Token] | None = None
    unnumbered: str | None = None
    mode: str | None = None
    mode_at: tuple[int, Token] | None = None
    mips: dict[IPv4Address, tuple[Mip, int, Token]] = field(default_factory=dict)
    dips: dict[int, tuple[DipPool, int, Token]] = field(default_factory=dict)
    dip_interface_incoming: bool = False
    loopback_group: str | None = None
    manage: list[str] = field(default_factory=list)
    bandwidth_egress: int | None = None
    bandwidth_ingress: int | None = None
    bandwidth_at: tuple[int, Token] | None = None
    bandwidth_in_at: tuple[int, Token] | None = None


class _PolicyIds:
    """The policy ids declared so far. A policy without an id is numbered
    after the highest one, so that is asked once per such line: it comes
    from a heap pruned lazily of unset ids (O(log n) amortised), not from a
    walk of every id (quadratic in the policies of a file)."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._low: list[int] = []
        self._high: list[int] = []          # negated ids

    def __contains__(self, pid: int) -> bool:
        return pid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, pid: int) -> None:
        if pid not in self._ids:
            self._ids.add(pid)
            heapq.heappush(self._low, pid)
            heapq.heappush(self._high, -pid)

    def discard(self, pid: int) -> None:
        self._ids.discard(pid)

    def lowest(self) -> int:
        while self._low and self._low[0] not in self._ids:
            heapq.heappop(self._low)
        return self._low[0] if self._low else 0

    def highest(self) -> int:
        while self._high and -self._high[0] not in self._ids:
            heapq.heappop(self._high)
        return -self._high[0] if self._high else 0

    def describe(self, whole_up_to: int = 10) -> str:
        """The ids for a hint: all of a short set, the count and the range
        of a long one (a hint per line must not cost the whole set)."""
        if not self._ids:
            return "none"
        if len(self._ids) <= whole_up_to:
            return ", ".join(str(i) for i in sorted(self._ids))
        return f"{len(self._ids)}, with ids from {self.lowest()} to {self.highest()}"


@dataclass(slots=True)
class _PolicyState:
    policy: Policy
    line: int
    dip_tok: Token | None = None
    gbw_tok: Token | None = None


@dataclass(slots=True)
class _Vpn:
    gateway: str | None = None
    gateway_at: tuple[int, Token] | None = None


class _State:
    """What the file has said so far (mutable while parsing)."""

    def __init__(self) -> None:
        self.custom_zones: dict[str, Source] = {}
        self.declared_zones: set[str] = set()
        self.zone_block: dict[str, bool] = {}
        self.udp_flood: dict[str, dict[IPv4Address, int]] = {}
        self.limit_session: dict[str, int | None] = {}
        self.interfaces: dict[str, _IfaceState] = {}
        self.declared_interfaces: set[str] = set()
        self.addresses: dict[tuple[str, str], tuple[Address, int, Token]] = {}
        self.declared_addresses: set[tuple[str, str]] = set()
        self.declared_mips: set[str] = set()
        self.declared_dips: set[int] = set()
        # By id, in the order they were set (a dict: an unset is one deletion).
        self.policies: dict[int, _PolicyState] = {}
        self.declared_policy_ids = _PolicyIds()
        self.routes: list[tuple[Route, int, Token]] = []
        self.sip = SipSettings()
        self.mgcp = MgcpSettings()
        self.nsrp = NsrpSettings()
        self.flow = FlowSettings()
        self.traffic_shaping = TrafficShaping()
        self.dip_sticky = False
        self.unenforced: list[Unenforced] = []
        self.declared_ike: set[str] = set()
        # IKE peers as far as their lines were read (also of lines with errors).
        self.ike_peers: dict[str, tuple[IPv4Address, int, Token]] = {}
        # Interfaces that have a zone line, even one with an error.
        self.zone_lines: set[str] = set()
        self.vpns: dict[str, _Vpn] = {}
        self.declared_vpns: set[str] = set()
        self.refs: list[_Ref] = []

    def iface(self, name: str) -> _IfaceState:
        if name not in self.interfaces:
            self.interfaces[name] = _IfaceState(name)
        return self.interfaces[name]
