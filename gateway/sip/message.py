"""Offset-preserving SIP message parser (RFC 3261 section 7 and 25).

:func:`parse_message` reads a message without normalising it: every header,
URI host and port, and SDP address is reported by its position in the original
bytes, so that NAT can rewrite by position (manual chapter 2, "SIP Headers",
Table 2, and "SIP Body") and a message with no edits passes byte-identical.

Input that breaks the grammar raises :class:`RemoteProtocolError` with a
one-line reason; the ALG drops the message and logs it. The checks follow
RFC 3261 and the invalid messages of RFC 4475 section 3.1.2.

The parts live in sibling modules, one job each: the message and its parts
(``message_types``), the header section as lines (``message_lines``), single
fields by the general grammar (``message_fields``), the fast patterns
(``message_fast``), the one-pass reading (``message_quick``) and the shared
patterns and limits (``message_grammar``). This module reads the message:
the start line, each header line the ALG needs, the body."""

from __future__ import annotations

from gateway.sdp.parse import parse_sdp
from gateway.sip.headers import TOKEN_RE, split_list, unfold
from gateway.sip.message_fast import (
    _F_REQUEST_LINE, _F_STATUS_LINE, _IPV4_MATCH, _fast_elem, _fast_param, _fast_uri_list, _fast_via,
)
from gateway.sip.message_fields import _body_kind, _err, _host_refs, _name_addr, _opt_seconds, _via
from gateway.sip.message_grammar import (
    _CALLID_HOST_RE, _CSEQ_RE, _DIGITS_RE, _HAS_WS_RE, _REQUIRED, _REQUIRED_SET, _SINGLE, _WS,
    MAX_URI_ELEMENTS,
)
from gateway.sip.message_lines import (
    _BAD_LINE_START, _INTERESTING, _INTERESTING_LINE_RE, _LINE_NAMES, _TRAILING, _bad_line,
    _header_lines,
)
from gateway.sip.message_quick import _quick
from gateway.sip.message_types import (
    AddressRef, Contact, Header, SipMessage, _mk_contact, _mk_msg, _mk_ref, _mk_span,
)
from gateway.span import Span

# What other modules and the tests import from here; the general field
# readers are read through this module's names, so a test may replace them.
__all__ = ["AddressRef", "Contact", "Header", "MAX_URI_ELEMENTS", "SipMessage", "parse_message",
           "_host_refs", "_name_addr", "_parse", "_quick", "_uri_list", "_via"]


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
