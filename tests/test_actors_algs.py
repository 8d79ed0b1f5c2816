"""The node's ALG adapters (actors/algs.py): the MGCP context built from the
datapath's decision, with the NAT of relayed media descriptors."""

from __future__ import annotations

from pathlib import Path

from actors.algs import MgcpAdapter
from gateway.config import load_file
from gateway.datapath import Alg, Datapath
from gateway.packet import build_udp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _dp() -> Datapath:
    return Datapath(load_file(EXAMPLES / "ch3-isp-hosted-service.cfg"))


def test_outbound_call_agent_command_knows_the_nat_of_relayed_gateway_media():
    # Manual ch. 3 "ISP-Hosted Service": west_ca (behind MIP 3.3.3.101) sends
    # asia_gw an MDCX carrying sf_gw's descriptor; sf_gw's traffic to asia_gw
    # leaves by "nat src" from the egress interface 3.3.3.10.
    dp = _dp()
    out = dp.process(build_udp("10.1.1.101", "3.3.3.110", 2727, 2427,
                               b"AUEP 1 rtpbridge/1@mgw MGCP 1.0\r\n"), "ethernet5", 0.0)
    assert isinstance(out, Alg) and out.direction == "outbound"
    ctx = MgcpAdapter.context(out, dp.engine)
    assert ctx.role == "call-agent" and ctx.media_nat is not None
    assert ctx.media_nat("2.2.2.201") == "3.3.3.10"
    # A host in the DMZ leaves by its MIP; asia_gw's own address has no NAT
    # toward itself; a hostname is no address.
    assert ctx.media_nat("10.1.1.101") == "3.3.3.101"
    assert ctx.media_nat("3.3.3.110") is None
    assert ctx.media_nat("sf-gw.example") is None
    # Without the engine (or not outbound) there is nothing to ask.
    assert MgcpAdapter.context(out).media_nat is None


def test_no_media_nat_for_messages_that_are_not_source_translated():
    dp = _dp()
    out = dp.process(build_udp("10.1.1.101", "2.2.2.201", 2727, 2427,
                               b"AUEP 1 aaln/1@[2.2.2.201] MGCP 1.0\r\n"), "ethernet5", 0.0)
    assert isinstance(out, Alg) and out.direction == "none"
    assert MgcpAdapter.context(out, dp.engine).media_nat is None


def _invite(c_addr: str) -> bytes:
    body = (f"v=0\r\no=p2 1 1 IN IP4 1.1.1.4\r\ns=-\r\nc=IN IP4 {c_addr}\r\nt=0 0\r\n"
            "m=audio 40000 RTP/AVP 0\r\n").encode()
    head = ("INVITE sip:phone1@1.1.1.5 SIP/2.0\r\nVia: SIP/2.0/UDP 1.1.1.4:5060;branch=z9hG4bKx\r\n"
            "From: <sip:phone2@1.1.1.4>;tag=f\r\nTo: <sip:phone1@1.1.1.5>\r\nCall-ID: third@1.1.1.4\r\n"
            "CSeq: 1 INVITE\r\nContact: <sip:phone2@1.1.1.4:5060>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def test_sdp_naming_a_host_behind_the_gateway_opens_no_pinhole_to_it():
    """An outside caller's SDP that names an inside host (here the trust
    zone's 10.1.1.99) must not open a path to it from anywhere; its own
    address (1.1.1.4, the untrust side) gets the media pinholes as usual."""
    from gateway.sip.alg import EMPTY, step
    from actors.algs import SipAdapter
    dp = Datapath(load_file(EXAMPLES / "ch2-incoming-call-with-mip.cfg"))
    for c_addr, opened in (("10.1.1.99", False), ("1.1.1.4", True)):
        out = dp.process(build_udp("1.1.1.4", "1.1.1.5", 5060, 5060, _invite(c_addr)), "ethernet3", 0.0)
        assert isinstance(out, Alg) and out.egress == "ethernet1"
        ctx = SipAdapter.context(out, dp.engine)
        assert ctx.far_side is not None
        r = step(EMPTY, ctx, out.payload, 0.0)
        assert r.verdict == "forward"
        media = [p for p in r.pinholes_open if p.kind == "media"]
        assert bool(media) is opened
        if not opened:
            assert any("no media pinhole to 10.1.1.99" in line for line in r.logs)
        assert all((p.to or p.dst)[0] != "10.1.1.99" for p in r.pinholes_open)
