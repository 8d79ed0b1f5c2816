"""Numbers on the wire are ASCII digits of bounded length.

str.isdigit() is true of "²" (U+00B2, octet 0xB2 read as latin-1) and other
Unicode digits, which int() refuses; and int() refuses a string of more than
4,300 digits (Python's int_max_str_digits). Either escaped the parser or the
ALG step as ValueError; such input is now refused with RemoteProtocolError
(parser) or read as "not a number / not an address" (ALG)."""

from __future__ import annotations

import pytest

from gateway.errors import RemoteProtocolError
from gateway.sip import parse_message
from gateway.sip.alg import EMPTY, step
from gateway.sip.message import _parse
from tests.test_sip_alg import ALG, OUT, PH1, PH2, established, invite, sdp, sip


@pytest.mark.parametrize("number", ["1" * 4301, "0" * 4300 + "1", "9" * 11])
def test_huge_cseq_number_is_refused(number):
    data = invite().replace(b"CSeq: 1 INVITE", f"CSeq: {number} INVITE".encode())
    for reader in (parse_message, lambda d: _parse(d, True), lambda d: _parse(d, False)):
        with pytest.raises(RemoteProtocolError):
            reader(data)
    r = step(EMPTY, OUT, data, 1.0)
    assert r.verdict == "drop" and "CSeq" in r.reason


@pytest.mark.parametrize("conn", ["c=IN IP4 1\xb2.1.1.1", "c=IN IP4 1\xb2.1.1.1/5"])
def test_unicode_digit_in_sdp_address_is_not_an_address(conn):
    body = sdp(PH1, 52002).replace(f"c=IN IP4 {PH1}", conn)
    data = invite(body="").replace(b"Content-Length: 0\r\n\r\n", b"")
    raw = body.replace("\n", "\r\n").encode("latin-1")
    data = data + b"Content-Type: application/sdp\r\nContent-Length: " + \
        str(len(raw)).encode() + b"\r\n\r\n" + raw
    r = step(EMPTY, OUT, data, 1.0)
    assert r.verdict == "forward"
    assert not [p for p in r.pinholes_open if p.kind == "media"]
    assert any("not an IPv4 address" in line for line in r.logs)


def test_unicode_digit_in_refer_to_port_is_not_a_port():
    r = established(now=1100.0)
    refer = sip(f"REFER sip:ph2@{PH2}:5060 SIP/2.0", f"""
Via: SIP/2.0/UDP {PH1}:5060;branch=z9hG4bKref
From: <sip:ph1@{PH1}>;tag=a
To: <sip:ph2@{PH2}>;tag=b
Call-ID: a1234@{PH1}
CSeq: 5 REFER
Refer-To: <sip:ph3@5.5.5.3:5\xb2>
""")
    refer = refer.replace("5\u00b2".encode(), b"5\xb2")
    out = step(r.state, OUT, refer, 1200.0)
    assert out.verdict in ("forward", "drop")
    long = refer.replace(b"5.5.5.3:5\xb2", b"5.5.5.3:" + b"7" * 5000)
    out = step(r.state, OUT, long, 1200.0)
    assert out.verdict in ("forward", "drop")
    assert b"7" * 5000 in out.data          # untouched: not a port
