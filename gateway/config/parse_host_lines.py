"""The configuration lines that belong to the host: administrators, IKE
gateways and VPNs. They are parsed and checked like any line but recorded in
``Config.unenforced``: IPsec and administration are the host's."""

from __future__ import annotations

from gateway.config.model import Source, Unenforced
from gateway.config.parse_cursor import Apply, _Line
from gateway.config.parse_state import _Vpn
from gateway.config.parse_words import ADMIN_REASON, IPSEC_REASON, MAX_INT, SEC_LEVELS, _quote


class _HostLines:
    """The administrator, IKE and VPN lines; a part of :class:`gateway.config.parser._Parser`."""

    # == host-side lines (parsed, checked, not enforced) =====================
    def _unenforced(self, ln: _Line, text: str, reason: str) -> Apply:
        item = Unenforced(Source(self.filename, ln.lineno), text, reason)
        return lambda: self.state.unenforced.append(item)

    def set_admin(self, ln: _Line) -> Apply | None:
        ln.keyword(("user",))
        user = ln.name("the user name")
        remaining = len(ln.tokens) - ln.pos
        if remaining >= 2 or (remaining == 1 and ln.match(ln.peek(), ("password",))):  # type: ignore[arg-type]
            ln.keyword(("password",))
        password = ln.name("the password")
        ln.end()
        text = f"set admin user {_quote(user.text)} password {_quote(password.text)}"
        return self._unenforced(ln, text, ADMIN_REASON)

    def set_ike(self, ln: _Line) -> Apply | None:
        st = self.state
        ln.keyword(("gateway",))
        gtok = ln.name("the IKE gateway name")
        st.declared_ike.add(gtok.text)
        ln.keyword(("address",))
        peer, ptok = ln.address("the peer address")
        st.ike_peers[gtok.text] = (peer, ln.lineno, ptok)
        mode = ln.keyword(("main", "aggressive"))
        ln.keyword(("outgoing-interface",))
        iface, itok = ln.interface_name()
        self.ref(ln, itok, "interface", iface, role="IKE outgoing interface")
        ln.keyword(("preshare",))
        key = ln.name("the preshared key")
        ln.keyword(("sec-level",))
        level = ln.keyword(SEC_LEVELS)
        ln.end()
        text = (f"set ike gateway {_quote(gtok.text)} address {peer} {mode} outgoing-interface "
                f"{iface} preshare \"{key.text}\" sec-level {level}")
        return self._unenforced(ln, text, IPSEC_REASON)

    def set_vpn(self, ln: _Line) -> Apply | None:
        st = self.state
        vtok = ln.name("the VPN name")
        sub = ln.keyword(("gateway", "id", "bind"))
        if sub == "gateway":
            st.declared_vpns.add(vtok.text)
            gtok = ln.name("the IKE gateway name")
            self.ref(ln, gtok, "ike", gtok.text)
            replay = ln.keyword(("no-replay", "replay", "tunnel"))
            if replay != "tunnel":
                ln.keyword(("tunnel",))
            ln.keyword(("idletime",))
            idle, _ = ln.integer("the idle time (minutes)", 0, MAX_INT)
            ln.keyword(("sec-level",))
            level = ln.keyword(SEC_LEVELS)
            ln.end()
            replay_text = "" if replay == "tunnel" else f" {replay}"
            text = (f"set vpn {_quote(vtok.text)} gateway {_quote(gtok.text)}{replay_text} "
                    f"tunnel idletime {idle} sec-level {level}")
            record = self._unenforced(ln, text, IPSEC_REASON)

            def apply() -> None:
                st.vpns.setdefault(vtok.text, _Vpn()).gateway = gtok.text
                record()
            return apply
        vpn_id = None
        if sub == "id":
            vpn_id, _ = ln.integer("the VPN id", 1, 65535)
            ln.keyword(("bind",))
        ln.keyword(("interface",))
        tunnel, ttok = ln.interface_name("a tunnel interface")
        ln.end()
        if not tunnel.startswith("tunnel."):
            ln.error(ttok, "a VPN binds to a tunnel interface", "e.g. tunnel.1")
        self.ref(ln, vtok, "vpn", vtok.text)
        self.ref(ln, ttok, "interface", tunnel, role="VPN's tunnel interface")
        id_text = f" id {vpn_id}" if vpn_id is not None else ""
        text = f"set vpn {_quote(vtok.text)}{id_text} bind interface {tunnel}"
        return self._unenforced(ln, text, IPSEC_REASON)
