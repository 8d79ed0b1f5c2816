"""Signalling reaches an ALG whole and undamaged (gateway/datapath/integrity.py):
a fragment of a signalling flow and a packet with a wrong IPv4 or UDP/TCP
checksum are dropped with a reason before any ALG work, since the ALG's
payload rewrite computes fresh checksums that would launder the damage."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, UDP, fragment

from gateway.config import load_file, parse_text
from gateway.datapath import Alg, Datapath, Drop, Forward
from gateway.datapath.integrity import (
    BAD_IP_CHECKSUM, BAD_TCP_CHECKSUM, BAD_UDP_CHECKSUM, SIGNALLING_FRAGMENT,
)
from gateway.packet import SYN, build_tcp, build_udp, fold, parse, pseudo_header_sum
from gateway.sip.alg import EMPTY, step

EX = Path(__file__).resolve().parents[1] / "examples"
CFG = "ch2-incoming-call-interface-dip.cfg"
HDRS = ["Via: SIP/2.0/UDP 10.1.1.3:5060;branch=z9hG4bK1", "From: <sip:ph1@10.1.1.3>;tag=a",
        "To: <sip:ph2@1.1.1.4>", "Call-ID: Call-42@10.1.1.3", "CSeq: 1 INVITE",
        "Contact: <sip:ph1@10.1.1.3:5060>"]


def sip_msg(start: str, headers: list[str], body: str = "") -> bytes:
    b = body.replace("\n", "\r\n").encode()
    h = "\r\n".join([start, *headers])
    if body:
        h += "\r\nContent-Type: application/sdp"
    return (h + f"\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b


SDP = "v=0\no=u 1 1 IN IP4 10.1.1.3\ns=-\nc=IN IP4 10.1.1.3\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
INVITE = sip_msg("INVITE sip:ph2@1.1.1.4 SIP/2.0", HDRS, SDP)


def corrupt_payload(pkt: bytes, at: int = -3) -> bytes:
    b = bytearray(pkt)
    b[at] ^= 0x20                     # a flipped bit in transit, checksums untouched
    return bytes(b)


def test_corrupt_invite_is_dropped_before_the_alg():
    dp = Datapath(load_file(EX / CFG))
    out = dp.process(corrupt_payload(build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, INVITE)),
                     "ethernet1", 0.0)
    assert out == Drop(BAD_UDP_CHECKSUM, "checksum")
    assert dp.paths["alg"] == 0 and len(dp.sessions) == 0
    assert dp.stats()["drop_reasons"] == {BAD_UDP_CHECKSUM: 1}


def test_bad_ip_header_checksum_on_signalling_is_dropped():
    dp = Datapath(load_file(EX / CFG))
    b = bytearray(build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, INVITE))
    b[10] ^= 0x01
    assert dp.process(bytes(b), "ethernet1", 0.0) == Drop(BAD_IP_CHECKSUM, "checksum")


def test_udp_checksum_zero_means_none_and_is_accepted():
    b = bytearray(build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, INVITE))
    b[26:28] = b"\x00\x00"            # RFC 768: no checksum computed
    out = Datapath(load_file(EX / CFG)).process(bytes(b), "ethernet1", 0.0)
    assert isinstance(out, Alg)


def _established():
    dp = Datapath(load_file(EX / CFG))
    out = dp.process(build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, INVITE), "ethernet1", 10.0)
    assert isinstance(out, Alg)
    r = step(EMPTY, out.sip_context(), out.payload, 10.0)
    fwd = dp.finish_alg(out, r.verdict, r.data, r.route_to, r.pinholes_open, r.pinholes_close, 10.0)
    assert isinstance(fwd, Forward)
    return dp


OK = sip_msg("SIP/2.0 200 OK", ["Via: SIP/2.0/UDP 1.1.1.1:5060;branch=z9hG4bK1",
                                "From: <sip:ph1@1.1.1.1>;tag=a", "To: <sip:ph2@1.1.1.4>;tag=b",
                                "Call-ID: Call-42@1.1.1.1", "CSeq: 1 INVITE",
                                "Contact: <sip:ph2@1.1.1.4:5060>"],
             "v=0\no=u 1 1 IN IP4 1.1.1.4\ns=-\nc=IN IP4 1.1.1.4\nt=0 0\nm=audio 6000 RTP/AVP 0\n")


def test_fragments_of_an_established_signalling_flow_are_dropped_not_given_to_the_alg():
    # The first fragment used to go to the ALG, whose payload rewrite then
    # raised ValueError (the checksum covers the whole datagram).
    dp = _established()
    whole = IP(src="1.1.1.4", dst="1.1.1.1", id=7) / UDP(sport=5060, dport=5060) / OK
    frags = [bytes(f) for f in fragment(whole, fragsize=256)]
    assert len(frags) >= 2
    outs = [dp.process(f, "ethernet3", 11.0) for f in frags]
    assert outs[0] == Drop(SIGNALLING_FRAGMENT, "fragment")
    assert all(isinstance(o, Drop) and o.category == "fragment" for o in outs[1:])
    assert dp.paths["alg"] == 1                # the INVITE only
    # The same answer unfragmented still goes to the ALG.
    assert isinstance(dp.process(build_udp("1.1.1.4", "1.1.1.1", 5060, 5060, OK), "ethernet3", 11.0), Alg)


def test_corrupt_message_of_an_established_signalling_flow_is_dropped():
    dp = _established()
    bad = corrupt_payload(build_udp("1.1.1.4", "1.1.1.1", 5060, 5060, OK), at=60)
    assert dp.process(bad, "ethernet3", 11.0) == Drop(BAD_UDP_CHECKSUM, "checksum")


NAT_CFG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set policy from trust to untrust any any any permit
"""


def test_corrupt_tcp_sip_segment_is_dropped():
    dp = Datapath(parse_text(NAT_CFG))
    syn = build_tcp("10.1.1.3", "1.1.1.4", 40000, 5060, seq=1, flags=SYN, payload=b"")
    assert isinstance(dp.process(syn, "ethernet1", 0.0), Forward)
    seg = corrupt_payload(build_tcp("10.1.1.3", "1.1.1.4", 40000, 5060, seq=2, ack=1, payload=INVITE))
    assert dp.process(seg, "ethernet1", 0.1) == Drop(BAD_TCP_CHECKSUM, "checksum")
    # A corrupt SYN opens no session.
    dp2 = Datapath(parse_text(NAT_CFG))
    assert dp2.process(corrupt_payload(syn, at=30), "ethernet1", 0.0) == Drop(BAD_TCP_CHECKSUM, "checksum")
    assert len(dp2.sessions) == 0


def _offloaded(pkt: bytes) -> bytes:
    """The packet as captured on a sender with transmit checksum offload: the
    UDP checksum field holds the pseudo-header sum, not the checksum."""
    p = parse(pkt)
    b = bytearray(pkt)
    b[26:28] = fold(pseudo_header_sum(p.src_int, p.dst_int, p.proto, p.udp_length)).to_bytes(2, "big")
    return bytes(b)


def test_unfinished_offload_checksum_accepted_only_where_captures_are_read():
    pkt = _offloaded(build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, INVITE))
    live = Datapath(load_file(EX / CFG))
    assert live.process(pkt, "ethernet1", 0.0) == Drop(BAD_UDP_CHECKSUM, "checksum")
    capture = Datapath(load_file(EX / CFG))
    capture.offloaded_checksums_ok = True
    assert isinstance(capture.process(pkt, "ethernet1", 0.0), Alg)
    # Any other wrong value is still damage (the unfinished value covers the
    # pseudo-header only: a capture with offload cannot show payload damage).
    b = bytearray(pkt)
    b[27] ^= 0x01
    assert capture.process(bytes(b), "ethernet1", 0.0) == Drop(BAD_UDP_CHECKSUM, "checksum")


def test_media_keeps_its_wrong_checksum_without_verification():
    # Not signalling: forwarded on the session with an incremental update
    # (RFC 1624), so the receiver still sees the damage.
    dp = Datapath(parse_text(NAT_CFG))
    first = dp.process(build_udp("10.1.1.3", "1.1.1.9", 7000, 7002, b"rtp" * 20), "ethernet1", 0.0)
    assert isinstance(first, Forward)
    out = dp.process(corrupt_payload(build_udp("10.1.1.3", "1.1.1.9", 7000, 7002, b"rtp" * 20)),
                     "ethernet1", 0.1)
    assert isinstance(out, Forward) and out.path == "fast-session"
    assert parse(out.data).ip_checksum_ok and parse(out.data).l4_checksum_ok is False
