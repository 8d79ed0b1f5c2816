"""Unit tests of the offset-preserving SDP parser (RFC 4566, RFC 3605)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.sdp import media_destination, parse_sdp

# Manual chapter 2, "SIP Body": several media streams, each with its c=.
MULTI = (b"v=0\r\no=user 2344234 55234434 IN IP4 10.150.20.3\r\ns=-\r\n"
         b"c=IN IP4 10.123.33.4\r\nt=0 0\r\n"
         b"m=audio 33445 RTP/AVP 0\r\nc=IN IP4 10.123.33.5\r\n"
         b"m=audio 33447 RTP/AVP 0 8\r\na=recvonly\r\n"
         b"m=audio 33449/2 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127/3\r\na=rtcp:53020 IN IP4 126.16.64.4\r\n")


def test_spans_are_absolute_and_exact():
    base = 1000
    sdp = parse_sdp(MULTI, base)
    assert sdp.origin_addr.text == "10.150.20.3"
    assert MULTI[sdp.origin_addr.start - base:sdp.origin_addr.end - base] == b"10.150.20.3"
    assert sdp.session_conn.addr.text == "10.123.33.4"
    for m in sdp.media:
        assert MULTI[m.port_span.start - base:m.port_span.end - base] == str(m.port).encode()


def test_media_fields_and_destinations():
    sdp = parse_sdp(MULTI)
    a, b, c = sdp.media
    assert (a.kind, a.port, a.port_count, a.proto, a.formats) == ("audio", 33445, 1, "RTP/AVP", ("0",))
    # media-level c= wins, else the session-level one (manual, "Pinhole Creation")
    assert media_destination(a) == ("10.123.33.5", 33445)
    assert media_destination(b) == ("10.123.33.4", 33447)
    assert sdp.media_destination(b) == media_destination(b)
    assert b.direction == "recvonly" and a.direction == "sendrecv"
    assert c.port_count == 2
    assert c.conn.is_multicast and c.conn.ttl == 127 and c.conn.count == 3
    assert not sdp.session_conn.is_multicast
    assert c.rtcp_port == 53020 and c.rtcp_port_span.text == "53020" and c.rtcp_addr.text == "126.16.64.4"
    assert a.rtcp_port is None and a.rtcp_addr is None


def test_no_connection_anywhere_gives_none():
    sdp = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")
    assert media_destination(sdp.media[0]) is None


def test_session_direction_and_hold_address():
    sdp = parse_sdp(b"v=0\nc=IN IP4 0.0.0.0\na=sendonly\nm=audio 5000 RTP/AVP 0\n")
    assert sdp.media[0].direction == "sendonly"
    assert media_destination(sdp.media[0]) == ("0.0.0.0", 5000)
    assert sdp.origin_addr is None


def test_ipv6_and_hostname_connections():
    sdp = parse_sdp(b"v=0\r\nc=IN IP6 FF1E:03AD::7F2E:172A:1E24/3\r\nm=audio 1 RTP/AVP 0\r\n"
                    b"c=IN IP4 media.example.com\r\n")
    assert sdp.session_conn.addrtype == "IP6" and sdp.session_conn.is_multicast
    assert sdp.session_conn.count == 3 and sdp.session_conn.addr.text == "FF1E:03AD::7F2E:172A:1E24"
    assert media_destination(sdp.media[0]) == ("media.example.com", 1)


@pytest.mark.parametrize("body,what", [
    (b"v=0\r\nnot a line\r\n", "not <type>=<value>"),
    (b"v=0\r\nm=audio x RTP/AVP 0\r\n", "m= port"),
    (b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "m= port"),
    (b"v=0\r\nm=audio\r\n", "m= line"),
    (b"v=0\r\nc=IN IP4\r\n", "c= line"),
    (b"v=0\r\nc=IN IP4 1.2.3.4/x\r\n", "c= address suffix"),
    (b"v=0\r\no=a b c\r\n", "o= line"),
    (b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:99999\r\n", "a=rtcp"),
    (b"v=0\r\nc=IN IP4 1.1.1.1\r\nc=IN IP4 1.1.1.2\r\n", "more than one c="),
])
def test_malformed_lines_raise(body, what):
    with pytest.raises(RemoteProtocolError) as info:
        parse_sdp(body)
    assert what in info.value.reason


@settings(max_examples=200, deadline=None)
@given(port=st.integers(0, 65535), addr=st.tuples(*[st.integers(0, 255)] * 4), base=st.integers(0, 5000),
       crlf=st.booleans())
def test_generated_descriptions_round_trip(port, addr, base, crlf):
    eol = b"\r\n" if crlf else b"\n"
    a = ".".join(map(str, addr)).encode()
    body = eol.join([b"v=0", b"o=- 1 2 IN IP4 " + a, b"s=-", b"c=IN IP4 " + a, b"t=0 0",
                     b"m=audio %d RTP/AVP 0 101" % port, b"a=rtpmap:101 telephone-event/8000", b""])
    sdp = parse_sdp(body, base)
    (m,) = sdp.media
    assert media_destination(m) == (a.decode(), port)
    assert m.formats == ("0", "101")
    assert body[m.port_span.start - base:m.port_span.end - base] == b"%d" % port
    assert sdp.session_conn.is_multicast == (224 <= addr[0] <= 239)
