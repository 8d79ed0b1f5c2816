"""A one-to-one translation keeps the media port.

A MIP maps one public address to one private host and translates the address
only (manual ch. 2 "Example: Incoming Call with MIP"; ch. 1 "Mapped IP"):
every port of the MIP address is the host's. The SIP ALG then rewrites the
SDP's address and keeps the m= port, so a phone that reuses its RTP port
meets the same public flow on every call. Where the public address is shared
(interface NAT, DIP), the ALG still allocates an even/odd pair (ch. 2 "SIP
with Network Address Translation")."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, UDP

from gateway.algs import SipAdapter
from gateway.config import load_file
from gateway.datapath import Alg, Datapath, Forward
from gateway.packet import build_udp
from gateway.sip.alg import EMPTY, on_timer, step
from gateway.sip.events import call_stream
from gateway.sip.portmap import is_held

EX = Path(__file__).resolve().parents[1] / "examples"
MIP_CFG = "ch2-incoming-call-with-mip.cfg"
DIP_CFG = "ch2-incoming-call-interface-dip.cfg"


def sip_msg(start: str, headers: list[str], body: str = "") -> bytes:
    b = body.replace("\n", "\r\n").encode()
    h = "\r\n".join([start, *headers])
    if body:
        h += "\r\nContent-Type: application/sdp"
    return (h + f"\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b


def sdp(addr: str, port: int) -> str:
    return f"v=0\no=u 1 1 IN IP4 {addr}\ns=-\nc=IN IP4 {addr}\nt=0 0\nm=audio {port} RTP/AVP 0\n"


def run(dp: Datapath, state, pkt: bytes, ingress: str, now: float):
    """One signalling packet through the datapath and the SIP ALG, with the
    context the node builds (the adapter, given the policy engine)."""
    out = dp.process(pkt, ingress, now)
    assert isinstance(out, Alg), out
    r = step(state, SipAdapter.context(out, dp.engine), out.payload, now)
    assert r.verdict == "forward", r.reason
    fwd = dp.finish_alg(out, r.verdict, r.data, r.route_to, r.pinholes_open, r.pinholes_close, now)
    assert isinstance(fwd, Forward), fwd
    return r, IP(fwd.data)


def incoming_call_to_mip(dp, state, call_id: str, phone2_port: int, phone1_port: int, now: float):
    """phone2 (1.1.1.4) calls phone1 through its MIP 1.1.1.5; phone1 answers
    with its media at 10.1.1.3:``phone1_port``."""
    inv = sip_msg("INVITE sip:ph1@1.1.1.5 SIP/2.0",
                  ["Via: SIP/2.0/UDP 1.1.1.4:5060;branch=z9hG4bK" + call_id,
                   "From: <sip:ph2@1.1.1.4>;tag=b", "To: <sip:ph1@1.1.1.5>",
                   f"Call-ID: {call_id}@1.1.1.4", "CSeq: 1 INVITE",
                   "Contact: <sip:ph2@1.1.1.4:5060>"], sdp("1.1.1.4", phone2_port))
    r, _ = run(dp, state, build_udp("1.1.1.4", "1.1.1.5", 5060, 5060, inv), "ethernet3", now)
    ok = sip_msg("SIP/2.0 200 OK",
                 ["Via: SIP/2.0/UDP 1.1.1.4:5060;branch=z9hG4bK" + call_id,
                  "From: <sip:ph2@1.1.1.4>;tag=b", "To: <sip:ph1@1.1.1.5>;tag=a" + call_id,
                  f"Call-ID: {call_id}@1.1.1.4", "CSeq: 1 INVITE",
                  "Contact: <sip:ph1@10.1.1.3:5060>"], sdp("10.1.1.3", phone1_port))
    r, p = run(dp, r.state, build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, ok), "ethernet1", now + 1)
    return r, bytes(p[UDP].payload)


def test_mip_callee_keeps_its_media_port_and_media_follows_it():
    dp = Datapath(load_file(EX / MIP_CFG))
    r, body = incoming_call_to_mip(dp, EMPTY, "c1", 8000, 6000, 10.0)
    # The address is translated, the port kept (it failed before: 20000).
    assert b"c=IN IP4 1.1.1.5" in body and b"10.1.1.3" not in body
    assert b"m=audio 6000 " in body
    inbound = {(h.dst, h.to) for h in r.pinholes_open if h.kind == "media" and h.direction == "inbound"}
    assert inbound == {(("1.1.1.5", 6000), ("10.1.1.3", 6000)), (("1.1.1.5", 6001), ("10.1.1.3", 6001))}
    # RTP from phone2 to the MIP's kept port reaches phone1's port.
    rtp_in = dp.process(build_udp("1.1.1.4", "1.1.1.5", 8000, 6000, b"\x80" * 20), "ethernet3", 12.0)
    assert isinstance(rtp_in, Forward)
    p = IP(rtp_in.data)
    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == ("1.1.1.4", 8000, "10.1.1.3", 6000)
    # phone1's RTP leaves from the MIP with the same port.
    rtp_out = dp.process(build_udp("10.1.1.3", "1.1.1.4", 6000, 8000, b"\x80" * 20), "ethernet1", 12.5)
    assert isinstance(rtp_out, Forward)
    p = IP(rtp_out.data)
    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == ("1.1.1.5", 6000, "1.1.1.4", 8000)


def test_mip_caller_keeps_its_media_port():
    # phone1 calls out: it leaves as its MIP (reverse MIP, ch. 2 "Example:
    # Incoming Call with MIP"; policy.Engine.decide step 4).
    dp = Datapath(load_file(EX / MIP_CFG))
    inv = sip_msg("INVITE sip:ph2@1.1.1.4 SIP/2.0",
                  ["Via: SIP/2.0/UDP 10.1.1.3:5060;branch=z9hG4bK1", "From: <sip:ph1@10.1.1.3>;tag=a",
                   "To: <sip:ph2@1.1.1.4>", "Call-ID: out1@10.1.1.3", "CSeq: 1 INVITE",
                   "Contact: <sip:ph1@10.1.1.3:5060>"], sdp("10.1.1.3", 4000))
    r, p = run(dp, EMPTY, build_udp("10.1.1.3", "1.1.1.3", 5060, 5060, inv), "ethernet1", 1.0)
    body = bytes(p[UDP].payload)
    assert p.src == "1.1.1.5"
    assert b"c=IN IP4 1.1.1.5" in body and b"m=audio 4000 " in body


def test_interface_nat_still_allocates_a_media_port():
    # Interface NAT: the interface address is shared by every host behind
    # it, so the ALG allocates a pair of its own (unchanged behaviour).
    dp = Datapath(load_file(EX / DIP_CFG))
    inv = sip_msg("INVITE sip:ph2@1.1.1.4 SIP/2.0",
                  ["Via: SIP/2.0/UDP 10.1.1.3:5060;branch=z9hG4bK1", "From: <sip:ph1@10.1.1.3>;tag=a",
                   "To: <sip:ph2@1.1.1.4>", "Call-ID: nat1@10.1.1.3", "CSeq: 1 INVITE",
                   "Contact: <sip:ph1@10.1.1.3:5060>"], sdp("10.1.1.3", 6000))
    r, p = run(dp, EMPTY, build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, inv), "ethernet1", 1.0)
    body = bytes(p[UDP].payload)
    assert p.src == "1.1.1.1" and b"c=IN IP4 1.1.1.1" in body
    assert b"m=audio 6000 " not in body
    pub = next(h.dst[1] for h in r.pinholes_open if h.kind == "media" and h.direction == "inbound")
    assert pub >= 20000 and is_held(r.state.ports, "1.1.1.1", pub)


def test_two_calls_announcing_one_private_port_through_a_mip():
    # The same phone answers a second call with the RTP port of the first,
    # still live: the newest negotiation takes the public flow, the older
    # call's voice channel ends with a logged reason, and the port stays
    # held while the newer call has it.
    dp = Datapath(load_file(EX / MIP_CFG))
    r1, _ = incoming_call_to_mip(dp, EMPTY, "c1", 8000, 6000, 10.0)
    r2, body = incoming_call_to_mip(dp, r1.state, "c2", 8002, 6000, 20.0)
    assert b"m=audio 6000 " in body
    st = r2.state
    first = next(c for c in st.calls.values() if c.call_id == "c1@1.1.1.4")
    second = next(c for c in st.calls.values() if c.call_id == "c2@1.1.1.4")
    assert not [g for g in first.groups if g.public_ip is not None]
    assert not [p for p in first.pinholes if p.kind == "media" and p.direction == "inbound"]
    assert [(g.public_ip, g.public_port) for g in second.groups if g.public_ip] == [("1.1.1.5", 6000)]
    assert any("1.1.1.5:6000" in line and "c2@1.1.1.4" in line for line in r2.logs)
    assert is_held(st.ports, "1.1.1.5", 6000)
    # RTP to the kept port belongs to the second call's channel.
    rtp_in = dp.process(build_udp("1.1.1.4", "1.1.1.5", 8002, 6000, b"\x80" * 20), "ethernet3", 22.0)
    assert isinstance(rtp_in, Forward)
    assert IP(rtp_in.data).dst == "10.1.1.3" and IP(rtp_in.data)[UDP].dport == 6000
    # The first call's end leaves the second call's port held.
    bye = sip_msg("BYE sip:ph1@1.1.1.5 SIP/2.0",
                  ["Via: SIP/2.0/UDP 1.1.1.4:5060;branch=z9hG4bKbye1", "From: <sip:ph2@1.1.1.4>;tag=b",
                   "To: <sip:ph1@1.1.1.5>;tag=ac1", "Call-ID: c1@1.1.1.4", "CSeq: 2 BYE"])
    r3, _ = run(dp, st, build_udp("1.1.1.4", "1.1.1.5", 5060, 5060, bye), "ethernet3", 30.0)
    st = r3.state
    for key in list(st.calls):
        if st.calls[key].call_id == "c1@1.1.1.4":
            st = on_timer(st, call_stream(key), 40.0).state
    assert all(c.call_id != "c1@1.1.1.4" for c in st.calls.values())
    assert is_held(st.ports, "1.1.1.5", 6000)


def test_media_flowing_on_the_kept_port_moves_to_the_newest_call():
    # Call 1's RTP flows both ways; the phone answers call 2 from the same
    # far party and port with the same RTP port. The node ends the released
    # channel's sessions (Datapath.release_groups, as actors.node does with
    # the adapter's ``released``); the next packets are call 2's.
    from gateway.algs import SipAdapter as A
    dp = Datapath(load_file(EX / MIP_CFG))
    r1, _ = incoming_call_to_mip(dp, EMPTY, "c1", 8000, 6000, 10.0)
    assert isinstance(dp.process(build_udp("1.1.1.4", "1.1.1.5", 8000, 6000, b"\x80" * 20), "ethernet3", 12.0),
                      Forward)
    assert isinstance(dp.process(build_udp("10.1.1.3", "1.1.1.4", 6000, 8000, b"\x80" * 20), "ethernet1", 12.1),
                      Forward)
    r2, body = incoming_call_to_mip(dp, r1.state, "c2", 8000, 6000, 20.0)
    assert b"m=audio 6000 " in body
    _, groups = A.released(r2.events)
    ended = dp.release_groups(groups)
    assert ended and all(s.call is not None for s in ended)
    second = next(c for c in r2.state.calls.values() if c.call_id == "c2@1.1.1.4")
    mine = {g.group for g in second.groups}
    for pkt, ingress, (src, sport, dst, dport) in (
            (build_udp("1.1.1.4", "1.1.1.5", 8000, 6000, b"\x80" * 20), "ethernet3", ("1.1.1.4", 8000, "10.1.1.3", 6000)),
            (build_udp("10.1.1.3", "1.1.1.4", 6000, 8000, b"\x80" * 20), "ethernet1", ("1.1.1.5", 6000, "1.1.1.4", 8000))):
        out = dp.process(pkt, ingress, 22.0)
        assert isinstance(out, Forward), out
        p = IP(out.data)
        assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == (src, sport, dst, dport)
    media = [s for s in dp.sessions if s.kind == "media"]
    assert media and {s.group for s in media} <= mine
