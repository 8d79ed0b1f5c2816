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
from dataclasses import dataclass
from typing import NamedTuple

from gateway.errors import RemoteProtocolError
from gateway.sdp.construct import frozen_constructor
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
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")

# Header fields of which a request or response carries exactly one
# (RFC 3261 7.3.1: only list-valued fields may repeat; RFC 4475 3.3.8/3.3.9).
_SINGLE = ("from", "to", "call-id", "cseq", "content-length", "content-type")
_REQUIRED = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 8.1.1


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
    # (canonical name, name start, name end, value start, value end) per
    # header line; ``headers`` gives them as Header objects.
    lines: tuple[tuple[str, int, int, int, int], ...]
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
# gateway.sdp.construct).
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
_F_HOST = r"([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
# name-addr with a sip/sips URI in <>, or a bare sip/sips addr-spec; then
# parameters. The user part holds no '@' and the URI parameters none either,
# so the one '@' matched is the last (parse_uri reads the host after the last).
_F_NAME_ADDR_RE = re.compile(
    r'(?:(?:"[^"\\\r\n]*"[ \t]*|[^"<>,\r\n]*)<((?i:sips?):(?:[^\s<>@?]*@)?' + _F_HOST
    + r'(?:;[^\s<>@?]*)?)>|((?i:sips?):(?:[^\s;@?,<>"]*@)?' + _F_HOST + r'))(' + _F_PARAMS + r')')
_F_VIA_RE = re.compile(r"(?i:SIP)/2\.0/" + TOKEN + r"[ \t]+" + _F_HOST + r"(" + _F_PARAMS + r")")
_F_URI_RE = re.compile(r"(?i:sips?):(?:[^@?]*@)?" + _F_HOST + r"(?:;[^@?]*)?")
_IPV4_MATCH = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\Z"
).match


def _fast_params(params: str) -> list[tuple[str, str | None]]:
    """(lower name, value or None) of a parameter block matched by _F_PARAMS."""
    out = []
    for item in params[1:].split(";"):
        name, eq, value = item.partition("=")
        out.append((name.lower(), value if eq else None))
    return out


def _fast_name_addr(text: str, s: int, e: int, field: str, hi: int, addresses: list):
    """Read one name-addr/addr-spec at ``text[s:e]`` by the fast pattern.

    Returns None when the pattern does not apply (nothing appended), else
    ``(uri_start, uri_end, host_start, host_end, port_start, port_end,
    params)`` with absolute positions (port -1 when absent)."""
    m = _F_NAME_ADDR_RE.fullmatch(text, s, e)
    if m is None:
        return None
    if m.start(1) >= 0:
        us, ue = m.span(1)
        hs, he = m.span(2)
        ps, pe = m.span(3)
    else:
        us, ue = m.span(4)
        hs, he = m.span(5)
        ps, pe = m.span(6)
    if ps >= 0 and int(text[ps:pe]) > 65535:
        return None
    host = text[hs:he]
    if _IPV4_MATCH(host) is not None:
        addresses.append(_mk_ref(field, _mk_span(hs, he, host),
                                 _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None, hi))
    ps_, pe_ = m.span(7)
    return us, ue, hs, he, ps, pe, (_fast_params(text[ps_:pe_]) if pe_ > ps_ else ())


def _fast_via(text: str, s: int, e: int, hi: int, addresses: list):
    """One via-parm by the fast pattern: ``(branch,)``, or None when the
    pattern does not apply (nothing appended)."""
    m = _F_VIA_RE.fullmatch(text, s, e)
    if m is None:
        return None
    ps, pe = m.span(2)
    if ps >= 0 and int(text[ps:pe]) > 65535:
        return None
    hs, he = m.span(1)
    host = text[hs:he]
    host_ref = None
    out = []
    if _IPV4_MATCH(host) is not None:
        host_ref = _mk_span(hs, he, host)
        out.append(_mk_ref("via", host_ref, _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None, hi))
    branch = received = rport = None
    qs, qe = m.span(3)
    if qe > qs:
        pos = qs + 1
        for item in text[qs + 1:qe].split(";"):
            name, eq, value = item.partition("=")
            if eq:
                name = name.lower()
                vs = pos + len(name) + 1
                if name == "branch":
                    branch = value
                elif name == "received":
                    if _IPV4_MATCH(value) is not None:
                        received = _mk_span(vs, vs + len(value), value)
                        out.append(_mk_ref("via-received", received, None, hi))
                elif name == "maddr":
                    if _IPV4_MATCH(value) is not None:
                        out.append(_mk_ref("via-maddr", _mk_span(vs, vs + len(value), value), None, hi))
                elif name == "rport" and value.isdigit() and value.isascii() and len(value) <= 5:
                    rport = _mk_span(vs, vs + len(value), value)
            pos += len(item) + 1
    if rport is not None:
        owner = received if received is not None else host_ref
        if owner is not None:
            out.append(_mk_ref("via-rport", owner, rport, hi))
    addresses.extend(out)
    return (branch,)


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message (a UDP datagram, or one framed by
    :func:`frame_stream`). Raises :class:`RemoteProtocolError` only."""
    return _parse(data, True)


def _parse(data: bytes, fast: bool) -> SipMessage:
    """:func:`parse_message`; with ``fast`` false every field takes the
    general path (the reference the fast paths are tested against)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    n = len(data)
    pos = 0
    # CRLFs before the start line are keep-alives to skip (RFC 3261 7.5).
    while pos < n and data[pos] in (13, 10):
        pos += 1
    le = data.find(b"\n", pos)
    if le < 0:
        raise _err("no complete start line")
    # The header section ends at the first empty line (CRLF or bare LF).
    # Folded lines start with SP/HT, so "\n\r\n" / "\n\n" cannot be a fold.
    e1 = data.find(b"\n\r\n", le)
    # Only a "\n\n" before e1 matters (it cannot start at e1, where "\n\r" is).
    e2 = data.find(b"\n\n", le, e1 + 1 if e1 >= 0 else n)
    if e1 < 0 and e2 < 0:
        # The start line is checked first: its reason is the better one.
        _start_line(data[pos:le - 1 if le > pos and data[le - 1] == 13 else le].decode("latin-1"), pos, [])
        raise _err("header section not terminated by an empty line")
    if e2 < 0 or 0 <= e1 < e2:
        hdr_end, body_offset = e1 + 1, e1 + 3
    else:
        hdr_end, body_offset = e2 + 1, e2 + 2
    # One decode of the start line and header section: latin-1 maps each
    # octet to one character, so offsets in ``text`` are offsets in ``data``.
    text = data[:hdr_end].decode("latin-1")
    se = le - 1 if le > pos and data[le - 1] == 13 else le
    addresses: list[AddressRef] = []
    is_request, method, request_uri, status_code, reason = _start_line(text[pos:se], pos, addresses, fast)

    # Header fields: one match per (possibly folded) line, each starting
    # right after a LF (the lookbehind keeps the search linear). The matches
    # must tile the section; if they do not, _bad_line finds the culprit.
    found = HEADER_LINES_STR_RE.findall(text, le + 1, hdr_end)
    lines: list[tuple[str, int, int, int, int]] = []
    append = lines.append
    canon = _CANON
    interesting = _INTERESTING
    todo: list[int] = []
    pos = le + 1
    hi = 0
    for name_t, sep, value, eol in found:
        ne = pos + len(name_t)
        vs = ne + len(sep)
        ve = vs + len(value)
        if value[-1:] in _TRAILING:
            append((canon.get(name_t) or canonical_name(name_t), pos, ne, vs, vs + len(value.rstrip(_WS))))
        else:
            append((canon.get(name_t) or canonical_name(name_t), pos, ne, vs, ve))
        if lines[hi][0] in interesting:
            todo.append(hi)
        hi += 1
        pos = ve + len(eol)
    if pos != hdr_end:
        _bad_line(data, le + 1, hdr_end)

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
    content_encoding = None
    for hi in todo:
        name, _ns, _ne, vs, ve = lines[hi]
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
            got = _fast_name_addr(text, vs, ve, name, hi, addresses) if fast else None
            if got is not None:
                tag = None
                for pname, pvalue in got[6]:
                    if pname == "tag":
                        tag = pvalue if pvalue is not None else ""
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
        elif name == "contact" or name == "route" or name == "record-route":
            if fast and _fast_uri_list(text, vs, ve, name, hi, addresses, contacts):
                continue
            _uri_list(text[vs:ve], vs, name, hi, addresses, contacts)
        elif name == "call-id":
            value = text[vs:ve]
            call_id = unfold(value)
            if not call_id or _HAS_WS_RE.search(call_id):
                raise _err("malformed Call-ID")
            at = value.rfind("@")
            cm = _CALLID_HOST_RE.match(value, at) if at >= 0 else None
            if cm is not None and is_ipv4(cm.group(1)):
                hs, he = cm.span(1)
                port = None
                if cm.group(2) is not None:
                    port = _mk_span(vs + cm.start(2), vs + cm.end(2), cm.group(2))
                addresses.append(_mk_ref("call-id", _mk_span(vs + hs, vs + he, cm.group(1)), port, hi))
        elif name == "cseq":
            cm = _CSEQ_RE.match(text, vs, ve)
            if cm is None:
                raise _err("malformed CSeq")
            num = cm.group(1)
            # RFC 3261 8.1.1.5: the sequence number is below 2**31.
            if len(num) > 10 or int(num) >= 2**31:
                raise _err("CSeq number out of range")
            cseq = (int(num), cm.group(2))
        elif name == "content-length":
            if _DIGITS_RE.match(text, vs, ve) is None:
                raise _err("Content-Length is not a non-negative number")
            content_length = int(text[vs:ve])
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

    sdp = None
    if not body:
        body_kind = "none"
    elif content_type == "application/sdp" and content_encoding in (None, "identity"):
        sdp = parse_sdp(body, body_offset)
        body_kind = "sdp"
    elif content_type is not None and content_type.startswith("multipart/"):
        body_kind = "multipart"
    elif content_type == "application/pkcs7-mime":
        # S/MIME (RFC 3261 23): the ALG cannot read it and lets it pass
        # (manual chapter 2, note on encrypted SDP).
        body_kind = "encrypted"
    else:
        body_kind = "other"

    return _mk_msg(
        data, is_request, method, request_uri, status_code, reason, tuple(lines),
        call_id, from_tag, to_tag, cseq, via_branch, expires, tuple(contacts),
        session_expires, content_type, content_length, body_offset, body, sdp,
        body_kind, tuple(addresses))


def _start_line(line: str, pos: int, addresses: list, fast: bool = False):
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
    request_uri = _mk_span(us, us + len(uri), uri)
    m = _F_URI_RE.fullmatch(uri) if fast else None
    if m is not None and (m.start(2) < 0 or int(m.group(2)) <= 65535):
        host = m.group(1)
        if _IPV4_MATCH(host) is not None:
            port = None
            if m.start(2) >= 0:
                port = _mk_span(us + m.start(2), us + m.end(2), m.group(2))
            addresses.append(_mk_ref("request-uri", _mk_span(us + m.start(1), us + m.end(1), host),
                                     port, None))
    else:
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
    else:
        elems = ((vs, ve),)
    refs: list = []
    found = []
    for s, e in elems:
        got = _fast_name_addr(text, s, e, name, hi, refs)
        if got is None:
            return False
        found.append(got)
    addresses.extend(refs)
    if name == "contact":
        for us, ue, hs, he, ps, pe, params in found:
            cexp = None
            for pname, pvalue in params:
                if pname == "expires" and pvalue is not None:
                    cexp = _opt_seconds(pvalue)
            contacts.append(_mk_contact(_mk_span(us, ue, text[us:ue]), _mk_span(hs, he, text[hs:he]),
                                        _mk_span(ps, pe, text[ps:pe]) if ps >= 0 else None, cexp, False))
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


_INTERESTING = frozenset({
    "via", "from", "to", "contact", "route", "record-route", "call-id", "cseq",
    "content-length", "content-type", "content-encoding", "expires", "session-expires",
})
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
