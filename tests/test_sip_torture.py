"""RFC 4475 torture messages: the verdict for each file, with the reason.

Section 3.1.1 messages are valid and must parse and pass byte-identical;
section 3.1.2 messages are invalid and must be rejected with
RemoteProtocolError. Sections 3.2-3.4 are valid syntax with odd semantics: a
proxy may process them, so the parser accepts them -- except where RFC 3261
makes the message unusable for call tracking (missing or repeated call
identifiers, several Content-Length values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import RemoteProtocolError
from gateway.sip import parse_message, rewrite_message

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "sip-torture"

# file -> (section, expected verdict, why / expected reason fragment)
VALID = {
    "wsinv": ("3.1.1.1", "short tortuous INVITE: folds, LWS, compact forms"),
    "intmeth": ("3.1.1.2", "wide range of valid characters"),
    "esc01": ("3.1.1.3", "valid % escaping"),
    "escnull": ("3.1.1.4", "escaped NULs in URIs"),
    "esc02": ("3.1.1.5", "% that is not an escape"),
    "lwsdisp": ("3.1.1.6", "no LWS between display name and <"),
    "longreq": ("3.1.1.7", "long header values"),
    "dblreq": ("3.1.1.8", "extra trailing octets in a UDP datagram"),
    "semiuri": ("3.1.1.9", "semicolon in URI user part"),
    "transports": ("3.1.1.10", "varied and unknown transports"),
    "mpart01": ("3.1.1.11", "multipart MIME body"),
    "unreason": ("3.1.1.12", "unusual reason phrase"),
    "noreason": ("3.1.1.13", "empty reason phrase"),
    "baddate": ("3.1.2.12", "non-GMT Date: a proxy may forward it unaltered; the ALG ignores Date"),
    "badbranch": ("3.2.1", "branch with magic cookie only: must not break the parser"),
    "unkscm": ("3.3.2", "unknown Request-URI scheme"),
    "novelsc": ("3.3.3", "known but atypical scheme"),
    "unksm2": ("3.3.4", "unknown schemes in header fields"),
    "bext01": ("3.3.5", "Proxy-Require and Require"),
    "invut": ("3.3.6", "unknown Content-Type"),
    "regaut01": ("3.3.7", "unknown authorization scheme"),
    "bcast": ("3.3.10", "broadcast Via received: syntax is valid"),
    "zeromf": ("3.3.11", "Max-Forwards of zero"),
    "cparam01": ("3.3.12", "REGISTER with a Contact parameter"),
    "cparam02": ("3.3.13", "REGISTER with a url-parameter"),
    "regescrt": ("3.3.14", "REGISTER with an escaped URL header in <>"),
    "sdp01": ("3.3.15", "unacceptable Accept offering"),
    "inv2543": ("3.4.1", "RFC 2543 syntax"),
}

INVALID = {
    "badinv01": ("3.1.2.1", "malformed parameter in Via"),
    "clerr": ("3.1.2.2", "Content-Length larger than the message"),
    "ncl": ("3.1.2.3", "Content-Length is not a non-negative number"),
    "scalar02": ("3.1.2.4", "CSeq number out of range"),
    "scalarlg": ("3.1.2.5", "CSeq number out of range"),
    "quotbal": ("3.1.2.6", "unterminated quoted string"),
    "ltgtruri": ("3.1.2.7", "malformed Request-URI"),
    "lwsruri": ("3.1.2.8", "request line is not Method SP Request-URI SP SIP-Version"),
    "lwsstart": ("3.1.2.9", "request line is not Method SP Request-URI SP SIP-Version"),
    "trws": ("3.1.2.10", "request line is not Method SP Request-URI SP SIP-Version"),
    "escruri": ("3.1.2.11", "Request-URI carries URI headers"),
    "regbadct": ("3.1.2.13", "URI with headers must be enclosed in <>"),
    "badaspec": ("3.1.2.14", "whitespace-containing URI in <>"),
    # As extracted, the file also lacks the empty line ending the headers;
    # test_baddn_display_name checks the RFC's own point.
    "baddn": ("3.1.2.15", "header section not terminated"),
    "badvers": ("3.1.2.16", "unsupported SIP version"),
    "mismatch01": ("3.1.2.17", "CSeq method does not match"),
    "mismatch02": ("3.1.2.18", "CSeq method does not match"),
    "bigcode": ("3.1.2.19", "status code is not three digits"),
    # 3.3.1: no Call-ID, From or To; RFC 4475 says to answer 400. The ALG
    # cannot match such a message to a call (manual: "compares the From:,
    # To:, and Call-ID: fields against the call table").
    "insuf": ("3.3.1", "missing from header"),
    # 3.3.8: several Call-ID/To/From/CSeq values, answered with 400.
    "multi01": ("3.3.8", "more than one cseq header"),
    # 3.3.9: two Content-Lengths; over a stream the framing is lost.
    "mcl01": ("3.3.9", "more than one content-length header"),
    # Not an RFC 4475 message (resiprocate's extra file): no SIP-Version in
    # the request line, and a header line without a colon.
    "test": ("-", "request line is not Method SP Request-URI SP SIP-Version"),
}


def test_every_corpus_file_has_a_verdict():
    names = {p.stem for p in CORPUS.glob("*.dat")}
    assert names, "torture corpus missing"
    assert names == set(VALID) | set(INVALID)
    assert not set(VALID) & set(INVALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_parses_and_passes_unchanged(name):
    data = (CORPUS / f"{name}.dat").read_bytes()
    msg = parse_message(data)
    assert msg.call_id
    assert rewrite_message(data, msg, []) is data


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_is_rejected_with_reason(name):
    data = (CORPUS / f"{name}.dat").read_bytes()
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert INVALID[name][1] in info.value.reason


def test_baddn_display_name():
    # RFC 4475 3.1.2.15: unquoted display names with a comma.
    data = (CORPUS / "baddn.dat").read_bytes() + b"\r\n"
    with pytest.raises(RemoteProtocolError, match="display name with non-token"):
        parse_message(data)


def test_wsinv_details():
    data = (CORPUS / "wsinv.dat").read_bytes()
    msg = parse_message(data)
    assert msg.method == "INVITE"
    assert msg.cseq == (9, "INVITE")
    assert msg.to_tag == "1918181833n"
    assert msg.from_tag == "98asjd8"
    assert msg.via_branch == "390skdjuw"
    assert len(msg.get_all("via")) == 3
    assert msg.content_length == 150
    # The second Via of the v: header carries a private address in a fold.
    vias = [a for a in msg.addresses if a.field == "via"]
    assert [a.host.text for a in vias] == ["192.0.2.2", "192.168.255.111"]
    for a in vias:
        assert data[a.host.start:a.host.end].decode() == a.host.text
    assert msg.sdp is not None and [m.port for m in msg.sdp.media] == [49217, 3227]


def test_dblreq_takes_only_the_first_message():
    data = (CORPUS / "dblreq.dat").read_bytes()
    msg = parse_message(data)
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.body_kind == "none"


def test_mpart01_is_multipart_without_sdp():
    msg = parse_message((CORPUS / "mpart01.dat").read_bytes())
    assert msg.body_kind == "multipart" and msg.sdp is None


def test_intmeth_keeps_the_method_as_written():
    msg = parse_message((CORPUS / "intmeth.dat").read_bytes())
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.request_uri.text.endswith("@example.com")
