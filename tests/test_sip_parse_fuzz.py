"""Fuzz rule: random mutations of valid messages parse, or raise
RemoteProtocolError -- nothing else. What parses keeps its spans true and
passes byte-identical without edits."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.sdp import parse_sdp
from gateway.sip import frame_stream, parse_message, rewrite_message

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "sip-torture"

SAMPLE = (b"INVITE sip:bob@10.0.0.2:5060 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=10.0.0.9;rport=5062\r\n"
          b"From: \"A\" <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:b@10.0.0.2>\r\nCall-ID: q@10.0.0.1\r\n"
          b"CSeq: 1 INVITE\r\nContact: <sip:a@10.0.0.1:5060>;expires=60, *\r\n"
          b"Record-Route: <sip:10.0.0.3;lr>\r\nx: 90\r\nc: application/sdp\r\nl: 99\r\n\r\n"
          b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1/127/2\r\nt=0 0\r\n"
          b"m=audio 4000/2 RTP/AVP 0\r\na=rtcp:4001 IN IP4 10.0.0.1\r\n")


def _seeds() -> list[bytes]:
    seeds = [SAMPLE]
    for p in sorted(CORPUS.glob("*.dat")):
        data = p.read_bytes()
        try:
            parse_message(data)
        except RemoteProtocolError:
            pass
        seeds.append(data)  # invalid ones are good seeds too
    return seeds


SEEDS = _seeds()
INTERESTING = st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"\"", b"<", b">",
                               b"@", b"=", b"/", b"\\", b"0", b"9", b"99999999999", b"\x00", b"\xff",
                               b"\r\n ", b"\r\n\r\n", b"sip:", b"1.2.3.4", b"m=", b"c=", b"l:"])


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.one_of(INTERESTING, st.binary(min_size=1, max_size=4)))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif kind == "replace" and pos < len(data):
            data[pos:pos + 1] = draw(INTERESTING)
    return bytes(data)


def _check_spans(data: bytes, msg) -> None:
    for ref in msg.addresses:
        assert data[ref.host.start:ref.host.end].decode("latin-1") == ref.host.text
        if ref.port is not None:
            assert data[ref.port.start:ref.port.end].decode("latin-1") == ref.port.text
    for h in msg.headers:
        assert data[h.value_start:h.value_end].decode("latin-1") == h.value_text
    if msg.sdp is not None:
        for m in msg.sdp.media:
            assert data[m.port_span.start:m.port_span.end].decode("latin-1") == m.port_span.text
            assert int(m.port_span.text) == m.port


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutations_parse_or_raise_remote_protocol_error(data):
    try:
        msg = parse_message(data)
    except RemoteProtocolError as exc:
        assert exc.reason
        return
    _check_spans(data, msg)
    assert rewrite_message(data, msg, []) is data


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_parse_or_raise(data):
    for parse in (parse_message, parse_sdp, frame_stream):
        try:
            parse(data)
        except RemoteProtocolError:
            pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_streams_frame_or_raise(data):
    buf = data + data
    try:
        msgs, rest = frame_stream(buf)
    except RemoteProtocolError:
        return
    # Messages come out in order, separated only by keep-alive CRLFs, and
    # the remainder is the tail of the buffer.
    pos = 0
    for m in msgs:
        idx = buf.index(m, pos)
        assert buf[pos:idx].strip(b"\r\n") == b""
        pos = idx + len(m)
    assert buf.endswith(rest) and buf[pos:len(buf) - len(rest)].strip(b"\r\n") == b""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_sdp_bodies_parse_or_raise(data):
    body = data[data.find(b"v=0"):] if b"v=0" in data else data
    try:
        sdp = parse_sdp(body, 7)
    except RemoteProtocolError:
        return
    for m in sdp.media:
        assert body[m.port_span.start - 7:m.port_span.end - 7].decode("latin-1") == m.port_span.text


_HEAD = (b"INVITE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
         b"To: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n")
_N = 60000
PATHOLOGICAL = {
    "many <": _HEAD + b"Contact: " + b"<" * _N + b"\r\n\r\n",
    "many quotes": _HEAD + b"Contact: " + b'"a\\' * (_N // 3) + b"\r\n\r\n",
    "long token without colon": _HEAD + b"a" * _N + b"\r\n\r\n",
    "long LWS": _HEAD + b"X:" + b" " * _N + b"x\r\n\r\n",
    "many folds": _HEAD + b"X: a" + b"\r\n " * (_N // 3) + b"\r\n\r\n",
    "many params": _HEAD + b"Via: SIP/2.0/UDP h" + b" ; a = b" * (_N // 8) + b"\r\n\r\n",
    "many commas": _HEAD + b"Via: SIP/2.0/UDP h" + b"," * _N + b"\r\n\r\n",
    "many lines": _HEAD + b"X: y\r\n" * (_N // 6) + b"\r\n",
}


def test_pathological_inputs_take_linear_time():
    # A quadratic regex search on 60 kB would take seconds; all of these take
    # milliseconds. CPU time of this process, not wall time: on a machine
    # whose cores are busy with other work the wall clock also counts the
    # time this test waited for a core.
    import time

    for name, data in PATHOLOGICAL.items():
        t0 = time.process_time()
        for fn in (parse_message, frame_stream):
            try:
                fn(data)
            except RemoteProtocolError:
                pass
        assert time.process_time() - t0 < 1.0, name
