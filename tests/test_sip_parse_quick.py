"""The one-pass reading of plainly spelled messages (message._quick).

parse_message first tries _quick, which reads only CRLF-framed, unfolded
messages whose fields take the fast patterns, and otherwise gives up (None)
so that the whole message is read again by the general code. These tests
check both halves: the common messages of real calls are read by _quick
itself, exactly as the general path reads them, and every unusual spelling
makes _quick give up rather than read it differently."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.sip.message import _parse, _quick
from tests.test_sip_parse_equivalence import PLAIN, _assert_same, _norm, FIELDS

SDP = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\ns=-\r\n"
       b"c=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0 8 101\r\n"
       b"a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
INVITE = (b"INVITE sip:bob@203.0.113.5 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK776asdhds;rport\r\n"
          b"Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n"
          b"To: <sip:bob@example.org>\r\nCall-ID: a84b4c76e66710@192.168.1.20\r\n"
          b"CSeq: 314159 INVITE\r\nContact: <sip:alice@192.168.1.20:5060>;expires=60\r\n"
          b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(SDP) + SDP)
OK = (b"SIP/2.0 200 OK\r\n"
      b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=10.0.0.9;rport=5062\r\n"
      b"v: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n"
      b"f: <sip:a@10.0.0.1>;tag=1\r\nt: <sip:b@10.0.0.2>;tag=2\r\ni: x@10.0.0.1:5060\r\n"
      b"CSEQ: 7 INVITE\r\nm: <sip:b@10.0.0.2:5062>\r\nRecord-Route: <sip:10.0.0.4;lr>\r\n"
      b"Expires: 30\r\nSession-Expires: 90;refresher=uas\r\nc: application/sdp\r\nl: %d\r\n\r\n"
      % len(SDP) + SDP)
ACK = (b"ACK sip:b@10.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK3\r\n"
       b"From: <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:b@10.0.0.2>;tag=2\r\nCall-ID: x@10.0.0.1\r\n"
       b"CSeq: 7 ACK\r\nRoute: <sip:10.0.0.4;lr>\r\nContent-Length: 0\r\n\r\n")
COMMON = [INVITE, OK, ACK, PLAIN]


@pytest.mark.parametrize("data", COMMON, ids=["invite", "ok", "ack", "plain"])
def test_common_messages_are_read_in_one_pass_as_the_general_path_reads_them(data):
    quick = _quick(data)
    assert quick is not None
    general = _parse(data, False)
    assert {f: _norm(getattr(quick, f)) for f in FIELDS} == {f: _norm(getattr(general, f)) for f in FIELDS}


@pytest.mark.parametrize("old, new", [
    (b"\r\nVia:", b"\r\n Via:"),                         # a fold
    (b"CSeq: 314159 INVITE\r\n", b"CSeq: 314159 INVITE\n"),  # a bare LF
    (b"Max-Forwards: 70\r\n", b"Max-Forwards: 7\r0\r\n"),  # a lone CR
    (b"To: <sip:bob@example.org>\r\n", b"To: <sip:bob@example.org>\r\nTo: <sip:x@example.org>\r\n"),
    (b"Call-ID: a84b4c76e66710@192.168.1.20\r\n", b""),   # missing
    (b"Contact: <sip:alice@192.168.1.20:5060>", b"Contact: *"),
    (b"Via: SIP/2.0/UDP 192.168.1.20:5060;", b"Via: SIP/2.0/UDP a, SIP/2.0/UDP 192.168.1.20:5060;"),
    (b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"),
    (b"INVITE sip:bob@203.0.113.5 SIP/2.0", b"INVITE  sip:bob@203.0.113.5 SIP/2.0"),
    (b"c=IN IP4 192.168.1.20\r\nt=", b"c=IN IP4 192.168.1.20\r\nc=IN IP4 192.168.1.20\r\nt="),
])
def test_unusual_spellings_are_left_to_the_general_path(old, new):
    data = INVITE.replace(old, new, 1)
    assert data != INVITE
    assert _quick(data) is None
    _assert_same(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(COMMON), pos=st.integers(0, 2000), junk=st.sampled_from(
    [b"\r\n", b"\n", b"\r", b" ", b",", b";", b":", b"<", b">", b"\"", b"@", b"\xa0", b"\r\n ", b"9", b"tag="]))
def test_one_pass_never_reads_differently(seed, pos, junk):
    pos %= len(seed)
    data = seed[:pos] + junk + seed[pos:]
    quick = _quick(data)
    if quick is not None:
        general = _parse(data, False)
        assert {f: _norm(getattr(quick, f)) for f in FIELDS} == {f: _norm(getattr(general, f)) for f in FIELDS}
