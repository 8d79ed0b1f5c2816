"""MGCP parser: the manual's Table 3 examples and response example (chapter 3,
"MGCP Protocol"), RFC 3435 grammar, piggy-backing, the capture corpus, and the
rule that bad input raises only RemoteProtocolError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.mgcp import VERBS, parse_datagram, response_class
from gateway.span import Edit, apply_edits

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# The manual's Table 3 examples. Two of them (DLCX example 2's P: line and NTFY's
# O: line) are wrapped across two lines in the manual's page layout; RFC 3435
# gives them on one line, as here.
EPCF = "EPCF 2012 wxx/T2@mynet.com MGCP 1.0\nB: e:mu\n"
SDP_CRCX = ("v=0\no=- 25678 753849 IN IP4 128.96.41.1\ns=-\nc=IN IP4 128.96.41.1\nt=0 0\n"
            "m=audio 3456 RTP/AVP 0\n")
CRCX = ("CRCX 1205 aaln/1@gw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nL: p:10, a:PCMU\nM: sendrecv\n"
        "X: 0123456789AD\nR: L/hd\nS: L/rg\n\n" + SDP_CRCX)
MDCX = ("MDCX 1210 aaln/1@rgw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\nM: recvonly\n"
        "X: 0123456789AE\nR: L/hu\nS: G/rt\n\nv=0\no=- 4723891 7428910 IN IP4 128.96.63.25\ns=-\n"
        "c=IN IP4 128.96.63.25\nt=0 0\nm=audio 3456 RTP/AVP 0\n")
DLCX1 = "DLCX 9210 aaln/1@rgw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\n"
DLCX2 = ("DLCX 9310 aaln/1@rgw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\n"
         "E: 900 - Hardware error\nP: PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48\n")
RQNT = ("RQNT 1205 aaln/1@rgw-25.att.net MGCP 1.0\nN: ca-new@callagent-ca.att.net\nX: 0123456789AA\n"
        "R: L/hd(A, E(S(L/dl),R(L/oc,L/hu,D/[0-9#*T](D))))\nD: (0T|00T|xx|91xxxxxxxxxx|9011x.T)\nS:\n"
        "T: G/ft\n")
NTFY = ("NTFY 2002 aaln/1@rgw-25.att.net MGCP 1.0\nN: ca@ca1.att.net:5678\nX: 0123456789AC\n"
        "O: L/hd,D/9,D/1,D/2,D/0,D/1,D/8,D/2,D/9,D/4,D/2,D/6,D/6\n")
AUEP1 = "AUEP 1201 aaln/1@rgw-25.att.net MGCP 1.0\nF: A, R,D,S,X,N,I,T,O\n"
AUEP2 = "AUEP 1200 *@rgw-25.att.net MGCP 1.0\n"
AUCX = "AUCX 3003 aaln/1@rgw-25.att.net MGCP 1.0\nI: 32F345E2\nF: C,N,L,M,LC,P\n"
RSIP = "RSIP 5200 aaln/1@rg2-25.att.net MGCP 1.0\nRM: graceful\nRD: 300\n"
RESP = ("200 1204 OK\nI: FDE234C8\n\nv=0\no=- 25678 753849 IN IP4 128.96.41.1\ns=-\n"
        "c=IN IP4 128.96.41.1\nt=0 0\nm=audio 3456 RTP/AVP 96\na=rtpmap:96 G726-32/8000\n")
EXAMPLES = [EPCF, CRCX, MDCX, DLCX1, DLCX2, RQNT, NTFY, AUEP1, AUEP2, AUCX, RSIP, RESP]


def one(data: bytes):
    msgs = parse_datagram(data)
    assert len(msgs) == 1
    return msgs[0]


def texts(msg, kind):
    return [a.span.text for a in msg.address_spans if a.kind == kind]


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_table3_commands(eol):
    def p(t):
        return one(t.replace("\n", eol).encode())
    m = p(EPCF)
    assert (m.kind, m.verb, m.transaction_id, m.version) == ("command", "EPCF", 2012, "MGCP 1.0")
    assert (m.endpoint.local, m.endpoint.domain, m.get("b")) == ("wxx/T2", "mynet.com", "e:mu")
    m = p(CRCX)
    assert (m.verb, m.transaction_id, m.call_id, m.get("M"), m.get("L")) == (
        "CRCX", 1205, "A3C47F21456789F0", "sendrecv", "p:10, a:PCMU")
    assert m.request_id == "0123456789AD" and m.get("R") == "L/hd" and m.get("S") == "L/rg"
    assert texts(m, "sdp-origin") == ["128.96.41.1"] and texts(m, "sdp-connection") == ["128.96.41.1"]
    assert texts(m, "sdp-media-port") == ["3456"] and m.sdp[0].media[0].port == 3456
    m = p(MDCX)
    assert (m.verb, m.connection_id, m.get("M")) == ("MDCX", "FDE234C8", "recvonly")
    assert texts(m, "sdp-connection") == ["128.96.63.25"]
    m = p(DLCX1)
    assert (m.verb, m.transaction_id, m.call_id, m.connection_id) == ("DLCX", 9210, "A3C47F21456789F0", "FDE234C8")
    m = p(DLCX2)
    assert m.get("E") == "900 - Hardware error" and m.get("P").startswith("PS=1245") and m.get("P").endswith("LA=48")
    m = p(RQNT)
    assert m.notified_entity.local == "ca-new" and m.notified_entity.host == "callagent-ca.att.net"
    assert m.notified_entity.port is None and not m.notified_entity.host_is_ip
    assert m.get("S") == "" and m.get("D") == "(0T|00T|xx|91xxxxxxxxxx|9011x.T)" and m.get("T") == "G/ft"
    m = p(NTFY)
    ne = m.notified_entity
    assert (ne.host, ne.port, ne.port_span.text) == ("ca1.att.net", 5678, "5678")
    assert texts(m, "notified-port") == ["5678"] and texts(m, "notified-host") == []
    assert m.get("o").endswith("D/6,D/6")
    m = p(AUEP1)
    assert m.get("F") == "A, R,D,S,X,N,I,T,O" and not m.endpoint.is_wildcard
    m = p(AUEP2)
    assert m.endpoint.all_wildcard and m.endpoint.local == "*" and m.params == ()
    m = p(AUCX)
    assert (m.connection_id, m.get("F")) == ("32F345E2", "C,N,L,M,LC,P")
    m = p(RSIP)
    assert (m.restart_method, m.get("RD")) == ("graceful", "300")


def test_response_example():
    data = crlf(RESP)
    m = one(data)
    assert (m.kind, m.code, m.transaction_id, m.commentary, m.response_class) == ("response", 200, 1204, "OK", "success")
    assert m.connection_id == "FDE234C8" and m.verb is None and m.is_final
    assert m.sdp_span.text.startswith("v=0") and data[m.sdp_span.end - 2:m.sdp_span.end] == b"\r\n"
    assert texts(m, "sdp-media-port") == ["3456"]


@pytest.mark.parametrize("code,cls", [(0, "ack"), (99, "ack"), (100, "provisional"), (200, "success"),
                                      (250, "success"), (400, "transient"), (510, "permanent"),
                                      (800, "package"), (899, "package"), (300, "unassigned"),
                                      (999, "unassigned")])
def test_response_codes(code, cls):
    m = one(f"{code:03d} 17 whatever\n".encode())
    assert m.code == code and m.response_class == cls == response_class(code)


def test_package_response_and_no_commentary():
    m = one(b"801 77 /xyz package says no\r\n")
    assert (m.code, m.package, m.commentary) == (801, "xyz", "package says no")
    m = one(b"200 262662134 \n")
    assert (m.code, m.commentary) == (200, None)


def test_verbs_and_versions():
    assert VERBS == {"EPCF", "CRCX", "MDCX", "DLCX", "RQNT", "NTFY", "AUEP", "AUCX", "RSIP"}
    m = one(b"rqnt 5 aaln/1@gw MGCP 1.0 NCS 1.0\nX: 1\n")
    assert (m.verb, m.version, m.profile) == ("RQNT", "MGCP 1.0", "NCS 1.0")
    assert one(b"NTFY 6 aaln/1@gw MGCP 1.0 TGCP 1.0\n").profile == "TGCP 1.0"
    assert one(b"RSIP 7 *@vg224 MGCP 0.1\nRM: restart\n").version == "MGCP 0.1"
    for bad in (b"MESG 5 a@b MGCP 1.0\n", b"XABC 5 a@b MGCP 1.0\n", b"CRCX 5 a@b SIP 1.0\n",
                b"CRCX 5 a@b MGCP\n", b"CRCX 0 a@b MGCP 1.0\n", b"CRCX 1234567890 a@b MGCP 1.0\n",
                b"CRCX a@b MGCP 1.0\n", b"20 1 OK\n", b"200 OK\n", b"2000 1 OK\n"):
        with pytest.raises(RemoteProtocolError):
            parse_datagram(bad)


def test_every_parameter_code_and_extensions():
    codes = ["B", "C", "I", "N", "X", "L", "M", "R", "S", "D", "O", "P", "E", "Z", "Z2", "I2", "F", "Q",
             "T", "RM", "RD", "A", "ES", "PL", "MD", "K"]
    values = {"C": "ABC", "I": "12", "I2": "3f", "X": "1", "N": "ca@host", "RM": "forced", "RD": "0",
              "MD": "4000", "Z": "aaln/2@gw", "Z2": "aaln/3@gw", "K": "6-9, 12"}
    lines = [f"{c.lower() if i % 2 else c}: {values.get(c, 'v')}" for i, c in enumerate(codes)]
    lines += ["X-Foo: bar", "x+y1: z", "pkg/Param: 1"]
    m = one(("CRCX 1 aaln/1@gw MGCP 1.0\n" + "\n".join(lines) + "\n").encode())
    assert [p.name for p in m.params] == codes + ["X-FOO", "X+Y1", "PKG/PARAM"]
    assert m.get("z2") == "aaln/3@gw" and m.param("rd").span.text == "0"
    for bad in ("Y: 1", "XX: 1", "C : 1", ": x", "C", "X-: 1", "pkg/: 1"):
        with pytest.raises(RemoteProtocolError):
            parse_datagram(f"CRCX 1 aaln/1@gw MGCP 1.0\n{bad}\n".encode())


@pytest.mark.parametrize("line", [
    "C: 0123456789abcdef0123456789ABCDEF0", "C: xyz", "C:", "I: 12G", "I: 1,2", "I2: ", "X: 12 34",
    "I: " + "a" * 33, "RM: sleeping", "RD: soon", "N: ca@[1.2.3]", "N: ca@host:99999", "N: ca@host:x",
    "N: @host", "N: [10.0.0.1", "Z: nodomain", "Z: a@[300.1.1.1]",
])
def test_bad_values(line):
    with pytest.raises(RemoteProtocolError):
        parse_datagram(f"CRCX 1 aaln/1@gw MGCP 1.0\n{line}\n".encode())


def test_ids_and_restart_methods():
    m = one(b"CRCX 1 a@gw MGCP 1.0\nC: " + b"F" * 32 + b"\nI: 0\nRM: Cancel-Graceful\n")
    assert m.call_id == "F" * 32 and m.connection_id == "0" and m.restart_method == "cancel-graceful"
    for rm in ("graceful", "forced", "restart", "disconnected", "cancel-graceful", "xyz/my-method"):
        assert one(f"RSIP 1 *@gw MGCP 1.0\nRM: {rm}\n".encode()).restart_method == rm
    # RFC 3435 2.3.10: an AuditEndpoint response lists the endpoint's connections.
    m = one(b"200 1 OK\nI: 1A, 2B,3C\n")
    assert m.connection_ids == ("1A", "2B", "3C")
    assert one(b"200 81 \nI:\nX: 2\n").connection_ids == ()


@pytest.mark.parametrize("name,local,domain,flags", [
    ("group1/Trk8@mynetwork.net", "group1/Trk8", "mynetwork.net", (False, False, False)),
    ("group2/Trk1/*@[192.168.10.8]", "group2/Trk1/*", "[192.168.10.8]", (False, True, False)),
    ("$@voiptel.net", "$", "voiptel.net", (True, False, False)),
    ("*@voiptel.net", "*", "voiptel.net", (False, True, False)),
    ("ds/ds1-[1-8]/6@gw.example", "ds/ds1-[1-8]/6", "gw.example", (False, False, True)),
    ("aaln/1@[2001:db8::1]", "aaln/1", "[2001:db8::1]", (False, False, False)),
    ("AALN/S2/1@vg224", "AALN/S2/1", "vg224", (False, False, False)),
])
def test_endpoint_names(name, local, domain, flags):
    data = f"AUEP 9 {name} MGCP 1.0\n".encode()
    ep = one(data).endpoint
    assert (ep.local, ep.domain, (ep.any_wildcard, ep.all_wildcard, ep.has_range)) == (local, domain, flags)
    assert data[ep.span.start:ep.span.end].decode() == name
    if domain.startswith("["):
        assert ep.domain_ip_span.text == domain[1:-1]
        assert data[ep.domain_ip_span.start:ep.domain_ip_span.end].decode() == domain[1:-1]
    else:
        assert ep.domain_ip_span is None


@pytest.mark.parametrize("name", ["noat", "@gw", "a@", "a*b@gw", "a$/x@gw", "a//b@gw", "a@[10.0.0.1",
                                  "a@[10.0.0.300]", "a@bad_domain", "ds/[1-8@gw", "ds/1-8]@gw"])
def test_bad_endpoint_names(name):
    with pytest.raises(RemoteProtocolError):
        parse_datagram(f"AUEP 9 {name} MGCP 1.0\n".encode())


def test_nat_spans_of_bracketed_ips():
    data = crlf("CRCX 44 aaln/1@[10.1.1.5] MGCP 1.0\nC: 1\nN: ca@[10.2.2.2]:2727\nZ: aaln/2@[10.1.1.6]\n"
                "M: sendrecv\n\nv=0\no=- 1 1 IN IP4 10.1.1.5\ns=-\nc=IN IP4 10.1.1.5\nt=0 0\n"
                "m=audio 49170 RTP/AVP 0\nc=IN IP4 10.1.1.7\na=rtcp:49171 IN IP4 10.1.1.8\n")
    m = one(data)
    kinds = [(a.kind, a.span.text) for a in m.address_spans]
    assert kinds == [("endpoint-ip", "10.1.1.5"), ("notified-host", "10.2.2.2"), ("notified-port", "2727"),
                     ("endpoint-ip", "10.1.1.6"), ("sdp-origin", "10.1.1.5"), ("sdp-connection", "10.1.1.5"),
                     ("sdp-media-port", "49170"), ("sdp-connection", "10.1.1.7"), ("sdp-rtcp-port", "49171"),
                     ("sdp-rtcp-address", "10.1.1.8")]
    for a in m.address_spans:
        assert data[a.span.start:a.span.end].decode() == a.span.text
    # NAT rewrites by position (gateway.span): the rest is untouched.
    edits = [Edit.replace(a.span, "192.0.2.1") for a in m.address_spans if "port" not in a.kind]
    out = one(apply_edits(data, edits))
    assert {a.span.text for a in out.address_spans if "port" not in a.kind} == {"192.0.2.1"}
    assert out.endpoint.domain == "[192.0.2.1]" and out.call_id == "1"


def test_two_session_descriptions():
    data = crlf("200 3003 OK\nC: 1\n\nv=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
                "m=audio 1000 RTP/AVP 0\n\nv=0\no=- 2 2 IN IP4 10.0.0.2\ns=-\nc=IN IP4 10.0.0.2\nt=0 0\n"
                "m=audio 2000 RTP/AVP 0\n")
    m = one(data)
    assert [d.media[0].port for d in m.sdp] == [1000, 2000]
    assert texts(m, "sdp-origin") == ["10.0.0.1", "10.0.0.2"]


def test_piggy_backing():
    data = crlf("200 1203 OK\n.\nDLCX 1244 card23/21@tgw-7.example.net MGCP 1.0\nC: A3C47F21456789F0\n"
                "I: FDE234C8\n.\n" + CRCX)
    msgs = parse_datagram(data)
    assert [(m.kind, m.transaction_id) for m in msgs] == [("response", 1203), ("command", 1244), ("command", 1205)]
    assert data[msgs[0].start:msgs[0].end] == b"200 1203 OK\r\n"
    assert data[msgs[1].end:msgs[2].start] == b".\r\n"
    assert data[msgs[2].start:msgs[2].end] == crlf(CRCX)
    assert msgs[2].address_spans[0].span.start > msgs[2].start
    for bad in (b"200 1 OK\n.\n", b".\n200 1 OK\n", b"200 1 OK\n.\n.\n200 2 OK\n"):
        with pytest.raises(RemoteProtocolError):
            parse_datagram(bad)


def test_line_ends_and_padding():
    for eol in (b"\n", b"\r\n", b"\r"):
        m = one(eol.join([b"RQNT 1 *@gateway44.myplace.com MGCP 0.1", b"R: l/hd(n)", b"X: 1", b""]))
        assert [p.value for p in m.params] == ["l/hd(n)", "1"]
    m = one(b"200 80 OK\n" + b"\x00" * 8)
    assert m.end == 10
    assert one(b"200 80 OK").commentary == "OK"


@pytest.mark.parametrize("bad", [b"", b"\x00\x00", b"\n", b"\nCRCX 1 a@gw MGCP 1.0\n",
                                 b"CRCX 1 a@gw MGCP 1.0\nC: 1\x00\n", b"200 1 O\x01K\n",
                                 b"CRCX 1 a@gw MGCP 1.0\nno colon here\n",
                                 b"CRCX 1 a@gw MGCP 1.0\n\nnot sdp\n",
                                 b"CRCX 1 a@gw MGCP 1.0\n\nv=0\nm=audio x RTP/AVP 0\n",
                                 b"CRCX 1 a@gw MGCP 1.0\n\nv=0\nc=IN IP4\n"])
def test_malformed(bad):
    with pytest.raises(RemoteProtocolError):
        parse_datagram(bad)


# ------------------------------------------------------------ real captures

def _corpus_datagrams():
    from scapy.all import UDP, rdpcap  # type: ignore[attr-defined]
    out = []
    for i, frame in enumerate(rdpcap(str(CORPUS / "mgcp.pcap"))):
        if UDP in frame and {frame[UDP].sport, frame[UDP].dport} & {2427, 2727}:
            payload = bytes(frame[UDP].payload)[:frame[UDP].len - 8]
            out.append(pytest.param(payload, id=f"frame{i}"))
    return out


CORPUS_DATAGRAMS = _corpus_datagrams()


def test_corpus_has_mgcp():
    assert len(CORPUS_DATAGRAMS) == 23


@pytest.mark.parametrize("data", CORPUS_DATAGRAMS)
def test_every_corpus_message_parses(data):
    msgs = parse_datagram(data)
    assert msgs and all(m.transaction_id >= 1 for m in msgs)
    for m in msgs:
        assert (m.verb in VERBS) if m.is_command else (m.code is not None)


def test_corpus_details():
    by_tid = {m.transaction_id: m for d in CORPUS_DATAGRAMS for m in parse_datagram(d.values[0])
              if m.is_response and m.transaction_id == 81}
    auep = by_tid[81]
    assert auep.code == 200 and len(auep.get_all("L")) == 7 and auep.connection_ids == ()


# ------------------------------------------------------------ properties

def _check_spans(data, msgs):
    for m in msgs:
        assert 0 <= m.start < m.end <= len(data)
        spans = [p.span for p in m.params] + [a.span for a in m.address_spans]
        for s in spans:
            assert data[s.start:s.end].decode("latin-1") == s.text
            assert m.start <= s.start <= s.end <= m.end
    # no edits, or every span replaced by its own text: byte-identical
    edits = [Edit.replace(a.span, a.span.text) for m in msgs for a in m.address_spans]
    assert apply_edits(data, []) == data
    assert apply_edits(data, edits) == data


VALID = [crlf(t) for t in EXAMPLES] + [t.encode() for t in EXAMPLES] + [
    crlf("200 1203 OK\n.\n" + CRCX),
    crlf("CRCX 44 aaln/1@[10.1.1.5] MGCP 1.0\nC: 1\nN: ca@[10.2.2.2]:2727\n\nv=0\no=- 1 1 IN IP4 10.1.1.5\n"
         "c=IN IP4 10.1.1.5\nm=audio 49170 RTP/AVP 0\na=rtcp:49171 IN IP4 10.1.1.8\n"),
]


@pytest.mark.parametrize("data", VALID)
def test_valid_messages_keep_their_bytes(data):
    _check_spans(data, parse_datagram(data))


MUTATION_BYTES = st.sampled_from(list(b"\r\n\x00 \t.:@[]/*$,-=0123456789aAfFzZ\x7f\xff"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.data())
def test_mutations_parse_or_raise_remote_protocol_error(data, draw):
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        op = draw.draw(st.integers(0, 2))
        i = draw.draw(st.integers(0, len(buf)))
        if op == 0 and i < len(buf):
            buf[i] = draw.draw(MUTATION_BYTES)
        elif op == 1:
            buf.insert(i, draw.draw(MUTATION_BYTES))
        elif i < len(buf):
            del buf[i]
    buf = bytes(buf[:draw.draw(st.integers(0, len(buf)))])
    try:
        msgs = parse_datagram(buf)
    except RemoteProtocolError:
        return
    _check_spans(buf, msgs)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_remote_protocol_error(blob):
    try:
        parse_datagram(blob)
    except RemoteProtocolError:
        pass


def test_sdp_with_lone_cr_line_ends_is_refused():
    with pytest.raises(RemoteProtocolError):
        parse_datagram(b"200 1 OK\r\rv=0\ro=- 1 1 IN IP4 10.0.0.1\rc=IN IP4 10.0.0.1\rm=audio 1 RTP/AVP 0\r")
