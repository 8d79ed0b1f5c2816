"""Offset-preserving SDP parser (RFC 4566), for the SIP and MGCP ALGs.

Only what NAT and pinholes need is read (manual chapter 2, "SDP" and
"Pinhole Creation"): the o= unicast address, c= connection addresses at session
and media level, m= ports, a=rtcp (RFC 3605) and the direction attributes.
Every address and port is returned as a :class:`Span` of the enclosing message
so that the ALG can rewrite it by position. Other lines are passed over."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import RemoteProtocolError
from gateway.construct import frozen_constructor
from gateway.span import Span

_PORT_RE = re.compile(rb"([0-9]{1,5})(?:/([0-9]{1,5}))?\Z")
_TTL_RE = re.compile(rb"[0-9]{1,5}\Z")
_RTCP_RE = re.compile(rb"rtcp:([0-9]{1,5})(?:[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+))?[ \t]*\Z")
_IPV4_RE = re.compile(rb"([0-9]{1,3})\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\Z")
_BAD_LINE_RE = re.compile(rb"^(?![a-z]=|\r?$)", re.M)
_LONE_CR_RE = re.compile(rb"\r(?!\n)")
# A line start (after a LF) that is not "<type>=" nor an empty line; and the
# lines the parser reads (o=, c=, m=, a=rtcp and the directions). Each match
# starts at the LF before its line.
_BAD_LF_RE = re.compile(rb"\n(?![a-z]=|\r?(?:\n|\Z))")
_LF_LINES_RE = re.compile(
    rb"\n(?:([ocm])=([^\r\n]*)|a=(rtcp:[^\r\n]*|sendrecv|sendonly|recvonly|inactive)[ \t]*)\r?(?=\n|\Z)")


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line: ``c=<nettype> <addrtype> <addr>[/<ttl>][/<count>]``."""

    addr: Span
    addrtype: str
    is_multicast: bool
    ttl: int | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Media:
    """One m= section. ``conn`` is its own c= line; ``session_conn`` the
    session-level one it falls back to (RFC 4566 5.7)."""

    kind: str
    port: int
    port_span: Span
    port_count: int
    proto: str
    formats: tuple[str, ...]
    conn: Connection | None
    rtcp_port: int | None
    rtcp_port_span: Span | None
    rtcp_addr: Span | None
    direction: str
    session_conn: Connection | None = None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin_addr: Span | None
    session_conn: Connection | None
    media: tuple[Media, ...]
    direction: str = "sendrecv"

    def media_destination(self, media: Media) -> tuple[str, int] | None:
        return media_destination(media)


# Hot-path constructors (same classes; see gateway.construct).
_mk_span = frozen_constructor(Span)
_mk_conn = frozen_constructor(Connection)
_mk_media = frozen_constructor(Media)
_mk_sd = frozen_constructor(SessionDescription)
# The plain c= line "<nettype> IP4 <dotted quad>" (no TTL, no trailing LWS);
# anything else takes the general path of _connection.
_F_CONN = re.compile(rb"[^ ]+ IP4 (([0-9]{1,3})\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})").fullmatch


def media_destination(media: Media) -> tuple[str, int] | None:
    """Where the media of ``media`` is to be sent: the media-level c= address,
    else the session-level one (manual chapter 2, "Pinhole Creation"); None
    when neither exists, which the manual treats as an error (drop + log)."""
    conn = media.conn if media.conn is not None else media.session_conn
    if conn is None:
        return None
    return conn.addr.text, media.port


def _bad(what: str, offset: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed SDP {what}", offset=offset)


def _span(body: bytes, start: int, end: int, base: int) -> Span:
    return _mk_span(base + start, base + end, body[start:end].decode("latin-1"))


def _connection(body: bytes, vs: int, ve: int, base: int) -> Connection:
    # c=<nettype> <addrtype> <connection-address>; fields are separated by
    # exactly one space (RFC 4566 5), a trailing space is tolerated.
    m = _F_CONN(body, vs, ve)
    if m is not None:
        a_start, a_end = m.span(1)
        o_start, o_end = m.span(2)
        return _mk_conn(_mk_span(base + a_start, base + a_end, body[a_start:a_end].decode("latin-1")), "IP4",
                        224 <= int(body[o_start:o_end]) <= 239, None, None)
    value = body[vs:ve]
    fields = value.rstrip(b" \t").split(b" ")
    if len(fields) != 3 or not all(fields):
        raise _bad("c= line", base + vs)
    addrtype = fields[1].decode("latin-1")
    addr = fields[2]
    a_start = vs + len(fields[0]) + len(fields[1]) + 2
    ttl = count = None
    slash = addr.find(b"/")
    if slash >= 0:
        extra = addr[slash + 1:].split(b"/")
        if len(extra) > 2 or not all(_TTL_RE.match(x) for x in extra):
            raise _bad("c= address suffix", base + vs)
        if addrtype == "IP4" and len(extra) >= 1:
            ttl = int(extra[0])
            count = int(extra[1]) if len(extra) == 2 else None
        else:
            count = int(extra[0])
        addr = addr[:slash]
        if not addr:
            raise _bad("c= address", base + vs)
    multicast = False
    if addrtype == "IP4":
        m = _IPV4_RE.match(addr)
        multicast = m is not None and 224 <= int(m.group(1)) <= 239
    elif addrtype == "IP6":
        multicast = addr[:2].lower() == b"ff"
    return _mk_conn(_span(body, a_start, a_start + len(addr), base), addrtype, multicast, ttl, count)


def parse_sdp(body: bytes, base: int = 0) -> SessionDescription:
    """Parse an SDP body; spans are ``base`` + offset in ``body``.

    Raises :class:`RemoteProtocolError` (only) when a line is not
    ``<type>=<value>`` or when an o=, c=, m= or a=rtcp line is malformed."""
    if not isinstance(body, bytes):
        body = bytes(body)
    # Every line is "<type>=<value>" (RFC 4566 5) or empty; a CR not ending a
    # line would hide a line from a CRLF-or-LF reader, so it is refused.
    # (The scans look for LF rather than use "^" with re.M, which tries
    # every position: the first line is checked on its own, and the lines
    # are read from a copy of the body with a LF in front, its positions one
    # more than the body's -- hence ``base - 1`` below.)
    bad = _BAD_LINE_RE.match(body)
    if bad is None:
        bad = _BAD_LF_RE.search(body)
        if bad is not None:
            raise _bad("line (not <type>=<value>)", base + bad.start() + 1)
    else:
        raise _bad("line (not <type>=<value>)", base + bad.start())
    # A lone CR is one not counted as part of a CRLF (two counts in C; the
    # search only to say where).
    if body.count(b"\r") != body.count(b"\r\n"):
        raise _bad("line (lone CR)", base + _LONE_CR_RE.search(body).start())
    body = b"\n" + body
    base -= 1
    origin = None
    session_conn = None
    session_dir = "sendrecv"
    # Media sections collected as mutable lists, frozen at the end.
    sections: list[list] = []
    cur = None
    # Only the lines NAT and pinholes need: o=, c=, m=, a=rtcp and directions.
    for lm in _LF_LINES_RE.finditer(body):
        t = lm.group(1)
        if t is None:
            value = lm.group(3)
            if value[:5] == b"rtcp:":
                vs = lm.start(3)
                rm = _RTCP_RE.match(value)
                if rm is None or int(rm.group(1)) > 65535:
                    raise _bad("a=rtcp line", base + vs)
                if cur is not None:
                    cur[7] = int(rm.group(1))
                    cur[8] = _span(body, vs + 5, vs + 5 + len(rm.group(1)), base)
                    if rm.group(4) is not None:
                        cur[9] = _span(body, vs + rm.start(4), vs + rm.end(4), base)
            else:
                word = value.decode("latin-1")
                if cur is None:
                    session_dir = word
                else:
                    cur[10] = word
            continue
        vs, end = lm.span(2)
        if t == b"m":  # m=<media> <port>[/<count>] <proto> <fmt> ...
            fields = lm.group(2).split(b" ")
            if len(fields) < 3 or not fields[0] or not fields[2]:
                raise _bad("m= line", base + vs)
            pm = _PORT_RE.match(fields[1])
            if pm is None or int(pm.group(1)) > 65535:
                raise _bad("m= port", base + vs)
            ps = vs + len(fields[0]) + 1
            port_span = _span(body, ps, ps + len(pm.group(1)), base)
            cur = [fields[0].decode("latin-1"), int(pm.group(1)), port_span,
                   int(pm.group(2)) if pm.group(2) else 1, fields[2].decode("latin-1"),
                   tuple(filter(None, b" ".join(fields[3:]).decode("latin-1").split(" "))),
                   None, None, None, None, None]
            sections.append(cur)
        elif t == b"c":
            conn = _connection(body, vs, end, base)
            if cur is None:
                if session_conn is not None:
                    raise _bad("session: more than one c= line", base + vs)
                session_conn = conn
            elif cur[6] is None:
                cur[6] = conn
            # several media-level c= lines (layered multicast, RFC 4566 5.7):
            # the first one is the destination.
        else:  # o=<user> <sess-id> <sess-version> IN IP4 <addr>
            if origin is not None or cur is not None:
                raise _bad("o= line (repeated or after m=)", base + vs)
            fields = lm.group(2).split(b" ")
            if len(fields) != 6 or not fields[5]:
                raise _bad("o= line", base + vs)
            origin = _span(body, end - len(fields[5]), end, base)
    media = tuple([_mk_media(kind, port, port_span, count, proto, fmts, conn, rtcp_port, rtcp_span,
                             rtcp_addr, direction or session_dir, session_conn)
                   for (kind, port, port_span, count, proto, fmts, conn, rtcp_port, rtcp_span,
                        rtcp_addr, direction) in sections])
    return _mk_sd(origin, session_conn, media, session_dir)
