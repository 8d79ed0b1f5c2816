"""SDP, media and pinholes of an MGCP call (manual chapter 3; RFC 3264 port 0,
RFC 3550 11 RTCP on the next port): the sender's addresses in the session
descriptions translated, each media destination bound to a public even/odd
pair of ports and its pinholes opened."""

from __future__ import annotations

import zlib
from ipaddress import IPv4Address

from gateway.alg_result import Dropped
from gateway.mgcp import events as ev
from gateway.mgcp.alg_literals import _is_ipv4
from gateway.ports import MEDIA_PORT_HIGH, MEDIA_PORT_LOW, allocate_pair
from gateway.span import Edit


def _port_hint(in_use, public_ip: str, port: int, salt: str) -> int:
    """Where the search for a free pair starts: the private port itself when
    it is free, else a point spread by a hash of the group. A fixed start
    would make every allocation scan the pairs already taken (O(n) with n
    calls); a spread start finds a free pair in ~1/(1 - load) probes. The
    hint is a pure function of the state, and the port chosen is recorded in
    the event, so replay and the standby agree."""
    a = IPv4Address(public_ip)
    if port >= MEDIA_PORT_LOW and port % 2 == 0 and (a, port) not in in_use and (a, port + 1) not in in_use:
        return port
    pairs = (MEDIA_PORT_HIGH - MEDIA_PORT_LOW) // 2
    return MEDIA_PORT_LOW + 2 * (zlib.crc32(salt.encode()) % pairs)


class _Media:
    """A message's session descriptions: translation, bindings, pinholes."""

    def sdp_addresses(self, mapped: dict[str, str] | None = None) -> None:
        """Translate the sender's own address in o=, c= and a=rtcp of every
        session description (no ports: those belong to media bindings)."""
        tr = self.tr
        mapped = mapped or {}
        if tr is None and not mapped:
            return
        for d in self.msg.sdp:
            spans = [d.origin_addr]
            if d.session_conn is not None:
                spans.append(d.session_conn.addr)
            for m in d.media:
                if m.conn is not None:
                    spans.append(m.conn.addr)
                spans.append(m.rtcp_addr)
            for s in spans:
                if s is None:
                    continue
                new = mapped.get(s.text)
                if new is None and tr is not None:
                    new = tr.address(s.text)
                if new is not None and new != s.text:
                    self.run.edits.append(Edit.replace(s, new))

    def public_for(self, addr: str) -> str | None:
        """The public address standing for media at ``addr`` in a message
        leaving the private side, or None when it needs no translation."""
        if self.ctx.direction != "outbound":
            return None
        if self.tr is not None:
            new = self.tr.address(addr)
            if new is not None:
                return new
        if self.ctx.media_nat is not None:
            return self.ctx.media_nat(addr)
        return None

    def media(self, side: str, conn_id: str | None, tid: int, call_id: str | None) -> None:
        """Bind the media destinations of the first session description and
        open their pinholes (RTP and RTCP as one group); translate the SDP."""
        run, msg = self.run, self.msg
        key = (self.gw, call_id)
        if call_id is None or key not in run.st.calls or not msg.sdp:
            self.sdp_addresses()
            return
        sd = msg.sdp[0]
        call = run.st.calls[key]

        def mine(g) -> bool:
            if g.side != side:
                return False
            return g.conn_id == conn_id if conn_id is not None else (g.conn_id is None and g.tid == tid)

        existing = {g.index: g for g in call.groups.values() if mine(g)}
        mapped: dict[str, str] = {}
        for i, m in enumerate(sd.media):
            old = existing.get(i)
            dest = m.conn if m.conn is not None else m.session_conn
            if dest is None:
                raise Dropped(f"SDP m= line {i + 1} has no c= at media or session level")
            addr = dest.addr.text
            if m.port == 0 or addr == "0.0.0.0" or dest.is_multicast or not _is_ipv4(addr):
                # No media to this side now (RFC 3264 port 0, on hold, or not
                # a unicast IPv4 destination): no pinhole.
                if old is not None:
                    run.release_group(run.st.calls[key], old.group, "media stream removed")
                continue
            rtcp_port = m.rtcp_port if m.rtcp_port is not None else m.port + 1
            if rtcp_port > 65535:
                # RTCP is on the next port (RFC 3550 11); none follows 65535.
                raise Dropped(f"SDP m= line {i + 1}: RTP port {m.port} leaves no port for RTCP")
            rtcp_ip = m.rtcp_addr.text if m.rtcp_addr is not None else addr
            # An inbound description naming one of the ALG's public pairs:
            # give the private side the destination it stands for.
            if self.ctx.direction == "inbound":
                gid = run.st.ports_in_use.get((IPv4Address(addr), m.port))
                where = run.st.group_index.get(gid) if gid is not None else None
                if where is not None:
                    g = run.st.calls[where].groups[gid]
                    mapped[addr] = g.dst_ip
                    if g.dst_port != m.port:
                        run.edits.append(Edit.replace(m.port_span, str(g.dst_port)))
                    if m.rtcp_port_span is not None and g.rtcp_port != m.rtcp_port:
                        run.edits.append(Edit.replace(m.rtcp_port_span, str(g.rtcp_port)))
                    continue
            public_ip = self.public_for(addr)
            if old is not None and old.dst_ip == addr and old.dst_port == m.port \
                    and old.rtcp_port == rtcp_port and old.public_ip == public_ip:
                pub = old.public_port
            else:
                if old is not None:
                    run.release_group(run.st.calls[key], old.group, "media changed")
                pub = self.bind(key, side, conn_id, tid, i, addr, m.port, rtcp_ip, rtcp_port, public_ip)
            if public_ip is not None and pub is not None:
                mapped[addr] = public_ip
                if m.rtcp_addr is not None:
                    mapped[rtcp_ip] = public_ip
                if pub != m.port:
                    run.edits.append(Edit.replace(m.port_span, str(pub)))
                if m.rtcp_port_span is not None and m.rtcp_port != pub + 1:
                    run.edits.append(Edit.replace(m.rtcp_port_span, str(pub + 1)))
        for idx, g in existing.items():
            if idx >= len(sd.media) and g.group in run.st.calls[key].groups:
                run.release_group(run.st.calls[key], g.group, "media stream removed")
        self.sdp_addresses(mapped)

    def kept_port(self, public_ip: str, addr: str, port: int, rtcp_ip: str, rtcp_port: int) -> int | None:
        """The private RTP port itself when ``public_ip`` is one host's alone
        (``MgcpContext.dedicated``: a MIP translates the address only, every
        port of it is the host's) and RTCP follows on the next port of the
        same host (RFC 3550 11), else None: the ALG allocates a pair.

        Another connection's voice channel may hold the same pair (a gateway
        that reuses its RTP port while an older connection is still known):
        both keep it, the newest pinhole to it answers
        (gateway/datapath/pinholes.py) and the newest group owns the pair in
        ``ports_in_use``."""
        dedicated = self.ctx.dedicated
        if dedicated is None or rtcp_ip != addr or rtcp_port != port + 1 or not 0 < port < 65535:
            return None
        return port if dedicated(public_ip) else None

    def bind(self, key, side, conn_id, tid, index, addr, port, rtcp_ip, rtcp_port, public_ip) -> int | None:
        run = self.run
        call = run.st.calls[key]
        pub = None if public_ip is None else self.kept_port(public_ip, addr, port, rtcp_ip, rtcp_port)
        if public_ip is not None and pub is None:
            # RTP on an even port and RTCP on the next odd one (gateway.ports).
            pub = allocate_pair(run.st.ports_in_use, IPv4Address(public_ip),
                                hint=_port_hint(run.st.ports_in_use, public_ip, port, f"{call.stream}#{call.seq}"))
            if pub is None:
                raise Dropped(f"no free even/odd port pair on {public_ip} for media {addr}:{port}; "
                            "MGCP message discarded")
        group = f"{call.stream}#g{call.seq}"
        deadline = self.now + self.settings.inactive_media_timeout
        run.emit(ev.MediaBound(self.gw, call.call_id, group, conn_id, tid, side, index, addr, port,
                               rtcp_ip, rtcp_port, public_ip, pub, deadline))
        if public_ip is not None:
            holes = (("inbound", (public_ip, pub), (addr, port)),
                     ("inbound", (public_ip, pub + 1), (rtcp_ip, rtcp_port)))
        else:
            holes = (("any", (addr, port), None), ("any", (rtcp_ip, rtcp_port), None))
        far = self.ctx.far_side
        for direction, dst, to in holes:
            target = to if to else dst
            if far is not None and far(str(target[0])):
                # Media to it stays in the zone the message goes to: no path
                # through the gateway is needed, and a descriptor naming a host
                # behind the gateway must not open one from anywhere.
                run.logs.append(f"call {call.call_id}: no media pinhole to {target[0]}:{target[1]}: it "
                                f"lies in the zone the message goes to ({self.ctx.egress})")
                continue
            call = run.st.calls[key]
            pid = f"{call.stream}#p{call.seq}"
            run.emit(ev.PinholeOpened(self.gw, call.call_id, pid, group, direction, dst[0], dst[1],
                                      to[0] if to else None, to[1] if to else None))
        return pub
