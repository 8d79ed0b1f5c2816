"""Pinholes and media channels of a SIP call (manual chapter 2, "Pinhole
Creation"; Outgoing Calls, Figure 8): a pinhole to an IPv4 address
outside the zone the message goes to, and a voice channel's even/odd pair of
public ports with its RTP and RTCP pinholes."""

from __future__ import annotations

from gateway.alg_result import Dropped
from gateway.sip import events as ev
from gateway.sip.alg_dialog import _MessageDialog
from gateway.sip.alg_literals import _is_ipv4
from gateway.sip.portmap import allocate_pair
from gateway.sip.state import Call
from gateway.sip.transitions import CONFIRMED


class _MediaPinholes(_MessageDialog):
    """The pinholes a message opens, and its media channels' ports."""

    def open_pinhole(self, call: Call, group: str, kind: str, direction: str,
                     dst: tuple[str, int], to, src_to, expires, proto: str = "udp") -> None:
        target = to if to else dst
        if not _is_ipv4(dst[0]) or (to and not _is_ipv4(to[0])):
            # A host name (a Contact of "sip:x@pbx.example.com") is not an
            # address ("Pinhole Creation" opens pinholes to IP addresses;
            # SipMessage.addresses lists IPv4 literals only): decided here,
            # before any event, so nothing is journaled for it.
            self.run.logs.append(f"call {call.call_id}: no {kind} pinhole to {target[0]}: "
                                 "not an IPv4 address")
            return
        far = self.ctx.far_side
        if far is not None and far(str(target[0])):
            self.run.logs.append(
                f"call {call.call_id}: no {kind} pinhole to {target[0]}:{target[1]}: it lies in the "
                f"zone the message goes to ({self.ctx.egress}), so traffic to it does not cross the "
                "gateway from the sender's side")
            return
        call = self.run.st.calls[call.key]
        pid = f"{call.key}#p{call.seq}"
        self.run.emit(ev.new.PinholeOpened(
            call.key, pid, group, kind, proto, direction, dst[0], dst[1],
            to[0] if to else None, to[1] if to else None,
            src_to[0] if src_to else None, src_to[1] if src_to else None, expires))

    def keeps_ports(self, public_ip: str | None) -> bool:
        """True when ``public_ip`` is one host's alone (a MIP's address,
        ``SipContext.dedicated``): its ports are that host's own, so what
        the host announces keeps its port there and nothing is allocated on
        it (an allocation would meet ports that several of the host's calls
        share, as a phone that announces one RTP port for every call does)."""
        dedicated = self.ctx.dedicated
        return public_ip is not None and dedicated is not None and dedicated(public_ip)

    def bind_media(self, i: int, side: str, addr: str, port: int, rtcp_ip: str, rtcp_port: int,
                   nat_side: bool, ports: dict[int, int]) -> None:
        call = self.call
        key = call.key
        pub = None
        if nat_side and 0 < port < 65535 and self.keeps_ports(call.alg_ip):
            # A one-to-one translation (a MIP): the host's port is its own on
            # the public address, kept as it is (SipContext.dedicated); its
            # RTCP on the next port, as for an allocated pair.
            pub = port
            ports[i] = pub
        elif nat_side:
            # "the ALG provides consecutive even-odd ports. If it is unable
            # to find a pair of ports it discards the SIP message."
            pub = allocate_pair(self.run.st.ports, call.alg_ip, hint=port)
            if pub is None:
                raise Dropped(f"no free even/odd port pair on {call.alg_ip} for media "
                            f"{addr}:{port}; SIP message discarded")
            ports[i] = pub
        group = f"{key}#g{call.seq}"
        deadline = (self.now + self.settings.media_inactivity_timeout
                    if call.phase == CONFIRMED else None)
        self.run.emit(ev.new.MediaBound(key, group, side, i, addr, port, rtcp_port,
                                    call.alg_ip if nat_side else None, pub, deadline))
        if call.forwarded:
            return
        expires = self.now + self.settings.media_inactivity_timeout
        if nat_side:
            # Media from outside to the ALG's pair, translated to the
            # private party (Outgoing Calls; Figure 8).
            self.open_pinhole(call, group, "media", "inbound", (call.alg_ip, pub), (addr, port),
                              None, expires)
            self.open_pinhole(call, group, "media", "inbound", (call.alg_ip, pub + 1),
                              (rtcp_ip, rtcp_port), None, expires)
            return
        # Media toward this party (public, or either side without NAT);
        # from the private party it leaves as its own public pair when
        # the private side has already announced one for this stream.
        direction = "any" if call.alg_ip is None else "outbound"
        src_rtp = src_rtcp = None
        if call.alg_ip is not None:
            mine = self.private_side(call)
            for g in self.call.groups:
                if g.side == mine and g.index == i and g.public_port is not None:
                    src_rtp = (g.public_ip, g.public_port)
                    src_rtcp = (g.public_ip, g.public_port + 1)
        self.open_pinhole(call, group, "media", direction, (addr, port), None, src_rtp, expires)
        self.open_pinhole(call, group, "media", direction, (rtcp_ip, rtcp_port), None, src_rtcp,
                          expires)
