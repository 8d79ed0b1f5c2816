"""The fast paths of the SIP message parser: patterns for the plain spelling
of the start line, a name-addr and a via-parm (RFC 3261 25.1, 20.42), each
accepting a strict subset of what the general grammar accepts and yielding
the same positions; anything else is left to the general path."""

from __future__ import annotations

import re

from gateway.sip.headers import TOKEN, split_list
from gateway.sip.message_fields import _opt_seconds
from gateway.sip.message_types import _mk_contact, _mk_ref, _mk_span

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
