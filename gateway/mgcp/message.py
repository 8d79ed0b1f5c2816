"""MGCP messages (RFC 3435) parsed by position.

The manual (chapter 3, "MGCP Security") lets through only messages in RFC 3435's
format, so this parser is strict about the grammar of RFC 3435 appendix A and
records, as :class:`~gateway.span.Span`, every address and port NAT may rewrite:
bracketed IPs of endpoint names (``aaln/1@[192.168.10.8]``, also in Z:/Z2:),
the host and port of the NotifiedEntity (N:), and the SDP o=, c=, m= and
a=rtcp values. Nothing is normalised: the bytes outside the spans are the
datagram's own, so a message passed with no edits is byte-identical.

Deliberate leniencies, each seen in real traffic (the capture corpus): a lone CR
as line end besides CRLF and LF, NUL padding after the last line of a datagram,
a missing EOL on the last line, and protocol versions other than 1.0
(``MGCP 0.1``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from gateway.errors import RemoteProtocolError
from gateway.sdp import SessionDescription, parse_sdp
from gateway.span import Span

# RFC 3435 section 2.3 / 3.2.1: the nine commands. MESG is not among them (it is
# a PacketCable NCS command, not an RFC 3435 one); experimental "X..." verbs are
# refused as well, since the manual passes only RFC 3435 message formats.
VERBS = frozenset({"EPCF", "CRCX", "MDCX", "DLCX", "RQNT", "NTFY", "AUEP", "AUCX", "RSIP"})

# RFC 3435 section 3.2.2: every parameter code.
PARAMETER_CODES = frozenset({
    "B", "C", "I", "N", "X", "L", "M", "R", "S", "D", "O", "P", "E", "Z", "Z2", "I2",
    "F", "Q", "T", "RM", "RD", "A", "ES", "PL", "MD", "K",
})

# RFC 3435 section 2.3.12 / appendix A: RestartMethod.
RESTART_METHODS = frozenset({"graceful", "forced", "restart", "disconnected", "cancel-graceful"})

# Bounds on what one datagram may hold, far above real traffic (a response
# piggy-backed with a command or an ack, 3.5.5; a dozen parameters; one or
# two session descriptions of a few media lines, 3.4) and low enough that a
# 64 KiB datagram costs the parser and the ALG a few milliseconds: without
# them one datagram of 2,700 m= lines made the ALG bind 2,700 media groups.
MAX_MESSAGES = 16            # piggy-backed messages per datagram
MAX_PARAMS = 128             # parameter lines per message
MAX_DESCRIPTIONS = 4         # session descriptions per message
MAX_MEDIA = 16               # m= lines per message body
# Lines per session description. gateway.sdp.parse_sdp first tries one
# pattern over the whole description whose runs of "other" lines around the
# optional c= and direction lines can be split in O(n^3) ways before a late
# mismatch fails it (8 KiB of "a=x" lines and a bad byte: 100 s). An RFC 3435
# connection descriptor has a few lines (v, o, s, c, t, m and some a=); at
# this bound the worst case costs about 2 ms.
MAX_SDP_LINES = 40
# Bytes per session description line. Its a=rtcp patterns (the whole-
# description one and the line scan) retry a run of blanks inside a line from
# every position: quadratic in the line (8 KiB of tabs after "a=rtcp:1":
# 0.5 s). Descriptor lines are short; at this bound the worst costs ~4 ms.
MAX_SDP_LINE = 512
# Terms of a local endpoint name. Names are a few hierarchical terms (RFC
# 3435 2.1.1: aaln/1, ds/ds1-1/1); the ALG looks up the RSIP of every
# wildcard prefix of a name (2.3.12), each as long as the name so far, so
# the cost grows with the square of the terms (6,456 terms: 282 ms).
MAX_ENDPOINT_TERMS = 32

_LINE_END = re.compile(rb"\r\n|\n|\r")
_LONE_CR = re.compile(rb"\r(?!\n)")
_BAD_CHAR = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The command and response lines are matched after their trailing blanks are
# cut (``_strip_blanks``): with a trailing ``[ \t]*\Z`` after a lazy field, the
# engine retried the blank run from every position inside it, quadratic in a
# line of spaces and tabs. Without it each field ends where the next begins or
# at the line's end, and every match is linear in the line.
_COMMAND = re.compile(
    rb"([A-Za-z][A-Za-z0-9]{3})[ \t]+([0-9]{1,9})[ \t]+(\S+)[ \t]+([Mm][Gg][Cc][Pp])[ \t]+([0-9]{1,4}\.[0-9]{1,4})"
    rb"(?:[ \t]+([A-Za-z][A-Za-z0-9.\- \t]*))?\Z")
_RESPONSE = re.compile(
    rb"([0-9]{3})[ \t]+([0-9]{1,9})(?:[ \t]+/([A-Za-z0-9][A-Za-z0-9\-]{0,31}))?(?:[ \t]+(.*))?\Z", re.DOTALL)
_PARAM = re.compile(rb"([A-Za-z0-9][A-Za-z0-9+\-/]{0,63}):[ \t]*")
_EXT_PARAM = re.compile(r"X[-+][A-Z0-9]{1,32}\Z|[A-Z0-9][A-Z0-9\-]{0,31}/[A-Z0-9][A-Z0-9\-]{0,31}\Z")
_HEX_ID = re.compile(r"[0-9A-Fa-f]{1,32}\Z")
_LOCAL_PART = re.compile(r"[\x21-\x23\x25-\x29\x2b-\x2e\x30-\x3f\x41-\x7e]+\Z")
_DNS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,254}\Z")
_RANGE = re.compile(r"\[[^\]]*\]")
_PKG_RM = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,31}/[A-Za-z0-9\-]{1,32}\Z")
# RFC 3435 appendix A: a number is ASCII digits ("1*9(DIGIT)" for a
# transaction id). str.isdigit() also accepts other scripts' digits and
# superscripts ("\u00b2"), which int() then refuses: every number is checked
# against this instead.
_DIGITS = re.compile(r"[0-9]{1,9}\Z")
# K: (RFC 3435 3.5.6): confirmedTransactionIdRange *("," ...), a range being
# TransactionId ["-" TransactionId].
_ACK_RANGE = re.compile(r"[ \t]*([0-9]{1,9})(?:[ \t]*-[ \t]*([0-9]{1,9}))?[ \t]*\Z")


def _bad(reason: str, offset: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"MGCP: {reason}", offset=offset)


def _span(data: bytes, start: int, end: int) -> Span:
    return Span(start, end, data[start:end].decode("latin-1"))


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter line: canonical (upper-case) name, raw value, span of the value."""

    name: str
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint name ``local@domain`` (RFC 3435 section 2.1.1, 3.2.1.3).

    ``any_wildcard`` is ``$`` (any one endpoint), ``all_wildcard`` is ``*`` (all
    endpoints) and ``has_range`` a ``[1-8]`` range in the local name.
    ``domain_ip_span`` is the IP inside ``[...]`` when the domain is one: NAT
    rewrites it."""

    local: str
    domain: str
    span: Span
    domain_span: Span
    domain_ip_span: Span | None
    any_wildcard: bool
    all_wildcard: bool
    has_range: bool

    @property
    def is_wildcard(self) -> bool:
        return self.any_wildcard or self.all_wildcard or self.has_range


@dataclass(frozen=True, slots=True)
class NotifiedEntity:
    """``[local@]host[:port]`` of the N: parameter (RFC 3435 section 3.2.2).
    ``host_span`` excludes the brackets of an ``[IP]`` host."""

    local: str | None
    host: str
    host_span: Span
    host_is_ip: bool
    port: int | None
    port_span: Span | None


@dataclass(frozen=True, slots=True)
class AddressSpan:
    """An address or port NAT may rewrite: what it is, and where."""

    kind: str
    span: Span


@dataclass(frozen=True, slots=True)
class MgcpMessage:
    """A command (``kind == "command"``, with verb, endpoint and version) or a
    response (``kind == "response"``, with code and commentary). ``start`` and
    ``end`` are the message's bytes in the datagram (up to a piggy-back
    separator); offsets of every span are absolute in the datagram."""

    kind: str
    transaction_id: int
    params: tuple[Param, ...]
    start: int
    end: int
    verb: str | None = None
    endpoint: Endpoint | None = None
    version: str | None = None
    profile: str | None = None
    code: int | None = None
    commentary: str | None = None
    package: str | None = None
    notified_entity: NotifiedEntity | None = None
    sdp: tuple[SessionDescription, ...] = ()
    sdp_span: Span | None = None
    address_spans: tuple[AddressSpan, ...] = ()

    def get(self, name: str) -> str | None:
        """Value of the first parameter ``name`` (case-insensitive), or None."""
        p = self.param(name)
        return None if p is None else p.value

    def param(self, name: str) -> Param | None:
        name = name.upper()
        for p in self.params:
            if p.name == name:
                return p
        return None

    def get_all(self, name: str) -> tuple[Param, ...]:
        name = name.upper()
        return tuple(p for p in self.params if p.name == name)

    @property
    def is_command(self) -> bool:
        return self.kind == "command"

    @property
    def is_response(self) -> bool:
        return self.kind == "response"

    @property
    def call_id(self) -> str | None:
        v = self.get("C")
        return None if v is None else v.strip()

    @property
    def connection_ids(self) -> tuple[str, ...]:
        v = self.get("I")
        return () if v is None else _id_list(v)

    @property
    def connection_id(self) -> str | None:
        ids = self.connection_ids
        return ids[0] if ids else None

    @property
    def second_connection_id(self) -> str | None:
        v = self.get("I2")
        return None if v is None else v.strip()

    @property
    def request_id(self) -> str | None:
        v = self.get("X")
        return None if v is None else v.strip()

    @property
    def restart_method(self) -> str | None:
        v = self.get("RM")
        return None if v is None else v.strip().lower()

    @property
    def response_class(self) -> str | None:
        return None if self.code is None else response_class(self.code)

    @property
    def is_final(self) -> bool:
        """A final response (RFC 3435 section 3.4: anything but 1xx and 000-099)."""
        return self.code is not None and self.code >= 200


def response_class(code: int) -> str:
    """RFC 3435 section 2.4 and RFC 3661: what a return code's range means."""
    if code < 100:
        return "ack"
    if code < 200:
        return "provisional"
    if code < 300:
        return "success"
    if 400 <= code < 500:
        return "transient"
    if 500 <= code < 600:
        return "permanent"
    if 800 <= code < 900:
        return "package"
    return "unassigned"


def _id_list(value: str) -> tuple[str, ...]:
    v = value.strip()
    return tuple(x.strip() for x in v.split(",")) if v else ()


# ---------------------------------------------------------------- grammar pieces

def _endpoint(data: bytes, start: int, end: int) -> Endpoint:
    """``LocalEndpointName "@" DomainName`` at ``data[start:end]``."""
    text = data[start:end].decode("latin-1")
    at = text.rfind("@")
    if at <= 0 or at == len(text) - 1:
        raise _bad(f"endpoint name {text!r} is not local@domain", start)
    local, domain = text[:at], text[at + 1:]
    parts = local.split("/")
    if len(parts) > MAX_ENDPOINT_TERMS:
        raise _bad(f"endpoint name of {len(parts)} terms (at most {MAX_ENDPOINT_TERMS})", start)
    any_wc = all_wc = has_range = False
    for part in parts:
        if part == "$":
            any_wc = True
        elif part == "*":
            all_wc = True
        elif not _LOCAL_PART.match(part):
            # RFC 3435 appendix A: a name part is "$", "*", or a string without $ * / @
            raise _bad(f"bad local endpoint name {local!r}", start)
        elif "[" in part or "]" in part:
            rest = _RANGE.sub("", part)
            if "[" in rest or "]" in rest:
                raise _bad(f"unbalanced range in endpoint name {local!r}", start)
            has_range = True
    ds = start + at + 1
    ip_span = None
    if domain.startswith("["):
        if not domain.endswith("]"):
            raise _bad(f"unterminated [IP] domain {domain!r}", ds)
        _ip(domain[1:-1], ds + 1)
        ip_span = _span(data, ds + 1, end - 1)
    elif not (_DNS_NAME.match(domain) or (domain.startswith("#") and domain[1:].isdigit() and domain.isascii())):
        raise _bad(f"bad endpoint domain {domain!r}", ds)
    return Endpoint(local, domain, _span(data, start, end), _span(data, ds, end), ip_span,
                    any_wc, all_wc, has_range)


def _ip(text: str, offset: int) -> None:
    try:
        if ":" in text:
            IPv6Address(text)
        else:
            IPv4Address(text)
    except ValueError:
        raise _bad(f"bad IP address {text!r}", offset) from None


def _notified_entity(data: bytes, start: int, end: int) -> NotifiedEntity:
    """``[LocalName "@"] DomainName [":" port]`` (RFC 3435 3.2.2, NotifiedEntity)."""
    text = data[start:end].decode("latin-1")
    at = text.rfind("@")
    local = None
    hs = start
    if at >= 0:
        local = text[:at]
        if not local or not _LOCAL_PART.match(local.replace("/", "!")):
            raise _bad(f"bad notified entity local name {local!r}", start)
        hs = start + at + 1
    rest = text[hs - start:]
    port = port_span = None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise _bad(f"unterminated [IP] in notified entity {text!r}", hs)
        host = rest[1:close]
        _ip(host, hs + 1)
        host_span = _span(data, hs + 1, hs + 1 + len(host))
        tail = rest[close + 1:]
        is_ip = True
    else:
        colon = rest.find(":")
        host = rest if colon < 0 else rest[:colon]
        if not _DNS_NAME.match(host):
            raise _bad(f"bad notified entity host {host!r}", hs)
        host_span = _span(data, hs, hs + len(host))
        tail = "" if colon < 0 else rest[colon:]
        is_ip = False
    if tail:
        digits = tail[1:]
        if not tail.startswith(":") or not digits.isdigit() or not digits.isascii() or len(digits) > 5 \
                or int(digits) > 65535:
            raise _bad(f"bad notified entity port in {text!r}", hs)
        port = int(digits)
        port_span = _span(data, end - len(digits), end)
    return NotifiedEntity(local, host, host_span, is_ip, port, port_span)


def _check_param(name: str, value: str, vs: int, is_command: bool) -> None:
    """Values whose grammar the ALG relies on (RFC 3435 appendix A, manual
    chapter 3: connection and call ids are hex strings of at most 32 characters)."""
    v = value.rstrip(" \t")
    if name in ("C", "I2", "X"):
        if not _HEX_ID.match(v):
            raise _bad(f"{name}: {value!r} is not 1 to 32 hex digits", vs)
    elif name == "I":
        # RFC 3435 2.3.10: an AuditEndpoint response lists the endpoint's
        # connections, comma-separated, possibly none; a command names one.
        ids = _id_list(v)
        if is_command and len(ids) != 1:
            raise _bad(f"I: {value!r} must name exactly one connection", vs)
        for i in ids:
            if not _HEX_ID.match(i):
                raise _bad(f"I: {i!r} is not 1 to 32 hex digits", vs)
    elif name == "RM":
        if v.lower() not in RESTART_METHODS and not _PKG_RM.match(v):
            raise _bad(f"unknown restart method {value!r}", vs)
    elif name in ("RD", "MD"):
        if not _DIGITS.match(v):
            raise _bad(f"{name}: {value!r} is not a number", vs)
    elif name == "K":
        for item in v.split(","):
            if not _ACK_RANGE.match(item):
                raise _bad(f"K: {item.strip()!r} is not a transaction id or range", vs)


def _param_name(raw: bytes, offset: int) -> str:
    name = raw.decode("latin-1").upper()
    if name in PARAMETER_CODES or _EXT_PARAM.match(name):
        return name
    raise _bad(f"unknown parameter {name!r}", offset)


# ---------------------------------------------------------------- messages

def _lines(data: bytes, end: int) -> list[tuple[int, int, int]]:
    """(start, end of text, start of next line) of every line in ``data[:end]``."""
    out = []
    pos = 0
    search = _LINE_END.search
    while pos < end:
        m = search(data, pos, end)
        if m is None:
            out.append((pos, end, end))
            break
        out.append((pos, m.start(), m.end()))
        pos = m.end()
    return out


def parse_datagram(data: bytes | bytearray | memoryview) -> tuple[MgcpMessage, ...]:
    """Parse one UDP datagram: one MGCP message, or several piggy-backed ones
    separated by a line holding a single period (RFC 3435 section 3.5.5).

    Raises RemoteProtocolError, and nothing else, for anything outside the grammar."""
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    # NUL padding after the last line (seen from real gateways) is not part of a message.
    while end and data[end - 1] == 0:
        end -= 1
    if not end:
        raise _bad("empty datagram", 0)
    groups: list[list[tuple[int, int, int]]] = [[]]
    for line in _lines(data, end):
        if line[1] - line[0] == 1 and data[line[0]] == 0x2E:  # "."
            groups.append([])
        else:
            groups[-1].append(line)
    out = []
    if len(groups) > MAX_MESSAGES:
        raise _bad(f"more than {MAX_MESSAGES} piggy-backed messages in one datagram", 0)
    for lines in groups:
        if not lines:
            raise _bad("empty piggy-backed message", end)
        out.append(_message(data, lines))
    return tuple(out)


def _message(data: bytes, lines: list[tuple[int, int, int]]) -> MgcpMessage:
    ls, le, _ = lines[0]
    first = data[ls:le]
    if not first:
        raise _bad("message starts with an empty line", ls)
    if _BAD_CHAR.search(first):
        raise _bad("control character in the first line", ls)
    msg_start, msg_end = ls, lines[-1][2]
    fields: dict = {}
    addr: list[AddressSpan] = []
    first = first.rstrip(b" \t")
    if not first:
        raise _bad("message starts with a blank line", ls)
    if 0x30 <= first[0] <= 0x39:
        m = _RESPONSE.match(first)
        if m is None:
            raise _bad("malformed response line", ls)
        kind = "response"
        fields["code"] = int(m.group(1))
        fields["package"] = m.group(3).decode("ascii") if m.group(3) else None
        comment = m.group(4)
        fields["commentary"] = comment.decode("latin-1") if comment else None
    else:
        m = _COMMAND.match(first)
        if m is None:
            raise _bad("malformed command line", ls)
        kind = "command"
        verb = m.group(1).decode("ascii").upper()
        if verb not in VERBS:
            raise _bad(f"unknown command verb {verb!r}", ls)
        fields["verb"] = verb
        ep = _endpoint(data, ls + m.start(3), ls + m.end(3))
        fields["endpoint"] = ep
        if ep.domain_ip_span is not None:
            addr.append(AddressSpan("endpoint-ip", ep.domain_ip_span))
        fields["version"] = "MGCP " + m.group(5).decode("ascii")
        fields["profile"] = m.group(6).decode("latin-1") if m.group(6) else None
    tid = int(m.group(2))
    if not 1 <= tid <= 999_999_999:
        raise _bad(f"transaction id {tid} outside 1..999999999", ls)
    params = []
    body_at = None
    for i in range(1, len(lines)):
        ps, pe, _ = lines[i]
        if ps == pe:
            body_at = i + 1
            break
        if i > MAX_PARAMS:
            raise _bad(f"more than {MAX_PARAMS} parameter lines", ps)
        raw = data[ps:pe]
        if _BAD_CHAR.search(raw):
            raise _bad("control character in a parameter line", ps)
        pm = _PARAM.match(raw)
        if pm is None:
            raise _bad("malformed parameter line", ps)
        name = _param_name(pm.group(1), ps)
        vs = ps + pm.end()
        value = data[vs:pe].decode("latin-1")
        _check_param(name, value, vs, kind == "command")
        vend = pe - (len(value) - len(value.rstrip(" \t")))
        if name == "N":
            ne = _notified_entity(data, vs, vend)
            fields.setdefault("notified_entity", ne)
            if ne.host_is_ip:
                addr.append(AddressSpan("notified-host", ne.host_span))
            if ne.port_span is not None:
                addr.append(AddressSpan("notified-port", ne.port_span))
        elif name in ("Z", "Z2") and vend > vs:
            for zs, ze in _list_items(data, vs, vend):
                ep = _endpoint(data, zs, ze)
                if ep.domain_ip_span is not None:
                    addr.append(AddressSpan("endpoint-ip", ep.domain_ip_span))
        params.append(Param(name, value, Span(vs, pe, value)))
    sdp: list[SessionDescription] = []
    sdp_span = None
    if body_at is not None and body_at < len(lines):
        bs = lines[body_at][0]
        sdp_span = _span(data, bs, msg_end)
        if _LONE_CR.search(data, bs, msg_end):
            # The SDP parser splits lines at LF (RFC 4566 5); a body split by lone
            # CRs would hide its addresses from NAT, so it is refused.
            raise _bad("SDP body with lone CR line ends", bs)
        media = data.count(b"\nm=", bs, msg_end) + data.count(b"\rm=", bs, msg_end) + \
            (data.startswith(b"m=", bs))
        if media > MAX_MEDIA:
            raise _bad(f"more than {MAX_MEDIA} media descriptions (m=)", bs)
        # RFC 3435 section 3.4: two session descriptions (e.g. an AUCX response's
        # local and remote descriptors) are separated by an empty line.
        s = None
        count = 0
        for ls2, le2, nx in lines[body_at:]:
            if ls2 == le2:
                if s is not None:
                    if len(sdp) == MAX_DESCRIPTIONS:
                        raise _bad(f"more than {MAX_DESCRIPTIONS} session descriptions", s)
                    sdp.append(parse_sdp(data[s:ls2], s))
                    s = None
            else:
                if s is None:
                    s, count = ls2, 0
                count += 1
                if count > MAX_SDP_LINES:
                    raise _bad(f"more than {MAX_SDP_LINES} lines in a session description", ls2)
                if le2 - ls2 > MAX_SDP_LINE:
                    raise _bad(f"session description line longer than {MAX_SDP_LINE} bytes", ls2)
        if s is not None:
            if len(sdp) == MAX_DESCRIPTIONS:
                raise _bad(f"more than {MAX_DESCRIPTIONS} session descriptions", s)
            sdp.append(parse_sdp(data[s:msg_end], s))
        for d in sdp:
            for a in _sdp_address_spans(d):
                # RFC 4566 9: an address is a dotted quad, an IPv6 address or
                # an FQDN, all ASCII; anything else would reach the ALG's
                # address checks (and NAT) as a name no host can have.
                if not a.span.text.isascii():
                    raise _bad(f"non-ASCII address {a.span.text!r} in SDP", a.span.start)
                addr.append(a)
    return MgcpMessage(kind=kind, transaction_id=tid, params=tuple(params), start=msg_start, end=msg_end,
                       sdp=tuple(sdp), sdp_span=sdp_span, address_spans=tuple(addr), **fields)


def _sdp_address_spans(d: SessionDescription) -> list[AddressSpan]:
    """The SDP addresses and ports NAT may rewrite (manual chapter 3, "Performs
    Network Address Translation"), in the order they appear."""
    out = []
    if d.origin_addr is not None:
        out.append(AddressSpan("sdp-origin", d.origin_addr))
    if d.session_conn is not None:
        out.append(AddressSpan("sdp-connection", d.session_conn.addr))
    for m in d.media:
        out.append(AddressSpan("sdp-media-port", m.port_span))
        if m.conn is not None:
            out.append(AddressSpan("sdp-connection", m.conn.addr))
        if m.rtcp_port_span is not None:
            out.append(AddressSpan("sdp-rtcp-port", m.rtcp_port_span))
        if m.rtcp_addr is not None:
            out.append(AddressSpan("sdp-rtcp-address", m.rtcp_addr))
    return out


def _list_items(data: bytes, start: int, end: int):
    """Comma-separated items of ``data[start:end]``, surrounding blanks trimmed."""
    pos = start
    while pos <= end:
        comma = data.find(b",", pos, end)
        stop = end if comma < 0 else comma
        a, b = pos, stop
        while a < b and data[a] in b" \t":
            a += 1
        while b > a and data[b - 1] in b" \t":
            b -= 1
        if a == b:
            raise _bad("empty item in a list", pos)
        yield a, b
        if comma < 0:
            break
        pos = comma + 1
