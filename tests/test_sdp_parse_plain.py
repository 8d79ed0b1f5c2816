"""The plain session description read whole (gateway.sdp.parse._PLAIN_SDP).

parse_sdp first tries one pattern for the usual shape (v=, o=, an optional
session c=, one m= section with an optional c=, at most one direction at each
level, CRLF line ends) and otherwise reads the body line by line
(_parse_lines). Both must read every body the same way: same result, same
refusal."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.sdp import parse as sdp_parse
from gateway.sdp.parse import _PLAIN_SDP, _parse_lines, parse_sdp

PLAIN = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\ns=-\r\n"
         b"c=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0 8 101\r\n"
         b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
         b"a=ptime:20\r\na=sendrecv\r\n")
MEDIA_CONN = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\na=sendonly\r\n"
              b"m=audio 4000/2 RTP/AVP\r\nc=IN IP4 224.1.1.1\r\na=recvonly \r\n")


def _norm(x):
    if dataclasses.is_dataclass(x):
        return (type(x).__name__,) + tuple(_norm(getattr(x, f.name)) for f in dataclasses.fields(x))
    if isinstance(x, tuple):
        return tuple(_norm(i) for i in x)
    return x


def _outcome(read, body: bytes, base: int):
    try:
        return _norm(read(body, base))
    except RemoteProtocolError as exc:
        return "refused", str(exc), exc.offset


def _line_by_line(body: bytes, base: int):
    return _parse_lines(body, body.decode("latin-1"), base)


@pytest.mark.parametrize("body", [PLAIN, MEDIA_CONN])
def test_usual_bodies_are_read_whole_and_as_line_by_line(body, monkeypatch):
    assert _PLAIN_SDP(body.decode("latin-1")) is not None
    expected = _outcome(_line_by_line, body, 700)
    monkeypatch.setattr(sdp_parse, "_parse_lines", None)  # the plain reading must not need it
    assert _outcome(parse_sdp, body, 700) == expected


def test_media_level_connection_and_directions():
    sdp = parse_sdp(MEDIA_CONN)
    (m,) = sdp.media
    assert sdp.session_conn is None and sdp.direction == "sendonly"
    assert m.conn.addr.text == "224.1.1.1" and m.conn.is_multicast and m.port_count == 2
    assert m.formats == () and m.direction == "recvonly"


def test_port_above_65535_is_refused_as_line_by_line():
    body = PLAIN.replace(b"16384", b"70000")
    assert _PLAIN_SDP(body.decode("latin-1")) is not None
    with pytest.raises(RemoteProtocolError, match="m= port"):
        parse_sdp(body)


FIELD = st.sampled_from(["-", "x", "IN", "1", "2890844526", "", "IP6"])
ADDR = st.sampled_from(["192.168.1.20", "224.2.1.1", "239.0.0.1", "0.0.0.0", "999.1.1.1", "10.0.0.1",
                        "h.example", "1.2.3.4/127", "FF1E::1", "1.2.3"])
DIRECTION = st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])
# Mostly lines the plain pattern passes over; now and then one it must not.
OTHER = st.one_of(
    st.sampled_from(["s=-", "t=0 0", "i=info", "b=AS:64", "u=x", "k=clear:x", "z=0 0", "x=1",
                     "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendrecvx", "a=recvonly2", "a=rtcpx"]),
    st.sampled_from(["s=-", "t=0 0", "a=fmtp:101 0-15"]),
    DIRECTION.map(lambda d: "a=" + d + " "),
    st.sampled_from(["a=rtcp:53020", "a=rtcp:99999", "a=rtcp:5 IN IP4 1.2.3.4", "", "V=0",
                     "c=IN IP4 1.1.1.1", "o=- 1 1 IN IP4 1.1.1.1", "m=audio 1 RTP/AVP 0"]),
)
PLAIN_LIKE = st.lists(st.sampled_from(["s=-", "t=0 0", "a=rtpmap:0 PCMU/8000", "b=AS:64"]), max_size=2)


def _others(draw):
    return draw(st.one_of(PLAIN_LIKE, st.lists(OTHER, max_size=3)))


@st.composite
def descriptions(draw):
    lines = ["v=0"]
    fields = draw(st.lists(FIELD, min_size=5, max_size=5) | st.lists(FIELD, min_size=3, max_size=6))
    lines.append("o=" + " ".join(fields + [draw(ADDR)]))
    lines += _others(draw)
    if draw(st.booleans()):
        nettype = draw(st.sampled_from(["IN", "IN", "x", ""]))
        addrtype = draw(st.sampled_from(["IP4", "IP4", "IP6", "ip4"]))
        lines.append(f"c={nettype} {addrtype} {draw(ADDR)}")
    lines += _others(draw)
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2]))):
        port = draw(st.sampled_from(["0", "16384", "65535", "65536", "99999", "123456", "x"]))
        if draw(st.booleans()):
            port += "/" + draw(st.sampled_from(["2", "0", "123456"]))
        fmts = draw(st.sampled_from(["", " 0", " 0 8 101", " 0  8", " ", " 96 "]))
        kind = draw(st.sampled_from(["audio", "video", ""]))
        proto = draw(st.sampled_from(["RTP/AVP", "RTP/AVP", ""]))
        lines.append(f"m={kind} {port} {proto}{fmts}")
        lines += _others(draw)
        if draw(st.booleans()):
            lines.append(f"c=IN IP4 {draw(ADDR)}")
        lines += _others(draw)
    eol = draw(st.sampled_from(["\r\n", "\r\n", "\r\n", "\n"]))
    text = eol.join(lines) + draw(st.sampled_from([eol, eol, "", " " + eol]))
    return text.encode("latin-1")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=descriptions(), base=st.integers(0, 2000))
def test_whole_and_line_by_line_readings_agree(body, base):
    assert _outcome(parse_sdp, body, base) == _outcome(_line_by_line, body, base)


@st.composite
def plain_descriptions(draw):
    """Bodies of the plain shape, with the variations it allows (optional c=
    at either level, directions, counts, formats, multicast, big ports)."""
    lines = ["v=0", "o=" + " ".join(draw(st.lists(FIELD, min_size=5, max_size=5)) + [draw(ADDR)]), "s=-"]
    if draw(st.booleans()):
        lines.append(f"c=IN IP4 {draw(st.sampled_from(['192.168.1.20', '224.2.1.1', '239.9.9.9', '0.0.0.0']))}")
    lines += draw(PLAIN_LIKE)
    if draw(st.booleans()):
        lines.append("a=" + draw(DIRECTION))
    port = draw(st.sampled_from(["0", "16384", "65535", "65536", "99999"]))
    if draw(st.booleans()):
        port += "/" + draw(st.sampled_from(["2", "0", "99999"]))
    lines.append(f"m={draw(st.sampled_from(['audio', 'video']))} {port} RTP/AVP"
                 f"{draw(st.sampled_from(['', ' 0', ' 0 8 101', ' 0  8', ' ', ' 96 ']))}")
    lines += draw(PLAIN_LIKE)
    if draw(st.booleans()):
        lines.append(f"c=x IP4 {draw(st.sampled_from(['10.0.0.1', '225.0.0.1', '239.0.0.1', '240.0.0.1', '999.0.0.1']))}")
    lines += draw(PLAIN_LIKE)
    if draw(st.booleans()):
        lines.append("a=" + draw(DIRECTION) + draw(st.sampled_from(["", " ", "\t"])))
    lines += draw(PLAIN_LIKE)
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=plain_descriptions(), base=st.integers(0, 2000))
def test_plain_bodies_read_whole_as_line_by_line(body, base):
    assert _PLAIN_SDP(body.decode("latin-1")) is not None
    assert _outcome(parse_sdp, body, base) == _outcome(_line_by_line, body, base)
