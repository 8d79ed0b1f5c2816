"""Positional rewrite: identity without edits, addresses replaced by position,
Content-Length kept true (long and compact form)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.sip import parse_message, rewrite_message
from gateway.span import Edit

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

SDP = (b"v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\n"
       b"m=audio 16384 RTP/AVP 0 8 101\r\na=rtcp:16385 IN IP4 192.168.1.20\r\n"
       b"m=video 16386 RTP/AVP 96\r\nc=IN IP4 192.168.1.21\r\n")


def invite(cl_header: bytes = b"Content-Length") -> bytes:
    return (b"INVITE sip:bob@203.0.113.9 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKa1;rport\r\n"
            b"From: <sip:alice@192.168.1.20>;tag=f1\r\nTo: <sip:bob@203.0.113.9>\r\n"
            b"Call-ID: c0ffee@192.168.1.20\r\nCSeq: 1 INVITE\r\n"
            b"Contact: <sip:alice@192.168.1.20:5060>\r\nContent-Type: application/sdp\r\n"
            + cl_header + b": " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)


def nat_edits(msg, new_addr: str, new_port: int) -> list[Edit]:
    """Replace every 192.168.x address (headers and SDP) and every media port."""
    edits = []
    for ref in msg.addresses:
        if ref.host.text.startswith("192.168."):
            edits.append(Edit.replace(ref.host, new_addr))
    sdp = msg.sdp
    if sdp is not None:
        spans = [sdp.origin_addr] + [sdp.session_conn.addr] if sdp.session_conn else [sdp.origin_addr]
        for m in sdp.media:
            spans.append(m.port_span)
            if m.conn is not None:
                spans.append(m.conn.addr)
            if m.rtcp_port_span is not None:
                spans.append(m.rtcp_port_span)
            if m.rtcp_addr is not None:
                spans.append(m.rtcp_addr)
        for sp in spans:
            edits.append(Edit.replace(sp, str(new_port) if sp.text.isdigit() else new_addr))
    return edits


def test_no_edits_is_the_same_object():
    data = invite()
    assert rewrite_message(data, parse_message(data), []) is data


@settings(max_examples=150, deadline=None)
@given(addr=st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
       port=st.integers(1, 65535), compact=st.booleans())
def test_rewritten_addresses_parse_back_with_true_content_length(addr, port, compact):
    data = invite(b"l" if compact else b"Content-Length")
    msg = parse_message(data)
    out = rewrite_message(data, msg, nat_edits(msg, addr, port))
    back = parse_message(out)
    assert back.content_length == len(back.body)
    assert out.endswith(back.body) and len(out) == back.body_offset + len(back.body)
    assert [r.field for r in back.addresses] == [r.field for r in msg.addresses]
    for old, new in zip(msg.addresses, back.addresses):
        want = addr if old.host.text.startswith("192.168.") else old.host.text
        assert new.host.text == want
    sdp = back.sdp
    assert sdp.origin_addr.text == addr and sdp.session_conn.addr.text == addr
    assert [m.port for m in sdp.media] == [port, port]
    assert sdp.media[0].rtcp_port == port and sdp.media[0].rtcp_addr.text == addr
    assert [sdp.media_destination(m) for m in sdp.media] == [(addr, port), (addr, port)]
    # Bytes outside the edits are untouched.
    assert out.startswith(b"INVITE sip:bob@203.0.113.9 SIP/2.0\r\nVia: SIP/2.0/UDP ")


def test_content_length_unchanged_when_only_headers_change():
    data = invite()
    msg = parse_message(data)
    edits = [Edit.replace(r.host, "1.2.3.4") for r in msg.addresses if r.field == "via"]
    out = rewrite_message(data, msg, edits)
    assert b"Content-Length: %d\r\n" % len(SDP) in out
    vias = [r.host.text for r in parse_message(out).addresses if r.field == "via"]
    assert vias == ["1.2.3.4"]


def test_content_length_fixed_in_compact_form():
    data = invite(b"l")
    msg = parse_message(data)
    conn = msg.sdp.session_conn.addr
    out = rewrite_message(data, msg, [Edit.replace(conn, "100.100.100.100")])
    assert b"\r\nl: %d\r\n" % (len(SDP) + 3) in out
    assert parse_message(out).sdp.session_conn.addr.text == "100.100.100.100"


def test_shorter_body_and_trailing_octets():
    # Extra octets after Content-Length in a datagram (RFC 4475 3.1.1.8) stay
    # outside the body; the length counts only the body.
    data = invite() + b"junk"
    msg = parse_message(data)
    out = rewrite_message(data, msg, [Edit.replace(msg.sdp.session_conn.addr, "1.1.1.1")])
    back = parse_message(out)
    assert back.content_length == len(SDP) - 5 and out.endswith(b"junk")


def _valid_corpus() -> list[bytes]:
    out = []
    for p in sorted((CORPUS / "sip-torture").glob("*.dat")):
        try:
            parse_message(p.read_bytes())
        except RemoteProtocolError:
            continue
        out.append(p.read_bytes())
    return out


VALID = _valid_corpus() + [invite(), invite(b"l")]


@settings(max_examples=200, deadline=None)
@given(data=st.sampled_from(VALID), addr=st.sampled_from(["1.2.3.4", "203.0.113.200", "9.9.9.9"]))
def test_rewrite_every_address_of_corpus_messages(data, addr):
    msg = parse_message(data)
    edits = [Edit.replace(r.host, addr) for r in msg.addresses]
    # Several refs can share a span (via-rport points at its host).
    uniq = {(e.start, e.end): e for e in edits}
    out = rewrite_message(data, msg, list(uniq.values()))
    back = parse_message(out)
    assert [r.host.text for r in back.addresses] == [addr] * len(msg.addresses)
    assert back.body == msg.body and back.content_length == msg.content_length
