"""The per-packet pipeline on the manual's example configurations: NAT
rewrites checked with scapy (checksums recomputed independently), policy
drops with their reasons, ALG hand-off with the right key and context, the
whole SIP call through the real ALG with media through pinholes, screens,
fragments, expiry, and the fuzz rule: any bytes give an Outcome."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP

from gateway.config import load_file, parse_text
from gateway.datapath.pinholes import TAKEOVER_PINHOLE
from gateway.datapath import (
    FRAGMENT_DROP, Alg, Datapath, Drop, Forward, mgcp_key, sip_call_id,
    sip_media_pinholes,
)
from gateway.packet import SYN, build_tcp, build_udp, parse, rewrite
from gateway.sip.alg import EMPTY, media_activity, step

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"


def dp_for(name: str) -> Datapath:
    return Datapath(load_file(EX / name))


def checked(data: bytes) -> IP:
    """The packet as scapy sees it, after checking that both checksums are
    what scapy computes from scratch."""
    pkt = IP(data)
    ip_sum = pkt.chksum
    l4 = pkt.payload
    l4_sum = l4.chksum if hasattr(l4, "chksum") else None
    fresh = IP(bytes(pkt.__class__(data)))
    del fresh.chksum
    if l4_sum is not None:
        del fresh.payload.chksum
    fresh = IP(bytes(fresh))
    assert ip_sum == fresh.chksum, "IP checksum"
    if l4_sum is not None and not (isinstance(l4, UDP) and l4_sum == 0):
        assert l4_sum == fresh.payload.chksum, "L4 checksum"
    return pkt


def sip_msg(start: str, headers: list[str], body: str = "") -> bytes:
    b = body.replace("\n", "\r\n").encode()
    h = "\r\n".join([start, *headers])
    if body:
        h += "\r\nContent-Type: application/sdp"
    return (h + f"\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b


def sdp(addr: str, port: int) -> str:
    return f"v=0\no=u 1 1 IN IP4 {addr}\ns=-\nc=IN IP4 {addr}\nt=0 0\nm=audio {port} RTP/AVP 0\n"


# ------------------------------------------------------------------ NAT rewrites

def test_outgoing_h323_with_mip_both_directions():
    # ch. 1 "Example: Outgoing Calls with NAT": IP_Phone1 10.1.1.5 leaves as its MIP 1.1.1.5.
    dp = dp_for("ch1-outgoing-calls-with-nat.cfg")
    syn = build_tcp("10.1.1.5", "2.2.2.5", 40000, 1720, seq=1, flags=SYN, payload=b"")
    out = dp.process(syn, "ethernet1", 0.0)
    assert isinstance(out, Forward) and out.path == "policy"
    assert out.note == ""              # inspected by the H.323 ALG (test_h323_datapath.py)
    p = checked(out.data)
    assert (p.src, p.dst, p[TCP].sport, p[TCP].dport) == ("1.1.1.5", "2.2.2.5", 40000, 1720)
    # The answer comes back to the MIP and goes to the phone.
    back = dp.process(build_tcp("2.2.2.5", "1.1.1.5", 1720, 40000, seq=9, ack=2, payload=b"q931"),
                      "ethernet3", 1.0)
    assert isinstance(back, Forward) and back.path == "fast-session" and back.note == ""
    p = checked(back.data)
    assert (p.src, p.dst, p[TCP].dport) == ("2.2.2.5", "10.1.1.5", 40000)
    assert bytes(p[TCP].payload) == b"q931"
    # Later packets of the flow take the fast path with no note (here the
    # first part of a TPKT message, which passes as it is).
    again = dp.process(build_tcp("10.1.1.5", "2.2.2.5", 40000, 1720, seq=2, payload=b"\x03\x00\x00\x10"),
                       "ethernet1", 2.0)
    assert again.path == "fast-session" and checked(again.data).src == "1.1.1.5"
    assert dp.stats()["paths"]["fast-session"] == 2


def test_incoming_to_mip_rewritten_and_other_source_denied():
    dp = dp_for("ch1-outgoing-calls-with-nat.cfg")
    out = dp.process(build_tcp("2.2.2.5", "1.1.1.25", 50000, 1720, seq=1, flags=SYN),
                     "ethernet3", 0.0)
    assert isinstance(out, Forward)
    assert checked(out.data).dst == "10.1.1.25"
    denied = dp.process(build_tcp("2.2.2.6", "1.1.1.5", 50000, 1720, seq=1, flags=SYN),
                        "ethernet3", 0.0)
    assert isinstance(denied, Drop) and denied.category == "policy"
    assert "no policy matches untrust->trust" in denied.reason
    assert dp.stats()["drops"] == {"policy": 1}


def test_explicit_deny_policy_reason():
    cfg = parse_text("""
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set policy from trust to untrust any any sip deny
set policy from trust to untrust any any any permit
""")
    dp = Datapath(cfg)
    out = dp.process(build_udp("10.1.1.3", "1.1.1.9", 5060, 5060, b"OPTIONS"), "ethernet1", 0)
    assert out == Drop("denied by policy 1 (trust->untrust)", "policy")
    ok = dp.process(build_udp("10.1.1.3", "1.1.1.9", 5000, 6000, b"x"), "ethernet1", 0)
    assert isinstance(ok, Forward)


NAT_CFG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set policy from trust to untrust any any any permit
"""


def test_interface_nat_source_port_translation():
    dp = Datapath(parse_text(NAT_CFG))
    a = dp.process(build_udp("10.1.1.3", "1.1.1.9", 7000, 53, b"a"), "ethernet1", 0)
    b = dp.process(build_udp("10.1.1.4", "1.1.1.9", 7000, 53, b"b"), "ethernet1", 0)
    pa, pb = checked(a.data), checked(b.data)
    assert pa.src == pb.src == "1.1.1.1"
    assert pa[UDP].sport == 7000 and pb[UDP].sport != 7000
    # Each reply finds its own host.
    ra = dp.process(build_udp("1.1.1.9", "1.1.1.1", 53, 7000, b"A"), "ethernet3", 1)
    rb = dp.process(build_udp("1.1.1.9", "1.1.1.1", 53, pb[UDP].sport, b"B"), "ethernet3", 1)
    qa, qb = checked(ra.data), checked(rb.data)
    assert (qa.dst, qa[UDP].dport) == ("10.1.1.3", 7000)
    assert (qb.dst, qb[UDP].dport) == ("10.1.1.4", 7000)
    assert dp.stats()["sessions"]["port_translations"] == 1


def test_icmp_echo_nat_by_identifier():
    dp = Datapath(parse_text(NAT_CFG))
    req = bytes(IP(src="10.1.1.3", dst="1.1.1.9") / ICMP(type=8, id=77, seq=1) / b"ping")
    out = dp.process(req, "ethernet1", 0)
    p = checked(out.data)
    assert p.src == "1.1.1.1" and p[ICMP].id == 77
    rep = bytes(IP(src="1.1.1.9", dst="1.1.1.1") / ICMP(type=0, id=77, seq=1) / b"ping")
    back = dp.process(rep, "ethernet3", 0.5)
    assert back.path == "fast-session" and checked(back.data).dst == "10.1.1.3"


def test_unsolicited_reply_is_dropped_at_the_gateway_address():
    dp = Datapath(parse_text(NAT_CFG))
    out = dp.process(build_udp("1.1.1.9", "1.1.1.1", 53, 7000, b"A"), "ethernet3", 1)
    assert isinstance(out, Drop) and "1.1.1.1 is the address of ethernet3" in out.reason


def test_unknown_ingress_interface():
    dp = Datapath(parse_text(NAT_CFG))
    out = dp.process(build_udp("10.1.1.3", "1.1.1.9", 1, 2, b""), "ethernet9", 0)
    assert isinstance(out, Drop) and "unknown ingress interface ethernet9" in out.reason


# ------------------------------------------------------------------ ALG hand-off

INVITE_HDRS = ["Via: SIP/2.0/UDP 10.1.1.3:5060;branch=z9hG4bK1", "From: <sip:ph1@10.1.1.3>;tag=a",
               "To: <sip:ph2@1.1.1.4>", "Call-ID: Call-42@10.1.1.3", "CSeq: 1 INVITE",
               "Contact: <sip:ph1@10.1.1.3:5060>"]


def test_sip_invite_becomes_alg_with_key_and_context():
    # ch. 2 "Example: Incoming Call with MIP": phone1 10.1.1.3 leaves as MIP 1.1.1.5.
    dp = dp_for("ch2-incoming-call-with-mip.cfg")
    inv = sip_msg("INVITE sip:ph2@1.1.1.3 SIP/2.0", INVITE_HDRS, sdp("10.1.1.3", 4000))
    out = dp.process(build_udp("10.1.1.3", "1.1.1.3", 5060, 5060, inv), "ethernet1", 0)
    assert isinstance(out, Alg)
    assert out.alg == "sip" and out.key == "Call-42@10.1.1.3"
    ctx = out.sip_context()
    assert ctx.direction == "outbound"
    assert ctx.src == ("10.1.1.3", 5060) and ctx.dst == ("1.1.1.3", 5060)
    assert ctx.nat_src == ("1.1.1.5", 5060) and ctx.nat_dst is None
    assert (ctx.ingress, ctx.egress, ctx.transport) == ("ethernet1", "ethernet3", "udp")
    assert out.payload == inv and out.decision.policy.id == 1
    # Inbound to the MIP: destination translated.
    inb = dp.process(build_udp("1.1.1.4", "1.1.1.5", 5060, 5060,
                               inv.replace(b"Call-42", b"Call-43")), "ethernet3", 0)
    assert isinstance(inb, Alg) and inb.direction == "inbound"
    assert inb.nat_dst == ("10.1.1.3", 5060) and inb.nat_src is None and inb.key == "Call-43@10.1.1.3"
    # Not SIP port, from untrust to the MIP: no policy.
    denied = dp.process(build_udp("1.1.1.4", "1.1.1.5", 5060, 5070, inv), "ethernet3", 0)
    assert isinstance(denied, Drop) and denied.category == "policy"


def test_alg_drop_and_pinholes_applied():
    dp = dp_for("ch2-incoming-call-with-mip.cfg")
    inv = sip_msg("INVITE sip:ph2@1.1.1.3 SIP/2.0", INVITE_HDRS)
    out = dp.process(build_udp("10.1.1.3", "1.1.1.3", 5060, 5060, inv), "ethernet1", 0)
    d = dp.finish_alg(out, "drop", out.payload, reason="sip protect deny: test")
    assert d == Drop("sip protect deny: test", "alg")
    assert len(dp.sessions) == 0           # a dropped message opens nothing


def test_full_call_through_the_sip_alg_with_media_pinholes():
    # ch. 2 "Example: Incoming Call (Interface DIP)" configuration; phone1
    # (10.1.1.3, trust, interface NAT) calls phone2 1.1.1.4.
    dp = dp_for("ch2-incoming-call-interface-dip.cfg")
    state = EMPTY
    inv = sip_msg("INVITE sip:ph2@1.1.1.4 SIP/2.0", INVITE_HDRS, sdp("10.1.1.3", 4000))
    out = dp.process(build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, inv), "ethernet1", 10.0)
    assert isinstance(out, Alg) and out.nat_src == ("1.1.1.1", 5060)
    r = step(state, out.sip_context(), out.payload, 10.0)
    state = r.state
    assert r.verdict == "forward" and r.pinholes_open
    fwd = dp.finish_alg(out, r.verdict, r.data, r.route_to, r.pinholes_open, r.pinholes_close, 10.0)
    assert isinstance(fwd, Forward) and fwd.path == "policy"
    p = checked(fwd.data)
    assert (p.src, p.dst) == ("1.1.1.1", "1.1.1.4")
    body = bytes(p[UDP].payload)
    assert b"c=IN IP4 1.1.1.1" in body and b"10.1.1.3" not in body
    pub = next(h.dst[1] for h in r.pinholes_open
               if h.kind == "media" and h.direction == "inbound" and h.dst[1] % 2 == 0)
    assert f"m=audio {pub} ".encode() in body

    # The answer matches the signalling session and goes to the ALG again.
    ok = sip_msg("SIP/2.0 200 OK", ["Via: SIP/2.0/UDP 1.1.1.1:5060;branch=z9hG4bK1",
                                    "From: <sip:ph1@1.1.1.1>;tag=a", "To: <sip:ph2@1.1.1.4>;tag=b",
                                    "Call-ID: Call-42@1.1.1.1", "CSeq: 1 INVITE",
                                    "Contact: <sip:ph2@1.1.1.4:5060>"], sdp("1.1.1.4", 6000))
    ans = dp.process(build_udp("1.1.1.4", "1.1.1.1", 5060, 5060, ok), "ethernet3", 11.0)
    assert isinstance(ans, Alg) and ans.session is not None
    assert ans.direction == "inbound" and ans.nat_dst == ("10.1.1.3", 5060)
    assert ans.egress == "ethernet1"
    r = step(state, ans.sip_context(), ans.payload, 11.0)
    state = r.state
    fwd = dp.finish_alg(ans, r.verdict, r.data, r.route_to, r.pinholes_open, r.pinholes_close, 11.0)
    p = checked(fwd.data)
    assert (p.src, p.dst, p[UDP].dport) == ("1.1.1.4", "10.1.1.3", 5060)
    def media():
        return [h for h in dp.pinholes.holes() if h.pinhole.kind == "media"]
    assert len(media()) == 4               # RTP+RTCP toward each party
    assert len(dp.pinholes) == 6           # and a Via/Contact pinhole each way

    # RTP from outside, any source port, through the pinhole to the phone.
    rtp_in = dp.process(build_udp("1.1.1.4", "1.1.1.1", 6000, pub, b"\x80" * 20), "ethernet3", 12.0)
    assert isinstance(rtp_in, Forward) and rtp_in.path == "fast-pinhole"
    p = checked(rtp_in.data)
    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == ("1.1.1.4", 6000, "10.1.1.3", 4000)
    # The phone's RTP back is the session's reply: it leaves as the public pair.
    rtp_out = dp.process(build_udp("10.1.1.3", "1.1.1.4", 4000, 6000, b"\x80" * 20), "ethernet1", 12.5)
    assert rtp_out.path == "fast-session"
    p = checked(rtp_out.data)
    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == ("1.1.1.1", pub, "1.1.1.4", 6000)

    # Activity: both pinholes of the RTP stream were used, one per direction.
    batch = dp.drain_activity()
    used = {pid for _g, pid, _t in batch if pid}
    assert len(used) == 2
    by_id = {h.id: h for h in dp.pinholes.holes()}
    assert {by_id[pid].pinhole.dst for pid in used} == {("1.1.1.1", pub), ("1.1.1.4", 6000)}
    # The ALG removes the used pinholes; the datapath follows.
    for group, pid, last in batch:
        res = media_activity(state, group, last, pinhole=pid)
        state = res.state
        dp.remove_pinholes(res.pinholes_close)
    assert len(media()) == 2               # the RTCP pair is still open
    assert all(h.pinhole.dst[1] % 2 for h in media())
    # Media keeps flowing on the session.
    again = dp.process(build_udp("1.1.1.4", "1.1.1.1", 6000, pub, b"\x80" * 20), "ethernet3", 13.0)
    assert again.path == "fast-session"
    assert dp.drain_activity() and dp.drain_activity() == []
    # A node taking over has neither the sessions nor the used pinholes: it
    # rebuilds from the ALG's state, and media flows on both ways.
    standby = dp_for("ch2-incoming-call-interface-dip.cfg")
    standby.rebuild([h.pinhole for h in dp.pinholes.holes()] + sip_media_pinholes(state))
    b = standby.process(build_udp("1.1.1.4", "1.1.1.1", 6000, pub, b"\x80" * 20), "ethernet3", 20.0)
    p = checked(b.data)
    assert b.path == "fast-pinhole" and (p.dst, p[UDP].dport) == ("10.1.1.3", 4000)
    a = standby.process(build_udp("10.1.1.3", "1.1.1.4", 4000, 6000, b"\x80" * 20), "ethernet1", 20.1)
    p = checked(a.data)
    assert a.path == "fast-session" and (p.src, p[UDP].sport) == ("1.1.1.1", pub)
    # RTCP of the private party, first this time, through its restored pinhole.
    c = standby.process(build_udp("10.1.1.3", "1.1.1.4", 4001, 6001, b"\x81" * 8), "ethernet1", 20.2)
    p = checked(c.data)
    assert c.path == "fast-pinhole" and (p.src, p[UDP].sport) == ("1.1.1.1", pub + 1)
    # Their use reports the groups' activity; the ALG ignores the restored ids.
    reports = standby.drain_activity()
    assert any(pid and pid.endswith(f"{TAKEOVER_PINHOLE}0") for _g, pid, _t in reports)
    for group, pid, last in reports:
        closes = media_activity(state, group, last, pinhole=pid).pinholes_close
        # A restored pinhole is unknown to the ALG; the RTCP packet found the
        # real pinhole still open (installed first) and that one closes.
        assert closes == (() if TAKEOVER_PINHOLE in (pid or TAKEOVER_PINHOLE) else (pid,))

    # The call ends: its media sessions go.
    call = next(iter(state.calls))
    gone = dp.release_call(call)
    assert len(gone) == 1 and len(dp.pinholes) == 0
    after = dp.process(build_udp("1.1.1.4", "1.1.1.1", 6000, pub, b"\x80"), "ethernet3", 14.0)
    assert isinstance(after, Drop)


def test_incoming_dip_call_routed_by_the_alg():
    dp = dp_for("ch2-incoming-call-interface-dip.cfg")
    inv = sip_msg("INVITE sip:ph1@1.1.1.1:5555 SIP/2.0",
                  ["Via: SIP/2.0/UDP 1.1.1.3:5060;branch=z9hG4bK7", "From: <sip:x@1.1.1.3>;tag=x",
                   "To: <sip:ph1@1.1.1.1>", "Call-ID: in-1@1.1.1.3", "CSeq: 1 INVITE"])
    out = dp.process(build_udp("1.1.1.3", "1.1.1.1", 5060, 5555, inv), "ethernet3", 0)
    assert isinstance(out, Alg) and out.decision is None and out.direction == "inbound"
    assert out.nat_dst is None and out.key == "in-1@1.1.1.3"
    # The ALG knows no registration: policy cannot be decided, dropped.
    d = dp.finish_alg(out, "forward", out.payload, None)
    assert isinstance(d, Drop) and "incoming DIP" in d.reason
    # With the registration's host it is permitted (policy 2) and rewritten.
    f = dp.finish_alg(out, "forward", out.payload, ("10.1.1.3", 5060), now=0)
    p = checked(f.data)
    assert (p.dst, p[UDP].dport, p.src) == ("10.1.1.3", 5060, "1.1.1.3")
    # The phone's answer matches the created session and leaves from 1.1.1.1:5555.
    ans = dp.process(build_udp("10.1.1.3", "1.1.1.3", 5060, 5060, b"SIP/2.0 180 Ringing\r\n\r\n"),
                     "ethernet1", 1)
    assert isinstance(ans, Alg) and ans.nat_src == ("1.1.1.1", 5555) and ans.direction == "outbound"


def test_mgcp_dispatch_and_key():
    cfg = parse_text(NAT_CFG.replace("any any any permit", "any any mgcp-ca permit"))
    dp = Datapath(cfg)
    msg = b"RSIP 1201 aaln/1@[10.1.1.3] MGCP 1.0\r\nRM: restart\r\n"
    out = dp.process(build_udp("10.1.1.3", "1.1.1.9", 2427, 2727, msg), "ethernet1", 0)
    assert isinstance(out, Alg) and out.alg == "mgcp" and out.key == "ep:aaln/1@[10.1.1.3]"
    assert mgcp_key(b"200 1201 OK\r\n") == "tid:1201"
    assert mgcp_key(b"") == ""


def test_call_id_scan():
    assert sip_call_id(b"INVITE x SIP/2.0\r\ncall-id :  AbC@h \r\n\r\n") == "AbC@h"
    assert sip_call_id(b"SIP/2.0 200 OK\r\nIn-Reply-To: q\r\ni:c1\r\n\r\n") == "c1"
    # In the body, not a header: not taken.
    assert sip_call_id(b"X y SIP/2.0\r\nVia: v\r\n\r\ni: body") == ""


# ------------------------------------------------------------------ screens and fragments

def test_udp_flood_screen_in_the_pipeline():
    text = (EX / "ch2-incoming-call-with-mip.cfg").read_text().replace(
        "save", "set zone untrust screen udp-flood dst-ip 1.1.1.5 threshold 2\nsave")
    dp = Datapath(parse_text(text))
    inv = sip_msg("INVITE sip:ph1@1.1.1.5 SIP/2.0", INVITE_HDRS)
    outs = [dp.process(build_udp("1.1.1.4", "1.1.1.5", 5060, 5060, inv), "ethernet3", 7.1)
            for _ in range(4)]
    assert [type(o).__name__ for o in outs] == ["Alg", "Alg", "Drop", "Drop"]
    assert outs[2].category == "screen-udp-flood"
    assert len(dp.drain_alarms()) == 1
    assert isinstance(dp.process(build_udp("1.1.1.4", "1.1.1.5", 5060, 5060, inv), "ethernet3", 8.0),
                      Alg)


def test_session_limit_screen_in_the_pipeline_and_expiry_releases_it():
    text = NAT_CFG.replace("set policy from trust to untrust any any any permit",
                           "set policy from untrust to trust any any any permit\n"
                           "set interface ethernet1 route\n"
                           "set zone untrust screen limit-session source-ip-based 2")
    dp = Datapath(parse_text(text))
    outs = [dp.process(build_udp("1.1.1.9", "10.1.1.3", 1000 + i, 53, b"q"), "ethernet3", 0)
            for i in range(3)]
    assert [type(o).__name__ for o in outs] == ["Forward", "Forward", "Drop"]
    assert "limit-session" in outs[2].reason
    # Existing sessions still pass.
    assert dp.process(build_udp("1.1.1.9", "10.1.1.3", 1000, 53, b"q"), "ethernet3", 1).path == "fast-session"
    expired = dp.expire(1000.0)
    assert len(expired) == 2
    assert isinstance(dp.process(build_udp("1.1.1.9", "10.1.1.3", 1002, 53, b"q"), "ethernet3", 1001),
                      Forward)


def _fragments(src, dst, sport, dport, payload, ident=99):
    whole = IP(src=src, dst=dst, id=ident) / UDP(sport=sport, dport=dport) / payload
    from scapy.layers.inet import fragment
    return [bytes(f) for f in fragment(whole, fragsize=64)]


def test_fragments_of_a_session_follow_it_others_dropped():
    dp = Datapath(parse_text(NAT_CFG))
    frags = _fragments("10.1.1.3", "1.1.1.9", 7000, 53, b"z" * 150)
    assert len(frags) == 3
    first = dp.process(frags[0], "ethernet1", 0)
    assert first == Drop(FRAGMENT_DROP, "fragment")
    assert dp.process(frags[1], "ethernet1", 0) == Drop(FRAGMENT_DROP, "fragment")
    # Open the session with an unfragmented packet, then the fragments pass.
    dp.process(build_udp("10.1.1.3", "1.1.1.9", 7000, 53, b"a"), "ethernet1", 0)
    outs = [dp.process(f, "ethernet1", 1) for f in frags]
    assert all(isinstance(o, Forward) for o in outs)
    for o in outs:
        assert IP(o.data).src == "1.1.1.1"
        assert parse(o.data).ip_checksum_ok       # the UDP checksum covers the whole datagram
    # Reassembled, the datagram's UDP checksum is still right.
    from scapy.layers.inet import defragment
    whole = defragment([IP(o.data) for o in outs])
    assert len(whole) == 1
    w = IP(bytes(whole[0]))
    assert bytes(w[UDP].payload) == b"z" * 150 and w[UDP].sport == 7000
    sum_before = w[UDP].chksum
    del w[UDP].chksum
    assert IP(bytes(w))[UDP].chksum == sum_before


# ------------------------------------------------------------------ robustness

def test_malformed_is_a_drop_with_reason():
    dp = Datapath(parse_text(NAT_CFG))
    out = dp.process(b"\x45\x00\x00", "ethernet1", 0)
    assert isinstance(out, Drop) and out.category == "malformed" and "truncated" in out.reason


_DP = Datapath(parse_text(NAT_CFG + "set policy from untrust to trust any any any permit\n"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["ethernet1", "ethernet3", "nope"]),
       st.floats(0, 1e6))
def test_any_bytes_give_an_outcome(data, ingress, now):
    assert isinstance(_DP.process(data, ingress, now), (Forward, Drop, Alg))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["10.1.1.3", "1.1.1.9", "1.1.1.1", "10.1.1.1"]),
       st.sampled_from(["10.1.1.3", "1.1.1.9", "1.1.1.1", "10.1.1.4"]),
       st.integers(0, 65535), st.sampled_from([53, 5060, 2427, 2727, 1720]),
       st.sampled_from([6, 17]), st.binary(max_size=64),
       st.sampled_from(["ethernet1", "ethernet3"]), st.integers(0, 20))
def test_well_formed_packets_give_an_outcome_with_valid_checksums(src, dst, sport, dport, proto,
                                                                  payload, ingress, cut):
    buf = (build_udp(src, dst, sport, dport, payload) if proto == 17
           else build_tcp(src, dst, sport, dport, seq=1, payload=payload))
    out = _DP.process(buf, ingress, 5.0)
    assert isinstance(out, (Forward, Drop, Alg))
    if isinstance(out, Forward):
        p = parse(out.data)
        assert p.ip_checksum_ok and p.l4_checksum_ok
    # A truncated copy never raises either.
    assert isinstance(_DP.process(buf[:cut], ingress, 5.0), Drop)


def test_drop_decided_outside_is_counted():
    dp = Datapath(parse_text(NAT_CFG))
    assert dp.drop("standby: not forwarding") == Drop("standby: not forwarding", "alg")
    assert dp.stats()["drop_reasons"] == {"standby: not forwarding": 1}


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from(["forward", "drop"]),
       st.sampled_from([None, ("10.1.1.3", 5060), ("10.1.1.9", 1)]), st.booleans())
def test_finish_alg_with_any_answer_gives_forward_or_drop(data, verdict, route_to, huge):
    dp = dp_for("ch2-incoming-call-interface-dip.cfg")
    inv = sip_msg("INVITE sip:ph1@1.1.1.1 SIP/2.0", INVITE_HDRS)
    outs = [dp.process(build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, inv), "ethernet1", 0),
            dp.process(build_udp("1.1.1.3", "1.1.1.1", 5060, 5555, inv), "ethernet3", 0)]
    for out in outs:
        assert isinstance(out, Alg)
        body = data * 40 if huge else data
        res = dp.finish_alg(out, verdict, body, route_to, (), (), 1.0)
        assert isinstance(res, (Forward, Drop))
        if isinstance(res, Forward):
            p = parse(res.data)
            assert p.payload_bytes == body and p.ip_checksum_ok and p.l4_checksum_ok


def test_tcp_fin_or_rst_shortens_the_session():
    from gateway.packet import ACK, FIN, RST
    dp = dp_for("ch1-outgoing-calls-with-nat.cfg")
    for port in (40000, 40001, 40002):
        out = dp.process(build_tcp("10.1.1.5", "2.2.2.5", port, 1720, seq=1, flags=SYN),
                         "ethernet1", 0.0)
        assert isinstance(out, Forward)
    assert dp.expire(100.0) == []
    dp.process(build_tcp("2.2.2.5", "1.1.1.5", 1720, 40000, seq=5, flags=FIN | ACK), "ethernet3", 100.0)
    dp.process(build_tcp("10.1.1.5", "2.2.2.5", 40001, 1720, seq=5, flags=RST), "ethernet1", 100.0)
    assert dp.expire(109.9) == []
    gone = dp.expire(110.0)
    assert sorted(s.fwd_key[2] for s in gone) == [40000, 40001]
    assert [s.fwd_key[2] for s in dp.sessions] == [40002]


def test_private_media_through_an_any_pinhole_leaves_from_its_public_pair():
    # Manual ch. 3 "ISP-Hosted Service" with the MGCP ALG: asia_gw's media
    # address 3.3.3.110:16002 has an "any" pinhole; sf_gw's 2.2.2.201:4000 was
    # given the public pair 3.3.3.10:45190 (an inbound pinhole). sf_gw's RTP
    # to asia_gw must leave from that pair (the address asia_gw was told and
    # checks), not from its private address, whichever side sends first.
    from gateway.mgcp.state import media_pinhole as MgcpHole
    from actors.algs import MediaHole

    for first in ("sf", "asia"):
        dp = dp_for("ch3-isp-hosted-service.cfg")
        dp.install_pinholes([MediaHole.of(p) for p in (
            MgcpHole("c#p1", "c", "c#g0", "any", ("3.3.3.110", 16002), None),
            MgcpHole("c#p2", "c", "c#g1", "inbound", ("3.3.3.10", 45190), ("2.2.2.201", 4000)))])
        sf = build_udp("2.2.2.201", "3.3.3.110", 4000, 16002, b"\x80\x08rtp-sf")
        asia = build_udp("3.3.3.110", "3.3.3.10", 16002, 45190, b"\x80\x08rtp-asia")
        order = [(sf, "ethernet4"), (asia, "ethernet6")]
        if first == "asia":
            order.reverse()
        for _ in range(2):
            for pkt, iface in order:
                out = dp.process(pkt, iface, 1.0)
                assert isinstance(out, Forward), (first, out)
                p = checked(out.data)
                if iface == "ethernet4":
                    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == ("3.3.3.10", 45190,
                                                                          "3.3.3.110", 16002)
                else:
                    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == ("3.3.3.110", 16002,
                                                                          "2.2.2.201", 4000)


def test_a_udp_alg_is_one_row_of_the_dispatch_table(monkeypatch):
    # gateway/datapath/dispatch_constants.py: a new UDP ALG's port, dialog key
    # and idle lifetime are one UdpAlg row; the datapath hands its datagrams
    # (first packet and the session's later ones, both ways) by that row alone.
    from gateway.datapath import dispatch_constants as dc
    row = dc.UdpAlg("echo-alg", (7777,), lambda payload: "k:" + payload[:3].decode(), lambda c: 42.0)
    monkeypatch.setitem(dc.UDP_ALG_BY_PORT, 7777, row)
    monkeypatch.setitem(dc.UDP_ALG_BY_NAME, "echo-alg", row)
    monkeypatch.setattr(dc, "UDP_ALGS", dc.UDP_ALGS + (row,))
    import gateway.datapath.pipeline as pipeline
    monkeypatch.setattr(pipeline, "UDP_ALGS", dc.UDP_ALGS)
    dp = Datapath(parse_text(NAT_CFG))
    out = dp.process(build_udp("10.1.1.3", "1.1.1.9", 7000, 7777, b"abcdef"), "ethernet1", 0)
    assert isinstance(out, Alg) and out.alg == "echo-alg" and out.key == "k:abc"
    assert out.direction == "outbound" and out.nat_src == ("1.1.1.1", 7000)
    fwd = dp.finish_alg(out, "forward", out.payload, now=0.0)
    assert isinstance(fwd, Forward)
    (sess,) = [s for s in dp.sessions if s.alg == "echo-alg"]
    assert sess.timeout == 42.0
    back = dp.process(build_udp("1.1.1.9", "1.1.1.1", 7777, 7000, b"xyz"), "ethernet3", 1)
    assert isinstance(back, Alg) and back.alg == "echo-alg" and back.key == "k:xyz"
    assert back.direction == "inbound" and back.session == sess.id
