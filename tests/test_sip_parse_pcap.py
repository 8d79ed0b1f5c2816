"""Every SIP payload of the real captures in ../shared/corpus/pcap parses.

UDP datagrams are parsed one by one; TCP payloads are reassembled per
direction (by sequence number) and cut into messages with frame_stream."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

scapy_all = pytest.importorskip("scapy.all")

from gateway.sip import frame_stream, is_keepalive, parse_message, rewrite_message  # noqa: E402

PCAPS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap"
SIP_PORT = 5060


def _payloads(name: str, port: int | tuple[int, ...]):
    """(udp datagrams, tcp byte streams) to or from ``port`` in a capture."""
    ports = (port,) if isinstance(port, int) else port
    IP, TCP, UDP = scapy_all.IP, scapy_all.TCP, scapy_all.UDP
    udp: list[bytes] = []
    segments: dict[tuple, dict[int, bytes]] = defaultdict(dict)
    for pkt in scapy_all.rdpcap(str(PCAPS / name)):
        if IP not in pkt:
            continue
        for layer in (UDP, TCP):
            if layer in pkt:
                l4 = pkt[layer]
                if l4.sport not in ports and l4.dport not in ports:
                    continue
                data = bytes(l4.payload)
                if not data:
                    continue
                if layer is UDP:
                    udp.append(data)
                else:
                    key = (pkt[IP].src, l4.sport, pkt[IP].dst, l4.dport)
                    segments[key][l4.seq] = data  # retransmissions collapse
    streams = [b"".join(seg[s] for s in sorted(seg)) for seg in segments.values()]
    return udp, streams


CAPTURES = {
    # name: (port filter, expected number of messages at least)
    "sip.pcap": (SIP_PORT, 80),
    "sip_ipv4_tcp.pcap": (SIP_PORT, 7),
    "sip-compact-form__sip_compact_form.pcap": (SIP_PORT, 1),
    "sip-tcp-method__sip-tcp.pcap": (SIP_PORT, 2),
    # Two user agents on loopback with SIP on ports 5080 and 5082 (the
    # other UDP traffic is RTP).
    "register-invite-reinvite-bye.pcap": ((5080, 5082), 12),
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_sip_payload_parses(name):
    port, at_least = CAPTURES[name]
    udp, streams = _payloads(name, port)
    messages = [d for d in udp if not is_keepalive(d)]
    for stream in streams:
        framed, rest = frame_stream(stream)
        assert rest == b"", f"unframed tail {rest[:60]!r}"
        messages += framed
    assert len(messages) >= at_least
    for data in messages:
        msg = parse_message(data)
        assert rewrite_message(data, msg, []) is data
        for ref in msg.addresses:
            assert data[ref.host.start:ref.host.end].decode("latin-1") == ref.host.text


def test_tcp_invite_sdp_addresses():
    _, streams = _payloads("sip_ipv4_tcp.pcap", SIP_PORT)
    media = set()
    for stream in streams:
        for data in frame_stream(stream)[0]:
            msg = parse_message(data)
            if msg.sdp is not None:
                for m in msg.sdp.media:
                    media.add(msg.sdp.media_destination(m))
    assert ("10.33.6.100", 6000) in media
    assert ("10.33.6.101", 6050) in media


def test_compact_form_invite():
    udp, _ = _payloads("sip-compact-form__sip_compact_form.pcap", SIP_PORT)
    msg = parse_message(udp[0])
    assert msg.method == "INVITE"
    assert msg.content_type == "application/sdp"
    assert msg.content_length == 272
    assert msg.get("v") == msg.get("Via")
    fields = [(a.field, a.host.text) for a in msg.addresses]
    assert ("via", "192.168.1.2") in fields
    assert ("contact", "192.168.1.2") in fields
    assert ("call-id", "192.168.1.2") in fields
    assert msg.sdp is not None and msg.sdp.origin_addr.text == "192.168.1.2"


def test_keepalives_in_sip_pcap_are_recognised():
    udp, _ = _payloads("sip.pcap", SIP_PORT)
    assert any(is_keepalive(d) for d in udp)
    assert not is_keepalive(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n")
    assert not is_keepalive(b"")
