"""Translation of the SIP headers' addresses for one message (manual chapter 2,
"SIP Headers", Table 2; Outgoing Calls, Figure 9): the direction that applies,
the call's bindings of private transport addresses to public ports, the Contact
pinhole toward the public party's remote target, and the packet's own NAT for
messages of no call."""

from __future__ import annotations

from gateway.alg_result import Dropped
from gateway.ports import MEDIA_PORT_LOW
from gateway.sip import events as ev
from gateway.sip import nat
from gateway.sip.alg_limits import MAX_BINDINGS_PER_CALL
from gateway.sip.alg_literals import _is_port, _port
from gateway.sip.alg_pinholes import _MediaPinholes
from gateway.sip.portmap import allocate_port
from gateway.sip.state import Call


class _HeaderNat(_MediaPinholes):
    """The address translation of a message's headers."""

    def msg_direction(self, call: Call | None) -> str:
        if call is not None and call.mode == "none":
            return "none"
        if self.ctx.direction == "outbound" and self.ctx.nat_src is None:
            return "none"
        return self.ctx.direction

    def route_inbound(self, call: Call) -> None:
        if self.ctx.nat_dst is not None or not self.msg.is_request:
            return
        b = call.binding_for_public(self.dst_ip, _port(self.ctx.dst[1]))
        if b is not None:
            self.run.route_to = (b.private_ip, b.private_port)

    def _local_ips(self, call: Call) -> set[str]:
        ips = {call.private_ip} if call.private_ip else set()
        if self.ctx.direction == "outbound":
            ips.add(self.src_ip)
        return ips

    def call_l2a(self, field: str, ip: str, port: int | None):
        call = self.call
        eff = port if port is not None else nat.SIP_PORT
        b = call.binding_for_private(ip, eff)
        if b is not None:
            return b.public_ip, b.public_port
        if not ((ip == call.private_ip and call.private_ip)
                or (ip == self.src_ip and self.ctx.direction == "outbound")):
            return None     # not in _local_ips(call)
        if field not in nat.TRANSPORT_FIELDS:
            return call.alg_ip, None
        # A transport address of the private party: bind it to a public
        # port so requests from outside reach it (Outgoing Calls: "The
        # pinholes also allow incoming packets to reach the Contact:, Via:,
        # and Record-Route: IP addresses and ports").
        b = self.bind(call, ip, eff)
        return b.public_ip, b.public_port

    def bind(self, call: Call, ip: str, port: int):
        ctx = self.ctx
        if len(self.run.st.calls[call.key].bindings) >= MAX_BINDINGS_PER_CALL:
            raise Dropped(f"call {call.call_id}: more than {MAX_BINDINGS_PER_CALL} private transport "
                        f"bindings ({ip}:{port}); SIP message discarded")
        if (ctx.direction == "outbound" and ctx.nat_src is not None
                and (ip, port) == (self.src_ip, _port(ctx.src[1]))
                and str(ctx.nat_src[0]) == call.alg_ip):
            pub, owned = _port(ctx.nat_src[1]), False
        else:
            reg = self.run.st.registration_for_private(ip, port)
            if reg is not None and reg.public_ip == call.alg_ip:
                pub, owned = reg.public_port, False
            elif self.keeps_ports(call.alg_ip):
                pub, owned = port, True       # a MIP: the host's own port
            else:
                got = allocate_port(self.run.st.ports, call.alg_ip, hint=port, low=MEDIA_PORT_LOW)
                if got is None:
                    raise Dropped(f"no free public port on {call.alg_ip} for {ip}:{port}")
                pub, owned = got, True
        self.run.emit(ev.new.BindingAdded(call.key, ip, port, call.alg_ip, pub, owned))
        self.open_pinhole(call, "", "signalling", "inbound", (call.alg_ip, pub), (ip, port), None,
                          None, proto=ctx.transport)
        return self.call.binding_for_private(ip, port)

    def call_a2l(self, field: str, ip: str, port: int | None):
        call = self.call
        eff = port if port is not None else nat.SIP_PORT
        if field == "via-rport":
            b = call.binding_for_public(ip, eff) or call.binding_for_public(call.alg_ip, eff)
            return (b.private_ip, b.private_port) if b else None
        b = call.binding_for_public(ip, eff)
        if b is not None:
            return b.private_ip, (b.private_port if port is not None or b.private_port != eff else None)
        reg = self.run.st.registrations.get((ip, eff))
        if reg is not None:
            return reg.private_ip, (reg.private_port if port is not None
                                    or reg.private_port != eff else None)
        ctx = self.ctx
        if ctx.nat_dst is not None and (ip, eff) == (self.dst_ip, _port(ctx.dst[1])):
            return str(ctx.nat_dst[0]), (_port(ctx.nat_dst[1]) if port is not None else None)
        if ip == call.alg_ip and call.private_ip:
            return call.private_ip, None
        return None

    def contact_pinholes(self, call: Call) -> None:
        # The public party's Contact is where the private side sends its
        # next requests: open a Via/Contact pinhole toward it (Figure 9).
        # A dialog has one remote target, the latest Contact of a request or
        # a 1xx/2xx (RFC 3261 §12.1, §12.2.1.2 target refresh), so the call
        # holds one such pinhole and a new target replaces the old one;
        # the Contacts of a 3xx-6xx are alternatives, not a target. Opening
        # one per Contact ever seen let a peer grow the table without bound.
        msg = self.msg
        if not msg.is_request and (msg.status_code or 0) >= 300:
            return
        target = next((c for c in msg.contacts if c.host is not None and not c.star), None)
        if target is None:
            return
        port = (int(target.port.text) if target.port is not None and _is_port(target.port.text)
                else nat.SIP_PORT)
        dst = (target.host.text, port)
        if dst[0] == call.alg_ip:
            return
        holes = [p for p in self.call.pinholes
                 if p.kind == "signalling" and p.direction == "outbound"]
        if any(p.dst == dst for p in holes):
            return
        for p in holes:
            self.run.close_pinhole(self.call, p.id, "remote target changed")
        self.open_pinhole(self.call, "", "signalling", "outbound", dst, None, None, None,
                          proto=self.ctx.transport)

    def stateless_mapper(self):
        """Translation with the packet's own NAT only (messages of no call):
        the binding of its source or destination, and registrations."""
        ctx, st = self.ctx, self.run.st
        if ctx.direction == "outbound" and ctx.nat_src is not None:
            local, alg = self.src_ip, str(ctx.nat_src[0])
            pair = ((self.src_ip, _port(ctx.src[1])), (alg, _port(ctx.nat_src[1])))
        elif ctx.direction == "inbound":
            alg = self.dst_ip
            target = ctx.nat_dst
            if target is None:
                reg = st.registrations.get((self.dst_ip, _port(ctx.dst[1])))
                if reg is not None:
                    target = (reg.private_ip, reg.private_port)
                    if self.msg.is_request:
                        self.run.route_to = target
            if target is None:
                return None, None
            local = str(target[0])
            pair = ((local, _port(target[1])), (self.dst_ip, _port(ctx.dst[1])))
        else:
            return None, None

        def l2a(field, ip, port):
            eff = port if port is not None else nat.SIP_PORT
            if (ip, eff) == pair[0]:
                return pair[1]
            reg = st.registration_for_private(ip, eff)
            if reg is not None:
                return reg.public_ip, reg.public_port
            if ip == local:
                return alg, None
            return None

        def a2l(field, ip, port):
            eff = port if port is not None else nat.SIP_PORT
            if (ip, eff) == pair[1]:
                return pair[0][0], (pair[0][1] if port is not None or pair[0][1] != eff else None)
            reg = st.registrations.get((ip, eff))
            if reg is not None:
                return reg.private_ip, (reg.private_port if port is not None
                                        or reg.private_port != eff else None)
            if ip == alg:
                return local, None
            return None

        return l2a, a2l
