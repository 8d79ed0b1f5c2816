"""The address-book and policy lines of the configuration language: ``set``/
``unset address`` and ``set``/``unset policy`` with its ids, NAT and traffic
options (manual "CLI Conventions"; the traffic options: ch. 2 "Bandwidth
Management for VoIP Services")."""

from __future__ import annotations

import re
from ipaddress import IPv4Interface, IPv4Network

from gateway.config.diagnostics import did_you_mean
from gateway.config.lexer import Token
from gateway.config.model import (
    Address, AddressRef, LOWEST_PRIORITY, Policy, PolicyTraffic, SERVICES, Source,
)
from gateway.config.parse_cursor import Apply, _Abort, _Line
from gateway.config.parse_state import _PolicyState
from gateway.config.parse_words import (
    MAX_KBPS, TRAFFIC_OPTIONS, _IFACE_RE, _MAX_DIP_ID, _bounded_int, _is_ipv4, _quote,
)


class _PolicyLines:
    """The address and policy lines; a part of :class:`gateway.config.parser._Parser`."""

    # == address =============================================================
    def set_address(self, ln: _Line) -> Apply | None:
        st = self.state
        zone, _ = self.zone_ref(ln)
        ntok = ln.name("the address name")
        key = (zone, ntok.text)
        duplicate = key in st.declared_addresses
        st.declared_addresses.add(key)
        if ntok.text.lower() == "any":
            ln.error(ntok, "'any' is reserved", "'any' already means every address; choose "
                     "another name")
        atok = ln.peek()
        if atok is None:
            ln.missing("the address (A.B.C.D/M or A.B.C.D MASK)")
        if "/" in atok.text:  # type: ignore[union-attr]
            ip, _ = ln.with_prefix("the address", "10.1.1.5/32")
        else:
            addr, atok = ln.address("the address")
            mtok = ln.peek()
            if mtok is None or mtok.quoted:
                ln.error(atok, "the address needs a netmask",
                         f"write {addr}/32 (one host) or {addr} 255.255.255.255, or with "
                         f"its subnet mask, e.g. {addr}/24", abort=False)
                ln.cut_short = mtok is None
                raise _Abort
            mask, mtok = ln.address("the netmask")
            try:
                IPv4Network(f"0.0.0.0/{mask}")
                ip = IPv4Interface(f"{addr}/{mask}")
            except ValueError:
                ln.error(mtok, "not a netmask", "a netmask is contiguous ones, e.g. 255.255.255.0")
        comment = None
        ctok = ln.peek()
        if ctok is not None:
            if not ctok.quoted:
                ln.error(ctok, "unexpected text after the address",
                         "a comment must be in double quotes")
            comment = ctok.text
            ln.pos += 1
        ln.end()
        if duplicate:
            ln.error(ntok, "duplicate address name",
                     f"zone {zone} already has an address '{ntok.text}'; choose another name "
                     f"or 'unset address {zone} {_quote(ntok.text)}' first")
        line = ln.lineno
        address = Address(zone, ntok.text, ip, comment)
        return lambda: st.addresses.__setitem__(key, (address, line, ntok))

    def unset_address(self, ln: _Line) -> Apply | None:
        st = self.state
        zone, _ = self.zone_ref(ln)
        ntok = ln.name("the address name")
        ln.end()
        key = (zone, ntok.text)
        st.declared_addresses.discard(key)
        return lambda: st.addresses.pop(key, None) and None

    # == policy ==============================================================
    def set_policy(self, ln: _Line) -> Apply | None:
        st = self.state
        policy_id: int | None = None
        name: str | None = None
        while True:
            kw = ln.keyword(("id", "name", "from"))
            if kw == "id":
                policy_id, idtok = ln.integer("the policy id", 1, 65535)
                if policy_id in st.declared_policy_ids:
                    ln.error(idtok, "duplicate policy id",
                             f"policy {policy_id} already exists; 'unset policy id "
                             f"{policy_id}' first or choose another id")
            elif kw == "name":
                name = ln.name("the policy name").text
            else:
                break
        from_zone, _ = self.zone_ref(ln, "the from-zone")
        ln.keyword(("to",))
        to_zone, _ = self.zone_ref(ln, "the to-zone")
        src, stok = self._policy_address(ln, "source address")
        dst, dtok = self._policy_address(ln, "destination address")
        for ref, tok, zone, role in ((src, stok, from_zone, "source"),
                                     (dst, dtok, to_zone, "destination")):
            if ref.kind == "name":
                self.ref(ln, tok, "address", ref.value, zone, role)
            elif ref.kind in ("mip", "dip"):
                if role == "source":
                    ln.error(tok, f"a {ref.kind.upper()} cannot be a policy's source",
                             f"{ref.kind.upper()}(...) is a destination: the policy's "
                             f"second address", abort=False)
                kind = "mip" if ref.kind == "mip" else (
                    "dip" if ref.value.isdigit() else "dip-iface")
                self.ref(ln, tok, kind, ref.value, role=role)
        svc_tok = ln.name("the service")
        service = svc_tok.text.lower()
        if service not in SERVICES:
            guess = did_you_mean(svc_tok.text, SERVICES)
            ln.error(svc_tok, "unknown service",
                     (f"did you mean '{guess}'? " if guess else "")
                     + f"predefined services: {', '.join(SERVICES)}", abort=False)
        nat_src = False
        nat_dip: int | None = None
        action = ln.keyword(("nat", "permit", "deny"))
        if action == "nat":
            ln.keyword(("src",))
            nat_src = True
            action = ln.keyword(("dip", "permit", "deny"))
            if action == "dip":
                nat_dip, diptok = ln.integer("the DIP pool id", 1, 255)
                self.ref(ln, diptok, "dip", str(nat_dip), to_zone, "nat")
                action = ln.keyword(("permit", "deny"))
        traffic: PolicyTraffic | None = None
        gbw_tok: Token | None = None
        if not ln.at_end():
            ln.keyword(("traffic",))
            ttok = ln.tokens[ln.pos - 1]
            if action == "deny":
                ln.error(ttok, "a deny policy shapes no traffic",
                         "traffic shaping and DSCP marking apply to permitted traffic; "
                         "remove 'traffic ...' or make the policy permit")
            traffic, gbw_tok = self._traffic(ln)
        ln.end()
        if ln.failed:
            raise _Abort
        if policy_id is None:
            policy_id = st.declared_policy_ids.highest() + 1
        st.declared_policy_ids.add(policy_id)
        policy = Policy(policy_id, from_zone, to_zone, src, dst, service, action,  # type: ignore[arg-type]
                        name, nat_src, nat_dip, Source(self.filename, ln.lineno), traffic)
        return lambda: st.policies.__setitem__(policy_id, _PolicyState(policy, ln.lineno,
                                                                        gbw_tok=gbw_tok))

    def _traffic(self, ln: _Line) -> tuple[PolicyTraffic, Token | None]:
        """``traffic [gbw N] [priority P] [mbw M] [dscp enable [value V] |
        dscp disable]`` in any order, each once (manual ch. 2 "Bandwidth
        Management for VoIP Services"; ScreenOS policy traffic options)."""
        values: dict[str, object] = {}
        toks: dict[str, Token] = {}
        while True:
            opt = ln.keyword(TRAFFIC_OPTIONS)
            otok = ln.tokens[ln.pos - 1]
            if opt in values:
                ln.error(otok, f"{opt} given twice", f"give '{opt}' once per policy")
            if opt == "gbw":
                values[opt], toks[opt] = ln.integer("the guaranteed bandwidth (Kbps)", 0, MAX_KBPS)
            elif opt == "mbw":
                values[opt], toks[opt] = ln.integer("the maximum bandwidth (Kbps; 0: the "
                                                    "interface's)", 0, MAX_KBPS)
            elif opt == "priority":
                values[opt], toks[opt] = ln.integer("the priority (0 highest, 7 lowest)", 0, 7)
            else:
                state = ln.keyword(("enable", "disable"))
                values[opt] = state == "enable"
                if state == "enable" and ln.optional(("value",)):
                    values["dscp_value"], toks["dscp_value"] = ln.integer(
                        "the DSCP value", 0, 63)
            if ln.at_end():
                break
        gbw, mbw = int(values.get("gbw", 0)), int(values.get("mbw", 0))  # type: ignore[call-overload]
        if mbw and gbw > mbw:
            tok = toks["mbw"]
            ln.error(tok, f"the maximum bandwidth (mbw {mbw}) is below the guaranteed "
                     f"bandwidth (gbw {gbw})",
                     f"mbw must be at least gbw: e.g. mbw {gbw}, or mbw 0 for no maximum")
        shaping = any(k in values for k in ("gbw", "priority", "mbw"))
        traffic = PolicyTraffic(gbw, int(values.get("priority", LOWEST_PRIORITY)),  # type: ignore[call-overload]
                                mbw, bool(values.get("dscp", False)),
                                values.get("dscp_value"), shaping)  # type: ignore[arg-type]
        return traffic, toks.get("gbw")

    def _policy_address(self, ln: _Line, role: str) -> tuple[AddressRef, Token]:
        tok = ln.name(f"the {role}")
        text = tok.text
        if not tok.quoted:
            if text.lower() == "any":
                return AddressRef("any"), tok
            m = re.fullmatch(r"(mip|dip)\((.*)\)", text, re.IGNORECASE)
            nxt = ln.peek()
            if m is None and text.lower() in ("mip", "dip") and nxt is not None \
                    and nxt.text.startswith("("):
                # "mip (1.1.1.25)": the manual writes it with a space too.
                ln.pos += 1
                m = re.fullmatch(r"(mip|dip)\s*\((.*)\)", f"{text}{nxt.text}", re.IGNORECASE)
            if m is not None or re.match(r"(mip|dip)\(", text, re.IGNORECASE):
                if m is None:
                    ln.error(tok, f"unbalanced parenthesis in the {role}",
                             "write MIP(A.B.C.D) or DIP(id)")
                kind, inner = m.group(1).lower(), m.group(2).strip()  # type: ignore[union-attr]
                if kind == "mip":
                    if not _is_ipv4(inner):
                        ln.error(tok, "MIP(...) needs an IPv4 address", "e.g. mip(1.1.1.5)")
                    return AddressRef("mip", inner), tok
                if inner.isascii() and inner.isdigit():
                    pool_id = _bounded_int(inner, _MAX_DIP_ID)
                    if pool_id is None:
                        ln.error(tok, "DIP pool id out of range",
                                 f"a pool id from 1 to {_MAX_DIP_ID}, e.g. dip(5)")
                    return AddressRef("dip", str(pool_id)), tok
                if not _IFACE_RE.fullmatch(inner):
                    ln.error(tok, "DIP(...) needs a pool id or an interface name",
                             "e.g. dip(5) or dip(ethernet3)")
                return AddressRef("dip", inner.lower()), tok
        return AddressRef("name", text), tok

    def unset_policy(self, ln: _Line) -> Apply | None:
        st = self.state
        ln.keyword(("id",))
        pid, ptok = ln.integer("the policy id", 1, 65535)
        ln.end()
        if pid not in st.declared_policy_ids:
            ln.error(ptok, "no such policy", "policies so far: " + st.declared_policy_ids.describe())
        st.declared_policy_ids.discard(pid)
        return lambda: st.policies.pop(pid, None)
