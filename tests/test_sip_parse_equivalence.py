"""The parser's fast paths read every message exactly as its general path does.

parse_message reads the common, plain spelling of each field with one
specialised pattern and leaves everything else to the general code; the
general code alone (``_parse(data, fast=False)``) is the reference. For the
torture messages, the real captures and random mutations of both, the two
must give the same verdict (same reason when refused) and, when accepted,
the same message: every field, every header, every span."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.sip.message import _parse

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

FIELDS = ("raw", "is_request", "method", "request_uri", "status_code", "reason", "lines", "call_id",
          "from_tag", "to_tag", "cseq", "via_branch", "expires", "contacts", "session_expires",
          "content_type", "content_length", "body_offset", "body", "sdp", "body_kind", "addresses",
          "headers")

PLAIN = (b"INVITE sip:bob@10.0.0.2:5060;transport=udp SIP/2.0\r\n"
         b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=10.0.0.9;rport=5062;maddr=10.0.0.7\r\n"
         b"v: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2\r\n"
         b"From: \"A, the first\" <sip:a@10.0.0.1>;tag=1\r\nTo: Bob <sips:b:pw@10.0.0.2:5061;user=phone>\r\n"
         b"Call-ID: q@10.0.0.1\r\nCSeq: 1 INVITE\r\n"
         b"Contact: <sip:a@10.0.0.1:5060>;expires=60;q=0.5, sip:c@10.0.0.3;EXPIRES=30\r\n"
         b"Route: <sip:10.0.0.3;lr>,<sip:p2.example.com;lr>\r\nRecord-Route: <sip:10.0.0.4:5080;lr>\r\n"
         b"Expires: 90\r\nx: 1800;refresher=uac\r\nContent-Type: application/sdp\r\nl: 88\r\n\r\n"
         b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n")


def _norm(x):
    """Dataclasses and tuples as plain nested tuples (class name first)."""
    if dataclasses.is_dataclass(x):
        return (type(x).__name__,) + tuple(_norm(getattr(x, f.name)) for f in dataclasses.fields(x))
    if isinstance(x, (tuple, list)):
        return tuple(_norm(i) for i in x)
    return x


def _outcome(data: bytes, fast: bool):
    try:
        msg = _parse(data, fast)
    except RemoteProtocolError as exc:
        return "refused", str(exc)
    return "parsed", {f: _norm(getattr(msg, f)) for f in FIELDS}


def _assert_same(data: bytes) -> None:
    assert _outcome(data, True) == _outcome(data, False), data


# Parameter corner cases the fast paths must read as the general path does.
EDGES = [
    PLAIN.replace(b";expires=60;q=0.5", b";expires=60;expires"),
    PLAIN.replace(b";tag=1", b";tag=1;TAG"),
    PLAIN.replace(b";rport=5062", b";rport=5062;received=h;maddr=10.0.0.8;branch"),
    PLAIN.replace(b"10.0.0.2:5061", b"10.0.0.2:65536"),
    PLAIN.replace(b"10.0.0.1:5060;branch", b"10.0.0.1:065535;branch"),
    PLAIN.replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1),
    PLAIN.replace(b"Contact: <sip:a@10.0.0.1:5060>", b"Contact: <sip:a@b@10.0.0.1:5060>"),
    PLAIN.replace(b"INVITE sip:bob@", b"INVITE sip:bob@x@"),
]


def _seeds() -> list[bytes]:
    seeds = [PLAIN, *EDGES]
    seeds += [p.read_bytes() for p in sorted((CORPUS / "sip-torture").glob("*.dat"))]
    return seeds


SEEDS = _seeds()


def test_the_plain_message_takes_the_fast_paths_and_reads_everything():
    msg = _parse(PLAIN, True)
    fields = [r.field for r in msg.addresses]
    assert fields == ["request-uri", "via", "via-received", "via-maddr", "via-rport", "from", "to",
                      "call-id", "contact", "contact", "route", "record-route"]
    assert msg.via_branch == "z9hG4bK1" and msg.from_tag == "1" and msg.to_tag is None
    assert [(c.host.text, c.port and c.port.text, c.expires) for c in msg.contacts] == [
        ("10.0.0.1", "5060", 60), ("10.0.0.3", None, 30)]
    assert msg.session_expires == 1800 and msg.expires == 90
    _assert_same(PLAIN)


def test_the_plain_message_never_reaches_the_general_field_code(monkeypatch):
    from gateway.sip import message

    def general(*_args, **_kwargs):
        raise AssertionError("general path taken")

    for name in ("_name_addr", "_host_refs", "_via", "_uri_list"):
        monkeypatch.setattr(message, name, general)
    assert _parse(PLAIN, True).call_id == "q@10.0.0.1"
    with pytest.raises(AssertionError):
        _parse(PLAIN, False)


@pytest.mark.parametrize("data", SEEDS, ids=lambda d: d[:24].decode("latin-1"))
def test_corpus_messages_read_the_same_on_both_paths(data):
    _assert_same(data)


TOKENS = st.sampled_from([
    b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"\"", b"<", b">", b"@", b"=", b"?", b"\\",
    b"0", b"9", b"99999", b"\x00", b"\xa0", b"\x85", b"\r\n ", b"sip:", b"tel:", b"[::1]", b"1.2.3.4",
    b";tag=", b";received=10.1.1.1", b";rport=7", b"expires=", b":70000", b",<sip:a@1.1.1.1>",
    b";expires", b";tag", b";branch", b";rport", b";maddr=2.2.2.2"])


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[pos:pos] = draw(st.one_of(TOKENS, st.binary(min_size=1, max_size=3)))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 6))]
        elif kind == "replace" and pos < len(data):
            data[pos:pos + 1] = draw(TOKENS)
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_messages_read_the_same_on_both_paths(data):
    _assert_same(data)
