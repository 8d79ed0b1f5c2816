"""The SIP ALG through NAT: the manual's figures and rules (ch. 2).

Addresses follow Figures 8-10: ph1 5.5.5.1 inside, the ALG's public address
6.6.6.1, ph2 (and the registrar) 6.6.6.2 outside."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface

import pytest

from gateway.config.model import SipSettings
from gateway.sip import parse_message
from gateway.sip import events as ev
from gateway.sip.alg import (EMPTY, MAX_BINDINGS_PER_CALL, SipContext, media_activity,
                             on_timer, step)
from gateway.sip import portmap
from gateway.sip.state_fold import fold

PH1, ALG, PH2 = "5.5.5.1", "6.6.6.1", "6.6.6.2"


def sip(start: str, headers: str, body: str = "", ctype: str = "application/sdp") -> bytes:
    b = body.replace("\n", "\r\n").encode()
    h = start + "\n" + headers.strip() + "\n"
    if body:
        h += f"Content-Type: {ctype}\n"
    h += f"Content-Length: {len(b)}\n\n"
    return h.replace("\n", "\r\n").encode() + b


def sdp(addr: str, *ports: int, origin: str | None = None, extra: str = "") -> str:
    lines = f"v=0\no=u 1 1 IN IP4 {origin or addr}\ns=-\nc=IN IP4 {addr}\nt=0 0\n"
    for p in ports:
        lines += f"m=audio {p} RTP/AVP 0\n"
    return lines + extra


OUT = SipContext("outbound", (PH1, 5060), (PH2, 5060), nat_src=(ALG, 1234))
IN = SipContext("inbound", (PH2, 5060), (ALG, 1234), nat_dst=(PH1, 5060))


def invite(body: str | None = None, cseq: int = 1, branch: str = "z9hG4bK1",
           to_tag: str | None = None, call: str = "a1234") -> bytes:
    to = f"<sip:ph2@{PH2}>" + (f";tag={to_tag}" if to_tag else "")
    return sip(f"INVITE sip:ph2@{PH2} SIP/2.0", f"""
Via: SIP/2.0/UDP {PH1}:5060;branch={branch}
From: <sip:ph1@{PH1}>;tag=a
To: {to}
Call-ID: {call}@{PH1}
CSeq: {cseq} INVITE
Contact: <sip:ph1@{PH1}:5060>
""", sdp(PH1, 52002) if body is None else body)


def response(code: int, reason: str, method: str = "INVITE", cseq: int = 1, to_tag: str = "b",
             body: str = "", branch: str = "z9hG4bK1", extra: str = "", call: str = "a1234") -> bytes:
    return sip(f"SIP/2.0 {code} {reason}", f"""
Via: SIP/2.0/UDP {ALG}:1234;branch={branch}
From: <sip:ph1@{ALG}>;tag=a
To: <sip:ph2@{PH2}>;tag={to_tag}
Call-ID: {call}@{ALG}
CSeq: {cseq} {method}
Contact: <sip:ph2@{PH2}:5060>
{extra}""", body)


def request_out(method: str, cseq: int, branch: str, body: str = "", to_tag: str = "b") -> bytes:
    return sip(f"{method} sip:ph2@{PH2}:5060 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH1}:5060;branch={branch}
From: <sip:ph1@{PH1}>;tag=a
To: <sip:ph2@{PH2}>;tag={to_tag}
Call-ID: a1234@{PH1}
CSeq: {cseq} {method}
Contact: <sip:ph1@{PH1}:5060>
""", body)


def established(now: float = 100.0, settings: SipSettings = SipSettings()):
    r1 = step(EMPTY, OUT, invite(), now, settings)
    r2 = step(r1.state, IN, response(200, "OK", body=sdp(PH2, 62002)), now + 1, settings)
    # One result carrying both steps' events, for assert_replays.
    return replace(r2, events=r1.events + r2.events)


def the_call(state):
    (call,) = state.calls.values()
    return call


def assert_replays(*results):
    """The state after the last step is the fold of every emitted event."""
    events = [e for r in results for e in r.events]
    assert fold(events) == results[-1].state


# --- Figures 8 and 9 ------------------------------------------------------

def test_figure_8_invite_through_nat():
    r = step(EMPTY, OUT, invite(), 100.0)
    assert r.verdict == "forward"
    m = parse_message(r.data)
    assert m.get("via").startswith(f"SIP/2.0/UDP {ALG}:1234;")
    assert m.get("from") == f"<sip:ph1@{ALG}>;tag=a"
    assert m.get("to") == f"<sip:ph2@{PH2}>"          # To: None
    assert m.call_id == f"a1234@{ALG}"
    assert m.get("contact") == f"<sip:ph1@{ALG}:1234>"
    # SDP: o=, c= to the ALG address, m= to an even port of a pair.
    assert m.sdp.origin_addr.text == ALG
    assert m.sdp.session_conn.addr.text == ALG
    pub = m.sdp.media[0].port
    assert pub % 2 == 0
    assert m.content_length == len(m.body)
    media = [p for p in r.pinholes_open if p.kind == "media"]
    assert sorted(p.dst for p in media) == [(ALG, pub), (ALG, pub + 1)]
    assert {p.to for p in media} == {(PH1, 52002), (PH1, 52003)}
    assert len({p.group for p in media}) == 1 and all(p.direction == "inbound" for p in media)
    # The Via/Contact pinhole lets requests from outside reach ph1.
    sig = [p for p in r.pinholes_open if p.kind == "signalling"]
    assert [(p.dst, p.to) for p in sig] == [((ALG, 1234), (PH1, 5060))]
    assert_replays(r)


def test_figure_9_200_ok_through_nat():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, IN, response(200, "OK", body=sdp(PH2, 62002)), 101.0)
    assert r2.verdict == "forward"
    m = parse_message(r2.data)
    assert m.get("via").startswith(f"SIP/2.0/UDP {PH1}:5060;")
    assert m.call_id == f"a1234@{PH1}"
    assert m.get("from") == f"<sip:ph1@{PH1}>;tag=a"
    # The public addresses of ph2 are not translated ...
    assert m.sdp.session_conn.addr.text == PH2 and m.sdp.media[0].port == 62002
    # ... but gates open for the media toward ph2: 62002/62003, one group.
    media = [p for p in r2.pinholes_open if p.kind == "media"]
    assert sorted(p.dst for p in media) == [(PH2, 62002), (PH2, 62003)]
    assert all(p.direction == "outbound" and p.to is None for p in media)
    assert len({p.group for p in media}) == 1
    # ph1's media leaves as its public pair (symmetric RTP).
    pub = parse_message(r1.data).sdp.media[0].port
    assert {p.src_to for p in media} == {(ALG, pub), (ALG, pub + 1)}
    # Via/Contact pinhole toward ph2's Contact (Figure 9: 6.6.6.2 5060).
    assert [p.dst for p in r2.pinholes_open if p.kind == "signalling"] == [(PH2, 5060)]
    assert the_call(r2.state).phase == "confirmed"
    assert_replays(r1, r2)


def test_retransmitted_invite_is_rewritten_identically():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, OUT, invite(), 100.5)
    assert r2.data == r1.data
    assert not [e for e in r2.events if isinstance(e, (ev.MediaBound, ev.PinholeOpened))]


def test_ack_and_in_dialog_bye_from_outside():
    r = established()
    ack = request_out("ACK", 1, "z9hG4bK2")
    r3 = step(r.state, OUT, ack, 102.0)
    assert parse_message(r3.data).call_id == f"a1234@{ALG}"
    # ph2 hangs up: BYE to ph1's public Contact; the ALG routes it inside.
    bye = sip(f"BYE sip:ph1@{ALG}:1234 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bK9
From: <sip:ph2@{PH2}>;tag=b
To: <sip:ph1@{ALG}>;tag=a
Call-ID: a1234@{ALG}
CSeq: 1 BYE
""")
    r4 = step(r3.state, SipContext("inbound", (PH2, 5060), (ALG, 1234)), bye, 110.0)
    m = parse_message(r4.data)
    assert r4.route_to == (PH1, 5060)
    assert m.request_uri.text == f"sip:ph1@{PH1}:5060"
    assert m.get("to") == f"<sip:ph1@{PH1}>;tag=a"
    assert m.call_id == f"a1234@{PH1}"          # the dialog's own Call-ID
    assert the_call(r4.state).phase == "terminating"
    # ph1's 200 OK to the BYE leaves with its To restored.
    ok = sip("SIP/2.0 200 OK", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bK9
From: <sip:ph2@{PH2}>;tag=b
To: <sip:ph1@{PH1}>;tag=a
Call-ID: a1234@{PH1}
CSeq: 1 BYE
""")
    r5 = step(r4.state, SipContext("outbound", (PH1, 5060), (PH2, 5060), nat_src=(ALG, 1234)),
              ok, 110.1)
    m = parse_message(r5.data)
    assert m.get("to") == f"<sip:ph1@{ALG}>;tag=a" and m.call_id == f"a1234@{ALG}"
    assert_replays(r, r3, r4, r5)


# --- Table 2, block by block -------------------------------------------------

ALL_FIELDS = """
Via: SIP/2.0/UDP {X}:5070;branch=z9hG4bKt
From: <sip:a@{X}>;tag=f
To: <sip:b@{X}>;tag=t
Call-ID: c@{X}
CSeq: 1 {M}
Contact: <sip:a@{X}:5070>
Route: <sip:r@{X}:5080;lr>
Record-Route: <sip:rr@{X}:5090;lr>
"""


def changed_fields(before: bytes, after: bytes) -> set[str]:
    a, b = parse_message(before), parse_message(after)
    out = set()
    for name in ("via", "from", "to", "call-id", "contact", "route", "record-route"):
        if a.get(name) != b.get(name):
            out.add(name)
    if a.is_request and a.request_uri.text != b.request_uri.text:
        out.add("request-uri")
    return out


def test_table2_inbound_request():
    # From public to private, to a MIP: To and Request-URI only.
    msg = sip(f"OPTIONS sip:b@{ALG} SIP/2.0", ALL_FIELDS.format(X=ALG, M="OPTIONS"))
    ctx = SipContext("inbound", (PH2, 5060), (ALG, 5060), nat_dst=(PH1, 5060))
    r = step(EMPTY, ctx, msg, 1.0)
    assert changed_fields(msg, r.data) == {"to", "request-uri"}
    m = parse_message(r.data)
    assert m.get("to") == f"<sip:b@{PH1}>;tag=t" and m.request_uri.text == f"sip:b@{PH1}"


def test_table2_outbound_response():
    # From private to public: To (restored), Contact and Record-Route.
    msg = sip("SIP/2.0 200 OK", ALL_FIELDS.format(X=PH1, M="OPTIONS"))
    ctx = SipContext("outbound", (PH1, 5060), (PH2, 5060), nat_src=(ALG, 5060))
    r = step(EMPTY, ctx, msg, 1.0)
    assert changed_fields(msg, r.data) == {"to", "contact", "record-route"}
    m = parse_message(r.data)
    assert ALG in m.get("contact") and ALG in m.get("record-route") and ALG in m.get("to")


def test_table2_outbound_request():
    # From, Call-ID, Via, Contact, Record-Route: local -> ALG; To untouched;
    # Route: ALG -> local.
    msg = sip(f"INFO sip:b@{PH2} SIP/2.0", ALL_FIELDS.format(X=PH1, M="INFO").replace(
        f"Route: <sip:r@{PH1}:5080;lr>", f"Route: <sip:r@{ALG}:5080;lr>").replace(
        f"To: <sip:b@{PH1}>", f"To: <sip:b@{PH2}>"))
    ctx = SipContext("outbound", (PH1, 5070), (PH2, 5060), nat_src=(ALG, 5070))
    r = step(EMPTY, ctx, msg, 1.0)
    assert changed_fields(msg, r.data) == {"from", "call-id", "via", "contact", "record-route",
                                           "route"}
    m = parse_message(r.data)
    assert m.get("route") == f"<sip:r@{PH1}:5080;lr>"
    assert m.get("via").startswith(f"SIP/2.0/UDP {ALG}:5070;")


def test_table2_inbound_response():
    # The table's fourth block: From, Call-ID, Via, Record-Route, Route:
    # ALG -> local; To and Contact untouched.
    msg = sip("SIP/2.0 200 OK", ALL_FIELDS.format(X=ALG, M="INFO"))
    ctx = SipContext("inbound", (PH2, 5060), (ALG, 5070), nat_dst=(PH1, 5070))
    r = step(EMPTY, ctx, msg, 1.0)
    assert changed_fields(msg, r.data) == {"from", "call-id", "via", "record-route", "route"}
    assert parse_message(r.data).get("via").startswith(f"SIP/2.0/UDP {PH1}:5070;")


def test_no_nat_passes_byte_identical_and_opens_pinholes():
    ctx = SipContext("none", ("10.0.0.1", 5060), ("10.0.1.1", 5060))
    body = sdp("10.0.0.1", 4000)
    r = step(EMPTY, ctx, invite(body=body), 1.0)
    assert r.data == invite(body=body)
    assert sorted(p.dst for p in r.pinholes_open) == [("10.0.0.1", 4000), ("10.0.0.1", 4001)]


# --- Figure 10: REGISTER and the Incoming DIP table --------------------------

def register(contact: str, expires: int, src_host: str = PH1, cseq: int = 1) -> bytes:
    return sip(f"REGISTER sip:{PH2} SIP/2.0", f"""
Via: SIP/2.0/UDP {src_host}:1234;branch=z9hG4bKr{cseq}
From: <sip:ph1@{src_host}>;tag=r
To: <sip:ph1@{src_host}>
Call-ID: reg1@{src_host}
CSeq: {cseq} REGISTER
Contact: <sip:{contact}>
Expires: {expires}
""")


def register_ok(contact: str, expires: int, cseq: int = 1) -> bytes:
    return sip("SIP/2.0 200 OK", f"""
Via: SIP/2.0/UDP {ALG}:5555;branch=z9hG4bKr{cseq}
From: <sip:ph1@{ALG}>;tag=r
To: <sip:ph1@{ALG}>;tag=x
Call-ID: reg1@{ALG}
CSeq: {cseq} REGISTER
Contact: <sip:{contact}>
Expires: {expires}
""")


REG_OUT = SipContext("outbound", (PH1, 1234), (PH2, 5060), nat_src=(ALG, 5555))
REG_IN = SipContext("inbound", (PH2, 5060), (ALG, 5555), nat_dst=(PH1, 1234))


def registered(now: float = 1000.0):
    r1 = step(EMPTY, REG_OUT, register(f"{PH1}:1234", 7200), now)
    r2 = step(r1.state, REG_IN, register_ok(f"{ALG}:5555", 3600), now + 0.1)
    return r1, r2


def test_figure_10_register_through_nat():
    r1, r2 = registered()
    m = parse_message(r1.data)
    assert m.get("from") == f"<sip:ph1@{ALG}>;tag=r" and m.get("to") == f"<sip:ph1@{ALG}>"
    assert m.get("contact") == f"<sip:{ALG}:5555>" and m.call_id == f"reg1@{ALG}"
    assert m.expires == 7200
    back = parse_message(r2.data)
    assert back.get("contact") == f"<sip:{PH1}:1234>"
    assert back.get("to") == f"<sip:ph1@{PH1}>;tag=x" and back.call_id == f"reg1@{PH1}"
    reg = r2.state.registrations[(ALG, 5555)]
    assert (reg.private_ip, reg.private_port) == (PH1, 1234)
    # The timeout is the registrar's 3600, not the 7200 asked for.
    assert reg.expires_at == pytest.approx(1000.1 + 3600)
    assert ev.reg_stream(ALG, 5555) in {t.key for t in r2.timers}
    assert_replays(r1, r2)


def test_registration_refresh_expiry_and_unregister():
    r1, r2 = registered()
    r3 = step(r2.state, REG_OUT, register(f"{PH1}:1234", 3600, cseq=2), 2000.0)
    r4 = step(r3.state, REG_IN, register_ok(f"{ALG}:5555", 3600, cseq=2), 2000.1)
    assert r4.state.registrations[(ALG, 5555)].expires_at == pytest.approx(5600.1)
    early = on_timer(r4.state, ev.reg_stream(ALG, 5555), 4700.0)
    assert (ALG, 5555) in early.state.registrations
    late = on_timer(r4.state, ev.reg_stream(ALG, 5555), 5600.1)
    assert (ALG, 5555) not in late.state.registrations
    # Unregister: Expires 0, answered without the contact.
    r5 = step(r4.state, REG_OUT, register(f"{PH1}:1234", 0, cseq=3), 2100.0)
    ok = sip("SIP/2.0 200 OK", f"""
Via: SIP/2.0/UDP {ALG}:5555;branch=z9hG4bKr3
From: <sip:ph1@{ALG}>;tag=r
To: <sip:ph1@{ALG}>;tag=x
Call-ID: reg1@{ALG}
CSeq: 3 REGISTER
""")
    r6 = step(r5.state, REG_IN, ok, 2100.1)
    assert len(r6.state.registrations) == 0
    assert_replays(r1, r2, r3, r4, r5, r6)


def test_a_registration_port_a_call_still_uses_is_not_released_with_the_registration():
    # ph1 registers contact :5070 (not its source port: the ALG gives it a
    # port of its own), then calls with that Contact: the call's binding
    # borrows the registration's port. Before, the registration expiring
    # mid-call released the port while the call's binding and inbound
    # pinhole still translated it to ph1, and the next registration got the
    # same public port for another phone.
    r1 = step(EMPTY, REG_OUT, register(f"{PH1}:5070", 3600), 1000.0)
    (reg,) = r1.state.registrations.values()
    assert reg.owned
    port = reg.public_port
    r2 = step(r1.state, REG_IN, register_ok(f"{ALG}:{port}", 60), 1000.1)
    call_invite = invite().replace(f"Contact: <sip:ph1@{PH1}:5060>".encode(),
                                   f"Contact: <sip:ph1@{PH1}:5070>".encode())
    r3 = step(r2.state, OUT, call_invite, 1001.0)
    assert any((b.private_port, b.public_port) == (5070, port) for b in the_call(r3.state).bindings)
    held = (IPv4Address(ALG), port)
    r4 = on_timer(r3.state, ev.reg_stream(ALG, port), 1060.1)
    assert len(r4.state.registrations) == 0
    assert held in r4.state.ports_in_use
    other = SipContext("outbound", ("5.5.5.9", 1234), (PH2, 5060), nat_src=(ALG, 5556))
    r5 = step(r4.state, other, register("5.5.5.9:5070", 3600, src_host="5.5.5.9"), 1100.0)
    assert port not in {r.public_port for r in r5.state.registrations.values()}
    # The call ending releases it, once; so does the reverse order.
    (call,) = r4.state.calls.values()
    ended = on_timer(r4.state, call.stream, call.max_deadline)
    assert len(ended.state.calls) == 0 and not ended.state.ports_in_use
    call_first = on_timer(r3.state, call.stream, call.max_deadline)
    assert held in call_first.state.ports_in_use
    reg_after = on_timer(call_first.state, ev.reg_stream(ALG, port), call.max_deadline + 1)
    assert not reg_after.state.ports_in_use
    assert_replays(r1, r2, r3, r4, ended)
    assert_replays(r1, r2, r3, call_first, reg_after)


def test_a_register_answer_changes_only_the_bindings_of_its_own_register():
    # A 2xx to REGISTER changed the lifetime of every binding it listed,
    # whatever REGISTER it answered: any host able to send UDP to the ALG's
    # address could remove a phone's Incoming DIP entry (Expires: 0) or make
    # it and its port last for decades, knowing only the public contact.
    # Only the bindings of the REGISTER the answer belongs to (its Call-ID,
    # compared without the host the ALG translates) are its to change.
    _, r2 = registered()
    before = r2.state.registrations[(ALG, 5555)]
    forger = SipContext("inbound", ("9.9.9.9", 5060), (ALG, 5555), nat_dst=(PH1, 1234))
    for expires in (0, 2 ** 31):
        forged = register_ok(f"{ALG}:5555", expires).replace(b"reg1@", b"forged@")
        r3 = step(r2.state, forger, forged, 1001.0)
        assert r3.state.registrations.get((ALG, 5555)) == before
    # The answer to the REGISTER itself still does.
    r4 = step(r2.state, REG_IN, register_ok(f"{ALG}:5555", 0), 1001.0)
    assert len(r4.state.registrations) == 0


def test_incoming_invite_via_incoming_dip_table():
    _, r2 = registered()
    inv = sip(f"INVITE sip:ph1@{ALG}:5555 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bKi
From: <sip:ph2@{PH2}>;tag=c
To: <sip:ph1@{ALG}>
Call-ID: in1@{PH2}
CSeq: 1 INVITE
Contact: <sip:ph2@{PH2}:5060>
""", sdp(PH2, 40000))
    ctx = SipContext("inbound", (PH2, 5060), (ALG, 5555))      # interface DIP: no nat_dst
    r3 = step(r2.state, ctx, inv, 1100.0)
    assert r3.verdict == "forward" and r3.route_to == (PH1, 1234)
    m = parse_message(r3.data)
    assert m.request_uri.text == f"sip:ph1@{PH1}:1234"
    assert m.get("to") == f"<sip:ph1@{PH1}>"
    # Gates for the outgoing media toward ph2.
    assert sorted(p.dst for p in r3.pinholes_open if p.kind == "media") == [
        (PH2, 40000), (PH2, 40001)]
    # ph1 answers: its SDP is translated and inbound gates open.
    ok = sip("SIP/2.0 200 OK", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bKi
From: <sip:ph2@{PH2}>;tag=c
To: <sip:ph1@{PH1}>;tag=d
Call-ID: in1@{PH2}
CSeq: 1 INVITE
Contact: <sip:ph1@{PH1}:1234>
""", sdp(PH1, 30000))
    back = SipContext("outbound", (PH1, 1234), (PH2, 5060), nat_src=(ALG, 5555))
    r4 = step(r3.state, back, ok, 1101.0)
    m = parse_message(r4.data)
    assert m.get("contact") == f"<sip:ph1@{ALG}:5555>" and m.get("to") == f"<sip:ph1@{ALG}>;tag=d"
    pub = m.sdp.media[0].port
    assert m.sdp.session_conn.addr.text == ALG
    assert sorted((p.dst, p.to) for p in r4.pinholes_open if p.kind == "media") == [
        ((ALG, pub), (PH1, 30000)), ((ALG, pub + 1), (PH1, 30001))]
    assert_replays(r2, r3, r4)


def test_inbound_invite_to_unknown_public_address_is_dropped():
    inv = sip(f"INVITE sip:x@{ALG}:7777 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bKu
From: <sip:ph2@{PH2}>;tag=c
To: <sip:x@{ALG}>
Call-ID: u@{PH2}
CSeq: 1 INVITE
""")
    r = step(EMPTY, SipContext("inbound", (PH2, 5060), (ALG, 7777)), inv, 1.0)
    assert r.verdict == "drop" and "Incoming DIP" in r.reason and r.state == EMPTY


def test_incoming_call_to_mip():
    mip, host = "1.1.1.5", "10.1.1.3"
    inv = sip(f"INVITE sip:p1@{mip} SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bKm
From: <sip:ph2@{PH2}>;tag=c
To: <sip:p1@{mip}>
Call-ID: m@{PH2}
CSeq: 1 INVITE
""", sdp(PH2, 40000))
    r = step(EMPTY, SipContext("inbound", (PH2, 5060), (mip, 5060), nat_dst=(host, 5060)), inv, 1.0)
    m = parse_message(r.data)
    assert m.request_uri.text == f"sip:p1@{host}" and m.get("to") == f"<sip:p1@{host}>"
    assert m.get("from") == f"<sip:ph2@{PH2}>;tag=c"
    assert the_call(r.state).mode == "inbound" and the_call(r.state).alg_ip == mip


# --- media changes -------------------------------------------------------------

def test_hold_closes_pinholes_and_opens_none():
    r = established()
    call = the_call(r.state)
    a_groups = [g for g in call.groups if g.side == "a"]
    hold = request_out("INVITE", 2, "z9hG4bK3", body=sdp("0.0.0.0", 52002, origin=PH1))
    r3 = step(r.state, OUT, hold, 200.0)
    assert r3.verdict == "forward"
    assert not [p for p in r3.pinholes_open if p.kind == "media"]
    closed = set(r3.pinholes_close)
    assert {p.id for p in call.pinholes if p.group == a_groups[0].group} <= closed
    assert parse_message(r3.data).sdp.session_conn.addr.text == "0.0.0.0"
    assert [g for g in the_call(r3.state).groups if g.side == "a"] == []
    assert_replays(r, r3)


def test_reinvite_adds_and_removes_a_stream():
    r = established()
    two = request_out("INVITE", 2, "z9hG4bK4", body=sdp(PH1, 52002, 52010))
    r3 = step(r.state, OUT, two, 200.0)
    m = parse_message(r3.data)
    assert m.sdp.media[0].port == parse_message(step(EMPTY, OUT, invite(), 1).data).sdp.media[0].port
    new = [p for p in r3.pinholes_open if p.kind == "media"]
    assert sorted(p.to for p in new) == [(PH1, 52010), (PH1, 52011)]
    assert len([g for g in the_call(r3.state).groups if g.side == "a"]) == 2
    used_before = len(r3.state.ports_in_use)
    # The next re-INVITE drops the first stream (port 0).
    one = request_out("INVITE", 3, "z9hG4bK5", body=sdp(PH1, 0, 52010))
    r4 = step(r3.state, OUT, one, 300.0)
    assert len([g for g in the_call(r4.state).groups if g.side == "a"]) == 1
    assert len(r4.pinholes_close) == 2 and not r4.pinholes_open
    assert len(r4.state.ports_in_use) == used_before - 2
    assert_replays(r, r3, r4)


def test_six_channels_per_direction_and_the_seventh_refused():
    body = sdp(PH1, *range(40000, 40014, 2))          # 7 m= lines
    r = step(EMPTY, OUT, invite(body=body), 1.0)
    assert r.verdict == "forward"
    media = [p for p in r.pinholes_open if p.kind == "media"]
    assert len(media) == 12 and len({p.group for p in media}) == 6
    m = parse_message(r.data)
    assert m.sdp.media[6].port == 0 and all(x.port for x in m.sdp.media[:6])
    assert any("media channel 7" in line for line in r.logs)
    six = step(EMPTY, OUT, invite(body=sdp(PH1, *range(40000, 40012, 2))), 1.0)
    assert len({p.group for p in six.pinholes_open if p.kind == "media"}) == 6 and not six.logs


def test_port_exhaustion_discards_the_message():
    state = replace(EMPTY, ports=portmap.hold(EMPTY.ports, ALG,
                                              *(p for p in range(20000, 65536) if p != 30001)))
    assert (IPv4Address(ALG), 30000) in state.ports_in_use
    assert (IPv4Address(ALG), 30001) not in state.ports_in_use
    r = step(state, OUT, invite(), 1.0)
    assert r.verdict == "drop" and "even/odd port pair" in r.reason
    assert r.state is state and r.events == () and r.data == invite()


def test_rtcp_attribute_gives_the_rtcp_port():
    body = sdp(PH1, 52002, extra="a=rtcp:53000\n")
    r = step(EMPTY, OUT, invite(body=body), 1.0)
    m = parse_message(r.data)
    pub = m.sdp.media[0].port
    assert m.sdp.media[0].rtcp_port == pub + 1
    assert sorted(p.to for p in r.pinholes_open if p.kind == "media") == [
        (PH1, 52002), (PH1, 53000)]


def test_sdp_without_connection_is_dropped():
    body = "v=0\no=u 1 1 IN IP4 5.5.5.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    r = step(EMPTY, OUT, invite(body=body), 1.0)
    assert r.verdict == "drop" and "no c=" in r.reason and r.state == EMPTY


def test_multicast_is_logged_unsupported():
    r = step(EMPTY, OUT, invite(body=sdp("224.2.1.1/127", 4000)), 1.0)
    assert r.verdict == "forward"
    assert not [p for p in r.pinholes_open if p.kind == "media"]
    assert any("multicast" in line for line in r.logs)


def test_encrypted_sdp_passes_and_is_logged():
    r = step(EMPTY, OUT, invite(body="MIAGCSqGSIb3DQEHA6CAMIACAQAx", ) .replace(
        b"application/sdp", b"application/pkcs7-mime"), 1.0)
    assert r.verdict == "forward"
    assert any("encrypted" in line for line in r.logs)
    assert not [p for p in r.pinholes_open if p.kind == "media"]


def test_malformed_message_is_dropped_with_reason():
    r = step(EMPTY, OUT, b"INVITE nonsense\r\n\r\n", 1.0)
    assert r.verdict == "drop" and r.reason and r.state == EMPTY


# --- ending calls -----------------------------------------------------------------

def test_bye_tears_down_five_seconds_later():
    r = established()
    bye = step(r.state, OUT, request_out("BYE", 2, "z9hG4bK6"), 150.0)
    key = the_call(bye.state).stream
    assert the_call(bye.state).teardown_at == 155.0
    assert [t.deadline for t in bye.timers if t.key == key] == [155.0]
    ok = step(bye.state, IN, response(200, "OK", method="BYE", cseq=2, branch="z9hG4bK6"), 150.2)
    assert ok.verdict == "forward" and parse_message(ok.data).call_id == f"a1234@{PH1}"
    assert on_timer(ok.state, key, 154.9).state.calls
    end = on_timer(ok.state, key, 155.0)
    assert len(end.state.calls) == 0 and end.state.ports_in_use == frozenset()
    assert set(end.pinholes_close) == {p.id for p in the_call(ok.state).pinholes}
    assert_replays(r, bye, ok, end)


def test_cancel_ends_the_call_five_seconds_later_whatever_the_answer():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, IN, response(180, "Ringing"), 100.5)
    cancel = sip(f"CANCEL sip:ph2@{PH2} SIP/2.0", f"""
Via: SIP/2.0/UDP {PH1}:5060;branch=z9hG4bK1
From: <sip:ph1@{PH1}>;tag=a
To: <sip:ph2@{PH2}>
Call-ID: a1234@{PH1}
CSeq: 1 CANCEL
""")
    r3 = step(r2.state, OUT, cancel, 101.0)
    assert the_call(r3.state).phase == "terminating"
    assert parse_message(r3.data).get("via").startswith(f"SIP/2.0/UDP {ALG}:1234")
    r4 = step(r3.state, IN, response(487, "Request Terminated"), 101.2)
    assert r4.verdict == "forward" and the_call(r4.state).phase == "terminating"
    end = on_timer(r4.state, the_call(r4.state).stream, 106.0)
    assert len(end.state.calls) == 0
    assert_replays(r1, r2, r3, r4, end)


def test_rejected_invite_ends_unless_retried():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, IN, response(407, "Proxy Authentication Required"), 100.2)
    assert the_call(r2.state).phase == "rejected"
    retry = step(r2.state, OUT, invite(cseq=2, branch="z9hG4bK7"), 101.0)
    assert the_call(retry.state).phase == "calling" and the_call(retry.state).teardown_at is None
    end = on_timer(r2.state, the_call(r2.state).stream, 105.2)
    assert len(end.state.calls) == 0


def test_forking_first_2xx_wins():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, IN, response(200, "OK", to_tag="b1", body=sdp(PH2, 62002)), 101.0)
    other = "6.6.6.9"
    r3 = step(r2.state, IN, response(200, "OK", to_tag="b2", body=sdp(other, 44000)), 101.1)
    assert r3.verdict == "forward"
    call = the_call(r3.state)
    assert call.to_tag == "b1"
    assert not [p for p in r3.pinholes_open if p.kind == "media"]
    assert {g.dst_ip for g in call.groups if g.side == "b"} == {PH2}
    assert any("another fork" in line for line in r3.logs)
    assert_replays(r1, r2, r3)


def test_forwarded_call_on_one_interface_opens_no_pinholes():
    # A outside calls B inside; B's proxy sends the same INVITE back out by
    # the interface A is on: media flows between the outside parties.
    inv = sip(f"INVITE sip:b@1.1.1.5 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bKf1
From: <sip:a@{PH2}>;tag=fa
To: <sip:b@1.1.1.5>
Call-ID: fw@{PH2}
CSeq: 1 INVITE
""", sdp(PH2, 40000))
    r1 = step(EMPTY, SipContext("inbound", (PH2, 5060), ("1.1.1.5", 5060),
                                nat_dst=("10.1.1.4", 5060), ingress="ethernet3",
                                egress="ethernet1"), inv, 1.0)
    assert r1.pinholes_open
    out = inv.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP 10.1.1.4:5060;branch=z9hG4bKf2\r\n"
                      b"Via: SIP/2.0/UDP", 1)
    r2 = step(r1.state, SipContext("outbound", ("10.1.1.4", 5060), ("7.7.7.7", 5060),
                                   nat_src=("1.1.1.5", 5060), ingress="ethernet1",
                                   egress="ethernet3"), out, 1.1)
    assert r2.verdict == "forward" and the_call(r2.state).forwarded
    assert not [p for p in the_call(r2.state).pinholes if p.kind == "media"]
    assert_replays(r1, r2)


# --- timers -----------------------------------------------------------------------

def test_signalling_inactivity_ends_the_call():
    r = established()
    call = the_call(r.state)
    assert call.signalling_deadline == pytest.approx(101.0 + 43200)
    # Keep media flowing so only signalling can time out.
    s = r.state
    for g in call.groups:
        s = media_activity(s, g.group, 101.0 + 43200 - 10).state
    assert on_timer(s, call.stream, 101.0 + 43199).state.calls
    assert len(on_timer(s, call.stream, 101.0 + 43200).state.calls) == 0
    reason = [e for e in on_timer(s, call.stream, 101.0 + 43200).events
              if isinstance(e, ev.CallEnded)][0].reason
    assert "signalling inactivity" in reason


def test_session_expires_from_200_ok_sets_the_signalling_timeout():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, IN, response(200, "OK", body=sdp(PH2, 62002),
                                     extra="Session-Expires: 1800;refresher=uac\n"), 101.0)
    call = the_call(r2.state)
    assert call.session_expires == 1800 and call.signalling_deadline == 1901.0
    # A re-INVITE resets to the default until its own 2xx.
    r3 = step(r2.state, OUT, request_out("INVITE", 2, "z9hG4bK8", body=sdp(PH1, 52002)), 1000.0)
    assert the_call(r3.state).signalling_deadline == 1000.0 + 43200
    assert_replays(r1, r2, r3)


def test_media_inactivity_ends_the_call_and_activity_keeps_it():
    settings = SipSettings(media_inactivity_timeout=120)
    r = established(settings=settings)
    call = the_call(r.state)
    group = next(g.group for g in call.groups if g.side == "b")
    assert on_timer(r.state, call.stream, 101.0 + 119).state.calls
    ended = on_timer(r.state, call.stream, 101.0 + 120)
    assert len(ended.state.calls) == 0
    assert "media inactivity" in [e for e in ended.events if isinstance(e, ev.CallEnded)][0].reason
    # Media on every group keeps the call up.
    s = r.state
    for g in call.groups:
        s = media_activity(s, g.group, 200.0, settings).state
    assert on_timer(s, call.stream, 221.0, settings).state.calls
    # A packet through a pinhole removes that pinhole.
    hole = next(p for p in the_call(s).pinholes if p.group == group)
    used = media_activity(s, group, 201.0, settings, pinhole=hole.id)
    assert used.pinholes_close == (hole.id,)
    assert hole.id not in {p.id for p in the_call(used.state).pinholes}


def test_unused_pinhole_expires_without_ending_the_call():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    key = the_call(r1.state).stream
    r2 = on_timer(r1.state, key, 100.0 + 120)
    assert r2.state.calls and not [p for p in the_call(r2.state).pinholes if p.kind == "media"]
    assert len(r2.pinholes_close) == 2


def test_maximum_call_duration():
    settings = SipSettings()
    r = established(settings=settings)
    call = the_call(r.state)
    assert call.max_deadline == 100.0 + 86400
    s = r.state
    t = 100.0
    while t < 100.0 + 86400:
        t += 3600
        s = step(s, OUT, request_out("INFO", int(t), f"z9hG4bKi{int(t)}"), t).state
        for g in the_call(s).groups:
            s = media_activity(s, g.group, t).state
    assert len(on_timer(s, call.stream, 100.0 + 86400).state.calls) == 0


# --- sip protect deny -----------------------------------------------------------------

def test_protect_deny_drops_repeated_invites_for_the_timeout():
    settings = SipSettings(protect_deny=True)
    r1 = step(EMPTY, OUT, invite(), 100.0, settings)
    r2 = step(r1.state, IN, response(486, "Busy Here"), 100.1, settings)
    assert dict(r2.state.protect) == {(PH1, PH2): 103.1}
    again = step(r2.state, OUT, invite(call="other"), 101.0, settings)
    assert again.verdict == "drop" and "protect deny" in again.reason
    later = step(r2.state, OUT, invite(call="other"), 103.2, settings)
    assert later.verdict == "forward"
    expired = on_timer(r2.state, ev.protect_stream(PH1, PH2), 103.1, settings)
    assert len(expired.state.protect) == 0


def test_protect_deny_off_by_default_and_dst_ip_only():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, IN, response(503, "Service Unavailable"), 100.1)
    assert len(r2.state.protect) == 0
    other_proxy = SipSettings(protect_deny=True, protect_deny_dst=IPv4Interface("1.1.1.3/24"),
                              protect_deny_timeout=5)
    r3 = step(r1.state, IN, response(503, "Service Unavailable"), 100.1, other_proxy)
    assert len(r3.state.protect) == 0
    this_proxy = replace(other_proxy, protect_deny_dst=IPv4Interface(f"{PH2}/24"))
    r4 = step(r1.state, IN, response(302, "Moved"), 100.1, this_proxy)
    assert dict(r4.state.protect) == {(PH1, PH2): 105.1}


def test_protect_deny_only_from_answers_to_an_invite_the_alg_saw():
    # "monitor INVITE requests and proxy server replies to them": a 3xx-5xx
    # that answers no INVITE the ALG passed is no such reply. Before, a stray
    # (or forged, UDP) 503 with "CSeq: 1 INVITE" put its destination and
    # source in the table, so anyone could make the device drop a phone's
    # INVITEs to its proxy, again and again.
    settings = SipSettings(protect_deny=True)
    stray = step(EMPTY, IN, response(503, "Service Unavailable", call="nosuch"), 100.0, settings)
    assert stray.verdict == "forward" and len(stray.state.protect) == 0
    assert step(stray.state, OUT, invite(), 100.5, settings).verdict == "forward"
    # Within a call, only an answer to one of its INVITE transactions counts.
    r1 = step(EMPTY, OUT, invite(), 100.0, settings)
    other_branch = step(r1.state, IN, response(486, "Busy Here", branch="z9hG4bKforged"), 100.1,
                        settings)
    assert len(other_branch.state.protect) == 0
    real = step(r1.state, IN, response(486, "Busy Here"), 100.1, settings)
    assert dict(real.state.protect) == {(PH1, PH2): 103.1}


def test_unknown_method_passes_untouched():
    msg = sip(f"FROBNICATE sip:x@{PH2} SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bKz
From: <sip:y@{PH2}>;tag=q
To: <sip:x@{PH2}>
Call-ID: z@{PH2}
CSeq: 1 FROBNICATE
""")
    r = step(EMPTY, OUT, msg, 1.0)
    assert r.verdict == "forward" and r.data == msg and r.events == ()


def test_refer_binds_the_referred_party_reusing_its_registration():
    # ph1 (inside) refers ph2 (outside) to ph3 (inside, registered as
    # 6.6.6.1:5555) and to ph4 (inside, not registered: a new binding).
    reg1, reg2 = registered()
    r = established(now=1100.0)
    state = fold(reg1.events + reg2.events, r.state)
    refer = sip(f"REFER sip:ph2@{PH2}:5060 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH1}:5060;branch=z9hG4bKref
From: <sip:ph1@{PH1}>;tag=a
To: <sip:ph2@{PH2}>;tag=b
Call-ID: a1234@{PH1}
CSeq: 5 REFER
Refer-To: <sip:ph3@{PH1}:1234>
Contact: <sip:ph1@{PH1}:5060>
""")
    r2 = step(state, OUT, refer, 1200.0)
    assert parse_message(r2.data).get("refer-to") == f"<sip:ph3@{ALG}:5555>"
    other = refer.replace(f"ph3@{PH1}:1234".encode(), b"ph4@5.5.5.4:5062")
    r3 = step(state, OUT, other, 1200.0)
    target = parse_message(r3.data).get("refer-to")
    assert target.startswith(f"<sip:ph4@{ALG}:")
    (b,) = [b for b in the_call(r3.state).bindings if b.private_ip == "5.5.5.4"]
    assert (b.private_port, b.owned) == (5062, True) and target == f"<sip:ph4@{ALG}:{b.public_port}>"
    assert any(p.to == ("5.5.5.4", 5062) for p in r3.pinholes_open)


# --- state a remote peer can make grow ---------------------------------------------

def _info_from_outside(i: int, contact: str) -> bytes:
    return sip(f"INFO sip:ph1@{ALG}:1234 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch=z9hG4bKi{i}
From: <sip:ph2@{PH2}>;tag=b
To: <sip:ph1@{ALG}>;tag=a
Call-ID: a1234@{ALG}
CSeq: {10 + i} INFO
Contact: {contact}
""")


def test_public_contact_pinhole_follows_the_remote_target_and_does_not_accumulate():
    # A dialog has one remote target, the latest Contact the peer sent
    # (RFC 3261 §12.2.1.2 target refresh). Before, every in-dialog message
    # from outside with a new Contact (or a list of them) added a signalling
    # pinhole without lifetime that lived as long as the call: a peer could
    # grow the pinhole table without bound.
    results = [established()]
    inside = SipContext("inbound", (PH2, 5060), (ALG, 1234))
    for i in range(20):
        contact = f"<sip:x@9.9.{i}.1:{6000 + i}>, <sip:y@9.8.{i}.1:7000>, <sip:z@9.7.{i}.1>"
        r = step(results[-1].state, inside, _info_from_outside(i, contact), 110.0 + i)
        assert r.verdict == "forward"
        results.append(r)
    outward = [p.dst for p in the_call(results[-1].state).pinholes
               if p.kind == "signalling" and p.direction == "outbound"]
    assert outward == [("9.9.19.1", 6019)]
    last = results[-1]
    assert [p.dst for p in last.pinholes_open if p.kind == "signalling"] == [("9.9.19.1", 6019)]
    assert len(last.pinholes_close) == 1
    # A message without a Contact leaves the target as it is.
    r = step(last.state, inside, _info_from_outside(99, "<sip:x@9.9.19.1:6019>").replace(
        b"Contact: <sip:x@9.9.19.1:6019>\r\n", b""), 140.0)
    assert r.verdict == "forward" and not r.pinholes_open and not r.pinholes_close
    assert_replays(*results, r)


def test_bindings_per_call_are_bounded():
    # Each private transport address (Via, Contact, Record-Route) of a call
    # gets a public port and an inbound pinhole until the call ends. Before,
    # one 25 kB datagram with 500 Via lines took 500 ports of the ALG's
    # address and opened 500 pinholes; a few such messages left no port for
    # anyone else's media. A call holds at most MAX_BINDINGS_PER_CALL; a
    # message needing more is discarded, as when no port is free.
    r = established()
    def info(n: int, cseq: int) -> bytes:
        vias = "".join(f"Via: SIP/2.0/UDP {PH1}:{10000 + 100 * cseq + i};branch=z9hG4bKv{i}\n"
                       for i in range(n))
        return sip(f"INFO sip:ph2@{PH2}:5060 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH1}:5060;branch=z9hG4bKx{cseq}
{vias}From: <sip:ph1@{PH1}>;tag=a
To: <sip:ph2@{PH2}>;tag=b
Call-ID: a1234@{PH1}
CSeq: {cseq} INFO
""")
    few = step(r.state, OUT, info(3, 5), 105.0)
    assert few.verdict == "forward"
    assert len(the_call(few.state).bindings) == len(the_call(r.state).bindings) + 3
    many = step(few.state, OUT, info(500, 6), 106.0)
    assert many.verdict == "drop" and "bindings" in many.reason
    assert many.state == few.state
    assert len(the_call(few.state).bindings) <= MAX_BINDINGS_PER_CALL


def test_forged_final_answer_outside_the_invite_transaction_is_dropped():
    """A 486 whose Via branch names no INVITE of the call (stray, or forged:
    it is UDP) must not reject the call; the real one still can."""
    r1 = step(EMPTY, OUT, invite(), 100.0)
    forged = step(r1.state, IN, response(486, "Busy Here", branch="z9hG4bKforged"), 101.0)
    assert forged.verdict == "drop" and "no INVITE transaction" in forged.reason
    assert forged.state is r1.state and not forged.events
    real = step(r1.state, IN, response(486, "Busy Here"), 101.0)
    assert real.verdict == "forward" and the_call(real.state).phase == "rejected"


def test_registrar_lifetime_is_capped():
    from gateway.sip.alg import MAX_REGISTRATION
    now = 100.0
    r1 = step(EMPTY, REG_OUT, register(f"{PH1}:1234", 3600), now)
    r2 = step(r1.state, REG_IN, register_ok("6.6.6.1:5555", 2**31 - 1), now + 1)
    (reg,) = r2.state.registrations.values()
    assert reg.expires_at == now + 1 + MAX_REGISTRATION
    assert_replays(r1, r2)
