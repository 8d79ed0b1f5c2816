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
