"""MGCP media through a one-to-one translation keeps its port.

Manual ch. 3 "ISP-Hosted Service": the call agent relays sf_gw's descriptor
to asia_gw, and sf_gw's media leaves by the policy's ``nat src`` (the egress
interface, an address shared by every host behind it): the ALG allocates an
even/odd pair there. With a MIP for sf_gw, its media leaves as the MIP
(reverse MIP first, ``policy.Engine.decide``), which translates the address
only: the ALG keeps the port."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace

from gateway.algs import media_nat_of, one_to_one_of
from gateway.config import parse_text
from gateway.datapath import Datapath
from gateway.mgcp.alg import EMPTY, MgcpContext, step
from gateway.mgcp.state import durable, fold

CFG = (Path(__file__).resolve().parents[1] / "examples" / "ch3-isp-hosted-service.cfg").read_text()
SF_MIP = "set interface ethernet6 mip 3.3.3.120 host 2.2.2.201 netmask 255.255.255.255 vrouter trust-vr\n"
WEST_CA, CA_MIP, ASIA, SF = ("10.1.1.101", 2727), ("3.3.3.101", 2727), ("3.3.3.110", 2427), ("2.2.2.201", 2427)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def sdp(ip: str, port: int) -> str:
    return f"v=0\no=- 1 1 IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio {port} RTP/AVP 0\n"


def contexts(cfg_text: str):
    engine = Datapath(parse_text(cfg_text)).engine
    to_asia = MgcpContext("outbound", WEST_CA, ASIA, nat_src=CA_MIP, ingress="ethernet5", egress="ethernet6",
                          role="call-agent", media_nat=media_nat_of(engine, SimpleNamespace(nat_dst=None, dst=ASIA)),
                          dedicated=one_to_one_of(engine))
    to_sf = MgcpContext("none", WEST_CA, SF, ingress="ethernet5", egress="ethernet4", role="call-agent")
    from_sf = MgcpContext("none", SF, WEST_CA, ingress="ethernet4", egress="ethernet5", role="gateway")
    return to_asia, to_sf, from_sf


def relay(state, to_asia, to_sf, from_sf, cid: str, tid: int, port: int, now: float):
    """sf_gw's connection with media at ``port``, its descriptor relayed to asia_gw."""
    events = []
    for ctx, data in ((to_sf, crlf(f"CRCX {tid} aaln/1@[2.2.2.201] MGCP 1.0\nC: {cid}\nM: recvonly\n")),
                      (from_sf, crlf(f"200 {tid} OK\nI: A{tid}\n\n" + sdp("2.2.2.201", port))),
                      (to_asia, crlf(f"CRCX {tid + 1} aaln/1@[3.3.3.110] MGCP 1.0\nC: {cid}\nM: sendrecv\n\n"
                                     + sdp("2.2.2.201", port)))):
        r = step(state, ctx, data, now)
        assert r.verdict == "forward", r.reason
        state, now = r.state, now + 0.1
        events += r.events
    return r, events


def test_media_of_a_gateway_behind_a_mip_keeps_its_port():
    to_asia, to_sf, from_sf = contexts(CFG.replace("save", "") + SF_MIP)
    r, _ = relay(EMPTY, to_asia, to_sf, from_sf, "C1", 100, 4000, 1.0)
    out = r.data.decode()
    assert "c=IN IP4 3.3.3.120\r\n" in out and "m=audio 4000 " in out
    assert sorted((p.dst, p.to) for p in r.pinholes_open) == [
        (("3.3.3.120", 4000), ("2.2.2.201", 4000)), (("3.3.3.120", 4001), ("2.2.2.201", 4001))]


def test_media_behind_nat_src_still_gets_an_allocated_pair():
    to_asia, to_sf, from_sf = contexts(CFG)
    r, _ = relay(EMPTY, to_asia, to_sf, from_sf, "C1", 100, 4000, 1.0)
    out = r.data.decode()
    assert "c=IN IP4 3.3.3.10\r\n" in out and "m=audio 4000 " not in out
    pub = int(out.split("m=audio ")[1].split()[0])
    assert pub >= 20000 and (IPv4Address("3.3.3.10"), pub) in r.state.ports_in_use


def test_a_second_connection_reusing_the_port_takes_the_flow():
    to_asia, to_sf, from_sf = contexts(CFG.replace("save", "") + SF_MIP)
    r1, ev1 = relay(EMPTY, to_asia, to_sf, from_sf, "C1", 100, 4000, 1.0)
    r2, ev2 = relay(r1.state, to_asia, to_sf, from_sf, "C2", 200, 4000, 2.0)
    assert "m=audio 4000 " in r2.data.decode()
    st = r2.state
    assert durable(st) == fold(ev1 + ev2)
    first = st.calls[("3.3.3.110", "C1")]
    assert not [g for g in first.groups.values() if g.public_ip is not None]
    assert len(r2.pinholes_close) == 2
    assert any("3.3.3.120:4000" in line and "taken over" in line for line in r2.logs)
    owner = st.ports_in_use[(IPv4Address("3.3.3.120"), 4000)]
    assert st.group_index[owner] == ("3.3.3.110", "C2")
