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
(``MGCP 0.1``).

The grammar's vocabulary, bounds and patterns are in ``message_grammar``, the
message's types in ``message_types`` and the grammar pieces (endpoint names,
NotifiedEntity, parameter values) in ``message_fields``; this module splits a
datagram into messages and lines and reads each message.
"""

from __future__ import annotations

from gateway.mgcp.message_fields import _check_param, _endpoint, _list_items, _notified_entity, _param_name
from gateway.mgcp.message_grammar import (
    _BAD_CHAR, _COMMAND, _LINE_END, _LONE_CR, _PARAM, _RESPONSE, MAX_DESCRIPTIONS, MAX_ENDPOINT_TERMS,
    MAX_MEDIA, MAX_MESSAGES, MAX_PARAMS, MAX_SDP_LINE, MAX_SDP_LINES, PARAMETER_CODES, RESTART_METHODS,
    VERBS, _bad, _span,
)
from gateway.mgcp.message_types import (
    AddressSpan, Endpoint, MgcpMessage, NotifiedEntity, Param, response_class,
)
from gateway.sdp import SessionDescription, parse_sdp
from gateway.span import Span

# What other modules and the tests import from here.
__all__ = ["AddressSpan", "Endpoint", "MAX_ENDPOINT_TERMS", "MgcpMessage", "NotifiedEntity",
           "PARAMETER_CODES", "Param", "RESTART_METHODS", "VERBS", "parse_datagram", "response_class"]


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
