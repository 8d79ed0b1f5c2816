"""Planning the NAT of SIP header fields and SDP: which bytes become what.

Table 2 of the manual (ch. 2 "SIP Headers") says, per message type, which
header fields the ALG translates and which way: "L2A" replaces the local
(private) address with the ALG (public) address, "A2L" the reverse. The
fourth block of the table is printed as "Outbound Response (from public to
private)"; it is the inbound response, the mirror of the outbound request.

Two readings of the table are made explicit here:

* Outbound response, To: the table prints "Replace ALG address with local
  address". The To of that response echoes the inbound request's To, which
  the ALG already turned into the local address (first block); replacing
  ALG with local would leave the private address in a packet leaving the
  device, which the manual's stated aim ("translates this information to hide
  it from the outside network") forbids, and the caller expects its own To
  back (RFC 3261 §8.2.6.2). So the To is restored: local -> ALG.
* Call-ID: the table translates it on outbound requests and inbound
  responses only. Inside a dialog the Call-ID identifies the dialog (RFC 3261
  §12), so when the call's Call-ID was translated, in-dialog requests from
  the public side and the private side's responses to them get it translated
  back as well (their Call-ID host is then the ALG's or the local address;
  for calls from the public side nothing matches and nothing changes, as in
  the table).

Method specifics from ch. 2 "SIP Request Methods": REGISTER from inside
translates To, From, Via, Call-ID and Contact, with a backward translation
of the response; REGISTER from outside only the Request-URI, and "no
translation is needed for the outgoing response". OPTIONS from inside
translates From, Via and Call-ID.

Fields of Via (``via-received``, ``via-maddr``, ``via-rport``) follow Via.
"""

from __future__ import annotations

from typing import Callable, Iterable

from gateway.construct import frozen_constructor
from gateway.span import Edit, Span

_make_edit = frozen_constructor(Edit)


def _edit(span: Span, new: str) -> Edit:
    """``Edit.replace(span, new)`` for text, built without the frozen
    ``__init__`` (a message gets up to a dozen of them)."""
    return _make_edit(span.start, span.end, new.encode("latin-1"))

L2A = "L2A"
A2L = "A2L"

_VIA = ("via", "via-received", "via-maddr", "via-rport")


def _fields(spec: str, action: str) -> dict[str, str]:
    """``"to request-uri"`` -> {"to": action, "request-uri": action}; Via
    brings its parameters along."""
    out: dict[str, str] = {}
    for name in spec.split():
        for f in (_VIA if name == "via" else (name,)):
            out[f] = action
    return out


def _merge(*parts: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in parts:
        out.update(p)
    return out


# Table 2, blocks in the manual's order.
INBOUND_REQUEST = _fields("to request-uri", A2L)
OUTBOUND_RESPONSE = _fields("to contact record-route", L2A)
OUTBOUND_REQUEST = _merge(_fields("from call-id via contact record-route", L2A),
                          _fields("route", A2L))
INBOUND_RESPONSE = _fields("from call-id via record-route route", A2L)

# (method, direction, is_request) -> fields, where ch. 2 "SIP Request
# Methods" says otherwise than Table 2.
_SPECIFIC = {
    ("REGISTER", "outbound", True): _fields("to from via call-id contact", L2A),
    ("REGISTER", "inbound", False): _fields("to from via call-id contact", A2L),
    ("REGISTER", "inbound", True): _fields("request-uri", A2L),
    ("REGISTER", "outbound", False): {},
    ("OPTIONS", "outbound", True): _fields("from via call-id", L2A),
    ("OPTIONS", "inbound", False): _fields("from via call-id", A2L),
}


def field_actions(method: str, direction: str, is_request: bool,
                  dialog_call_id: bool = False) -> dict[str, str]:
    """Which fields to translate, and which way, for a message of ``method``
    (the CSeq method for a response) travelling in ``direction``."""
    spec = _SPECIFIC.get((method, direction, is_request))
    if spec is not None:
        return spec
    if direction == "outbound":
        table = OUTBOUND_REQUEST if is_request else OUTBOUND_RESPONSE
    elif direction == "inbound":
        table = INBOUND_REQUEST if is_request else INBOUND_RESPONSE
    else:
        return {}
    if dialog_call_id and "call-id" not in table:
        table = dict(table)
        table["call-id"] = A2L if direction == "inbound" else L2A
    return table


# Fields naming where to send SIP (a transport address): their port matters,
# and an absent port means 5060 (RFC 3261 §19.1.2, §18.2.2).
TRANSPORT_FIELDS = frozenset({"via", "contact", "record-route", "route", "request-uri"})
SIP_PORT = 5060


# A mapper gets (field, ip, port-or-None) and returns (new ip, new port or
# None to leave the port alone) or None for "no change".
Mapper = Callable[[str, str, "int | None"], "tuple[str, int | None] | None"]


def header_edits(addresses: Iterable, actions: dict[str, str],
                 l2a: Mapper | None, a2l: Mapper | None) -> list[Edit]:
    """Edits translating ``addresses`` (the parser's AddressRefs) per
    ``actions``. A port is written only where one was, or where an implied
    5060 now has to be spelled out because the public port differs."""
    edits: list[Edit] = []
    for ref in addresses:
        action = actions.get(ref.field)
        if action is None:
            continue
        mapper = l2a if action == L2A else a2l
        if mapper is None:
            continue
        field, host, pspan = ref.field, ref.host, ref.port
        ptext = pspan.text if pspan is not None else ""
        # ASCII digits only (str.isdigit() accepts "²", which int() refuses).
        port = int(ptext) if 0 < len(ptext) <= 5 and ptext.isascii() and ptext.isdigit() else None
        if field == "via-rport":
            edits.extend(_rport_edit(ref, mapper, port))
            continue
        ip = host.text
        out = mapper(field, ip, port)
        if out is None:
            continue
        new_ip, new_port = out
        if pspan is not None:
            if new_ip != ip:
                edits.append(_edit(host, new_ip))
            if new_port is not None and new_port != port:
                edits.append(_edit(pspan, str(new_port)))
        elif new_port is not None and new_port != SIP_PORT and field in TRANSPORT_FIELDS:
            edits.append(_edit(host, f"{new_ip}:{new_port}"))
        elif new_ip != ip:
            edits.append(_edit(host, new_ip))
    return edits


def _rport_edit(ref, mapper: Mapper, port: int | None) -> list[Edit]:
    # rport=N;received=IP hold the source the server saw (RFC 3581): the
    # port belongs to the address in ``host``; only the port is rewritten
    # here (the address is its own via-received/via AddressRef).
    if port is None or ref.port is None:
        return []
    out = mapper("via-rport", ref.host.text, port)
    if out is None or out[1] is None or out[1] == port:
        return []
    return [_edit(ref.port, str(out[1]))]


def dedupe(edits: Iterable[Edit]) -> list[Edit]:
    """Drop repeated edits of the same bytes (one c= shared by many m=)."""
    seen: dict[tuple[int, int], Edit] = {}
    for e in edits:
        seen.setdefault((e.start, e.end), e)
    return list(seen.values())


def sdp_edits(sd, alg_ip: str, local: set[str], ports: dict[int, int],
              rejected: set[int]) -> list[Edit]:
    """Edits of an SDP body (positions in the message) from the private side:
    o= and c= addresses in ``local`` become ``alg_ip``; the m= port of media
    ``i`` becomes ``ports[i]`` and its a=rtcp port the next odd one; media in
    ``rejected`` get port 0 (RFC 3264 §6: the stream is not available)."""
    edits: list[Edit] = []

    def addr(span: Span | None) -> None:
        if span is not None and span.text in local and span.text != alg_ip:
            edits.append(_edit(span, alg_ip))

    addr(sd.origin_addr)
    if sd.session_conn is not None:
        addr(sd.session_conn.addr)
    for i, m in enumerate(sd.media):
        if m.conn is not None:
            addr(m.conn.addr)
        if i in rejected:
            edits.append(_edit(m.port_span, "0"))
            continue
        pub = ports.get(i)
        if pub is None:
            continue
        if pub != m.port:
            edits.append(_edit(m.port_span, str(pub)))
        if m.rtcp_port_span is not None and m.rtcp_port != pub + 1:
            edits.append(_edit(m.rtcp_port_span, str(pub + 1)))
        addr(m.rtcp_addr)
    return dedupe(edits)
