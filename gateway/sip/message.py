"""Offset-preserving SIP message parser (RFC 3261 section 7 and 25).

:func:`parse_message` reads a message without normalising it: every header,
URI host and port, and SDP address is reported by its position in the original
bytes, so that NAT can rewrite by position (manual chapter 2, "SIP Headers",
Table 2, and "SIP Body") and a message with no edits passes byte-identical.

Input that breaks the grammar raises :class:`RemoteProtocolError` with a
one-line reason; the ALG drops the message and logs it. The checks follow
RFC 3261 and the invalid messages of RFC 4475 section 3.1.2."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.errors import RemoteProtocolError
from gateway.construct import frozen_constructor
from gateway.sdp.parse import SessionDescription, parse_sdp
from gateway.sip.headers import (
    COMPACT_FORMS, HEADER_LINE_RE, HEADER_LINES_RE, NOT_LISTS, QUOTED_RE, TOKEN, TOKEN_RE,
    canonical_name, parse_params, split_list, unfold,
)
from gateway.sip.uri import is_ipv4, parse_uri
from gateway.span import Span

_WS = " \t\r\n"
_WSB = b" \t\r\n"
_CSEQ_RE = re.compile(r"([0-9]+)\s+(" + TOKEN + r")\Z")
_VIA_RE = re.compile(
    r"(" + TOKEN + r")\s*/\s*(" + TOKEN + r")\s*/\s*(" + TOKEN + r")\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*([0-9]{1,5}))?")
_ADDR_SPEC_RE = re.compile(r"[^\s;]+")
_HAS_WS_RE = re.compile(r"\s")
_CALLID_HOST_RE = re.compile(r"@([0-9.]+)(?::([0-9]{1,5}))?\Z")
_DIGITS_RE = re.compile(r"[0-9]{1,10}\Z")
# Contact, Route and Record-Route elements one message may carry, counted as
# the commas of those headers plus one per header line (an upper bound: a
# quoted display name may hold commas too). A route has a hop per proxy
# (Max-Forwards starts at 70) and a registrar lists the few bindings of an
# address of record; a 64 KiB datagram of short elements ("sip:a@h,") was
# ~6,500 of them and took 50-80 ms to read and refuse.
MAX_URI_ELEMENTS = 512
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")

# Header fields of which a request or response carries exactly one
# (RFC 3261 7.3.1: only list-valued fields may repeat; RFC 4475 3.3.8/3.3.9).
_SINGLE = ("from", "to", "call-id", "cseq", "content-length", "content-type")
_REQUIRED = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 8.1.1
_REQUIRED_SET = frozenset(_REQUIRED)


class Header(NamedTuple):
    """One header field line (folds included), by position.

    ``name`` is the canonical long name in lower case; ``raw_name`` and
    ``value`` are spans of the original bytes (``value`` trimmed of the LWS
    around it, its internal folds kept)."""

    name: str
    name_text: str
    name_start: int
    value_start: int
    value_end: int
    value_text: str

    @property
    def raw_name(self) -> Span:
        return Span(self.name_start, self.name_start + len(self.name_text), self.name_text)

    @property
    def value(self) -> Span:
        return Span(self.value_start, self.value_end, self.value_text)

    @property
    def text(self) -> str:
        """The value with folds read as single spaces."""
        return unfold(self.value_text)


@dataclass(frozen=True, slots=True)
class AddressRef:
    """An IPv4 address in the start line or a header, with the port after it.

    ``field`` is one of "request-uri", "via", "via-received", "via-maddr",
    "via-rport", "from", "to", "call-id", "contact", "route", "record-route".
    For "via-rport" ``port`` is the rport value and ``host`` the address it
    belongs to (the received parameter if present, else the sent-by host)."""

    field: str
    host: Span
    port: Span | None
    header_index: int | None


@dataclass(frozen=True, slots=True)
class Contact:
    """One Contact value. ``host``/``port`` are None for ``*`` and for URIs
    of other schemes than sip/sips."""

    uri: Span
    host: Span | None
    port: Span | None
    expires: int | None
    star: bool = False


@dataclass(frozen=True, slots=True)
class SipMessage:
    raw: bytes
    is_request: bool
    method: str
    request_uri: Span | None
    status_code: int | None
    reason: str | None
    call_id: str
    from_tag: str | None
    to_tag: str | None
    cseq: tuple[int, str]
    via_branch: str | None
    expires: int | None
    contacts: tuple[Contact, ...]
    session_expires: int | None
    content_type: str | None
    content_length: int | None
    body_offset: int
    body: bytes
    sdp: SessionDescription | None
    body_kind: str
    addresses: tuple[AddressRef, ...]
    # Where the header lines are (start, end) in ``raw``, the header lines
    # once read (a one-element list: filled on first use of ``lines``), and
    # the Content-Length value's (start, end) or None.
    _section: tuple[int, int] = field(repr=False, compare=False)
    _lines: list = field(repr=False, compare=False)
    _cl_value: tuple[int, int] | None = field(repr=False, compare=False)

    @property
    def lines(self) -> tuple[tuple[str, int, int, int, int], ...]:
        """(canonical name, name start, name end, value start, value end) per
        header line; ``headers`` gives them as Header objects. Read on first
        use: parse_message has checked every line already."""
        cached = self._lines[0]
        if cached is None:
            cached = _header_lines(self.raw.decode("latin-1"), *self._section)
            if cached is None:  # pragma: no cover - parse_message checked the same section
                raise RemoteProtocolError("malformed header line")
            self._lines[0] = cached
        return cached


    @property
    def headers(self) -> tuple[Header, ...]:
        raw = self.raw
        return tuple(Header(name, raw[ns:ne].decode("latin-1"), ns, vs, ve, raw[vs:ve].decode("latin-1"))
                     for name, ns, ne, vs, ve in self.lines)

    def _texts(self, want: str):
        raw = self.raw
        for name, _ns, _ne, vs, ve in self.lines:
            if name == want:
                yield unfold(raw[vs:ve].decode("latin-1"))

    def get(self, name: str) -> str | None:
        """First value of header ``name`` (any case, compact forms mapped),
        folds read as spaces; None when absent."""
        for text in self._texts(canonical_name(name)):
            return text
        return None

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of ``name``: all its header lines, and each
        comma-separated element of list-valued ones (commas in quoted strings
        and <...> do not split)."""
        want = canonical_name(name)
        out: list[str] = []
        for text in self._texts(want):
            if want in NOT_LISTS:
                out.append(text)
            else:
                out.extend(text[s:e] for s, e in split_list(text) if e > s)
        return tuple(out)

    def header_spans(self, name: str) -> tuple[Span, ...]:
        """Value spans of every header line named ``name``."""
        want = canonical_name(name)
        raw = self.raw
        return tuple(Span(vs, ve, raw[vs:ve].decode("latin-1"))
                     for n, _ns, _ne, vs, ve in self.lines if n == want)


def _err(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason)


def _opt_seconds(text: str) -> int | None:
    """delta-seconds, clamped to 2**32-1 (RFC 3261 20.19); None when the
    value is not a number (RFC 2543 allowed a date here)."""
    t = text.strip(_WS)
    if not t.isascii() or not t.isdigit():
        return None
    if len(t) > 10:
        return 2**32 - 1
    return min(int(t), 2**32 - 1)


def _name_addr(text: str, what: str, allow_star: bool = False):
    """Parse ``name-addr / addr-spec`` followed by parameters.

    Returns ``(uri_start, uri_end, params, star)`` relative to ``text``."""
    if allow_star and text == "*":
        return 0, 1, [], True
    n = len(text)
    if text.startswith('"'):
        m = QUOTED_RE.match(text)
        if m is None:
            raise _err(f"unterminated quoted string in {what}")
        j = m.end()
        while j < n and text[j] in _WS:
            j += 1
        if not text.startswith("<", j):
            raise _err(f"quoted display name not followed by <URI> in {what}")
        lt = j
    else:
        lt = text.find("<")
        # display-name = *(token LWS) / quoted-string (RFC 3261 25.1). Real
        # phones send other characters unquoted (a Nero SIPPS phone sends
        # f: \"arik\" <sip:...>), which is harmless; a comma is not: it makes
        # the value read as a list (RFC 4475 3.1.2.15), so that is refused.
        if lt > 0 and "," in text[:lt]:
            raise _err(f"display name with non-token characters (comma) in {what}")
    if lt >= 0:
        gt = text.find(">", lt + 1)
        if gt < 0:
            raise _err(f"unterminated <URI> in {what}")
        us, ue = lt + 1, gt
        # No LWS inside <addr-spec> (RFC 4475 3.1.2.14).
        if us == ue or _HAS_WS_RE.search(text, us, ue):
            raise _err(f"empty or whitespace-containing URI in <> in {what}")
        ppos = gt + 1
    else:
        m = _ADDR_SPEC_RE.match(text)
        if m is None:
            raise _err(f"missing URI in {what}")
        us, ue = 0, m.end()
        # A URI with headers, ',' or ';' must be a name-addr (RFC 3261 20,
        # RFC 4475 3.1.2.13), or its end would be ambiguous.
        if "?" in text[us:ue] or "," in text[us:ue]:
            raise _err(f"URI with headers must be enclosed in <> in {what}")
        ppos = ue
    params = parse_params(text, ppos, what)
    return us, ue, params, False


def _host_refs(field: str, uri: str, base: int, hi: int | None, what: str,
               out: list[AddressRef]):
    """Append the IPv4 host of a URI (at ``base`` in the message) to ``out``;
    return the UriParts."""
    parts = parse_uri(uri, what)
    if parts.host_start >= 0:
        host = uri[parts.host_start:parts.host_end]
        if is_ipv4(host):
            port = None
            if parts.port_start >= 0:
                port = Span(base + parts.port_start, base + parts.port_end,
                            uri[parts.port_start:parts.port_end])
            out.append(AddressRef(field, Span(base + parts.host_start, base + parts.host_end, host),
                                  port, hi))
    return parts


# Hot-path constructors (same classes, slots set directly; see
# gateway.construct).
_mk_span = frozen_constructor(Span)
_mk_ref = frozen_constructor(AddressRef)
_mk_contact = frozen_constructor(Contact)
_mk_msg = frozen_constructor(SipMessage)

# Fast paths. Each pattern accepts a strict subset of what the general code
# accepts, and yields the same positions: the common, plain spelling of a
# field (no escapes, folds, IPv6 references, quoted parameter values or LWS
# around separators). Anything else takes the general path, which either
# reads it the same way or raises. tests/test_sip_parse_equivalence.py checks
# that both paths agree.
_F_PARAMS = r'(?:;' + TOKEN + r'(?:=[^\s;,"<>]+)?)*'
# A port of at most five digits and at most 65535 (RFC 3261 25.1 port is
# 1*DIGIT; the general path refuses more, so the fast one does not match it).
_F_PORT = r"([0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]|[0-9]{1,4})"
_F_HOST = r"([A-Za-z0-9\-.]+)(?::" + _F_PORT + r")?"
# name-addr with a sip/sips URI in <>, or a bare sip/sips addr-spec; then
# parameters. The user part holds no '@' and the URI parameters none either,
# so the one '@' matched is the last (parse_uri reads the host after the last).
# Groups: 1 URI in <>, 2 host, 3 port; 4 bare URI, 5 host, 6 port; 7 params.
_F_NAME_ADDR = re.compile(
    r'(?:(?:"[^"\\\r\n]*"[ \t]*|[^"<>,\r\n]*)<([Ss][Ii][Pp][Ss]?:(?:[^\s<>@?]*@)?' + _F_HOST
    + r'(?:;[^\s<>@?]*)?)>|([Ss][Ii][Pp][Ss]?:(?:[^\s;@?,<>"]*@)?' + _F_HOST + r'))(' + _F_PARAMS + r')'
).fullmatch
# Groups: 1 host, 2 port, 3 params.
_F_VIA = re.compile(r"[Ss][Ii][Pp]/2\.0/" + TOKEN + r"[ \t]+" + _F_HOST + r"(" + _F_PARAMS + r")").fullmatch
# Request-Line with a sip/sips Request-URI without headers. Groups: 1 method,
# 2 URI, 3 host, 4 port.
_F_REQUEST_LINE = re.compile(
    r"(" + TOKEN + r") ([Ss][Ii][Pp][Ss]?:(?:[^\s@?]*@)?" + _F_HOST + r"(?:;[^\s@?]*)?) [Ss][Ii][Pp]/2\.0"
).fullmatch
# Status-Line. Groups: 1 code, 2 reason.
_F_STATUS_LINE = re.compile(r"[Ss][Ii][Pp]/2\.0 ([1-9][0-9][0-9])(?: ([^\r]*))?").fullmatch
_IPV4 = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
_IPV4_MATCH = re.compile(_IPV4 + r"\Z").match
# _CALLID_HOST_RE whose host is an IPv4 address, in one match.
_CALLID_IPV4 = re.compile(r"@(" + _IPV4 + r")(?::([0-9]{1,5}))?\Z").match


def _fast_elem(text: str, s: int, e: int, field: str, hi: int, addresses: list):
    """One name-addr/addr-spec at ``text[s:e]`` by the fast pattern: None
    when it does not apply (nothing appended), else ``(uri_start, uri_end,
    host span, port span or None, params start, params end)``; the host goes
    to ``addresses`` when it is an IPv4 address. The spans are built only for
    an IPv4 host or a Contact (else None)."""
    m = _F_NAME_ADDR(text, s, e)
    if m is None:
        return None
    span = m.span  # (not m.regs: that builds a pair for every group)
    us, ue = span(1)
    if us >= 0:
        hs, he = span(2)
        ps, pe = span(3)
    else:
        us, ue = span(4)
        hs, he = span(5)
        ps, pe = span(6)
    if _IPV4_MATCH(text, hs, he) is not None:
        host = _mk_span(hs, he, text[hs:he])
        port = _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None
        addresses.append(_mk_ref(field, host, port, hi))
    elif field == "contact":
        host = _mk_span(hs, he, text[hs:he])
        port = _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None
    else:
        host = port = None  # not needed
    qs, qe = span(7)
    return us, ue, host, port, qs, qe


def _fast_param(text: str, s: int, e: int, want: str, valued: bool = False):
    """The value of the last parameter ``want`` in ``text[s:e]`` (a block
    matched by _F_PARAMS): its text, "" when it has no value, None when absent.
    With ``valued``, parameters without a value are passed over."""
    found = None
    for item in text[s + 1:e].split(";"):
        name, eq, value = item.partition("=")
        if name.lower() == want and (eq or not valued):
            found = value
    return found


def _fast_via(text: str, s: int, e: int, hi: int, addresses: list):
    """One via-parm by the fast pattern: ``(branch,)``, or None when the
    pattern does not apply (nothing appended)."""
    m = _F_VIA(text, s, e)
    if m is None:
        return None
    hs, he = m.span(1)
    ps, pe = m.span(2)
    qs, qe = m.span(3)
    host_ref = None
    if _IPV4_MATCH(text, hs, he) is not None:
        host_ref = _mk_span(hs, he, text[hs:he])
        addresses.append(_mk_ref("via", host_ref, _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None, hi))
    branch = received = rport = None
    if qe > qs and text.startswith(";branch=", qs):
        # The usual parameters, ";branch=..." alone or followed by a bare
        # ";rport" (RFC 3581 request form), read without the loop below.
        cut = text.find(";", qs + 8, qe)
        if cut < 0:
            return (text[qs + 8:qe],)
        if qe - cut == 6 and text.startswith(";rport", cut):
            return (text[qs + 8:cut],)
    if qe > qs:
        pos = qs + 1
        for item in text[pos:qe].split(";"):
            name, eq, value = item.partition("=")
            if eq:
                name = name.lower()
                if name == "branch":
                    branch = value
                elif name == "rport":
                    if value.isdigit() and value.isascii() and len(value) <= 5:
                        vs = pos + 6
                        rport = _mk_span(vs, vs + len(value), value)
                elif name == "received" or name == "maddr":
                    if _IPV4_MATCH(value) is not None:
                        vs = pos + len(name) + 1
                        span = _mk_span(vs, vs + len(value), value)
                        if name == "received":
                            received = span
                        addresses.append(_mk_ref("via-" + name, span, None, hi))
            pos += len(item) + 1
    if rport is not None:
        owner = received if received is not None else host_ref
        if owner is not None:
            addresses.append(_mk_ref("via-rport", owner, rport, hi))
    return (branch,)


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message (a UDP datagram, or one framed by
    :func:`frame_stream`). Raises :class:`RemoteProtocolError` only."""
    if not isinstance(data, bytes):
        data = bytes(data)
    msg = _quick(data)
    if msg is not None:
        return msg
    return _parse(data, True, False)


def _parse(data: bytes, fast: bool, quick: bool = True) -> SipMessage:
    """:func:`parse_message`; with ``fast`` false every field takes the
    general path (the reference the fast paths are tested against); with
    ``quick`` false the one-pass reading is not tried first."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if fast and quick:
        msg = _quick(data)
        if msg is not None:
            return msg
    n = len(data)
    pos = 0
    # CRLFs before the start line are keep-alives to skip (RFC 3261 7.5).
    while pos < n and data[pos] in (13, 10):
        pos += 1
    le = data.find(b"\n", pos)
    if le < 0:
        raise _err("no complete start line")
    se = le - 1 if le > pos and data[le - 1] == 13 else le
    # The header section ends at the first empty line (CRLF or bare LF).
    # Folded lines start with SP/HT, so "\n\r\n" / "\n\n" cannot be a fold.
    e1 = data.find(b"\n\r\n", le)
    # Only a "\n\n" before e1 matters (it cannot start at e1, where "\n\r" is).
    e2 = data.find(b"\n\n", le, e1 + 1 if e1 >= 0 else n)
    if e1 < 0 and e2 < 0:
        # The start line is checked first: its reason is the better one.
        _start_line(data[pos:se].decode("latin-1"), pos, [])
        raise _err("header section not terminated by an empty line")
    if e2 < 0 or 0 <= e1 < e2:
        hdr_end, body_offset = e1 + 1, e1 + 3
    else:
        hdr_end, body_offset = e2 + 1, e2 + 2
    # One decode of the start line and header section: latin-1 maps each
    # octet to one character, so offsets in ``text`` are offsets in ``data``.
    text = data[:hdr_end].decode("latin-1")
    addresses: list[AddressRef] = []

    m = _F_REQUEST_LINE(text, pos, se) if fast else None
    if m is not None:
        is_request = True
        status_code = reason = None
        method = m.group(1)
        us, ue = m.span(2)
        hs, he = m.span(3)
        ps, pe = m.span(4)
        request_uri = _mk_span(us, ue, text[us:ue])
        if _IPV4_MATCH(text, hs, he) is not None:
            addresses.append(_mk_ref("request-uri", _mk_span(hs, he, text[hs:he]),
                                     _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None, None))
    else:
        m = _F_STATUS_LINE(text, pos, se) if fast else None
        if m is not None:
            is_request = False
            method = ""
            request_uri = None
            status_code = int(m.group(1))
            reason = m.group(2) or ""
        else:
            is_request, method, request_uri, status_code, reason = _start_line(
                text[pos:se], pos, addresses)

    if fast:
        # The general check, every line matched in turn (_header_lines),
        # costs a Python loop per line; this one is a few scans in C and
        # accepts exactly the same sections: every LF but the last starts a
        # fold (SP/HT) or a line ``token *WSP ":"``, the first one a line,
        # and every CR ends a line.
        if _BAD_LINE_START(text, le, hdr_end - 1) is not None or text[le + 1:le + 2] in _TRAILING \
                or text.count("\r", le, hdr_end) != text.count("\r\n", le, hdr_end):
            _bad_line(data, le + 1, hdr_end)
        lines = None
        folded = "\n " in text or "\n\t" in text
        todo = _INTERESTING_LINE_RE.finditer(text, le, hdr_end)
    else:
        lines = _header_lines(text, le + 1, hdr_end)
        if lines is None:
            _bad_line(data, le + 1, hdr_end)
        todo = [(name, hi, vs, ve) for hi, (name, _ns, _ne, vs, ve) in enumerate(lines)
                if name in _INTERESTING]

    seen: dict[str, int] = {}
    call_id = None
    from_tag = to_tag = None
    cseq = None
    via_branch = None
    top_via_seen = False
    expires = None
    contacts: list[Contact] = []
    session_expires = None
    content_type = None
    content_length = None
    cl_value = None
    content_encoding = None
    names = _LINE_NAMES
    hi_base, counted = 0, le + 1
    listed = 0
    for item in todo:
        if fast:
            name = names[item.lastindex]
            # The value runs from the end of the match to the LF ending the
            # line, folds included, less the CR before that LF and any LWS
            # at its end (as HEADER_LINE_RE and _header_lines delimit it).
            vs = item.end()
            ve = text.find("\n", vs)
            if folded:
                while text[ve + 1:ve + 2] in _TRAILING:
                    ve = text.find("\n", ve + 1)
            if text[ve - 1] == "\r":
                ve -= 1
            if ve > vs and text[ve - 1] in " \t":
                ve = vs + len(text[vs:ve].rstrip(_WS))
            # The line's index: the LFs before it, less the folds, counted
            # from the previous line read (counting from the section's start
            # for each line was quadratic in the number of lines). No fold
            # straddles ``ns``: the octet there starts a header name.
            ns = item.start() + 1
            hi = hi_base + text.count("\n", counted, ns)
            if folded:
                hi -= text.count("\n ", counted, ns) + text.count("\n\t", counted, ns)
            hi_base, counted = hi, ns
        else:
            name, hi, vs, ve = item
        if name in seen and name in _SINGLE:
            raise _err(f"more than one {name} header")
        seen[name] = hi
        if name == "via":
            if fast and "," not in text[vs:ve]:
                got = _fast_via(text, vs, ve, hi, addresses)
                if got is not None:
                    if not top_via_seen:
                        via_branch = got[0]
                        top_via_seen = True
                    continue
            value = text[vs:ve]
            for s, e in split_list(value):
                if s == e:
                    raise _err("empty Via value")
                branch = _via(value[s:e], vs + s, hi, addresses)
                if not top_via_seen:
                    via_branch = branch
                    top_via_seen = True
        elif name == "from" or name == "to":
            got = _fast_elem(text, vs, ve, name, hi, addresses) if fast else None
            if got is not None:
                qs, qe = got[4], got[5]
                if qe == qs:
                    tag = None
                elif text.startswith(";tag=", qs) and text.find(";", qs + 1, qe) < 0:
                    tag = text[qs + 5:qe]  # the usual lone tag
                else:
                    tag = _fast_param(text, qs, qe, "tag")
            else:
                value = text[vs:ve]
                us, ue, params, _ = _name_addr(value, name)
                _host_refs(name, value[us:ue], vs + us, hi, name, addresses)
                tag = None
                for pname, _pns, _pne, pvs, pve in params:
                    if pname == "tag":
                        tag = value[pvs:pve] if pvs >= 0 else ""
            if name == "from":
                from_tag = tag
            else:
                to_tag = tag
        elif name == "call-id":
            value = text[vs:ve]
            # Without whitespace there is no fold to unfold.
            call_id = value if _HAS_WS_RE.search(value) is None else unfold(value)
            if not call_id or _HAS_WS_RE.search(call_id):
                raise _err("malformed Call-ID")
            at = value.rfind("@")
            cm = _CALLID_HOST_RE.match(value, at) if at >= 0 else None
            if cm is not None and _IPV4_MATCH(cm.group(1)) is not None:
                hs, he = cm.span(1)
                ps, pe = cm.span(2)
                port = None
                if ps >= 0:
                    port = _mk_span(vs + ps, vs + pe, value[ps:pe])
                addresses.append(_mk_ref("call-id", _mk_span(vs + hs, vs + he, value[hs:he]), port, hi))
        elif name == "cseq":
            cm = _CSEQ_RE.match(text, vs, ve)
            if cm is None:
                raise _err("malformed CSeq")
            num = cm.group(1)
            # RFC 3261 8.1.1.5: the sequence number is below 2**31.
            if len(num) > 10 or int(num) >= 2**31:
                raise _err("CSeq number out of range")
            cseq = (int(num), cm.group(2))
        elif name == "contact" or name == "route" or name == "record-route":
            listed += text.count(",", vs, ve) + 1
            if listed > MAX_URI_ELEMENTS:
                raise _err(f"more than {MAX_URI_ELEMENTS} Contact/Route/Record-Route elements")
            if fast:
                if name == "contact" and text.find(",", vs, ve) < 0:
                    # The usual single Contact, inline.
                    got = _fast_elem(text, vs, ve, name, hi, addresses)
                    if got is not None:
                        us, ue, host, port, qs, qe = got
                        cexp = None
                        if qe > qs:
                            pvalue = _fast_param(text, qs, qe, "expires", True)
                            if pvalue is not None:
                                cexp = _opt_seconds(pvalue)
                        contacts.append(_mk_contact(_mk_span(us, ue, text[us:ue]), host, port, cexp, False))
                        continue
                elif _fast_uri_list(text, vs, ve, name, hi, addresses, contacts):
                    continue
            _uri_list(text[vs:ve], vs, name, hi, addresses, contacts)
        elif name == "content-length":
            if _DIGITS_RE.match(text, vs, ve) is None:
                raise _err("Content-Length is not a non-negative number")
            content_length = int(text[vs:ve])
            cl_value = (vs, ve)
        elif name == "content-type":
            content_type = unfold(text[vs:ve]).split(";", 1)[0].strip(_WS).lower()
        elif name == "content-encoding":
            content_encoding = unfold(text[vs:ve]).strip(_WS).lower()
        elif name == "expires":
            if expires is None:
                expires = _opt_seconds(text[vs:ve])
        elif name == "session-expires":
            if session_expires is None:
                session_expires = _opt_seconds(text[vs:ve].split(";", 1)[0])

    if not _REQUIRED_SET <= seen.keys():
        for req in _REQUIRED:
            if req not in seen:
                raise _err(f"missing {req} header (RFC 3261 8.1.1)")
    assert cseq is not None and call_id is not None
    if is_request:
        # RFC 3261 8.1.1.5: the CSeq method matches the request's
        # (RFC 4475 3.1.2.17, 3.1.2.18).
        if cseq[1] != method:
            raise _err("CSeq method does not match the request method")
    else:
        method = cseq[1]

    if content_length is not None:
        if content_length > n - body_offset:
            raise _err("Content-Length larger than the message")
        body = data[body_offset:body_offset + content_length]
    else:
        body = data[body_offset:]

    body_kind = _body_kind(body, content_type, content_encoding)
    sdp = parse_sdp(body, body_offset) if body_kind == "sdp" else None

    return _mk_msg(
        data, is_request, method, request_uri, status_code, reason,
        call_id, from_tag, to_tag, cseq, via_branch, expires, tuple(contacts),
        session_expires, content_type, content_length, body_offset, body, sdp,
        body_kind, tuple(addresses), (le + 1, hdr_end), [lines], cl_value)


def _body_kind(body: bytes, content_type: str | None, content_encoding: str | None) -> str:
    """What the ALG can do with a body: ``sdp`` (read and rewritten),
    ``none``, ``multipart``, ``encrypted`` or ``other`` (passed as is)."""
    if not body:
        return "none"
    if content_type == "application/sdp" and content_encoding in (None, "identity"):
        return "sdp"
    if content_type is not None and content_type.startswith("multipart/"):
        return "multipart"
    if content_type == "application/pkcs7-mime":
        # S/MIME (RFC 3261 23): the ALG cannot read it and lets it pass
        # (manual chapter 2, note on encrypted SDP).
        return "encrypted"
    return "other"


def _start_line(line: str, pos: int, addresses: list):
    """Read the start line at ``pos``: ``(is_request, method, request_uri,
    status_code, reason)``; the Request-URI's address goes to ``addresses``."""
    if line[:4].upper() == "SIP/":
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        parts = line.split(" ", 2)
        if parts[0].upper() != "SIP/2.0":
            raise _err("unsupported SIP version in status line")
        if len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isdigit() or not parts[1].isascii():
            raise _err("status code is not three digits")
        status_code = int(parts[1])
        if status_code < 100:
            raise _err("status code below 100")
        reason = parts[2] if len(parts) == 3 else ""
        if "\r" in reason:
            raise _err("CR in reason phrase")
        return False, "", None, status_code, reason
    # Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP
    # between elements and none at the end (RFC 4475 3.1.2.8-3.1.2.10).
    parts = line.split(" ")
    if len(parts) != 3:
        raise _err("request line is not Method SP Request-URI SP SIP-Version")
    method, uri, version = parts
    if TOKEN_RE.match(method) is None:
        raise _err("method is not a token")
    if version.upper() != "SIP/2.0":
        raise _err("unsupported SIP version in request line")
    if not uri or uri[0] == "<" or _HAS_WS_RE.search(uri):
        raise _err("malformed Request-URI")
    us = pos + len(method) + 1
    request_uri = Span(us, us + len(uri), uri)
    rparts = _host_refs("request-uri", uri, us, None, "Request-URI", addresses)
    if rparts.has_headers:
        # RFC 3261 19.1.5: headers are not allowed in a Request-URI
        # (RFC 4475 3.1.2.11).
        raise _err("Request-URI carries URI headers")
    return True, method, request_uri, None, None


def _fast_uri_list(text: str, vs: int, ve: int, name: str, hi: int, addresses: list,
                   contacts: list) -> bool:
    """Contact / Route / Record-Route by the fast pattern; False (nothing
    appended) when an element does not fit it."""
    if "," in text[vs:ve]:
        elems = [(vs + s, vs + e) for s, e in split_list(text[vs:ve])]
        refs: list = []
    else:
        elems = ((vs, ve),)
        refs = addresses  # a single element appends only once it fits
    found = []
    for s, e in elems:
        got = _fast_elem(text, s, e, name, hi, refs)
        if got is None:
            return False
        found.append(got)
    if refs is not addresses:
        addresses.extend(refs)
    if name == "contact":
        for us, ue, host, port, qs, qe in found:
            cexp = None
            if qe > qs:
                value = _fast_param(text, qs, qe, "expires", True)
                if value is not None:
                    cexp = _opt_seconds(value)
            contacts.append(_mk_contact(_mk_span(us, ue, text[us:ue]), host, port, cexp, False))
    return True


def _uri_list(text: str, base: int, name: str, hi: int, addresses: list, contacts: list) -> None:
    """Contact / Route / Record-Route (a list of name-addr), general path."""
    is_contact = name == "contact"
    for s, e in split_list(text):
        if s == e:
            raise _err(f"empty {name} value")
        elem = text[s:e]
        us, ue, params, star = _name_addr(elem, name, allow_star=is_contact)
        if star:
            contacts.append(Contact(Span(base + s, base + e, elem), None, None, None, True))
            continue
        uri = elem[us:ue]
        parts = _host_refs(name, uri, base + s + us, hi, name, addresses)
        if is_contact:
            cexp = None
            for pname, _ns, _ne, pvs, pve in params:
                if pname == "expires" and pvs >= 0:
                    cexp = _opt_seconds(elem[pvs:pve])
            ub = base + s + us
            host = port = None
            if parts.host_start >= 0:
                host = Span(ub + parts.host_start, ub + parts.host_end,
                            uri[parts.host_start:parts.host_end])
                if parts.port_start >= 0:
                    port = Span(ub + parts.port_start, ub + parts.port_end,
                                uri[parts.port_start:parts.port_end])
            contacts.append(Contact(Span(ub, ub + len(uri), uri), host, port, cexp))


_TRAILING = (" ", "\t")


def _header_lines(text: str, start: int, end: int):
    """The header lines of ``text[start:end]`` as (canonical name, name
    start, name end, value start, value end), the value trimmed of LWS; None
    when the section is not made of header lines only."""
    lines = []
    append = lines.append
    canon = _CANON
    pos = start
    for name_t, sep, value, eol in HEADER_LINES_STR_RE.findall(text, start, end):
        ne = pos + len(name_t)
        vs = ne + len(sep)
        ve = vs + len(value)
        if value[-1:] in _TRAILING:
            ve = vs + len(value.rstrip(_WS))
        append((canon.get(name_t) or canonical_name(name_t), pos, ne, vs, ve))
        pos = ne + len(sep) + len(value) + len(eol)
    # findall skips what does not match: the lines tile the section only if
    # nothing was skipped.
    return tuple(lines) if pos == end else None




_INTERESTING = frozenset({
    "via", "from", "to", "contact", "route", "record-route", "call-id", "cseq",
    "content-length", "content-type", "content-encoding", "expires", "session-expires",
})
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_BAD_LINE_START = re.compile(r"\n(?![ \t]|[" + _TOKEN_CHARS + r"]+[ \t]*:)").search


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# The header lines parse_message reads, by any of their names in any case
# (character classes rather than IGNORECASE: the scan stays a plain search for
# LF), up to the start of the value. Each canonical name has its own
# alternative ending in an empty group, so that ``lastindex`` says which header
# matched: _LINE_NAMES[lastindex]. (Capturing the value in the pattern costs a
# step per character; a find for the line's LF is cheaper.)
_LINE_NAMES = [""]
_alternatives = []
for _canonical in sorted(_INTERESTING):
    _spellings = [n for n in list(COMPACT_FORMS) + [_canonical] if canonical_name(n) == _canonical]
    _alternatives.append(
        "(?:" + "|".join(_any_case(n) for n in sorted(_spellings, key=len, reverse=True)) + ")"
        + r"[ \t]*:(?:[ \t]|\r?\n[ \t])*()")
    _LINE_NAMES.append(_canonical)
_INTERESTING_LINE_RE = re.compile(r"\n(?:" + "|".join(_alternatives) + ")")
# Header names as usually written, to their canonical names (a shortcut; any
# spelling goes through canonical_name).
_CANON: dict[str, str] = {}
for _name in ("Via", "From", "To", "Contact", "Route", "Record-Route", "Call-ID", "Call-Id",
              "CSeq", "Content-Length", "Content-Type", "Max-Forwards", "Allow", "Supported",
              "User-Agent", "Expires", "Server", "Session-Expires", "Accept", "Subject"):
    for _spelling in (_name, _name.lower(), _name.upper()):
        _CANON[_spelling] = _name.lower()
for _short, _long in COMPACT_FORMS.items():
    _CANON[_short] = _long
    _CANON[_short.upper()] = _long

# HEADER_LINES_RE for the latin-1 text of the header section.
HEADER_LINES_STR_RE = re.compile(HEADER_LINES_RE.pattern.decode("latin-1"))


def _bad_line(data: bytes, pos: int, end: int) -> None:
    """Raise for the first header line that does not match the grammar."""
    match = HEADER_LINE_RE.match
    while pos < end:
        m = match(data, pos, end)
        if m is None:
            break
        pos = m.end()
    raise RemoteProtocolError("malformed header line", offset=pos)


def _via(elem: str, base: int, hi: int, out: list[AddressRef]) -> str | None:
    """Parse one via-parm (RFC 3261 20.42); append its IPv4 addresses; return
    the branch."""
    m = _VIA_RE.match(elem)
    if m is None:
        raise _err("malformed Via")
    if m.group(1).upper() != "SIP" or m.group(2) != "2.0":
        raise _err("unsupported protocol in Via")
    host = m.group(4)
    host_ref = None
    if m.group(5) is not None and int(m.group(5)) > 65535:
        raise _err("Via port out of range")
    if is_ipv4(host):
        port = None
        if m.group(5) is not None:
            port = Span(base + m.start(5), base + m.end(5), m.group(5))
        host_ref = Span(base + m.start(4), base + m.end(4), host)
        out.append(AddressRef("via", host_ref, port, hi))
    branch = None
    received = None
    rport = None
    for pname, _ns, _ne, pvs, pve in parse_params(elem, m.end(), "Via"):
        if pvs < 0:
            continue
        value = elem[pvs:pve]
        if pname == "branch":
            branch = value
        elif pname == "received" and is_ipv4(value):
            received = Span(base + pvs, base + pve, value)
            out.append(AddressRef("via-received", received, None, hi))
        elif pname == "maddr" and is_ipv4(value):
            out.append(AddressRef("via-maddr", Span(base + pvs, base + pve, value), None, hi))
        elif pname == "rport" and value.isdigit() and value.isascii() and len(value) <= 5:
            rport = Span(base + pvs, base + pve, value)
    if rport is not None:
        owner = received if received is not None else host_ref
        if owner is not None:
            out.append(AddressRef("via-rport", owner, rport, hi))
    return branch


# --- The plain message in one pass ------------------------------------------
#
# Most messages are spelled plainly: CRLF line ends, no folds, one value per
# Via line, single-element From/To/Contact lines of the shapes the fast
# patterns above read. For those, _quick reads the whole message with few
# steps per header: one pattern checks that the section is made of header
# lines only, one scan finds the lines parse_message reads and their values
# (trimmed by the pattern), and each value goes to its fast pattern. It never
# raises: at the first thing it does not read as plainly as that (a fold, a
# bare LF, a list, a repeated single header, a missing one, a general-path
# shape) it returns None and _parse reads the message from the start, so the
# verdicts and reasons are the general ones.

# A LF not starting a header line ``token *WSP ":"`` (a fold, or anything
# else); with every LF after a CR and every CR before a LF (two counts), what
# is left is header lines with CRLF ends.
_Q_NOT_A_LINE = re.compile(r"\n(?!" + TOKEN + r"[ \t]*:)").search
# The lines parse_message reads, found in the lower-cased header section (a
# latin-1 text keeps its length and positions when lower-cased) by their
# names and compact forms spelled out: a scan of literal alternatives, faster
# than one of character classes for each letter. Group 1 is the name, group 2
# the value from its first non-LWS octet after the colon (as on an unfolded
# line) up to the CR ending its line.
_Q_CANON = {n: canonical_name(n) for n in list(COMPACT_FORMS) + sorted(_INTERESTING)
            if canonical_name(n) in _INTERESTING}
_Q_LINES_RE = re.compile(
    r"\n(" + "|".join(re.escape(n) for n in sorted(_Q_CANON, key=len, reverse=True)) + r")[ \t]*:[ \t]*([^\r]*)")


def _quick(data: bytes) -> SipMessage | None:
    """parse_message for a plainly spelled message; None for anything else."""
    p = data.find(b"\r\n\r\n")
    if p < 0 or data[:1] in (b"\r", b"\n"):
        return None
    hdr_end = p + 2  # just past the last header line's CRLF
    text = data[:hdr_end].decode("latin-1")
    le = text.find("\n")
    se = le - 1
    if le < 1 or text[se] != "\r" or _Q_NOT_A_LINE(text, le, hdr_end - 1) is not None:
        return None
    crlf = text.count("\r\n")
    if text.count("\n") != crlf or text.count("\r") != crlf:
        return None
    addresses: list[AddressRef] = []
    m = _F_REQUEST_LINE(text, 0, se)
    if m is not None:
        is_request = True
        status_code = reason = None
        method = m.group(1)
        us, ue = m.span(2)
        hs, he = m.span(3)
        request_uri = _mk_span(us, ue, text[us:ue])
        if _IPV4_MATCH(text, hs, he) is not None:
            ps, pe = m.span(4)
            addresses.append(_mk_ref("request-uri", _mk_span(hs, he, text[hs:he]),
                                     _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None, None))
    else:
        m = _F_STATUS_LINE(text, 0, se)
        if m is None:
            return None
        is_request = False
        method = ""
        request_uri = None
        status_code = int(m.group(1))
        reason = m.group(2) or ""

    call_id = cseq = None
    from_tag = to_tag = via_branch = None
    have_from = have_to = False
    expires = session_expires = None
    contacts: list[Contact] = []
    content_type = content_length = cl_value = content_encoding = None
    canon = _Q_CANON
    # Header index of a line: LFs before it, counted on from the last line
    # whose index was needed (only lines that may give an address need it).
    hi = 0
    last = le
    top_via_seen = False
    listed = 0
    for item in _Q_LINES_RE.finditer(text.lower(), le, hdr_end):
        name = canon[item.group(1)]
        # The value, trimmed of the LWS before the CRLF (as _header_lines).
        vs, ve = item.span(2)
        if text[ve - 1] in _TRAILING and ve > vs:
            ve = vs + len(text[vs:ve].rstrip(_WS))
        if name == "via":
            ms = item.start()
            hi += text.count("\n", last, ms)
            last = ms
            if "," in text[vs:ve]:
                return None
            got = _fast_via(text, vs, ve, hi, addresses)
            if got is None:
                return None
            if not top_via_seen:
                via_branch = got[0]
                top_via_seen = True
        elif name == "from" or name == "to":
            if (have_from if name == "from" else have_to):
                return None
            ms = item.start()
            hi += text.count("\n", last, ms)
            last = ms
            got = _fast_elem(text, vs, ve, name, hi, addresses)
            if got is None:
                return None
            qs, qe = got[4], got[5]
            if qe == qs:
                tag = None
            elif text.startswith(";tag=", qs) and text.find(";", qs + 1, qe) < 0:
                tag = text[qs + 5:qe]  # the usual lone tag
            else:
                tag = _fast_param(text, qs, qe, "tag")
            if name == "from":
                from_tag = tag
                have_from = True
            else:
                to_tag = tag
                have_to = True
        elif name == "call-id":
            value = text[vs:ve]
            if call_id is not None or not value or _HAS_WS_RE.search(value):
                return None
            call_id = value
            at = value.rfind("@")
            cm = _CALLID_IPV4(value, at) if at >= 0 else None
            if cm is not None:
                ms = item.start()
                hi += text.count("\n", last, ms)
                last = ms
                hs, he = cm.span(1)
                ps, pe = cm.span(2)
                port = None
                if ps >= 0:
                    port = _mk_span(vs + ps, vs + pe, value[ps:pe])
                addresses.append(_mk_ref("call-id", _mk_span(vs + hs, vs + he, value[hs:he]), port, hi))
        elif name == "cseq":
            cm = _CSEQ_RE.match(text, vs, ve)
            if cseq is not None or cm is None:
                return None
            num, cseq_method = cm.groups()
            # The length first: int() of over 4,300 digits raises.
            if len(num) > 10:
                return None
            number = int(num)
            if number >= 2**31:
                return None
            cseq = (number, cseq_method)
        elif name == "contact" or name == "route" or name == "record-route":
            listed += text.count(",", vs, ve) + 1
            if listed > MAX_URI_ELEMENTS:
                return None
            ms = item.start()
            hi += text.count("\n", last, ms)
            last = ms
            if name == "contact" and text.find(",", vs, ve) < 0:
                got = _fast_elem(text, vs, ve, name, hi, addresses)
                if got is None:
                    return None
                us, ue, host, port, qs, qe = got
                cexp = None
                if qe > qs:
                    pvalue = _fast_param(text, qs, qe, "expires", True)
                    if pvalue is not None:
                        cexp = _opt_seconds(pvalue)
                contacts.append(_mk_contact(_mk_span(us, ue, text[us:ue]), host, port, cexp, False))
            elif not _fast_uri_list(text, vs, ve, name, hi, addresses, contacts):
                return None
        elif name == "content-length":
            if cl_value is not None or _DIGITS_RE.match(text, vs, ve) is None:
                return None
            content_length = int(text[vs:ve])
            cl_value = (vs, ve)
        elif name == "content-type":
            if content_type is not None:
                return None
            content_type = text[vs:ve].split(";", 1)[0].strip(_WS).lower()
        elif name == "content-encoding":
            content_encoding = text[vs:ve].strip(_WS).lower()
        elif name == "expires":
            if expires is None:
                expires = _opt_seconds(text[vs:ve])
        elif session_expires is None:  # session-expires
            session_expires = _opt_seconds(text[vs:ve].split(";", 1)[0])

    if not (top_via_seen and have_from and have_to and call_id is not None and cseq is not None):
        return None
    if is_request:
        if cseq[1] != method:
            return None
    else:
        method = cseq[1]
    body_offset = p + 4
    if content_length is not None:
        if content_length > len(data) - body_offset:
            return None
        body = data[body_offset:body_offset + content_length]
    else:
        body = data[body_offset:]
    body_kind = _body_kind(body, content_type, content_encoding)
    sdp = None
    if body_kind == "sdp":
        try:
            sdp = parse_sdp(body, body_offset)
        except RemoteProtocolError:
            return None         # the general reading raises it, with its reason
    return _mk_msg(
        data, is_request, method, request_uri, status_code, reason,
        call_id, from_tag, to_tag, cseq, via_branch, expires, tuple(contacts),
        session_expires, content_type, content_length, body_offset, body, sdp,
        body_kind, tuple(addresses), (le + 1, hdr_end), [None], cl_value)
