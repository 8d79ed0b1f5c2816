"""What is judged once the whole configuration file is read, so that the order
of its lines does not matter (manual "CLI Conventions"): references between
lines (zones, interfaces, addresses, MIPs, DIP pools, VPNs), values across
lines (interface addresses, bandwidth guarantees), and the frozen
:class:`gateway.config.model.Config` built from a file without error."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType

from gateway.config.diagnostics import did_you_mean
from gateway.config.lexer import Token
from gateway.config.model import (
    Address, Config, DEFAULT_BLOCKING, DipPool, Interface, Mip, PREDEFINED_ZONES, UdpFloodScreen,
    Zone,
)
from gateway.config.parse_state import _IfaceState, _Ref
from gateway.config.parse_words import _quote


class _FileChecks:
    """The checks across lines and the frozen result; a part of :class:`gateway.config.parser._Parser`."""

    # == checks across lines =================================================
    def check_references(self) -> None:
        st = self.state
        zones = set(PREDEFINED_ZONES) | st.declared_zones
        mips: dict[str, tuple[str, Mip]] = {}
        for iface in st.interfaces.values():
            for ip, (mip, _, _) in iface.mips.items():
                mips[str(ip)] = (iface.name, mip)
        pools: dict[int, tuple[_IfaceState, DipPool]] = {}
        for iface in st.interfaces.values():
            for pid, (pool, _, _) in iface.dips.items():
                pools[pid] = (iface, pool)
        for ref in st.refs:
            tok = ref.token
            if ref.kind == "zone":
                if ref.value not in zones:
                    self._undefined(ref, "zone", sorted(zones),
                                    f"define it with 'set zone name {_quote(ref.value)}'")
            elif ref.kind == "interface":
                if ref.value not in st.declared_interfaces:
                    self._undefined(ref, "interface", sorted(st.declared_interfaces),
                                    f"configure it with 'set interface {ref.value} zone ZONE'")
            elif ref.kind == "ike":
                if ref.value not in st.declared_ike:
                    self._undefined(ref, "IKE gateway", sorted(st.declared_ike),
                                    "define it with 'set ike gateway NAME address ...'")
            elif ref.kind == "vpn":
                if ref.value not in st.declared_vpns:
                    self._undefined(ref, "VPN", sorted(st.declared_vpns),
                                    "define it with 'set vpn NAME gateway ...'")
            elif ref.kind == "address":
                self._check_address_ref(ref, zones)
            elif ref.kind == "mip":
                if ref.value not in st.declared_mips:
                    self._undefined(ref, "MIP", sorted(st.declared_mips),
                                    f"define it with 'set interface IF mip {ref.value} host A.B.C.D'")
            elif ref.kind == "dip":
                pid = int(ref.value)
                if pid not in st.declared_dips:
                    self._undefined(ref, "DIP pool", [str(p) for p in sorted(st.declared_dips)],
                                    f"define it with 'set interface IF dip {pid} FIRST LAST'")
                elif pid in pools:
                    iface, pool = pools[pid]
                    if ref.role == "nat":
                        if iface.zone is not None and ref.zone in zones and iface.zone != ref.zone:
                            self.diag(ref.line, tok.column, tok.raw,
                                      f"DIP pool {pid} is on {iface.name} in zone {iface.zone}, "
                                      f"not in the policy's to-zone {ref.zone}",
                                      "source NAT takes its addresses from a pool on the "
                                      "egress interface")
                    elif not pool.incoming:
                        self.diag(ref.line, tok.column, tok.raw,
                                  f"DIP pool {pid} does not accept incoming calls",
                                  f"add 'incoming': set interface {iface.name} dip {pid} "
                                  f"{pool.first} {pool.last} incoming")
            elif ref.kind == "dip-iface":
                if ref.value not in st.declared_interfaces:
                    self._undefined(ref, "interface", sorted(st.declared_interfaces), "")
                elif ref.value in st.interfaces and \
                        not st.interfaces[ref.value].dip_interface_incoming:
                    self.diag(ref.line, tok.column, tok.raw,
                              f"{ref.value} has no incoming interface DIP",
                              f"add 'set interface {ref.value} dip interface-ip incoming'")

    def _undefined(self, ref: _Ref, what: str, known: list[str], how: str) -> None:
        guess = did_you_mean(ref.value, known, fold_case=False) or \
            did_you_mean(ref.value, known)
        hint = f"did you mean '{guess}'?" if guess else how
        self.diag(ref.line, ref.token.column, ref.token.raw, f"undefined {what}", hint)

    def _check_address_ref(self, ref: _Ref, zones: set[str]) -> None:
        st = self.state
        if ref.zone not in zones:
            return
        if (ref.zone, ref.value) in st.declared_addresses:
            return
        elsewhere = sorted(z for z, n in st.declared_addresses if n == ref.value)
        tok = ref.token
        side = "from-zone" if ref.role == "source" else "to-zone"
        if elsewhere:
            self.diag(ref.line, tok.column, tok.raw,
                      f"the {ref.role} address is in zone {elsewhere[0]}, not in the policy's "
                      f"{side} {ref.zone}",
                      f"a policy's {ref.role} must be an address of its {side}; write the "
                      f"policy for zone {elsewhere[0]} or define the address in {ref.zone}")
            return
        in_zone = [n for z, n in st.declared_addresses if z == ref.zone]
        everywhere = [n for _, n in st.declared_addresses]
        guess = did_you_mean(ref.value, in_zone, fold_case=False) or \
            did_you_mean(ref.value, in_zone) or did_you_mean(ref.value, everywhere)
        hint = (f"did you mean '{guess}'?" if guess else
                f"define it with 'set address {ref.zone} {_quote(ref.value)} A.B.C.D/M', "
                "or use 'any'")
        self.diag(ref.line, tok.column, tok.raw, f"undefined {ref.role} address", hint)

    def check_values(self) -> None:
        """Checks of the values the file gives, across lines."""
        st = self.state
        iface_ips: dict[IPv4Address, str] = {}
        for iface in st.interfaces.values():
            if iface.ip is not None and iface.ip_at is not None:
                line, tok = iface.ip_at
                other = iface_ips.get(iface.ip.ip)
                if other is not None:
                    self.diag(line, tok.column, tok.raw,
                              f"{iface.ip.ip} is already the address of {other}",
                              "give each interface its own address")
                iface_ips.setdefault(iface.ip.ip, iface.name)
                if iface.zone is None and iface.name not in st.zone_lines:
                    self.diag(line, tok.column, tok.raw,
                              f"{iface.name} has an address but is bound to no zone",
                              f"bind it first: set interface {iface.name} zone ZONE")
            if iface.unnumbered is not None:
                src = st.interfaces.get(iface.unnumbered)
                if src is not None and src.ip is None and iface.unnumbered in st.declared_interfaces:
                    line, tok = iface.zone_at or (0, Token(iface.name, 1, iface.name))
                    if line:
                        self.diag(line, tok.column, tok.raw,
                                  f"{iface.name} borrows the address of {iface.unnumbered}, "
                                  "which has none", f"set interface {iface.unnumbered} ip A.B.C.D/M")
            if iface.mode == "nat" and iface.zone == "untrust" and iface.mode_at:
                line, tok = iface.mode_at
                self.diag(line, tok.column, tok.raw,
                          f"NAT mode on {iface.name} in the untrust zone has no effect",
                          "NAT mode translates traffic that enters a trust-side interface; "
                          "use 'route' on untrust interfaces", "warning")
        hosts: dict[IPv4Address, Address] = {}
        for address, _, _ in st.addresses.values():
            if address.is_host:
                hosts.setdefault(address.ip.ip, address)
        seen_mips: dict[IPv4Address, str] = {}
        pools = [(iface.name, pool) for iface in st.interfaces.values()
                 for pool, _, _ in iface.dips.values()]
        for iface in st.interfaces.values():
            for ip, (mip, line, tok) in iface.mips.items():
                conflict = None
                if ip in iface_ips:
                    conflict = f"the MIP {ip} is the address of interface {iface_ips[ip]}"
                elif ip in hosts:
                    h = hosts[ip]
                    conflict = (f"the MIP {ip} is the address of '{h.name}' in zone {h.zone} "
                                "(address book)")
                elif ip in seen_mips:
                    conflict = f"the MIP {ip} is already mapped on {seen_mips[ip]}"
                else:
                    for pname, pool in pools:
                        if pool.first <= ip <= pool.last:
                            conflict = f"the MIP {ip} lies in DIP pool {pool.id} of {pname}"
                if conflict:
                    free = self._free_address(ip, iface, iface_ips, hosts, seen_mips, pools)
                    self.diag(line, tok.column, tok.raw, conflict,
                              "a MIP needs an address of its own" +
                              (f", such as {free}" if free else ""))
                seen_mips.setdefault(ip, iface.name)
        for route, line, tok in st.routes:
            out = st.interfaces.get(route.interface)
            if route.gateway is not None and out is not None and out.ip is not None \
                    and route.gateway not in out.ip.network:
                self.diag(line, tok.column, tok.raw,
                          f"the gateway {route.gateway} is not on {route.interface}'s subnet "
                          f"{out.ip.network}", "a next hop must be directly reachable")
            for other in st.interfaces.values():
                if other.name != route.interface and other.ip is not None \
                        and other.ip.network == route.prefix and other.zone is not None:
                    self.diag(line, tok.column, tok.raw,
                              f"the route to {route.prefix} via {route.interface} is shadowed "
                              f"by the connected subnet of {other.name} ({other.ip})",
                              "a connected subnet always wins over a static route to the "
                              "same prefix; one of the two addresses is wrong")
        self._check_bandwidth()
        for name, (peer, line, tok) in st.ike_peers.items():
            if peer in iface_ips:
                self.diag(line, tok.column, tok.raw,
                          f"the IKE peer of '{name}' is this device's own address "
                          f"({iface_ips[peer]})",
                          "the peer address is the remote device's outgoing interface")

    def _check_bandwidth(self) -> None:
        """The guaranteed bandwidths of the policies an interface's traffic
        may take (its zone as the policy's from- or to-zone: replies leave
        by the from-zone's interfaces) must fit in its egress bandwidth: a
        guarantee beyond the link cannot be kept (ScreenOS then fails to
        give some policies theirs, Juniper KB23597; this language refuses
        it). A gbw with no bandwidth configured on any interface of its
        zones guarantees nothing here: warned."""
        st = self.state
        shaped = [p for p in st.policies.values() if p.policy.traffic is not None
                  and p.policy.traffic.shaping]
        for iface in st.interfaces.values():
            if iface.zone is None or iface.bandwidth_egress is None:
                continue
            total = 0
            terms = []
            for ps in shaped:
                pol = ps.policy
                if iface.zone not in (pol.from_zone, pol.to_zone) or not pol.traffic.gbw:  # type: ignore[union-attr]
                    continue
                total += pol.traffic.gbw  # type: ignore[union-attr]
                terms.append(f"policy {pol.id} gbw {pol.traffic.gbw}")  # type: ignore[union-attr]
                if total > iface.bandwidth_egress and ps.gbw_tok is not None:
                    tok = ps.gbw_tok
                    self.diag(ps.line, tok.column, tok.raw,
                              f"the guaranteed bandwidth of the policies through {iface.name} "
                              f"({' + '.join(terms)} = {total} Kbps) exceeds its egress "
                              f"bandwidth of {iface.bandwidth_egress} Kbps",
                              f"lower a gbw, or raise 'set interface {iface.name} bandwidth "
                              f"egress mbw {iface.bandwidth_egress}'")
                    break
        zones_with_bw = {i.zone for i in st.interfaces.values()
                         if i.zone is not None and i.bandwidth_egress is not None}
        for ps in shaped:
            pol = ps.policy
            if pol.traffic.gbw and ps.gbw_tok is not None and \
                    not {pol.from_zone, pol.to_zone} & zones_with_bw:  # type: ignore[union-attr]
                tok = ps.gbw_tok
                self.diag(ps.line, tok.column, tok.raw,
                          f"no interface of zone {pol.to_zone} or {pol.from_zone} has an egress "
                          "bandwidth: the guarantee is not enforced",
                          "set the link's bandwidth, e.g. 'set interface ethernet1 bandwidth "
                          "egress mbw 2000'", "warning")
        for iface in st.interfaces.values():
            if iface.bandwidth_ingress is not None and iface.bandwidth_in_at is not None:
                line, tok = iface.bandwidth_in_at
                self.diag(line, tok.column, tok.raw,
                          f"ingress policing on {iface.name} is not enforced",
                          "the gateway shapes what it sends (egress); police what arrives "
                          "upstream", "warning")

    @staticmethod
    def _free_address(ip: IPv4Address, iface: _IfaceState, iface_ips, hosts, mips,
                      pools) -> IPv4Address | None:
        subnet = iface.ip.network if iface.ip is not None and ip in iface.ip.network else \
            IPv4Network(f"{ip}/24", strict=False)
        candidate = ip
        for _ in range(256):
            candidate = candidate + 1
            if candidate not in subnet or candidate == subnet.broadcast_address:
                return None
            if candidate in iface_ips or candidate in hosts or candidate in mips:
                continue
            if any(p.first <= candidate <= p.last for _, p in pools):
                continue
            return candidate
        return None

    # == the frozen result ===================================================
    def build(self) -> Config:
        st = self.state
        names = list(PREDEFINED_ZONES) + list(st.custom_zones)
        zones = {}
        for name in names:
            floods = tuple(UdpFloodScreen(ip, n) for ip, n in st.udp_flood.get(name, {}).items())
            zones[name] = Zone(name, st.zone_block.get(name, DEFAULT_BLOCKING.get(name, False)),
                               floods, st.limit_session.get(name))
        interfaces = {}
        for s in st.interfaces.values():
            interfaces[s.name] = Interface(
                s.name, s.zone, s.ip, s.unnumbered, s.mode,  # type: ignore[arg-type]
                tuple(m for m, _, _ in s.mips.values()),
                tuple(d for d, _, _ in s.dips.values()),
                s.dip_interface_incoming, s.loopback_group, tuple(s.manage),
                s.bandwidth_egress, s.bandwidth_ingress)
        addresses = {key: a for key, (a, _, _) in st.addresses.items()}
        return Config(
            zones=MappingProxyType(zones), interfaces=MappingProxyType(interfaces),
            addresses=MappingProxyType(addresses),
            policies=tuple(p.policy for p in st.policies.values()),
            routes=tuple(r for r, _, _ in st.routes), sip=st.sip, dip_sticky=st.dip_sticky,
            unenforced=tuple(st.unenforced), mgcp=st.mgcp, nsrp=st.nsrp, flow=st.flow,
            traffic_shaping=st.traffic_shaping)
