"""The one-pass reading of a plainly spelled SIP message (RFC 3261 section
7): the header lines :func:`gateway.sip.message.parse_message` reads, found
by one scan and each read by its fast pattern; at the first thing not
spelled as plainly it gives up, and the general parser reads the message."""

from __future__ import annotations

import re

from gateway.errors import RemoteProtocolError
from gateway.sdp.parse import parse_sdp
from gateway.sip.headers import COMPACT_FORMS, TOKEN, canonical_name
from gateway.sip.message_fast import (
    _CALLID_IPV4, _F_REQUEST_LINE, _F_STATUS_LINE, _IPV4_MATCH, _fast_elem, _fast_param,
    _fast_uri_list, _fast_via,
)
from gateway.sip.message_fields import _body_kind, _opt_seconds
from gateway.sip.message_grammar import _CSEQ_RE, _DIGITS_RE, _HAS_WS_RE, _WS, MAX_URI_ELEMENTS
from gateway.sip.message_lines import _INTERESTING, _TRAILING
from gateway.sip.message_types import AddressRef, Contact, SipMessage, _mk_contact, _mk_msg, _mk_ref, _mk_span

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
