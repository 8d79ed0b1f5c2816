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

# The lines are read from the body decoded as latin-1 (one character per
# octet, so positions are octet offsets); re.ASCII keeps \S what it is on bytes.
_PORT_RE = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?\Z", re.ASCII)
_TTL_RE = re.compile(r"[0-9]{1,5}\Z", re.ASCII)
_RTCP_RE = re.compile(r"rtcp:([0-9]{1,5})(?:[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+))?[ \t]*\Z", re.ASCII)
_IPV4_RE = re.compile(r"([0-9]{1,3})\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\Z", re.ASCII)
_BAD_LINE_RE = re.compile(rb"^(?![a-z]=|\r?$)", re.M)
_LONE_CR_RE = re.compile(rb"\r(?!\n)")
# A line start (after a LF) that is not "<type>=" nor an empty line; and the
# lines the parser reads (o=, c=, m=, a=rtcp and the directions). Each match
# starts at the LF before its line.
_BAD_LF_RE = re.compile(rb"\n(?![a-z]=|\r?(?:\n|\Z))")
_LF_LINES_RE = re.compile(
    r"\n(?:([ocm])=([^\r\n]*)|a=(rtcp:[^\r\n]*|sendrecv|sendonly|recvonly|inactive)[ \t]*)\r?(?=\n|\Z)", re.ASCII)


# The plain session description, read whole by one pattern (most calls):
# CRLF line ends, "v=" then "o=<five fields> <address>", at most one
# session-level "c=<nettype> IP4 <dotted quad>" and one direction, then one
# m= section ("m=<media> <port>[/<count>] <proto>[ <fmt list>]") with at most
# one c= of that plain shape and one direction; no a=rtcp, no empty line.
# Every other line is "<type>=<value>" with a type that is not a, c, m, o, or
# an a= line that is neither a=rtcp nor a direction. What this pattern
# accepts, the line-by-line reading below accepts too and reads the same way
# (tests/test_sdp_parse_plain.py holds them equal); anything else is read
# line by line. Groups: 1 origin address; 2 session c= address, 3 its first
# octet; 4 session direction; 5 media, 6 port, 7 count, 8 proto, 9 formats
# (with the space before them); 10 media c= address, 11 its first octet;
# 12 media direction.
# The runs of other lines are possessive (``*+``): the line after a run (c=,
# m=, a direction, or the end) can never be an "other" line, so the run has
# one way to end and giving lines back cannot help a match. With a plain
# ``*`` two runs meeting around an absent optional line could share their
# lines in every way and a body that fails late was tried in all of them:
# cubic, 57 s for a 1 KB body of "b=" lines around an m= line.
_PLAIN_OTHER = (r"(?:[bd-lnp-z]=[^\r\n]*\r\n"
                r"|a=(?!(?:rtcp:[^\r\n]*|sendrecv|sendonly|recvonly|inactive)[ \t]*\r\n)[^\r\n]*\r\n)*+")
_PLAIN_DIR = r"(?:a=(sendrecv|sendonly|recvonly|inactive)[ \t]*\r\n)?"
_PLAIN_CONN = r"(?:c=[^ \r\n]+ IP4 (([0-9]{1,3})\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\r\n)?"
_PLAIN_SDP = re.compile(
    r"v=[^\r\n]*\r\n"
    r"o=(?:[^ \r\n]* ){5}([^ \r\n]+)\r\n"
    + _PLAIN_OTHER + _PLAIN_CONN + _PLAIN_OTHER + _PLAIN_DIR + _PLAIN_OTHER
    + r"m=([^ \r\n]+) ([0-9]{1,5})(?:/([0-9]{1,5}))? ([^ \r\n]+)((?: [^\r\n]*)?)\r\n"
    + _PLAIN_OTHER + _PLAIN_CONN + _PLAIN_OTHER + _PLAIN_DIR + _PLAIN_OTHER, re.ASCII).fullmatch


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
_F_CONN = re.compile(r"[^ ]+ IP4 (([0-9]{1,3})\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})", re.ASCII).fullmatch


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


def _span(text: str, start: int, end: int, base: int) -> Span:
    return _mk_span(base + start, base + end, text[start:end])


def _connection(text: str, vs: int, ve: int, base: int) -> Connection:
    # c=<nettype> <addrtype> <connection-address>; fields are separated by
    # exactly one space (RFC 4566 5), a trailing space is tolerated.
    m = _F_CONN(text, vs, ve)
    if m is not None:
        a_start, a_end = m.span(1)
        return _mk_conn(_mk_span(base + a_start, base + a_end, text[a_start:a_end]), "IP4",
                        224 <= int(m.group(2)) <= 239, None, None)
    value = text[vs:ve]
    fields = value.rstrip(" \t").split(" ")
    if len(fields) != 3 or not all(fields):
        raise _bad("c= line", base + vs)
    addrtype = fields[1]
    addr = fields[2]
    a_start = vs + len(fields[0]) + len(fields[1]) + 2
    ttl = count = None
    slash = addr.find("/")
    if slash >= 0:
        extra = addr[slash + 1:].split("/")
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
        multicast = addr[:2].lower() == "ff"
    return _mk_conn(_span(text, a_start, a_start + len(addr), base), addrtype, multicast, ttl, count)


def parse_sdp(body: bytes, base: int = 0) -> SessionDescription:
    """Parse an SDP body; spans are ``base`` + offset in ``body``.

    Raises :class:`RemoteProtocolError` (only) when a line is not
    ``<type>=<value>`` or when an o=, c=, m= or a=rtcp line is malformed."""
    if not isinstance(body, bytes):
        body = bytes(body)
    text = body.decode("latin-1")
    plain = _PLAIN_SDP(text)
    if plain is not None:
        sd = _plain_sdp(text, plain, base)
        if sd is not None:
            return sd
    return _parse_lines(body, text, base)


def _plain_sdp(text: str, m: re.Match, base: int) -> SessionDescription | None:
    """The description matched by _PLAIN_SDP; None when its port is above
    65535 (the line-by-line reading says why it is refused)."""
    (origin, s_addr, s_octet, s_dir, kind, port, count, proto, fmts, m_addr, m_octet,
     m_dir) = m.groups()
    port_number = int(port)
    if port_number > 65535:
        return None
    start = m.start(1)
    origin_span = _mk_span(base + start, base + start + len(origin), origin)
    session_conn = conn = None
    if s_addr is not None:
        start = m.start(2)
        session_conn = _mk_conn(_mk_span(base + start, base + start + len(s_addr), s_addr), "IP4",
                                224 <= int(s_octet) <= 239, None, None)
    if m_addr is not None:
        start = m.start(10)
        conn = _mk_conn(_mk_span(base + start, base + start + len(m_addr), m_addr), "IP4",
                        224 <= int(m_octet) <= 239, None, None)
    session_dir = s_dir or "sendrecv"
    start = m.start(6)
    media = _mk_media(kind, port_number, _mk_span(base + start, base + start + len(port), port),
                      int(count) if count else 1, proto, tuple(filter(None, fmts[1:].split(" "))) if fmts else (),
                      conn, None, None, None, m_dir or session_dir, session_conn)
    return _mk_sd(origin_span, session_conn, (media,), session_dir)


def _parse_lines(body: bytes, text: str, base: int) -> SessionDescription:
    """parse_sdp line by line (``text`` is ``body`` decoded as latin-1)."""
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
    text = "\n" + text
    base -= 1
    origin = None
    session_conn = None
    session_dir = "sendrecv"
    # Media sections collected as mutable lists, frozen at the end.
    sections: list[list] = []
    cur = None
    # Only the lines NAT and pinholes need: o=, c=, m=, a=rtcp and directions.
    for lm in _LF_LINES_RE.finditer(text):
        t, value, attr = lm.groups()
        if t is None:
            if attr[:5] == "rtcp:":
                vs = lm.start(3)
                rm = _RTCP_RE.match(attr)
                if rm is None or int(rm.group(1)) > 65535:
                    raise _bad("a=rtcp line", base + vs)
                if cur is not None:
                    cur[7] = int(rm.group(1))
                    cur[8] = _span(text, vs + 5, vs + 5 + len(rm.group(1)), base)
                    if rm.group(4) is not None:
                        cur[9] = _span(text, vs + rm.start(4), vs + rm.end(4), base)
            elif cur is None:
                session_dir = attr
            else:
                cur[10] = attr
            continue
        if t == "c":
            vs, end = lm.span(2)
            conn = _connection(text, vs, end, base)
            if cur is None:
                if session_conn is not None:
                    raise _bad("session: more than one c= line", base + vs)
                session_conn = conn
            elif cur[6] is None:
                cur[6] = conn
            # several media-level c= lines (layered multicast, RFC 4566 5.7):
            # the first one is the destination.
        elif t == "m":  # m=<media> <port>[/<count>] <proto> <fmt> ...
            fields = value.split(" ")
            if len(fields) < 3 or not fields[0] or not fields[2]:
                raise _bad("m= line", base + lm.start(2))
            pm = _PORT_RE.match(fields[1])
            if pm is None:
                raise _bad("m= port", base + lm.start(2))
            port_text, count = pm.groups()
            port = int(port_text)
            if port > 65535:
                raise _bad("m= port", base + lm.start(2))
            ps = base + lm.start(2) + len(fields[0]) + 1
            cur = [fields[0], port, _mk_span(ps, ps + len(port_text), port_text),
                   int(count) if count else 1, fields[2], tuple(filter(None, fields[3:])),
                   None, None, None, None, None]
            sections.append(cur)
        else:  # o=<user> <sess-id> <sess-version> IN IP4 <addr>
            if origin is not None or cur is not None:
                raise _bad("o= line (repeated or after m=)", base + lm.start(2))
            fields = value.split(" ")
            if len(fields) != 6 or not fields[5]:
                raise _bad("o= line", base + lm.start(2))
            end = base + lm.end(2)
            origin = _mk_span(end - len(fields[5]), end, fields[5])
    if len(sections) == 1:
        kind, port, port_span, count, proto, fmts, conn, rtcp_port, rtcp_span, rtcp_addr, direction = cur
        media = (_mk_media(kind, port, port_span, count, proto, fmts, conn, rtcp_port, rtcp_span, rtcp_addr,
                           direction or session_dir, session_conn),)
    else:
        media = tuple([_mk_media(kind, port, port_span, count, proto, fmts, conn, rtcp_port, rtcp_span,
                                 rtcp_addr, direction or session_dir, session_conn)
                       for (kind, port, port_span, count, proto, fmts, conn, rtcp_port, rtcp_span,
                            rtcp_addr, direction) in sections])
    return _mk_sd(origin, session_conn, media, session_dir)
