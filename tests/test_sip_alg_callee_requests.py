"""Requests the callee sends inside the dialog (re-INVITE, UPDATE) and their
2xx answers from the caller.

A dialog is identified by its Call-ID and the two tags, whichever party sends
(RFC 3261 §12.2): in a request from the callee the From tag is the callee's
and the To tag the caller's. The caller's 2xx to such a re-INVITE (Asterisk
direct media, a session refresh, a switch to T.38) or UPDATE (RFC 3311) is
of the call's own dialog, not another fork: its SDP is translated and used
for pinholes like any other."""

from __future__ import annotations

from gateway.sip import parse_message
from gateway.sip.alg import step
from tests.test_sip_alg import (ALG, IN, OUT, PH1, PH2, assert_replays, established, sdp, sip,
                                the_call)


def from_callee(method: str, cseq: int, branch: str, body: str) -> bytes:
    return sip(f"{method} sip:ph1@{ALG}:1234 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch={branch}
From: <sip:ph2@{PH2}>;tag=b
To: <sip:ph1@{ALG}>;tag=a
Call-ID: a1234@{ALG}
CSeq: {cseq} {method}
Contact: <sip:ph2@{PH2}:5060>
""", body)


def caller_answer(method: str, cseq: int, branch: str, body: str) -> bytes:
    return sip("SIP/2.0 200 OK", f"""
Via: SIP/2.0/UDP {PH2}:5060;branch={branch}
From: <sip:ph2@{PH2}>;tag=b
To: <sip:ph1@{PH1}>;tag=a
Call-ID: a1234@{PH1}
CSeq: {cseq} {method}
Contact: <sip:ph1@{PH1}:5060>
""", body)


def _through(method: str):
    r0 = established()
    # The callee moves its media and asks the caller for an answer.
    r1 = step(r0.state, IN, from_callee(method, 7, "z9hG4bKre", sdp(PH2, 62100)), 200.0)
    assert r1.verdict == "forward"
    # The caller answers from its private address, with a new media port.
    r2 = step(r1.state, OUT, caller_answer(method, 7, "z9hG4bKre", sdp(PH1, 52010)), 200.1)
    return r0, r1, r2


def _check(r0, r1, r2):
    assert r2.verdict == "forward"
    assert not any("another fork" in line for line in r2.logs)
    out = parse_message(r2.data)
    # Nothing of the private side leaks in the answer's SDP.
    assert PH1.encode() not in out.body
    assert out.sdp.origin_addr.text == ALG and out.sdp.session_conn.addr.text == ALG
    pub = out.sdp.media[0].port
    # The new private media address has its pinholes, toward the new port.
    call = the_call(r2.state)
    (a_group,) = [g for g in call.groups if g.side == "a"]
    assert (a_group.dst_ip, a_group.dst_port, a_group.public_port) == (PH1, 52010, pub)
    holes = [p for p in r2.pinholes_open if p.kind == "media"]
    assert sorted(p.dst for p in holes) == [(ALG, pub), (ALG, pub + 1)]
    assert {p.to for p in holes} == {(PH1, 52010), (PH1, 52011)}
    # The call's dialog is still the one of the first 2xx.
    assert call.to_tag == "b"
    assert_replays(r0, r1, r2)


def test_2xx_to_a_reinvite_sent_by_the_callee_is_translated():
    _check(*_through("INVITE"))


def test_2xx_to_an_update_sent_by_the_callee_is_translated():
    _check(*_through("UPDATE"))
