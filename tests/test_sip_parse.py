"""Unit tests of the offset-preserving SIP parser."""

from __future__ import annotations

import pytest

from gateway.errors import RemoteProtocolError
from gateway.sip import frame_stream, parse_message

SDP = (
    b"v=0\r\n"
    b"o=user 2344234 55234434 IN IP4 10.150.20.3\r\n"
    b"s=-\r\n"
    b"c=IN IP4 10.150.20.3\r\n"
    b"t=0 0\r\n"
    b"m=audio 43249 RTP/AVP 0\r\n"
    b"a=rtcp:43251\r\n"
    b"a=sendonly\r\n"
)
INVITE = (
    b"INVITE sip:bob@10.150.20.5 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.150.20.3:5434;branch=z9hG4bK74bf9;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKold;received=10.0.0.10;maddr=10.0.0.11\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@10.150.20.3>;tag=9fxced76sl\r\n"
    b"To: \"Bob, B\" <sip:bob@10.150.20.5>\r\n"
    b"Call-ID: a12abcde@10.150.20.3\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@10.150.20.3:5434;transport=udp>;expires=600\r\n"
    b"Route: <sip:netscreen@10.150.20.3:5060;lr>\r\n"
    b"Record-Route: <sip:proxy.example.com;lr>, <sip:netscreen@10.150.20.3:5060;lr>\r\n"
    b"Session-Expires: 1800;refresher=uac\r\n"
    b"Expires: 120\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(SDP)
) + SDP
CL = b"Content-Length: %d" % len(SDP)


def test_sample_lengths_are_right():
    msg = parse_message(INVITE)
    assert msg.content_length == len(msg.body) == len(SDP) == 134
    assert INVITE.endswith(msg.body)


def test_request_fields():
    msg = parse_message(INVITE)
    assert msg.is_request and msg.method == "INVITE"
    assert msg.request_uri.text == "sip:bob@10.150.20.5"
    assert msg.status_code is None and msg.reason is None
    assert msg.call_id == "a12abcde@10.150.20.3"
    assert msg.from_tag == "9fxced76sl" and msg.to_tag is None
    assert msg.cseq == (314159, "INVITE")
    assert msg.via_branch == "z9hG4bK74bf9"
    assert msg.expires == 120
    assert msg.session_expires == 1800
    assert msg.content_type == "application/sdp"
    assert msg.body_kind == "sdp"
    assert msg.sdp.media[0].port == 43249


def test_every_address_is_found_at_its_position():
    msg = parse_message(INVITE)
    got = [(a.field, a.host.text, a.port.text if a.port else None) for a in msg.addresses]
    assert got == [
        ("request-uri", "10.150.20.5", None),
        ("via", "10.150.20.3", "5434"),
        ("via", "10.0.0.9", None),
        ("via-received", "10.0.0.10", None),
        ("via-maddr", "10.0.0.11", None),
        ("from", "10.150.20.3", None),
        ("to", "10.150.20.5", None),
        ("call-id", "10.150.20.3", None),
        ("contact", "10.150.20.3", "5434"),
        ("route", "10.150.20.3", "5060"),
        ("record-route", "10.150.20.3", "5060"),
    ]
    for a in msg.addresses:
        assert INVITE[a.host.start:a.host.end].decode() == a.host.text
        if a.port is not None:
            assert INVITE[a.port.start:a.port.end].decode() == a.port.text
        if a.header_index is not None:
            h = msg.headers[a.header_index]
            assert h.value_start <= a.host.start < h.value_end


def test_header_index_points_at_the_header():
    msg = parse_message(INVITE)
    names = {a.field: msg.headers[a.header_index].name for a in msg.addresses if a.header_index is not None}
    assert names["via-received"] == "via"
    assert names["record-route"] == "record-route"
    assert names["call-id"] == "call-id"


def test_contacts():
    msg = parse_message(INVITE)
    (c,) = msg.contacts
    assert c.uri.text == "sip:alice@10.150.20.3:5434;transport=udp"
    assert c.host.text == "10.150.20.3" and c.port.text == "5434"
    assert c.expires == 600 and not c.star


def test_star_contact_and_contact_list():
    msg = parse_message(
        b"REGISTER sip:10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n"
        b"Contact: *\r\nExpires: 0\r\nl: 0\r\n\r\n")
    assert msg.contacts[0].star and msg.expires == 0
    msg = parse_message(
        b"REGISTER sip:10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n"
        b"m: \"A, B\" <sip:a@10.0.0.2:5070>;expires=60, sip:b@10.0.0.3;expires=\"x\"\r\n"
        b"Contact: <tel:+15551234>\r\nl: 0\r\n\r\n")
    c1, c2, c3 = msg.contacts
    assert (c1.host.text, c1.port.text, c1.expires) == ("10.0.0.2", "5070", 60)
    assert (c2.host.text, c2.port, c2.expires) == ("10.0.0.3", None, None)
    assert c3.host is None and c3.uri.text == "tel:+15551234"
    assert [a.host.text for a in msg.addresses if a.field == "contact"] == ["10.0.0.2", "10.0.0.3"]


def test_response_takes_method_from_cseq():
    msg = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=192.0.2.7;rport=5071\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x@10.0.0.1\r\n"
        b"CSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert not msg.is_request and msg.status_code == 200 and msg.reason == "OK"
    assert msg.method == "INVITE" and msg.to_tag == "2"
    rport = [a for a in msg.addresses if a.field == "via-rport"]
    assert len(rport) == 1 and rport[0].host.text == "192.0.2.7" and rport[0].port.text == "5071"


def test_hostnames_are_not_addresses():
    msg = parse_message(
        b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP host.example.com:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: 1@ex.com\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    assert msg.addresses == ()


def test_manual_sample_without_scheme():
    # Manual chapter 2, "SIP Headers": URIs written without "sip:".
    data = (b"INVITE bob@10.150.20.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.150.20.3:5434\r\n"
            b"From: alice@10.150.20.3\r\nTo: bob@10.150.20.5\r\nCall-ID: a12abcde@10.150.20.3\r\n"
            b"CSeq: 1 INVITE\r\nContact: alice@10.150.20.3:5434\r\n\r\n")
    msg = parse_message(data)
    assert [a.field for a in msg.addresses] == [
        "request-uri", "via", "from", "to", "call-id", "contact"]
    assert msg.content_length is None and msg.body_kind == "none"


def test_bare_lf_line_ends_and_folding():
    data = (b"BYE sip:b@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP\n 10.0.0.1:5060\n\t;branch=z9hG4bKx\n"
            b"FROM: <sip:a@10.0.0.1>;tag=a\nt: <sip:b@10.0.0.2>;tag=b\ni: c1\ncseq: 3\n  BYE\nl: 0\n\n")
    msg = parse_message(data)
    assert msg.method == "BYE" and msg.cseq == (3, "BYE")
    assert msg.via_branch == "z9hG4bKx"
    via = next(a for a in msg.addresses if a.field == "via")
    assert (via.host.text, via.port.text) == ("10.0.0.1", "5060")
    assert data[via.host.start:via.host.end] == b"10.0.0.1"
    assert msg.get("via") == "SIP/2.0/UDP 10.0.0.1:5060 ;branch=z9hG4bKx"
    assert msg.headers[0].raw_name.text == "Via"
    assert msg.headers[1].name == "from" and msg.headers[1].raw_name.text == "FROM"
    assert msg.body_offset == len(data)


def test_get_and_get_all():
    msg = parse_message(INVITE)
    assert msg.get("v") == msg.get("VIA") == "SIP/2.0/UDP 10.150.20.3:5434;branch=z9hG4bK74bf9;rport"
    assert msg.get("record-route") == "<sip:proxy.example.com;lr>, <sip:netscreen@10.150.20.3:5060;lr>"
    assert msg.get_all("record-route") == ("<sip:proxy.example.com;lr>", "<sip:netscreen@10.150.20.3:5060;lr>")
    assert len(msg.get_all("via")) == 2
    assert msg.get_all("to") == ('"Bob, B" <sip:bob@10.150.20.5>',)
    assert msg.get("subject") is None and msg.get_all("subject") == ()
    assert msg.get("i") == msg.call_id


def test_leading_crlf_is_skipped_and_offsets_kept():
    msg = parse_message(b"\r\n" + INVITE)
    assert msg.request_uri.start == 2 + len(b"INVITE ")
    assert msg.addresses[0].host.start == 2 + INVITE.index(b"10.150.20.5")


def test_body_kinds():
    def with_body(ctype: bytes, body: bytes) -> bytes:
        return (b"MESSAGE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
                b"To: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Type: " + ctype +
                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert parse_message(with_body(b"application/pkcs7-mime; smime-type=enveloped-data", b"\x30\x80")).body_kind == "encrypted"
    assert parse_message(with_body(b"multipart/mixed;boundary=x", b"--x--")).body_kind == "multipart"
    assert parse_message(with_body(b"text/plain", b"hi")).body_kind == "other"
    assert parse_message(with_body(b"application/sdp", b"")).body_kind == "none"
    assert parse_message(with_body(b"Application/SDP", b"v=0\r\n")).body_kind == "sdp"


@pytest.mark.parametrize("data,reason", [
    (b"", "no complete start line"),
    (b"INVITE sip:a@h SIP/2.0\r\n", "header section not terminated"),
    (b"SIP/2.0 2000 OK\r\n\r\n", "three digits"),
    (b"SIP/2.0 099 Hmm\r\n\r\n", "below 100"),
    (b"SIP/3.0 200 OK\r\n\r\n", "version"),
    (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), "CSeq method"),
    (INVITE.replace(b"Call-ID", b"X-Call-ID"), "missing call-id"),
    (INVITE.replace(CL, b"Content-Length: 148"), "larger than the message"),
    (INVITE.replace(CL, b"Content-Length: 1e2"), "Content-Length"),
    (INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), "malformed header line"),
    (INVITE.replace(b"branch=z9hG4bK74bf9;rport", b"branch=z9hG4bK74bf9;;rport"), "malformed parameter"),
    (INVITE.replace(b"SIP/2.0/UDP 10.150.20.3", b"SIP/2.0/UDP"), "malformed Via"),
    (INVITE.replace(b"10.150.20.3:5434;transport", b"10.150.20.3:99999;transport"), "port"),
    (INVITE.replace(b"To: \"Bob, B\"", b"To: \"Bob, B"), "unterminated quoted string"),
    (INVITE.replace(b"<sip:alice@10.150.20.3>", b"<sip:alice@10.150.20.3"), "unterminated <URI>"),
    (INVITE.replace(b"From: Alice", b"From: Alice, Carol"), "comma"),
    (INVITE + b"", None),
])
def test_rejections(data, reason):
    if reason is None:
        parse_message(data)
        return
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert reason in info.value.reason


def test_framing_splits_and_keeps_remainder():
    one = INVITE
    bye = (b"BYE sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK2\r\n"
           b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n")
    stream = b"\r\n\r\n" + one + b"\r\n" + bye + one[:200]
    msgs, rest = frame_stream(stream)
    assert msgs == [one, bye] and rest == one[:200]
    msgs, rest = frame_stream(rest + one[200:])
    assert msgs == [one] and rest == b""
    # Every cut point of a two-message stream frames the same messages.
    both = one + bye
    for cut in range(0, len(both) + 1, 7):
        first, rest = frame_stream(both[:cut])
        second, rest = frame_stream(rest + both[cut:])
        assert first + second == [one, bye] and rest == b""


def test_framing_errors():
    no_cl = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n"
    with pytest.raises(RemoteProtocolError, match="missing Content-Length"):
        frame_stream(no_cl)
    with pytest.raises(RemoteProtocolError, match="more than one"):
        frame_stream(b"OPTIONS sip:a@h SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="invalid Content-Length"):
        frame_stream(b"OPTIONS sip:a@h SIP/2.0\r\nContent-Length: -1\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="too long"):
        frame_stream(b"OPTIONS sip:a@h SIP/2.0\r\nX: " + b"a" * 70000)
    assert frame_stream(b"OPTIONS sip:a@h SIP/2.0\r\nX: a") == ([], b"OPTIONS sip:a@h SIP/2.0\r\nX: a")
    assert frame_stream(b"\r\n\r\n") == ([], b"")
