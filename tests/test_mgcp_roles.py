"""Who sent an MGCP datagram, when the call agent listens on 2427.

RFC 3435 3.5.3 makes 2727 (call agent) and 2427 (gateway) defaults only;
PacketCable/NCS call agents commonly listen on 2427, and then every message
goes between two 2427 ports. Deciding the sender's role by "destination port
2727 or not" dropped the gateway's RSIP and NTFY, the gateway's responses to
the call agent's commands and the call agent's replies (the corpus capture
lost its whole handshake). The role now comes from the policy's service and
the ports where they are certain, and otherwise from the messages (verbs,
the transaction a response answers) and the state (gateway.mgcp.roles)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from actors.algs import MgcpAdapter
from gateway.config import parse_text
from gateway.datapath import Alg, Datapath, Forward
from gateway.mgcp.alg import EMPTY, MgcpContext, on_timer, step
from gateway.mgcp.roles import EITHER, sender_role
from gateway.mgcp.message import parse_datagram
from gateway.mgcp.state import durable, fold
from gateway.packet import build_udp

ROOT = Path(__file__).resolve().parents[1]
PCAP = ROOT.parent / "shared" / "corpus" / "pcap" / "mgcp.pcap"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


class Flow:
    """step/on_timer with the event-sourcing check after every result."""

    def __init__(self):
        self.state, self.events, self.timers = EMPTY, [], {}

    def take(self, r):
        if r.verdict == "forward" or r.events:
            self.events += r.events
        self.state = r.state
        for t in r.timers:
            if t.deadline is None:
                self.timers.pop(t.key, None)
            else:
                self.timers[t.key] = t.deadline
        assert durable(self.state) == fold(self.events)
        return r

    def fire(self, now):
        for key in sorted(k for k, d in self.timers.items() if d <= now):
            if self.timers.get(key, now + 1) <= now:
                del self.timers[key]
                self.take(on_timer(self.state, key, now))


# --- the corpus capture, every peer on 2427 -----------------------------------

def _capture():
    scapy = pytest.importorskip("scapy.all")
    if not PCAP.exists():
        pytest.skip(f"corpus capture {PCAP} not present")
    out = []
    for pkt in scapy.rdpcap(str(PCAP)):
        if scapy.UDP in pkt and scapy.IP in pkt:
            ip, udp = pkt[scapy.IP], pkt[scapy.UDP]
            out.append((float(pkt.time), (ip.src, udp.sport), (ip.dst, udp.dport), bytes(udp.payload)))
    return out


def test_capture_with_call_agents_on_2427_passes_its_handshake():
    """mgcp.pcap through the node's own role decision (MgcpAdapter.context
    of what the datapath would hand over, no policy decision: as for a
    session's packets): the gateways' RSIP, the call agents' RQNT/AUEP and
    their answers pass; the 510s are the gateway's answers to RQNTs."""
    f = Flow()
    rows = []
    for ts, src, dst, data in _capture():
        f.fire(ts)
        o = SimpleNamespace(direction="none", src=src, dst=dst, nat_src=None, nat_dst=None,
                            ingress="", egress="", decision=None)
        ctx = MgcpAdapter.context(o)
        r = f.take(step(f.state, ctx, data, ts))
        rows.append((data.split(b" ", 2)[:2], r.verdict, r.reason))
    forwarded = [(w[0].decode(), int(w[1])) for w, v, _ in rows if v == "forward"]
    for msg in [("RSIP", 31656860), ("200", 31656860), ("RQNT", 1), ("510", 1), ("RQNT", 2), ("510", 2),
                ("RSIP", 262662134), ("200", 262662134), ("RSIP", 262662136), ("200", 262662136),
                ("RQNT", 80), ("200", 80), ("AUEP", 81), ("200", 81), ("RSIP", 262662135),
                ("200", 262662135)]:
        assert msg in forwarded, (msg, rows)
    # The Cisco keep-alive NTFY *@vg224 is refused for its wildcard (RFC 3435:
    # a Notify names one endpoint), as a gateway's message, not for its role.
    assert any(w[0] == b"NTFY" and v == "drop" and "does not take the wildcard" in why for w, v, why in rows)
    # 172.16.1.119 and 10.10.228.72 are the media gateways (RSIP senders).
    assert set(f.state.endpoint_counts) == {"172.16.1.119", "10.10.228.72"}


# --- a call with the call agent on 2427, through the datapath ------------------

CFG = """
set zone name untrust_subscriber
set zone name trust_ca
set address untrust_subscriber SubscriberSubNet 2.2.2.0 255.255.255.0
set address trust_ca call_agent1 10.1.1.101 255.255.255.255
set interface ethernet3 zone untrust_subscriber
set interface ethernet3 ip 2.2.2.1/24
set interface ethernet3 route
set interface ethernet4 zone trust_ca
set interface ethernet4 ip 10.1.1.2/24
set interface ethernet4 route
set policy from trust_ca to untrust_subscriber call_agent1 SubscriberSubNet mgcp-ua permit
set policy from untrust_subscriber to trust_ca SubscriberSubNet call_agent1 mgcp-ua permit
"""
CA = ("10.1.1.101", 2427)
GW = ("2.2.2.25", 2427)
SDP_CA = "v=0\no=- 1 1 IN IP4 2.2.2.80\ns=-\nc=IN IP4 2.2.2.80\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
SDP_GW = "v=0\no=- 2 2 IN IP4 2.2.2.25\ns=-\nc=IN IP4 2.2.2.25\nt=0 0\nm=audio 16000 RTP/AVP 0\n"
CALL = [
    (GW, CA, "RSIP 501 aaln/1@[2.2.2.25] MGCP 1.0\nRM: restart\n"),
    (CA, GW, "200 501 OK\n"),
    (CA, GW, "RQNT 601 aaln/1@[2.2.2.25] MGCP 1.0\nX: 1\nR: L/hd\n"),
    (GW, CA, "200 601 OK\n"),
    (GW, CA, "NTFY 502 aaln/1@[2.2.2.25] MGCP 1.0\nX: 1\nO: L/hd\n"),
    (CA, GW, "200 502 OK\n"),
    (CA, GW, "CRCX 602 aaln/1@[2.2.2.25] MGCP 1.0\nC: A1\nM: sendrecv\n\n" + SDP_CA),
    (GW, CA, "200 602 OK\nI: B2\n\n" + SDP_GW),
    (CA, GW, "MDCX 603 aaln/1@[2.2.2.25] MGCP 1.0\nC: A1\nI: B2\nM: sendrecv\n"),
    (GW, CA, "200 603 OK\n"),
    (GW, CA, "DLCX 503 aaln/1@[2.2.2.25] MGCP 1.0\nC: A1\nI: B2\nE: 900 on-hook\n"),
    (CA, GW, "250 503 OK\n"),
]


def test_call_with_the_call_agent_on_2427_through_the_datapath():
    dp = Datapath(parse_text(CFG))
    f = Flow()
    now = 100.0
    opened = set()
    for src, dst, text in CALL:
        now += 0.05
        iface = "ethernet4" if src == CA else "ethernet3"
        out = dp.process(build_udp(src[0], dst[0], src[1], dst[1], crlf(text)), iface, now)
        assert isinstance(out, Alg) and out.alg == "mgcp", (text, out)
        ctx = MgcpAdapter.context(out, dp.engine)
        r = f.take(step(f.state, ctx, out.payload, now))
        assert r.verdict == "forward", (text, r.reason)
        opened |= {p.id for p in r.pinholes_open}
        opened -= set(r.pinholes_close)
        fwd = dp.finish_alg(out, r.verdict, r.data, r.route_to, MgcpAdapter.for_datapath(r.pinholes_open),
                            r.pinholes_close, now, reason=r.reason)
        assert isinstance(fwd, Forward), (text, fwd)
        if text.startswith("200 602"):
            call = f.state.calls[("2.2.2.25", "A1")]
            assert list(call.connections) == ["B2"] and call.pinholes
    # The gateway's DLCX ended the call and closed its pinholes.
    assert not f.state.calls and not opened
    assert dict(f.state.endpoint_counts) == {"2.2.2.25": 1}


# --- the rules, one by one ----------------------------------------------------

def _ctx(src, dst, role=EITHER):
    return MgcpContext("none", src, dst, role=role)


def test_verbs_decide_commands_between_two_2427_ports():
    for text, role in (("RSIP 1 aaln/1@gw MGCP 1.0\nRM: restart\n", "gateway"),
                       ("NTFY 1 aaln/1@gw MGCP 1.0\nX: 1\nO: L/hd\n", "gateway"),
                       ("CRCX 1 aaln/1@gw MGCP 1.0\nC: 1\n", "call-agent"),
                       ("AUEP 1 aaln/1@gw MGCP 1.0\n", "call-agent"),
                       ("EPCF 1 aaln/1@gw MGCP 1.0\nB: e:mu\n", "call-agent")):
        assert sender_role(EMPTY, _ctx(CA, GW), parse_datagram(crlf(text))) == role, text
        assert sender_role(EMPTY, _ctx(GW, CA), parse_datagram(crlf(text))) == role, text


def test_responses_and_acks_follow_the_transaction_they_answer():
    f = Flow()
    f.take(step(f.state, _ctx(GW, CA), crlf("RSIP 7 aaln/1@gw MGCP 1.0\nRM: restart\n"), 1.0))
    f.take(step(f.state, _ctx(CA, GW), crlf("RQNT 7 aaln/1@gw MGCP 1.0\nX: 1\n"), 1.1))
    # Both sides have a transaction 7: each response goes with the one its
    # sender answers (the gateway answers the RQNT, the call agent the RSIP).
    assert sender_role(f.state, _ctx(GW, CA), parse_datagram(b"200 7 OK\r\n")) == "gateway"
    assert sender_role(f.state, _ctx(CA, GW), parse_datagram(b"200 7 OK\r\n")) == "call-agent"
    r = f.take(step(f.state, _ctx(CA, GW), b"200 7 OK\r\n", 1.2))
    assert r.verdict == "forward" and f.state.txns[("2.2.2.25", "gateway", 7)].code == 200
    r = f.take(step(f.state, _ctx(GW, CA), b"200 7 OK\r\n", 1.3))
    assert r.verdict == "forward" and f.state.txns[("2.2.2.25", "call-agent", 7)].code == 200
    # 000 comes from the command's sender: the gateway acknowledges the 200
    # to its RSIP.
    assert sender_role(f.state, _ctx(GW, CA), parse_datagram(b"000 7\r\n")) == "gateway"
    r = f.take(step(f.state, _ctx(GW, CA), b"000 7\r\n", 1.4))
    assert r.verdict == "forward" and ("2.2.2.25", "gateway", 7) not in f.state.txns


def test_dlcx_goes_with_the_side_that_holds_the_connection():
    f = Flow()
    f.take(step(f.state, _ctx(CA, GW), crlf("CRCX 10 aaln/1@gw MGCP 1.0\nC: C1\nM: recvonly\n"), 1.0))
    f.take(step(f.state, _ctx(GW, CA), b"200 10 OK\r\nI: D1\r\n", 1.1))
    dlcx = crlf("DLCX 11 aaln/1@gw MGCP 1.0\nC: C1\nI: D1\n")
    assert sender_role(f.state, _ctx(GW, CA), parse_datagram(dlcx)) == "gateway"
    assert sender_role(f.state, _ctx(CA, GW), parse_datagram(dlcx)) == "call-agent"
    r = f.take(step(f.state, _ctx(GW, CA), dlcx, 1.2))
    assert r.verdict == "forward" and not f.state.calls
    assert f.state.txns[("2.2.2.25", "gateway", 11)].verb == "DLCX"


def test_a_role_the_datapath_is_sure_of_is_kept():
    # To 2727 (MGCP-CA): the receiver is a call agent; a CRCX sent there is
    # refused as before, not turned into a command to a "gateway" 10.1.1.101.
    r = step(EMPTY, _ctx(GW, ("10.1.1.101", 2727), "gateway"), crlf("CRCX 1 aaln/1@gw MGCP 1.0\nC: 1\n"), 1.0)
    assert r.verdict == "drop" and "CRCX is not sent by a gateway" in r.reason
    o = SimpleNamespace(direction="none", src=GW, dst=("10.1.1.101", 2727), nat_src=None, nat_dst=None,
                        ingress="", egress="", decision=None)
    assert MgcpAdapter.role(o) == "gateway"
    o.src, o.dst = ("10.1.1.101", 2727), GW
    assert MgcpAdapter.role(o) == "call-agent"
    o.src = ("10.1.1.101", 2427)
    assert MgcpAdapter.role(o) == EITHER


def test_ambiguous_datagrams_fall_back_to_ports_then_state():
    resp = parse_datagram(b"200 99 OK\r\n")               # answers nothing known
    assert sender_role(EMPTY, _ctx(("2.2.2.25", 2427), ("10.1.1.101", 40000)), resp) == "gateway"
    assert sender_role(EMPTY, _ctx(("10.1.1.101", 40000), ("2.2.2.25", 2427)), resp) == "call-agent"
    f = Flow()
    f.take(step(f.state, _ctx(GW, CA), crlf("RSIP 1 aaln/1@gw MGCP 1.0\nRM: restart\n"), 1.0))
    f.take(step(f.state, _ctx(CA, GW), b"200 1 OK\r\n", 1.1))
    # Between two 2427 ports: the sender known as a media gateway.
    assert sender_role(f.state, _ctx(GW, CA), resp) == "gateway"
    assert sender_role(f.state, _ctx(CA, GW), resp) == "call-agent"
