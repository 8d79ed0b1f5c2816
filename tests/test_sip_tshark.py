"""Rewritten messages are well-formed for an independent dissector: tshark
reads a pcap of NAT-rewritten INVITE / 200 OK (addresses longer and shorter
than the originals, so Content-Length changes) and reports nothing malformed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

scapy_all = pytest.importorskip("scapy.all")

from gateway.sip import parse_message, rewrite_message  # noqa: E402
from gateway.span import Edit  # noqa: E402

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (Debian package tshark)")

SDP_INVITE = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 10.1.1.3\r\ns=-\r\nc=IN IP4 10.1.1.3\r\n"
              b"t=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\na=rtcp:49171 IN IP4 10.1.1.3\r\na=rtpmap:0 PCMU/8000\r\n")
SDP_OK = (b"v=0\r\no=bob 2808844564 2808844564 IN IP4 192.168.100.201\r\ns=-\r\n"
          b"c=IN IP4 192.168.100.201\r\nt=0 0\r\nm=audio 3456 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def _msg(start: bytes, via: bytes, contact: bytes, cseq: bytes, sdp: bytes, to_tag: bytes = b"") -> bytes:
    return (start + b"\r\nVia: SIP/2.0/UDP " + via + b";branch=z9hG4bK776asdhds\r\nMax-Forwards: 70\r\n"
            b"From: Alice <sip:alice@10.1.1.3>;tag=1928301774\r\nTo: Bob <sip:bob@198.51.100.7>" + to_tag +
            b"\r\nCall-ID: a84b4c76e66710@10.1.1.3\r\nCSeq: " + cseq + b"\r\nContact: <sip:" + contact +
            b">\r\nContent-Type: application/sdp\r\nContent-Length: " + str(len(sdp)).encode() +
            b"\r\n\r\n" + sdp)


INVITE = _msg(b"INVITE sip:bob@198.51.100.7 SIP/2.0", b"10.1.1.3:5060", b"alice@10.1.1.3:5060",
              b"314159 INVITE", SDP_INVITE)
OK = _msg(b"SIP/2.0 200 OK", b"10.1.1.3:5060", b"bob@192.168.100.201", b"314159 INVITE", SDP_OK,
          b";tag=a6c85cf")


def _nat(data: bytes, public: str, port: str) -> bytes:
    """Rewrite every private address (headers and SDP) and the media ports."""
    msg = parse_message(data)
    edits = {}
    for ref in msg.addresses:
        if ref.host.text.startswith(("10.", "192.168.")):
            edits[ref.host.start] = Edit.replace(ref.host, public)
    sdp = msg.sdp
    for span in [sdp.origin_addr, sdp.session_conn.addr]:
        edits[span.start] = Edit.replace(span, public)
    for m in sdp.media:
        edits[m.port_span.start] = Edit.replace(m.port_span, port)
        if m.rtcp_port_span is not None:
            edits[m.rtcp_port_span.start] = Edit.replace(m.rtcp_port_span, str(int(port) + 1))
        if m.rtcp_addr is not None:
            edits[m.rtcp_addr.start] = Edit.replace(m.rtcp_addr, public)
    out = rewrite_message(data, msg, list(edits.values()))
    back = parse_message(out)
    assert back.content_length == len(back.body)
    return out


def test_tshark_finds_nothing_malformed(tmp_path):
    rewritten = [
        _nat(INVITE, "203.0.113.254", "40000"),  # longer addresses
        _nat(INVITE, "1.2.3.4", "400"),  # shorter
        _nat(OK, "203.0.113.254", "65000"),
        _nat(OK, "9.9.9.9", "1024"),
    ]
    pkts = [scapy_all.Ether() / scapy_all.IP(src="198.51.100.1", dst="198.51.100.7") /
            scapy_all.UDP(sport=5060, dport=5060) / scapy_all.Raw(load=data) for data in rewritten]
    pcap = tmp_path / "rewritten.pcap"
    scapy_all.wrpcap(str(pcap), pkts)

    def tshark(*args: str) -> str:
        res = subprocess.run([TSHARK, "-n", "-r", str(pcap), *args], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert tshark("-Y", "_ws.malformed").strip() == ""
    experts = [line for line in tshark("-T", "fields", "-e", "_ws.expert.message").splitlines() if line.strip()]
    assert experts == [], experts
    # tshark agrees on what the messages say: methods/status, and the SDP
    # connection address and media port after the rewrite.
    fields = tshark("-T", "fields", "-E", "separator=|", "-e", "sip.CSeq.method",
                    "-e", "sdp.connection_info.address", "-e", "sdp.media.port",
                    "-e", "sip.Content-Length").splitlines()
    assert [f.split("|")[:3] for f in fields] == [
        ["INVITE", "203.0.113.254", "40000"], ["INVITE", "1.2.3.4", "400"],
        ["INVITE", "203.0.113.254", "65000"], ["INVITE", "9.9.9.9", "1024"]]
    # tshark's reading of Content-Length matches the octets actually after
    # the header section (tshark itself does not flag a mismatch over UDP).
    for line, data in zip(fields, rewritten):
        assert int(line.split("|")[3]) == len(data) - (data.index(b"\r\n\r\n") + 4)
