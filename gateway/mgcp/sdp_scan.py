"""Where the addresses and ports of an SDP body are, for MGCP's NAT.

A deliberately small scanner (RFC 4566 lines o=, c=, m= and a=rtcp of RFC
3605): MGCP carries SDP as LocalConnectionDescriptor / RemoteConnectionDescriptor
(RFC 3435 section 3.4), and the ALG needs only the positions of what NAT
rewrites. Every other line must still look like ``<letter>=<value>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import RemoteProtocolError
from gateway.span import Span

_LINE_END = re.compile(rb"\r\n|\n|\r")
_PORT = re.compile(rb"([0-9]{1,5})(?:/[0-9]{1,5})?\Z")
_RTCP = re.compile(rb"rtcp:([0-9]{1,5})(?:[ \t]+IN[ \t]+IP[46][ \t]+(\S+))?[ \t]*\Z")


@dataclass(frozen=True, slots=True)
class SdpMedia:
    kind: str
    port: int
    port_span: Span
    conn: Span | None
    rtcp_port_span: Span | None
    rtcp_addr_span: Span | None


@dataclass(frozen=True, slots=True)
class SdpSpans:
    """One session description: its span, and the spans NAT may rewrite."""

    span: Span
    origin_addr: Span | None
    session_conn: Span | None
    media: tuple[SdpMedia, ...]

    def address_spans(self) -> tuple[tuple[str, Span], ...]:
        out: list[tuple[str, Span]] = []
        if self.origin_addr is not None:
            out.append(("sdp-origin", self.origin_addr))
        if self.session_conn is not None:
            out.append(("sdp-connection", self.session_conn))
        for m in self.media:
            out.append(("sdp-media-port", m.port_span))
            if m.conn is not None:
                out.append(("sdp-connection", m.conn))
            if m.rtcp_port_span is not None:
                out.append(("sdp-rtcp-port", m.rtcp_port_span))
            if m.rtcp_addr_span is not None:
                out.append(("sdp-rtcp-address", m.rtcp_addr_span))
        return tuple(out)


def _span(data: bytes, start: int, end: int) -> Span:
    return Span(start, end, data[start:end].decode("latin-1"))


def scan_sdp(data: bytes, start: int, end: int) -> SdpSpans:
    """Scan ``data[start:end]`` (one session description); spans are absolute."""
    origin = session_conn = None
    media: list[list] = []
    pos = start
    while pos < end:
        m = _LINE_END.search(data, pos, end)
        ls, le = pos, (m.start() if m else end)
        pos = m.end() if m else end
        if le == ls:
            continue
        t = data[ls]
        if le - ls < 2 or data[ls + 1] != 0x3D or not 0x61 <= t <= 0x7A:
            raise RemoteProtocolError("SDP line is not <type>=<value>", offset=ls)
        vs = ls + 2
        value = data[vs:le]
        if t == 0x6F:  # o=<user> <sess-id> <sess-version> <nettype> <addrtype> <address>
            f = value.split(b" ")
            if len(f) != 6 or not f[5] or origin is not None or media:
                raise RemoteProtocolError("malformed or misplaced SDP o= line", offset=ls)
            origin = _span(data, le - len(f[5]), le)
        elif t == 0x63:  # c=<nettype> <addrtype> <address>[/ttl][/count]
            f = value.split(b" ")
            if len(f) != 3 or not all(f):
                raise RemoteProtocolError("malformed SDP c= line", offset=ls)
            a = vs + len(f[0]) + len(f[1]) + 2
            addr = f[2].split(b"/")[0]
            if not addr:
                raise RemoteProtocolError("SDP c= line without address", offset=ls)
            sp = _span(data, a, a + len(addr))
            if not media:
                if session_conn is not None:
                    raise RemoteProtocolError("second session-level SDP c= line", offset=ls)
                session_conn = sp
            elif media[-1][3] is None:
                media[-1][3] = sp
        elif t == 0x6D:  # m=<media> <port>[/<count>] <proto> <fmt> ...
            f = value.split(b" ")
            pm = _PORT.match(f[1]) if len(f) >= 3 and f[0] and f[2] else None
            if pm is None or int(pm.group(1)) > 65535:
                raise RemoteProtocolError("malformed SDP m= line", offset=ls)
            p = vs + len(f[0]) + 1
            media.append([f[0].decode("latin-1"), int(pm.group(1)), _span(data, p, p + len(pm.group(1))),
                          None, None, None])
        elif t == 0x61 and value.startswith(b"rtcp:"):
            rm = _RTCP.match(value)
            if rm is None or int(rm.group(1)) > 65535:
                raise RemoteProtocolError("malformed SDP a=rtcp line", offset=ls)
            if media:
                media[-1][4] = _span(data, vs + rm.start(1), vs + rm.end(1))
                if rm.group(2) is not None:
                    media[-1][5] = _span(data, vs + rm.start(2), vs + rm.end(2))
    return SdpSpans(_span(data, start, end), origin, session_conn,
                    tuple(SdpMedia(*m) for m in media))
