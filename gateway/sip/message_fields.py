"""Single SIP header field values by the general grammar: name-addr and
addr-spec (RFC 3261 25.1, RFC 4475 3.1.2.13-3.1.2.15), a URI's IPv4 host,
delta-seconds (RFC 3261 20.19), one via-parm (RFC 3261 20.42), and what the
ALG can do with a body (manual chapter 2, "SIP Body"). Input that breaks the
grammar raises :class:`RemoteProtocolError` with a one-line reason."""

from __future__ import annotations

from gateway.errors import RemoteProtocolError
from gateway.sip.headers import QUOTED_RE, parse_params
from gateway.sip.message_grammar import _ADDR_SPEC_RE, _HAS_WS_RE, _VIA_RE, _WS
from gateway.sip.message_types import AddressRef
from gateway.sip.uri import is_ipv4, parse_uri
from gateway.span import Span


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
