"""The policy and NAT engine: one pure decision per new flow.

Order of a decision (manual ch. 1 "Example: Outgoing/Incoming Calls with NAT",
ch. 2 "SIP with Network Address Translation" and its examples):

1. Source zone: the zone of the ingress interface.
2. Destination NAT: a MIP maps its public address to the host (only through
   the MIP's interface, or any member of its loopback group); an incoming DIP
   address (pool with ``incoming``, or ``dip interface-ip incoming``) maps to
   the internal host the ALG found in its registration table, passed in as
   ``incoming_dip``. MIP and incoming DIP addresses are in the global zone.
3. Route lookup of the translated destination: egress interface, to-zone.
4. Policy lookup: the policies of the (from, to) pair in order, then the global
   ones (``from Z to global`` for destinations in the global zone, then
   ``from global to global``); first match wins. Addresses match the
   destination as it arrived (``mip(IP)`` and ``dip(...)`` name public
   addresses). With no match, traffic inside one zone is permitted unless
   the zone blocks intra-zone traffic (on by default in Untrust: ch. 2
   "Example: Untrust Intrazone"; off in Trust: "Example: Trust Intrazone").
5. Source NAT: reverse MIP first (the host leaves as its MIP), then the
   policy's ``nat src`` (egress interface address, or ``dip ID``), then the
   interface's NAT mode (ingress in ``nat`` mode, egress in another zone, not
   in ``nat`` mode and not a tunnel; not for destination-translated flows). Signalling keeps its source port; media ports are
   allocated by the ALGs (:mod:`gateway.ports`).

Every deny carries a one-line reason; :meth:`Engine.decide` never raises."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address

from gateway.config.model import SERVICES, AddressRef, Config, Policy
from gateway.nat import NO_TRANSLATION, DipTable, MipTable, Translation, pool_address
from gateway.policy_addresses import EngineAddresses
from gateway.policy_rules import _in, _port_ok, _Ports, _Ranges, _Rule
from gateway.routing import Routing

_ALL = 0xFFFFFFFF
GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Flow:
    """The first packet of a flow, as it arrived."""

    ingress: str
    src: IPv4Address
    dst: IPv4Address
    proto: str                      # "udp", "tcp", "icmp", ...
    sport: int = 0
    dport: int = 0


class Verdict(StrEnum):
    """A policy's answer to a flow (manual "Policies": permit or deny). A
    ``str`` equal to its value, as the configuration spells it."""
    PERMIT = "permit"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Verdict
    reason: str
    policy: Policy | None
    from_zone: str | None
    to_zone: str | None
    egress: str | None
    nat: Translation = NO_TRANSLATION

    @property
    def permitted(self) -> bool:
        return self.action == Verdict.PERMIT


class Engine(EngineAddresses):
    """Decides flows for one frozen configuration (build a new Engine when the
    configuration is replaced). Lookup structures are built here once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.routing = Routing(config)
        self.mips = MipTable(config)
        self.dips = DipTable(config, self.routing.interface_ip)
        self.warnings: list[str] = []
        # Addresses of the gateway's own interfaces (loopbacks included).
        self._iface_by_ip: dict[int, str] = {}
        for iface in config.interfaces.values():
            if iface.ip is not None:
                self._iface_by_ip.setdefault(int(iface.ip.ip), iface.name)
        self._rules: dict[tuple[str, str], list[_Rule]] = {}
        self._global_rules: list[_Rule] = []
        for pol in config.policies:
            rule = self._compile(pol)
            if pol.to_zone == GLOBAL:
                self._global_rules.append(rule)
            else:
                self._rules.setdefault((pol.from_zone, pol.to_zone), []).append(rule)
        self._chain_cache: dict[tuple[str, str], tuple[tuple[_Rule, ...], tuple[_Rule, ...]]] = {}

    # -- compiling policies -------------------------------------------------------

    def _compile(self, pol: Policy) -> _Rule:
        src = self._compile_ref(pol.src, pol.from_zone, pol)
        dst = self._compile_ref(pol.dst, pol.to_zone, pol)
        service = SERVICES.get(pol.service) or SERVICES.get(pol.service.lower())
        if service is None:
            self.warnings.append(f"policy {pol.id}: unknown service {pol.service!r}; never matches")
            ports: _Ports = ()
        elif service.name == "any":
            ports = None
        else:
            ports = service.ports
        return _Rule(pol, src, dst, ports, service.name if service else "",
                     global_dst_only=pol.to_zone == GLOBAL and pol.from_zone != GLOBAL)

    def _compile_ref(self, ref: AddressRef, zone: str, pol: Policy) -> _Ranges:
        kind, value = ref.kind, ref.value.strip()
        if kind == "any" or (kind == "name" and value.lower() == "any"):
            return None
        if kind == "name":
            addr = self.config.address(zone, value) or self.config.address(GLOBAL, value)
            if addr is None:
                self.warnings.append(f"policy {pol.id}: no address {value!r} in zone {zone}; never matches")
                return ()
            net = addr.network
            return ((int(net.network_address), int(net.broadcast_address)),)
        if kind == "mip":
            try:
                binding = self.mips.by_ip(IPv4Address(value.strip("() ")))
            except ValueError:
                binding = None
            if binding is None:
                self.warnings.append(f"policy {pol.id}: no MIP {value}; never matches")
                return ()
            net = binding.mip.public
            return ((int(net.network_address), int(net.broadcast_address)),)
        if kind == "dip":
            value = value.strip("() ")
            if value.isdigit():
                b = self.dips.pools.get(int(value))
                if b is None:
                    self.warnings.append(f"policy {pol.id}: no DIP pool {value}; never matches")
                    return ()
                return ((int(b.pool.first), int(b.pool.last)),)
            ip = self.dips.interface_dip_address(value)
            if ip is None:
                self.warnings.append(f"policy {pol.id}: no interface DIP on {value}; never matches")
                return ()
            return ((int(ip), int(ip)),)
        self.warnings.append(f"policy {pol.id}: unknown address kind {kind!r}; never matches")
        return ()

    def _chain(self, from_zone: str, to_zone: str) -> tuple[tuple[_Rule, ...], tuple[_Rule, ...]]:
        """(rules of the pair, global rules that may apply), cached per pair."""
        chain = self._chain_cache.get((from_zone, to_zone))
        if chain is None:
            pair = tuple(self._rules.get((from_zone, to_zone), ()))
            glob = tuple(r for r in self._global_rules
                         if r.policy.from_zone in (from_zone, GLOBAL))
            chain = self._chain_cache[(from_zone, to_zone)] = (pair, glob)
        return chain

    # -- the decision -------------------------------------------------------------

    def decide(self, flow: Flow, *,
               incoming_dip: tuple[IPv4Address, int] | None = None,
               service: str | None = None) -> Decision:
        """Decide a new flow.

        ``incoming_dip``: the internal ``(host, port)`` bound to the flow's
        destination in the ALG's incoming-DIP table, for a flow to an incoming
        DIP address. ``service``: the service the flow is known to carry (an
        ALG that found it in its tables says so); a policy for that service
        then matches whatever the ports: a call to a registered contact comes
        to the port the REGISTER left with, not 5060 (manual ch. 2, "Example:
        Incoming Call (Interface DIP)": ``Contact <sip: 6.6.6.1:5555>``)."""
        routing = self.routing
        from_zone = routing.zone_of(flow.ingress)
        if from_zone is None:
            why = ("unknown ingress interface" if routing.interface(flow.ingress) is None
                   else "ingress interface bound to no zone")
            return Decision(Verdict.DENY, f"{why} {flow.ingress}", None, None, None, None)

        # 1. destination NAT.
        dst = flow.dst
        new_dst: IPv4Address | None = None
        new_dport: int | None = None
        dnat_kind = ""
        vrouter = routing.vrouter_of(flow.ingress)
        mip = self.mips.by_public(dst)
        if mip is not None:
            if mip.interface not in routing.reaches(flow.ingress):
                return self._deny(f"{dst} is a MIP on {mip.interface}, not reachable from "
                                  f"{flow.ingress}", from_zone)
            new_dst = mip.to_host(dst)
            vrouter = mip.mip.vrouter
            dnat_kind = "mip"
        else:
            owner = self.dips.incoming_owner(dst)
            if owner is not None:
                where = f"DIP pool {owner[1]}" if owner[1] is not None else f"interface DIP {owner[0]}"
                if owner[0] not in routing.reaches(flow.ingress):
                    return self._deny(f"{dst} is an incoming {where}, not reachable from "
                                      f"{flow.ingress}", from_zone)
                if incoming_dip is None:
                    return self._deny(f"no incoming-DIP binding for {dst}:{flow.dport} "
                                      f"({where})", from_zone)
                new_dst, new_dport = incoming_dip
                dnat_kind = "incoming-dip"
            else:
                own = self._iface_by_ip.get(int(dst))
                if own is not None:
                    return self._deny(f"{dst} is the address of {own}: traffic to the "
                                      f"gateway itself is not forwarded", from_zone)
                pool = self.dips.pool_owning(dst)
                if pool is not None:
                    return self._deny(f"{dst} is in DIP pool {pool.pool.id} without "
                                      f"incoming: no new flows to it", from_zone)
        target = new_dst if new_dst is not None else dst

        # 2. route lookup of the translated destination.
        entry = routing.lookup(target, vrouter)
        if entry is None:
            return self._deny(f"no route to {target} in {vrouter}", from_zone)
        egress = entry.interface
        to_zone = routing.zone_of(egress)
        if to_zone is None:
            return Decision(Verdict.DENY, f"egress interface {egress} for {target} is bound to no zone",
                            None, from_zone, None, egress)

        # 3. policy lookup: addresses match the destination as it arrived.
        s, d = int(flow.src), int(dst)
        proto, dport = flow.proto, flow.dport
        policy: Policy | None = None
        pair, glob = self._chain(from_zone, to_zone)
        for rule in pair:
            if (_in(rule.src, s) and _in(rule.dst, d)
                    and (rule.service == service or _port_ok(rule.ports, proto, dport))):
                policy = rule.policy
                break
        else:
            for rule in glob:
                if rule.global_dst_only and not dnat_kind:
                    continue
                if (_in(rule.src, s) and _in(rule.dst, d)
                        and (rule.service == service or _port_ok(rule.ports, proto, dport))):
                    policy = rule.policy
                    break
        pair_name = f"{from_zone}->{to_zone}"
        if policy is not None:
            if policy.action != "permit":
                return Decision(Verdict.DENY, f"denied by policy {policy.id} ({pair_name})",
                                policy, from_zone, to_zone, egress)
            reason = f"permitted by policy {policy.id} ({pair_name})"
        elif from_zone == to_zone:
            if routing.zone(from_zone).block:
                return Decision(Verdict.DENY, f"intra-zone traffic blocked in {from_zone} and no "
                                f"policy matches", None, from_zone, to_zone, egress)
            reason = f"intra-zone traffic in {from_zone} (blocking off)"
        else:
            return Decision(Verdict.DENY, f"no policy matches {pair_name} for "
                            f"{flow.src}->{dst} {proto}/{dport}", None, from_zone, to_zone, egress)

        # 4. source NAT.
        new_src: IPv4Address | None = None
        snat_kind = ""
        for b in self.mips.by_host(flow.src):
            if b.interface in routing.reaches(egress):
                new_src = b.to_public(flow.src)
                snat_kind = "reverse-mip"
                break
        if new_src is None and policy is not None and policy.nat_src:
            if policy.nat_dip is not None:
                b = self.dips.pools.get(policy.nat_dip)
                if b is None:
                    return Decision(Verdict.DENY, f"policy {policy.id}: nat src dip {policy.nat_dip}: "
                                    f"no such DIP pool", policy, from_zone, to_zone, egress)
                new_src = pool_address(b.pool, flow.src, sticky=self.config.dip_sticky,
                                       session=(flow.sport, d, dport))
                snat_kind = "nat-src-dip"
            else:
                addr = routing.interface_ip(egress)
                if addr is None:
                    return Decision(Verdict.DENY, f"policy {policy.id}: nat src: egress {egress} has "
                                    f"no address", policy, from_zone, to_zone, egress)
                new_src = addr.ip
                snat_kind = "nat-src-interface"
        if new_src is None and not dnat_kind and to_zone != from_zone:
            ing = routing.interface(flow.ingress)
            out = routing.interface(egress)
            # Not into a tunnel: a route-based VPN carries the private subnets
            # each site routes to the others (ch. 2 "Full-Mesh VPN for SIP").
            if (ing is not None and ing.mode == "nat" and out is not None
                    and out.mode != "nat" and out.kind != "tunnel"):
                addr = routing.interface_ip(egress)
                if addr is not None:
                    new_src = addr.ip
                    snat_kind = "interface-nat"

        kind = "+".join(k for k in (dnat_kind, snat_kind) if k) or "none"
        nat = NO_TRANSLATION if kind == "none" else Translation(
            src=new_src, sport=None, dst=new_dst, dport=new_dport, kind=kind)
        return Decision(Verdict.PERMIT, reason, policy, from_zone, to_zone, egress, nat)

    @staticmethod
    def _deny(reason: str, from_zone: str) -> Decision:
        return Decision(Verdict.DENY, reason, None, from_zone, None, None)
