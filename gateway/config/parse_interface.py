"""The interface and zone lines of the configuration language: ``set``/``unset
interface`` (zone, IP, NAT or route mode, MIP, DIP, loopback group, manage,
bandwidth) and ``set``/``unset zone``, in the manual's ScreenOS CLI ("CLI
Conventions", "Naming Conventions")."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from gateway.config.lexer import Token
from gateway.config.model import DEFAULT_VROUTER, DipPool, Mip, PREDEFINED_ZONES, Source
from gateway.config.parse_cursor import Apply, _Line
from gateway.config.parse_words import MANAGE_SERVICES, MAX_KBPS


class _InterfaceLines:
    """The interface and zone lines; a part of :class:`gateway.config.parser._Parser`."""

    # == interface ===========================================================
    IFACE_SUB = ("zone", "ip", "nat", "route", "mip", "dip", "loopback-group", "manage",
                 "bandwidth")

    def set_interface(self, ln: _Line) -> Apply | None:
        st = self.state
        name, name_tok = ln.interface_name()
        st.declared_interfaces.add(name)
        sub = ln.keyword(self.IFACE_SUB)
        line = ln.lineno
        if sub == "zone":
            st.zone_lines.add(name)
            zone, ztok = self.zone_ref(ln)
            ln.end("an interface's zone binding")

            def apply() -> None:
                s = st.iface(name)
                s.zone, s.zone_at = zone, (line, ztok)
            return apply
        if sub == "ip":
            tok = ln.peek()
            if tok is not None and ln.match(tok, ("unnumbered",)):
                ln.pos += 1
                ln.keyword(("interface",))
                target, ttok = ln.interface_name()
                ln.end()
                self.ref(ln, ttok, "interface", target, role="unnumbered source interface")

                def apply() -> None:
                    s = st.iface(name)
                    s.unnumbered, s.ip = target, None
                return apply
            ip, iptok = ln.with_prefix("an interface address", "10.1.1.1/24")
            ln.end()
            if ip.network.prefixlen < 31 and ip.ip in (ip.network.network_address,
                                                        ip.network.broadcast_address):
                which = "network" if ip.ip == ip.network.network_address else "broadcast"
                first_host = next(ip.network.hosts())
                ln.error(iptok, f"the {which} address of {ip.network} is not a host address",
                         f"an interface needs a host address of its subnet, e.g. "
                         f"{first_host}/{ip.network.prefixlen}")

            def apply() -> None:
                s = st.iface(name)
                s.ip, s.ip_at, s.unnumbered = ip, (line, iptok), None
            return apply
        if sub in ("nat", "route"):
            ln.end()
            mode_tok = ln.tokens[ln.pos - 1]

            def apply() -> None:
                s = st.iface(name)
                s.mode, s.mode_at = sub, (line, mode_tok)
            return apply
        if sub == "mip":
            ip, iptok = ln.address("the mapped IP address")
            st.declared_mips.add(str(ip))
            ln.keyword(("host",))
            host, _ = ln.address("the host IP address")
            netmask = IPv4Address("255.255.255.255")
            vrouter = DEFAULT_VROUTER
            while not ln.at_end():
                opt = ln.keyword(("netmask", "vrouter"))
                if opt == "netmask":
                    netmask, mtok = ln.address("the MIP netmask")
                    try:
                        IPv4Network(f"0.0.0.0/{netmask}")
                    except ValueError:
                        ln.error(mtok, "not a netmask", "a netmask is contiguous ones, "
                                 "e.g. 255.255.255.255 (one host) or 255.255.255.0")
                else:
                    vrouter = ln.vrouter()
            mip = Mip(ip, host, netmask, vrouter)

            def apply() -> None:
                st.iface(name).mips[ip] = (mip, line, iptok)
            return apply
        if sub == "dip":
            tok = ln.peek()
            if tok is not None and ln.match(tok, ("interface-ip",)):
                ln.pos += 1
                ln.keyword(("incoming",))
                ln.end()

                def apply() -> None:
                    st.iface(name).dip_interface_incoming = True
                return apply
            dip_id, idtok = ln.integer("a DIP pool id", 1, 255)
            st.declared_dips.add(dip_id)
            first, ftok = ln.address("the first address of the DIP pool")
            last, _ = ln.address("the last address of the DIP pool")
            incoming = ln.optional(("incoming",)) is not None
            ln.end()
            if last < first:
                ln.error(ftok, "the DIP pool's first address is above its last",
                         f"write the range low to high: {last} {first}")
            pool = DipPool(dip_id, first, last, incoming)

            def apply() -> None:
                st.iface(name).dips[dip_id] = (pool, line, idtok)
            return apply
        if sub == "bandwidth":
            return self._bandwidth(ln, name, name_tok)
        if sub == "loopback-group":
            target, ttok = ln.interface_name("a loopback interface")
            ln.end()
            if not target.startswith("loopback."):
                ln.error(ttok, "a loopback group is named by a loopback interface",
                         "e.g. loopback.1")
            if name.startswith("loopback."):
                ln.error(name_tok, "a loopback interface cannot join a loopback group",
                         "add the physical interfaces to the group")
            self.ref(ln, ttok, "interface", target, role="loopback interface")

            def apply() -> None:
                st.iface(name).loopback_group = target
            return apply
        # manage [service]
        service = ln.keyword(MANAGE_SERVICES) if not ln.at_end() else "all"
        ln.end()

        def apply() -> None:
            s = st.iface(name)
            if service not in s.manage:
                s.manage.append(service)
        return apply

    def _bandwidth(self, ln: _Line, name: str, name_tok: Token) -> Apply:
        """``bandwidth N`` (egress, ScreenOS 5) or ``bandwidth egress mbw N
        [ingress mbw M]`` / ``bandwidth ingress mbw M [egress mbw N]``
        (ScreenOS 6), Kbps; 0 leaves the direction unconfigured."""
        st = self.state
        line = ln.lineno
        if name.startswith(("loopback.", "tunnel.")):
            ln.error(name_tok, f"{name} has no bandwidth of its own",
                     "set the bandwidth of the physical interface the traffic leaves by")
        tok = ln.peek()
        if tok is not None and tok.text.isascii() and tok.text.isdigit() and not tok.quoted:
            egress, etok = ln.integer("the egress bandwidth (Kbps)", 0, MAX_KBPS)
            ln.end()

            def apply_old() -> None:
                s = st.iface(name)
                s.bandwidth_egress = egress or None
                s.bandwidth_at = (line, etok)
            return apply_old
        given: dict[str, tuple[int, Token]] = {}
        while True:
            direction = ln.keyword(("egress", "ingress"), "egress or ingress, or the egress "
                                   "bandwidth in Kbps")
            dtok = ln.tokens[ln.pos - 1]
            if direction in given:
                ln.error(dtok, f"{direction} given twice", "give each direction once")
            ln.keyword(("mbw",))
            given[direction] = ln.integer(f"the {direction} bandwidth (Kbps)", 0, MAX_KBPS)
            if ln.at_end():
                break
        egress = given.get("egress")
        ingress = given.get("ingress")

        def apply() -> None:
            s = st.iface(name)
            if egress is not None:
                s.bandwidth_egress = egress[0] or None
                s.bandwidth_at = (line, egress[1])
            if ingress is not None:
                s.bandwidth_ingress = ingress[0] or None
                s.bandwidth_in_at = (line, ingress[1])
        return apply

    def unset_interface(self, ln: _Line) -> Apply | None:
        st = self.state
        name, name_tok = ln.interface_name()
        sub = ln.keyword(("nat", "route", "mip", "dip", "loopback-group", "manage", "zone", "ip",
                          "bandwidth"))
        self.ref(ln, name_tok, "interface", name)
        if sub == "bandwidth":
            which = ln.optional(("egress", "ingress"))
            ln.end()

            def apply_bw() -> None:
                s = st.iface(name)
                if which in (None, "egress"):
                    s.bandwidth_egress = None
                    s.bandwidth_at = None
                if which in (None, "ingress"):
                    s.bandwidth_ingress = None
            return apply_bw
        if sub == "mip":
            ip, iptok = ln.address("the mapped IP address")
            ln.end()

            def apply() -> None:
                if st.iface(name).mips.pop(ip, None) is None:
                    self.diag(ln.lineno, iptok.column, iptok.raw, f"{name} has no MIP {ip}",
                              "nothing to unset", "warning")
            return apply
        if sub == "dip":
            if ln.optional(("interface-ip",)):
                ln.keyword(("incoming",))
                ln.end()
                return lambda: setattr(st.iface(name), "dip_interface_incoming", False)
            dip_id, _ = ln.integer("a DIP pool id", 1, 255)
            ln.end()
            return lambda: st.iface(name).dips.pop(dip_id, None) and None
        if sub == "manage":
            service = ln.keyword(MANAGE_SERVICES) if not ln.at_end() else None
            ln.end()

            def apply() -> None:
                s = st.iface(name)
                s.manage = [m for m in s.manage if service is not None and m != service]
            return apply
        ln.end()

        def apply() -> None:
            s = st.iface(name)
            if sub in ("nat", "route"):
                if s.mode == sub:
                    s.mode = None
            elif sub == "loopback-group":
                s.loopback_group = None
            elif sub == "zone":
                s.zone = None
            else:
                s.ip = None
                s.unnumbered = None
        return apply

    # == zone ================================================================
    def set_zone(self, ln: _Line) -> Apply | None:
        st = self.state
        tok = ln.peek()
        if tok is not None and ln.match(tok, ("name",)) and len(ln.tokens) - ln.pos >= 2:
            ln.pos += 1
            ztok = ln.name("the new zone's name")
            ln.end()
            st.declared_zones.add(ztok.text)
            if ztok.text.lower() in PREDEFINED_ZONES:
                ln.error(ztok, "a predefined zone", f"'{ztok.text.lower()}' always exists; "
                         "choose another name")
            if ztok.text.lower() == "name":
                ln.error(ztok, "a zone may not be called 'name'", "choose another name")
            source = Source(self.filename, ln.lineno)
            return lambda: st.custom_zones.setdefault(ztok.text, source) and None
        zone, ztok = self.zone_ref(ln)
        sub = ln.keyword(("block", "screen"))
        if sub == "block":
            ln.end()
            return lambda: st.zone_block.__setitem__(zone, True)
        screen = ln.keyword(("udp-flood", "limit-session"))
        if screen == "udp-flood":
            ln.keyword(("dst-ip",))
            ip, _ = ln.address("the protected destination address")
            ln.keyword(("threshold",))
            n, _ = ln.integer("the threshold (packets/s)", 1, 1_000_000)
            ln.end()
            return lambda: st.udp_flood.setdefault(zone, {}).__setitem__(ip, n)
        ln.keyword(("source-ip-based",))
        n, _ = ln.integer("the session limit per source address", 1, 1_000_000)
        ln.end()
        return lambda: st.limit_session.__setitem__(zone, n)

    def unset_zone(self, ln: _Line) -> Apply | None:
        st = self.state
        zone, _ = self.zone_ref(ln)
        sub = ln.keyword(("block", "screen"))
        if sub == "block":
            ln.end()
            return lambda: st.zone_block.__setitem__(zone, False)
        screen = ln.keyword(("udp-flood", "limit-session"))
        if screen == "udp-flood":
            ln.keyword(("dst-ip",))
            ip, _ = ln.address("the protected destination address")
            ln.end()
            return lambda: st.udp_flood.setdefault(zone, {}).pop(ip, None) and None
        ln.optional(("source-ip-based",))
        ln.end()
        return lambda: st.limit_session.__setitem__(zone, None)
