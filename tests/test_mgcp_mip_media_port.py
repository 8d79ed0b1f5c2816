"""MGCP media through a one-to-one translation keeps its port
(gateway/mgcp/alg_media.py ``kept_port``, the context's ``dedicated``).

Manual ch. 3 "ISP-Hosted Service": the call agent relays sf_gw's descriptor
to asia_gw, and sf_gw's media leaves by the policy's ``nat src`` (the egress
interface, an address every host behind it shares): the ALG allocates an
even/odd pair there. With a MIP for sf_gw its media leaves as the MIP
(reverse MIP first, ``policy.Engine.decide``), which translates the address
only (every port of it is sf_gw's): the ALG keeps the port, and a gateway
that reuses its RTP port for a new connection is reached on it again, the
newest pinhole answering (gateway/datapath/pinholes.py)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace

from actors.algs import MgcpAdapter
from gateway.alg_nat import dedicated_of, media_nat_of
from gateway.config import parse_text
from gateway.datapath import Datapath
from gateway.mgcp import events as ev
from gateway.mgcp.alg import EMPTY, MgcpContext, step
from gateway.mgcp.state import durable, fold

CFG = (Path(__file__).resolve().parents[1] / "examples" / "ch3-isp-hosted-service.cfg").read_text()
SF_MIP = "set interface ethernet6 mip 3.3.3.120 host 2.2.2.201 netmask 255.255.255.255 vrouter trust-vr\n"
WEST_CA, CA_MIP, ASIA, SF = ("10.1.1.101", 2727), ("3.3.3.101", 2727), ("3.3.3.110", 2427), ("2.2.2.201", 2427)
MIP = IPv4Address("3.3.3.120")


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def sdp(ip: str, port: int, rtcp: str = "") -> str:
    return f"v=0\no=- 1 1 IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio {port} RTP/AVP 0\n{rtcp}"


def contexts(cfg_text: str):
    engine = Datapath(parse_text(cfg_text)).engine
    to_asia = MgcpContext("outbound", WEST_CA, ASIA, nat_src=CA_MIP, ingress="ethernet5", egress="ethernet6",
                          role="call-agent", media_nat=media_nat_of(engine, SimpleNamespace(nat_dst=None, dst=ASIA)),
                          dedicated=dedicated_of(engine))
    to_sf = MgcpContext("none", WEST_CA, SF, ingress="ethernet5", egress="ethernet4", role="call-agent")
    from_sf = MgcpContext("none", SF, WEST_CA, ingress="ethernet4", egress="ethernet5", role="gateway")
    return to_asia, to_sf, from_sf


def relay(state, contexts, cid: str, tid: int, port: int, now: float, rtcp: str = ""):
    """sf_gw's connection with media at ``port``, its descriptor relayed to
    asia_gw: the relay's step and every event."""
    to_asia, to_sf, from_sf = contexts
    events = []
    for ctx, data in ((to_sf, crlf(f"CRCX {tid} aaln/1@[2.2.2.201] MGCP 1.0\nC: {cid}\nM: recvonly\n")),
                      (from_sf, crlf(f"200 {tid} OK\nI: A{tid}\n\n" + sdp("2.2.2.201", port, rtcp))),
                      (to_asia, crlf(f"CRCX {tid + 1} aaln/1@[3.3.3.110] MGCP 1.0\nC: {cid}\nM: sendrecv\n\n"
                                     + sdp("2.2.2.201", port, rtcp)))):
        r = step(state, ctx, data, now)
        assert r.verdict == "forward", r.reason
        state, now = r.state, now + 0.1
        events += r.events
    return r, events


def _public_groups(state, cid):
    return [g for g in state.calls[("3.3.3.110", cid)].groups.values() if g.public_ip is not None]


def test_media_of_a_gateway_behind_a_mip_keeps_its_port():
    r, _ = relay(EMPTY, contexts(CFG.replace("save", "") + SF_MIP), "C1", 100, 4000, 1.0)
    out = r.data.decode()
    assert "c=IN IP4 3.3.3.120\r\n" in out and "m=audio 4000 " in out
    assert sorted((p.dst, p.to) for p in r.pinholes_open) == [
        (("3.3.3.120", 4000), ("2.2.2.201", 4000)), (("3.3.3.120", 4001), ("2.2.2.201", 4001))]


def test_media_behind_nat_src_still_gets_an_allocated_pair():
    r, _ = relay(EMPTY, contexts(CFG), "C1", 100, 4000, 1.0)
    out = r.data.decode()
    assert "c=IN IP4 3.3.3.10\r\n" in out and "m=audio 4000 " not in out
    pub = int(out.split("m=audio ")[1].split()[0])
    assert pub >= 20000 and (IPv4Address("3.3.3.10"), pub) in r.state.ports_in_use


def test_rtcp_elsewhere_still_gets_an_allocated_pair():
    # RTCP not on the next port of the same host (a=rtcp, RFC 3605): the
    # public pair is allocated as for a shared address.
    r, _ = relay(EMPTY, contexts(CFG.replace("save", "") + SF_MIP), "C1", 100, 4000, 1.0,
                 rtcp="a=rtcp:4010\n")
    out = r.data.decode()
    assert "c=IN IP4 3.3.3.120\r\n" in out and "m=audio 4000 " not in out


def test_a_second_connection_reusing_the_port_shares_it_and_the_newest_owns_it():
    ctxs = contexts(CFG.replace("save", "") + SF_MIP)
    r1, ev1 = relay(EMPTY, ctxs, "C1", 100, 4000, 1.0)
    r2, ev2 = relay(r1.state, ctxs, "C2", 200, 4000, 2.0)
    assert "m=audio 4000 " in r2.data.decode()
    st = r2.state
    assert durable(st) == fold(ev1 + ev2)
    # Both connections keep the pair; the older's pinholes stay open.
    assert not r2.pinholes_close
    (g1,), (g2,) = _public_groups(st, "C1"), _public_groups(st, "C2")
    assert (g1.public_ip, g1.public_port) == (g2.public_ip, g2.public_port) == ("3.3.3.120", 4000)
    assert st.ports_in_use[(MIP, 4000)] == st.ports_in_use[(MIP, 4001)] == g2.group
    # The older group's release leaves the newest owning the pair; the
    # newest's release frees it.
    after = fold([ev.MediaReleased("3.3.3.110", "C1", g1.group, "test")], st)
    assert after.ports_in_use[(MIP, 4000)] == g2.group
    after = fold([ev.MediaReleased("3.3.3.110", "C2", g2.group, "test")], after)
    assert (MIP, 4000) not in after.ports_in_use and (MIP, 4001) not in after.ports_in_use


def test_the_mgcp_context_knows_which_public_addresses_are_a_mip():
    engine = Datapath(parse_text(CFG.replace("save", "") + SF_MIP)).engine
    o = SimpleNamespace(direction="outbound", src=WEST_CA, dst=ASIA, nat_src=CA_MIP, nat_dst=None,
                        ingress="ethernet5", egress="ethernet6", dport=ASIA[1], sport=WEST_CA[1])
    dedicated = MgcpAdapter.context(o, engine).dedicated
    assert dedicated("3.3.3.120") is True and dedicated("3.3.3.101") is True
    assert dedicated("3.3.3.10") is False and dedicated("2.2.2.201") is False
    assert MgcpAdapter.context(o).dedicated is None
