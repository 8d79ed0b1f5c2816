"""MGCP ALG core: the manual's Table 3 examples and "200 1204 OK" response
driven through step (chapter 3, "MGCP Protocol"), transactions and
retransmissions, out-of-state drops, endpoints in and out of service, the
notified entity, wildcards, NAT and pinholes in the "ISP-Hosted Service"
topology, and the timers."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from gateway.config.model import MgcpSettings
from gateway.mgcp import events as ev
from gateway.mgcp.alg import EMPTY, MgcpContext, media_activity, on_timer, step
from gateway.mgcp.state import durable, fold
from gateway.mgcp.transitions import COMMANDS, RESPONSES


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# --- the manual's Table 3 (as in tests/test_mgcp_parse.py) --------------------
SDP_CRCX = ("v=0\no=- 25678 753849 IN IP4 128.96.41.1\ns=-\nc=IN IP4 128.96.41.1\nt=0 0\n"
            "m=audio 3456 RTP/AVP 0\n")
CRCX = ("CRCX 1205 aaln/1@gw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nL: p:10, a:PCMU\nM: sendrecv\n"
        "X: 0123456789AD\nR: L/hd\nS: L/rg\n\n" + SDP_CRCX)
MDCX = ("MDCX 1210 aaln/1@rgw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\nM: recvonly\n"
        "X: 0123456789AE\nR: L/hu\nS: G/rt\n\nv=0\no=- 4723891 7428910 IN IP4 128.96.63.25\ns=-\n"
        "c=IN IP4 128.96.63.25\nt=0 0\nm=audio 3456 RTP/AVP 0\n")
DLCX1 = "DLCX 9210 aaln/1@rgw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\n"
DLCX2 = ("DLCX 9310 aaln/1@rgw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\n"
         "E: 900 - Hardware error\nP: PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48\n")
EPCF = "EPCF 2012 wxx/T2@mynet.com MGCP 1.0\nB: e:mu\n"
RQNT = ("RQNT 1205 aaln/1@rgw-25.att.net MGCP 1.0\nN: ca-new@callagent-ca.att.net\nX: 0123456789AA\n"
        "R: L/hd(A, E(S(L/dl),R(L/oc,L/hu,D/[0-9#*T](D))))\nD: (0T|00T|xx|91xxxxxxxxxx|9011x.T)\nS:\n"
        "T: G/ft\n")
NTFY = ("NTFY 2002 aaln/1@rgw-25.att.net MGCP 1.0\nN: ca@ca1.att.net:5678\nX: 0123456789AC\n"
        "O: L/hd,D/9,D/1,D/2,D/0,D/1,D/8,D/2,D/9,D/4,D/2,D/6,D/6\n")
AUEP1 = "AUEP 1201 aaln/1@rgw-25.att.net MGCP 1.0\nF: A, R,D,S,X,N,I,T,O\n"
AUEP2 = "AUEP 1200 *@rgw-25.att.net MGCP 1.0\n"
AUCX = "AUCX 3003 aaln/1@rgw-25.att.net MGCP 1.0\nI: 32F345E2\nF: C,N,L,M,LC,P\n"
RSIP = "RSIP 5200 aaln/1@rg2-25.att.net MGCP 1.0\nRM: graceful\nRD: 300\n"
RESP_SDP = ("v=0\no=- 25678 753849 IN IP4 128.96.41.1\ns=-\nc=IN IP4 128.96.41.1\nt=0 0\n"
            "m=audio 3456 RTP/AVP 96\na=rtpmap:96 G726-32/8000\n")


def resp(code: int, tid: int, extra: str = "", sdp: str = "", comment: str = "OK") -> bytes:
    text = f"{code} {tid} {comment}\n{extra}"
    if sdp:
        text += "\n" + sdp
    return crlf(text)


# A call agent and a gateway with no NAT between them (route mode, the
# manual's "Media Gateway in Subscribers' Homes").
CA_ADDR = ("10.1.1.101", 2727)
GW_ADDR = ("2.2.2.25", 2427)
CA_CMD = MgcpContext("none", CA_ADDR, GW_ADDR, role="call-agent")
GW_MSG = MgcpContext("none", GW_ADDR, CA_ADDR, role="gateway")


class Flow:
    """Drives step and checks the event-sourcing rule on every result."""

    def __init__(self, settings: MgcpSettings = MgcpSettings()) -> None:
        self.state = EMPTY
        self.events: list = []
        self.now = 1000.0
        self.settings = settings

    def send(self, ctx: MgcpContext, data: bytes, dt: float = 0.01):
        self.now += dt
        r = step(self.state, ctx, data, self.now, self.settings)
        self._take(r)
        return r

    def _take(self, r):
        if r.verdict == "forward" or r.events:
            self.events += r.events
        self.state = r.state
        assert durable(self.state) == fold(self.events)
        return r

    def timer(self, key: str, at: float):
        self.now = at
        return self._take(on_timer(self.state, key, at, self.settings))


def call_of(state, gw="2.2.2.25", cid="A3C47F21456789F0"):
    return state.calls.get((gw, cid))


# --- Table 3 through step -------------------------------------------------------

def test_table3_call_lifecycle_crcx_response_mdcx_dlcx():
    f = Flow()
    r = f.send(CA_CMD, crlf(CRCX))
    assert r.verdict == "forward" and r.data == crlf(CRCX)      # no NAT: byte-identical
    assert {type(e) for e in r.events} >= {ev.CallStarted, ev.TransactionStarted, ev.MediaBound,
                                           ev.PinholeOpened}
    # The remote descriptor 128.96.41.1:3456 is where the gateway sends media:
    # one group, RTP and RTCP.
    assert sorted(p.dst for p in r.pinholes_open) == [("128.96.41.1", 3456), ("128.96.41.1", 3457)]
    assert len({p.group for p in r.pinholes_open}) == 1
    assert any(t.key == "mgcp-txn/2.2.2.25/call-agent/1205" and t.deadline == pytest.approx(f.now + 30)
               for t in r.timers)
    # The manual's "200 1204 OK" response, as the answer of this CRCX (1205).
    r = f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    assert r.verdict == "forward" and r.route_to is None      # addressed to the command's source
    call = call_of(f.state)
    assert list(call.connections) == ["FDE234C8"]
    assert f.state.conn_index[("2.2.2.25", "FDE234C8")] == "A3C47F21456789F0"
    assert {g.conn_id for g in call.groups.values()} == {"FDE234C8"}
    assert {g.side for g in call.groups.values()} == {"remote", "local"}
    # MDCX changes the remote media: the old group's pinholes close, new ones open.
    remote = {g.group for g in call.groups.values() if g.side == "remote"}
    old = {p.id for p in call.pinholes.values() if p.group in remote}
    r = f.send(CA_CMD, crlf(MDCX))
    assert r.verdict == "forward"
    assert sorted(p.dst for p in r.pinholes_open) == [("128.96.63.25", 3456), ("128.96.63.25", 3457)]
    assert set(r.pinholes_close) == old
    assert f.send(GW_MSG, resp(200, 1210)).verdict == "forward"
    # AUCX of an unknown connection (32F345E2 is not this call's) is dropped...
    r = f.send(CA_CMD, crlf(AUCX))
    assert r.verdict == "drop" and "unknown connection 32F345E2" in r.reason
    assert "stateful inspection at the UDP packet, transaction and call level" in r.reason
    # ...and of the live one passes.
    r = f.send(CA_CMD, crlf(AUCX.replace("32F345E2", "FDE234C8")))
    assert r.verdict == "forward"
    # DLCX from the call agent (example 1) closes every pinhole and ends the call.
    holes = set(call_of(f.state).pinholes)
    r = f.send(CA_CMD, crlf(DLCX1))
    assert r.verdict == "forward" and set(r.pinholes_close) == holes and not r.pinholes_open
    assert call_of(f.state) is None and not f.state.ports_in_use and not f.state.conn_index
    assert f.send(GW_MSG, resp(250, 9210)).verdict == "forward"
    # Example 2 (the gateway's DLCX) now names a connection that is gone.
    r = f.send(GW_MSG, crlf(DLCX2))
    assert r.verdict == "drop" and "unknown connection FDE234C8" in r.reason


def test_dlcx_from_the_gateway_with_reason_closes_the_connection():
    f = Flow()
    f.send(CA_CMD, crlf(CRCX))
    f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    holes = set(call_of(f.state).pinholes)
    r = f.send(GW_MSG, crlf(DLCX2))
    assert r.verdict == "forward" and set(r.pinholes_close) == holes
    ended = [e for e in r.events if isinstance(e, ev.ConnectionDeleted)]
    assert ended and "900 - Hardware error" in ended[0].reason and "gateway" in ended[0].reason
    assert call_of(f.state) is None
    assert f.send(CA_CMD, resp(250, 9310)).verdict == "forward"


def test_dlcx_by_call_id_deletes_every_connection_of_the_call_on_the_endpoint():
    f = Flow()
    f.send(CA_CMD, crlf(CRCX))
    f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    f.send(CA_CMD, crlf(CRCX.replace("1205", "1206").replace("3456", "4000")))
    f.send(GW_MSG, resp(200, 1206, "I: FDE234C9\n"))
    assert len(call_of(f.state).connections) == 2
    r = f.send(CA_CMD, crlf("DLCX 1300 aaln/1@gw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\n"))
    assert r.verdict == "forward" and call_of(f.state) is None
    r = f.send(CA_CMD, crlf("DLCX 1301 aaln/1@gw-25.att.net MGCP 1.0\nC: A3C47F21456789F1\n"))
    assert r.verdict == "drop" and "unknown call" in r.reason


def test_other_table3_commands_pass_with_their_responses():
    f = Flow()
    for text, tid in ((EPCF, 2012), (RQNT, 1205), (AUEP1, 1201), (AUEP2, 1200)):
        r = f.send(CA_CMD, crlf(text))
        assert r.verdict == "forward", (text, r.reason)
        assert f.send(GW_MSG, resp(200, tid)).verdict == "forward"
    # The RQNT's N: set the notified entity of its endpoint (a domain name).
    ep = f.state.endpoints[("2.2.2.25", "aaln/1@rgw-25.att.net")]
    assert ep.notified_entity == "ca-new@callagent-ca.att.net" and ep.notified_source == "N:"
    r = f.send(GW_MSG, crlf(NTFY))
    assert r.verdict == "forward"
    assert f.send(CA_CMD, resp(200, 2002)).verdict == "forward"


def test_rsip_takes_endpoints_out_of_and_back_into_service():
    f = Flow()
    forced = "RSIP 7000 aaln/1@gw-25.att.net MGCP 1.0\nRM: forced\n"
    assert f.send(GW_MSG, crlf(forced)).verdict == "forward"
    f.send(CA_CMD, resp(200, 7000))
    r = f.send(CA_CMD, crlf(CRCX))
    assert r.verdict == "drop" and "out of service" in r.reason and call_of(f.state) is None
    # AUEP still passes to an endpoint out of service (RFC 3435 2.3.10).
    assert f.send(CA_CMD, crlf("AUEP 7001 aaln/1@gw-25.att.net MGCP 1.0\n")).verdict == "forward"
    back = "RSIP 7002 aaln/1@gw-25.att.net MGCP 1.0\nRM: restart\n"
    assert f.send(GW_MSG, crlf(back)).verdict == "forward"
    assert f.send(CA_CMD, crlf(CRCX)).verdict == "forward"


def test_rsip_graceful_with_delay_and_wildcard():
    f = Flow()
    # The manual's RSIP example: graceful, out of service in 300 s.
    assert f.send(GW_MSG, crlf(RSIP.replace("rg2-25", "gw-25"))).verdict == "forward"
    assert f.send(CA_CMD, crlf(EPCF.replace("wxx/T2@mynet.com", "aaln/1@gw-25.att.net"))).verdict == "forward"
    f.now += 301
    r = f.send(CA_CMD, crlf(CRCX))
    assert r.verdict == "drop" and "out of service" in r.reason
    # A wildcard restart of the whole gateway brings it back (latest RSIP wins).
    assert f.send(GW_MSG, crlf("RSIP 5201 *@gw-25.att.net MGCP 1.0\nRM: restart\n")).verdict == "forward"
    assert f.send(CA_CMD, crlf(CRCX)).verdict == "forward"
    # ...and a forced wildcard one takes every endpoint under it out.
    assert f.send(GW_MSG, crlf("RSIP 5202 aaln/*@gw-25.att.net MGCP 1.0\nRM: forced\n")).verdict == "forward"
    r = f.send(CA_CMD, crlf(RQNT.replace("rgw-25", "gw-25").replace("1205", "1299")))
    assert r.verdict == "drop" and "out of service" in r.reason


# --- transactions --------------------------------------------------------------

def test_retransmissions_pass_and_are_not_new_state():
    f = Flow()
    first = f.send(CA_CMD, crlf(CRCX))
    again = f.send(CA_CMD, crlf(CRCX))
    assert again.verdict == "forward" and not again.events and again.data == first.data
    f.send(GW_MSG, resp(100, 1205, comment="pending"))           # provisional
    r = f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    assert r.verdict == "forward"
    # The final response again (the command was retransmitted): passes, no events.
    r = f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    assert r.verdict == "forward" and not r.events
    # A different final response to an answered command is out of state.
    r = f.send(GW_MSG, resp(510, 1205))
    assert r.verdict == "drop" and "after final response 200" in r.reason
    # The same transaction id with another command is refused.
    r = f.send(CA_CMD, crlf(RQNT.replace("1205", "1205", 1).replace("rgw-25", "gw-25")))
    assert r.verdict == "drop" and "already in use by CRCX" in r.reason
    # Response acknowledgement (000) by the command's sender ends the transaction.
    r = f.send(CA_CMD, crlf("000 1205\n"))
    assert r.verdict == "forward" and ("2.2.2.25", "call-agent", 1205) not in f.state.txns
    r = f.send(CA_CMD, crlf("000 1205\n"))
    assert r.verdict == "drop" and "to no command" in r.reason


def test_response_to_no_command_and_wrong_direction_are_dropped():
    f = Flow()
    r = f.send(GW_MSG, resp(200, 4242))
    assert r.verdict == "drop" and "response 200 4242 to no command" in r.reason
    # A response from the side that sent the command is not its answer.
    f.send(CA_CMD, crlf(EPCF.replace("wxx/T2@mynet.com", "aaln/1@gw-25.att.net")))
    r = f.send(CA_CMD, resp(200, 2012))
    assert r.verdict == "drop"
    # A CRCX sent by a gateway, an RSIP by a call agent: not in the table.
    r = f.send(GW_MSG, crlf(CRCX))
    assert r.verdict == "drop" and "CRCX is not sent by a gateway" in r.reason
    r = f.send(CA_CMD, crlf(RSIP))
    assert r.verdict == "drop" and "RSIP is not sent by a call-agent" in r.reason


def test_out_of_state_mdcx_dlcx_aucx_for_unknown_connections():
    f = Flow()
    for text in (MDCX, DLCX1, AUCX):
        r = f.send(CA_CMD, crlf(text))
        assert r.verdict == "drop" and "unknown connection" in r.reason, text
    assert f.state == EMPTY.__class__(flood=f.state.flood)


def test_crcx_failure_releases_its_media_and_the_call():
    f = Flow()
    r = f.send(CA_CMD, crlf(CRCX))
    holes = {p.id for p in r.pinholes_open}
    r = f.send(GW_MSG, resp(510, 1205, comment="Protocol Error"))
    assert r.verdict == "forward" and set(r.pinholes_close) == holes
    assert call_of(f.state) is None


def test_crcx_success_without_connection_id_is_dropped():
    f = Flow()
    f.send(CA_CMD, crlf(CRCX))
    r = f.send(GW_MSG, resp(200, 1205))
    assert r.verdict == "drop" and "without a connection id" in r.reason


def test_wildcards_where_rfc3435_allows_them():
    f = Flow()
    r = f.send(CA_CMD, crlf(CRCX.replace("aaln/1@", "*@")))
    assert r.verdict == "drop" and "wildcard" in r.reason
    # "$": the gateway picks the endpoint and names it in Z: (RFC 3435 2.3.5).
    r = f.send(CA_CMD, crlf(CRCX.replace("aaln/1@", "aaln/$@")))
    assert r.verdict == "forward"
    r = f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\nZ: aaln/3@gw-25.att.net\n"))
    assert r.verdict == "forward"
    assert call_of(f.state).connections["FDE234C8"].endpoint == "aaln/3@gw-25.att.net"
    r = f.send(CA_CMD, crlf(MDCX.replace("aaln/1@", "aaln/*@")))
    assert r.verdict == "drop" and "wildcard" in r.reason
    for text in (AUEP2, "RQNT 77 *@gw-25.att.net MGCP 1.0\nX: 1\n", "DLCX 78 *@gw-25.att.net MGCP 1.0\n"):
        assert f.send(CA_CMD, crlf(text)).verdict == "forward", text
    # The wildcard DLCX deleted every connection of the gateway.
    assert call_of(f.state) is None


def test_malformed_datagram_is_dropped_with_the_parser_reason():
    r = step(EMPTY, CA_CMD, b"CRCX 1 MGCP\r\n", 0.0)
    assert r.verdict == "drop" and r.reason.startswith("malformed MGCP message") and r.state is EMPTY


# --- notified entity -------------------------------------------------------------

def test_notified_entity_defaults_to_source_of_last_successful_non_audit_command():
    f = Flow()
    name = ("2.2.2.25", "aaln/1@gw-25.att.net")
    f.send(CA_CMD, crlf("AUEP 10 aaln/1@gw-25.att.net MGCP 1.0\n"))
    f.send(GW_MSG, resp(200, 10))
    assert name not in f.state.endpoints                    # an audit does not set it
    f.send(CA_CMD, crlf("RQNT 11 aaln/1@gw-25.att.net MGCP 1.0\nX: 1\n"))
    assert name not in f.state.endpoints                    # not before it succeeds
    f.send(GW_MSG, resp(200, 11))
    ep = f.state.endpoints[name]
    assert (ep.notified_entity, ep.notified_source) == ("10.1.1.101:2727", "command")
    # NTFY must go to the notified entity.
    ntfy = "NTFY 20 aaln/1@gw-25.att.net MGCP 1.0\nX: 1\nO: L/hd\n"
    assert f.send(GW_MSG, crlf(ntfy)).verdict == "forward"
    other = MgcpContext("none", GW_ADDR, ("10.1.1.102", 2727), role="gateway")
    r = f.send(other, crlf(ntfy.replace(" 20 ", " 21 ")))
    assert r.verdict == "drop" and "notified entity 10.1.1.101:2727" in r.reason
    # N: changes it; then a command from another call agent does not.
    f.send(CA_CMD, crlf("RQNT 12 aaln/1@gw-25.att.net MGCP 1.0\nN: ca@[10.1.1.102]:2727\nX: 2\n"))
    f.send(GW_MSG, resp(200, 12))
    assert f.state.endpoints[name].notified_entity == "10.1.1.102:2727"
    assert f.send(other, crlf(ntfy.replace(" 20 ", " 22 "))).verdict == "forward"
    ca3 = MgcpContext("none", ("10.1.1.103", 2727), GW_ADDR, role="call-agent")
    f.send(ca3, crlf("RQNT 13 aaln/1@gw-25.att.net MGCP 1.0\nX: 3\n"))
    r = f.send(MgcpContext("none", GW_ADDR, ("10.1.1.103", 2727), role="gateway"), resp(200, 13))
    assert r.verdict == "forward" and r.route_to is None
    assert f.state.endpoints[name].notified_entity == "10.1.1.102:2727"


def test_response_route_is_the_command_source_not_the_notified_entity():
    f = Flow()
    ca2 = MgcpContext("none", ("10.1.1.102", 2727), GW_ADDR, role="call-agent")
    f.send(ca2, crlf(AUEP1))
    r = f.send(GW_MSG, resp(200, 1201))                     # addressed to 10.1.1.101
    assert r.verdict == "forward" and r.route_to == ("10.1.1.102", 2727)
    assert any("came from 10.1.1.102:2727" in line for line in r.logs)


# --- NAT: the manual's "ISP-Hosted Service" ----------------------------------------
# west_ca 10.1.1.101 (DMZ) behind MIP 3.3.3.101 on ethernet6 (untrust, 3.3.3.10);
# asia_gw 3.3.3.110 (untrust); sf_gw 2.2.2.201 (trust, route mode to the DMZ);
# "set policy from trust to untrust sf_gw asia_gw mgcp-ua nat src": sf_gw's
# media leaves by the egress interface address 3.3.3.10.
WEST_CA = ("10.1.1.101", 2727)
CA_MIP = ("3.3.3.101", 2727)
ASIA = ("3.3.3.110", 2427)
SF = ("2.2.2.201", 2427)
EGRESS = "3.3.3.10"


def _media_nat(host: str) -> str | None:
    return EGRESS if host == SF[0] else None


CA_TO_ASIA = MgcpContext("outbound", WEST_CA, ASIA, nat_src=CA_MIP, ingress="ethernet5", egress="ethernet6",
                         role="call-agent", media_nat=_media_nat)
ASIA_TO_CA = MgcpContext("inbound", ASIA, CA_MIP, nat_dst=WEST_CA, ingress="ethernet6", egress="ethernet5",
                         role="gateway")
CA_TO_SF = MgcpContext("none", WEST_CA, SF, ingress="ethernet5", egress="ethernet4", role="call-agent")
SF_TO_CA = MgcpContext("none", SF, WEST_CA, ingress="ethernet4", egress="ethernet5", role="gateway")


def sdp(ip: str, port: int, origin: str | None = None) -> str:
    return (f"v=0\no=- 1 1 IN IP4 {origin or ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\n"
            f"m=audio {port} RTP/AVP 0\n")


def test_isp_hosted_call_between_sf_gw_and_asia_gw():
    f = Flow()
    cid = "B1C2D3"
    # 1. The call agent creates sf_gw's connection (no NAT between DMZ and trust).
    r = f.send(CA_TO_SF, crlf(f"CRCX 100 aaln/1@[2.2.2.201] MGCP 1.0\nC: {cid}\n"
                              "N: ca@[10.1.1.101]:2727\nM: recvonly\n"))
    assert r.verdict == "forward" and r.data.count(b"10.1.1.101") == 1
    r = f.send(SF_TO_CA, resp(200, 100, "I: 5F01\n", sdp("2.2.2.201", 4000)))
    assert r.verdict == "forward" and r.route_to is None
    assert [p.dst for p in r.pinholes_open] == [("2.2.2.201", 4000), ("2.2.2.201", 4001)]
    # 2. CRCX to asia_gw with sf_gw's descriptor: leaves by the MIP; the call
    # agent's N: becomes the MIP, sf_gw's media address the egress interface
    # with an ALG even/odd pair.
    r = f.send(CA_TO_ASIA, crlf(f"CRCX 101 aaln/1@[3.3.3.110] MGCP 1.0\nC: {cid}\n"
                                "N: ca@[10.1.1.101]:2727\nM: sendrecv\n\n" + sdp("2.2.2.201", 4000)))
    assert r.verdict == "forward"
    out = r.data.decode()
    assert "N: ca@[3.3.3.101]:2727" in out and "10.1.1.101" not in out and "2.2.2.201" not in out
    assert "c=IN IP4 3.3.3.10\r\n" in out and "o=- 1 1 IN IP4 3.3.3.10\r\n" in out
    pub = int(out.split("m=audio ")[1].split()[0])
    assert pub % 2 == 0
    assert sorted((p.direction, p.dst, p.to) for p in r.pinholes_open) == [
        ("inbound", (EGRESS, pub), ("2.2.2.201", 4000)),
        ("inbound", (EGRESS, pub + 1), ("2.2.2.201", 4001))]
    assert (IPv4Address(EGRESS), pub) in f.state.ports_in_use
    # 3. asia_gw answers the command's source as it saw it (the MIP): no
    # rerouting, the MIP's NAT takes it on; its own public media needs no
    # translation.
    r = f.send(ASIA_TO_CA, resp(200, 101, "I: A5A5\n", sdp("3.3.3.110", 5000)))
    assert r.verdict == "forward" and r.route_to is None and r.data == resp(200, 101, "I: A5A5\n",
                                                                            sdp("3.3.3.110", 5000))
    assert sorted(p.dst for p in r.pinholes_open) == [("3.3.3.110", 5000), ("3.3.3.110", 5001)]
    # The notified entity of asia_gw's endpoint is the MIP (its side of the NAT).
    assert f.state.endpoints[("3.3.3.110", "aaln/1@[3.3.3.110]")].notified_entity == "3.3.3.101:2727"
    # asia_gw's NTFY to the MIP passes and is translated to the call agent.
    r = f.send(ASIA_TO_CA, crlf("NTFY 900 aaln/1@[3.3.3.110] MGCP 1.0\nX: 1\nO: L/hu\n"))
    assert r.verdict == "forward"
    # 4. MDCX to sf_gw with asia_gw's descriptor: public, no NAT.
    r = f.send(CA_TO_SF, crlf(f"MDCX 102 aaln/1@[2.2.2.201] MGCP 1.0\nC: {cid}\nI: 5F01\nM: sendrecv\n\n"
                              + sdp("3.3.3.110", 5000)))
    assert r.verdict == "forward" and sorted(p.dst for p in r.pinholes_open) == [
        ("3.3.3.110", 5000), ("3.3.3.110", 5001)]
    # 5. MDCX to asia_gw moving sf_gw's media: the old pair is freed, a new one bound.
    r = f.send(CA_TO_ASIA, crlf(f"MDCX 103 aaln/1@[3.3.3.110] MGCP 1.0\nC: {cid}\nI: A5A5\n\n"
                                + sdp("2.2.2.201", 4100)))
    assert r.verdict == "forward" and len(r.pinholes_close) == 2
    assert sorted(p.to for p in r.pinholes_open) == [("2.2.2.201", 4100), ("2.2.2.201", 4101)]
    new = int(r.data.decode().split("m=audio ")[1].split()[0])
    assert set(f.state.ports_in_use) == {(IPv4Address(EGRESS), new), (IPv4Address(EGRESS), new + 1)}
    # 6. DLCX of both connections: everything closes, every port is free.
    assert f.send(CA_TO_ASIA, crlf(f"DLCX 104 aaln/1@[3.3.3.110] MGCP 1.0\nC: {cid}\nI: A5A5\n")).verdict == "forward"
    assert f.send(ASIA_TO_CA, resp(250, 104)).verdict == "forward"
    assert f.send(SF_TO_CA, crlf(f"DLCX 901 aaln/1@[2.2.2.201] MGCP 1.0\nC: {cid}\nI: 5F01\n"
                                 "E: 900 - Hardware error\n")).verdict == "forward"
    assert not f.state.calls and not f.state.ports_in_use and not f.state.group_index


def test_gateway_behind_nat_response_sdp_gets_a_public_pair():
    # A residential gateway 192.168.1.20 behind interface NAT (public
    # 1.1.1.1:40000) answering a CRCX: its own address in the Z: endpoint,
    # o= and c= becomes public, its RTP port an ALG pair.
    priv, pub_sig, ca = ("192.168.1.20", 2427), ("1.1.1.1", 40000), ("5.5.5.5", 2727)
    gw_out = MgcpContext("outbound", priv, ca, nat_src=pub_sig, role="gateway")
    ca_in = MgcpContext("inbound", ca, pub_sig, nat_dst=priv, role="call-agent")
    f = Flow()
    r = f.send(ca_in, crlf("CRCX 1 aaln/1@[1.1.1.1] MGCP 1.0\nC: 77\nM: recvonly\n"))
    assert r.verdict == "forward" and b"aaln/1@[192.168.1.20]" in r.data
    assert ("192.168.1.20", "77") in f.state.calls
    r = f.send(gw_out, resp(200, 1, "I: 1\nZ: aaln/1@[192.168.1.20]\n", sdp("192.168.1.20", 16384)))
    assert r.verdict == "forward" and r.route_to is None
    text = r.data.decode()
    assert "192.168.1" not in text and "Z: aaln/1@[1.1.1.1]" in text
    port = int(text.split("m=audio ")[1].split()[0])
    assert sorted((p.dst, p.to) for p in r.pinholes_open) == [
        (("1.1.1.1", port), ("192.168.1.20", 16384)), (("1.1.1.1", port + 1), ("192.168.1.20", 16385))]
    # An inbound description naming the ALG's pair is given back the private one.
    r = f.send(ca_in, crlf("MDCX 2 aaln/1@[1.1.1.1] MGCP 1.0\nC: 77\nI: 1\n\n" + sdp("1.1.1.1", port)))
    assert r.verdict == "forward"
    assert f"c=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 16384 " in r.data.decode()


# --- timers ------------------------------------------------------------------------

def test_transaction_timeout_forgets_the_transaction_and_a_pending_crcx():
    f = Flow()
    r = f.send(CA_CMD, crlf(CRCX))
    key = "mgcp-txn/2.2.2.25/call-agent/1205"
    (deadline,) = [t.deadline for t in r.timers if t.key == key]
    r = f.timer(key, deadline - 1)
    assert not r.events and (("2.2.2.25", "call-agent", 1205) in f.state.txns)
    r = f.timer(key, deadline)
    assert ("2.2.2.25", "call-agent", 1205) not in f.state.txns
    assert call_of(f.state) is None and len(r.pinholes_close) == 2
    r = f.send(GW_MSG, resp(200, 1205, "I: 1\n"))
    assert r.verdict == "drop" and "to no command" in r.reason


def test_media_inactivity_and_max_call_duration():
    s = MgcpSettings(inactive_media_timeout=120, max_call_duration=1000)
    f = Flow(s)
    f.send(CA_CMD, crlf(CRCX))
    f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    stream = "mgcp-call/2.2.2.25/A3C47F21456789F0"
    call = call_of(f.state)
    # Media seen on every group keeps the call; the deadline moves.
    for t in (100.0, 200.0, 300.0):
        for g in list(call_of(f.state).groups):
            r = media_activity(f.state, g, call.started_at + t, s)
            f._take(r)
            assert r.timers[0].key == stream
    assert f.timer(stream, call.started_at + 301).events == ()
    r = f.timer(stream, call.started_at + 300 + 120)
    assert call_of(f.state) is None and any("media inactivity" in x for x in r.logs)
    # Max call duration ends a call whose media keeps flowing.
    f = Flow(s)
    f.send(CA_CMD, crlf(CRCX))
    f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    call = call_of(f.state)
    for t in range(100, 1000, 100):
        for g in list(call_of(f.state).groups):
            f._take(media_activity(f.state, g, call.started_at + t, s))
    r = f.timer(stream, call.max_deadline)
    assert call_of(f.state) is None and any("maximum call duration" in x for x in r.logs)


def test_tables_name_only_known_actions():
    known_cmd = {"start_call", "media", "delete", "restart", "notified", "notified_check"}
    for rule in COMMANDS.values():
        assert set(rule.actions) <= known_cmd
        assert rule.wildcard in ("all", "any", "none")
    known_resp = {"answer", "created", "media", "notified_default", "failed", "retransmission", "ack"}
    for actions in RESPONSES.values():
        assert set(actions) <= known_resp


# --- wire input never escapes step ---------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_EXAMPLES = [crlf(x) for x in (CRCX, MDCX, DLCX1, DLCX2, EPCF, RQNT, NTFY, AUEP1, AUEP2, AUCX, RSIP)] + [
    resp(200, 1205, "I: FDE234C8\n", RESP_SDP)]


def _live_state():
    f = Flow()
    f.send(CA_CMD, crlf(CRCX))
    f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    return f.state


_LIVE = _live_state()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_EXAMPLES), st.integers(0, 400), st.integers(0, 8), st.binary(max_size=12),
       st.sampled_from([CA_CMD, GW_MSG]))
def test_mutated_messages_forward_or_drop_never_raise(data, at, cut, junk, ctx):
    at = min(at, len(data))
    mutated = data[:at] + junk + data[at + cut:]
    r = step(_LIVE, ctx, mutated, 2000.0)
    assert r.verdict in ("forward", "drop")
    if r.verdict == "drop":
        assert r.reason and durable(r.state) == durable(_LIVE)
    else:
        assert durable(r.state) == fold(r.events, durable(_LIVE))


def test_rtp_port_65535_leaves_no_rtcp_port_and_is_dropped():
    data = crlf(CRCX.replace("m=audio 3456", "m=audio 65535"))
    r = step(EMPTY, CA_CMD, data, 1.0)
    assert r.verdict == "drop" and "no port for RTCP" in r.reason


def test_forced_restart_loses_the_connections_of_the_endpoints_it_names():
    f = Flow()
    f.send(CA_CMD, crlf(CRCX))
    f.send(GW_MSG, resp(200, 1205, "I: FDE234C8\n", RESP_SDP))
    holes = set(call_of(f.state).pinholes)
    # A graceful restart of another endpoint, and of this one, keep the call.
    f.send(GW_MSG, crlf("RSIP 1 aaln/2@gw-25.att.net MGCP 1.0\nRM: forced\n"))
    f.send(GW_MSG, crlf("RSIP 2 aaln/*@gw-25.att.net MGCP 1.0\nRM: graceful\nRD: 60\n"))
    assert call_of(f.state) is not None
    r = f.send(GW_MSG, crlf("RSIP 3 aaln/*@gw-25.att.net MGCP 1.0\nRM: forced\n"))
    assert r.verdict == "forward" and set(r.pinholes_close) == holes and call_of(f.state) is None


def test_response_acknowledgement_list_ends_answered_transactions():
    f = Flow()
    for tid in (30, 31, 32):
        f.send(CA_CMD, crlf(f"RQNT {tid} aaln/1@gw-25.att.net MGCP 1.0\nX: {tid}\n"))
    f.send(GW_MSG, resp(200, 30))
    f.send(GW_MSG, resp(200, 31))
    r = f.send(CA_CMD, crlf("RQNT 33 aaln/1@gw-25.att.net MGCP 1.0\nX: 9\nK: 30-32, 1-999999\n"))
    assert r.verdict == "forward"
    left = {tid for (_, origin, tid) in f.state.txns if origin == "call-agent"}
    assert left == {32, 33}                    # 32 is unanswered; the wide range is ignored


def test_piggy_backed_messages_are_each_processed_and_dropped_together():
    f = Flow()
    f.send(CA_CMD, crlf(CRCX))
    ntfy = NTFY.replace("rgw-25", "gw-25").replace("N: ca@ca1.att.net:5678\n", "")
    both = resp(200, 1205, "I: FDE234C8\n") + b".\r\n" + crlf(ntfy)
    r = f.send(GW_MSG, both)
    assert r.verdict == "forward" and r.data == both
    assert "FDE234C8" in call_of(f.state).connections
    assert ("2.2.2.25", "gateway", 2002) in f.state.txns
    # One message out of state drops the datagram, and nothing of it is kept.
    before = durable(f.state)
    bad = crlf(ntfy.replace("2002", "2003")) + b".\r\n" + resp(200, 4444)
    r = f.send(GW_MSG, bad)
    assert r.verdict == "drop" and "4444" in r.reason and durable(f.state) == before


# --- a response through the MIP, with the datapath ----------------------------------
def test_response_addressed_to_the_mip_reaches_the_call_agent_through_the_datapath():
    # "ISP-Hosted Service": west_ca's CRCX leaves by the MIP; asia_gw answers
    # the MIP (the command's source as it saw it). The response must be
    # rerouted by nothing: the signalling session's NAT takes it to
    # 10.1.1.101. (Rerouting it "to the command's source" sent it to the
    # MIP itself, i.e. to the gateway: the call agent never got an answer.)
    from pathlib import Path

    from gateway.config import load_file
    from gateway.datapath import Alg, Datapath, Forward
    from gateway.packet import build_udp, parse

    cfg = load_file(Path(__file__).resolve().parents[1] / "examples" / "ch3-isp-hosted-service.cfg")
    dp = Datapath(cfg)
    cmd = crlf("AUEP 7 rtpbridge/*@mgw MGCP 1.0\n")
    out = dp.process(build_udp("10.1.1.101", "3.3.3.110", 2727, 2427, cmd), "ethernet5", 1.0)
    assert isinstance(out, Alg) and out.alg == "mgcp" and out.nat_src == ("3.3.3.101", 2727)
    ctx = MgcpContext(out.direction, out.src, out.dst, out.nat_src, out.nat_dst, out.ingress,
                      out.egress, "call-agent")
    r = step(EMPTY, ctx, out.payload, 1.0)
    fwd = dp.finish_alg(out, r.verdict, r.data, r.route_to, r.pinholes_open, r.pinholes_close, 1.0)
    assert isinstance(fwd, Forward)
    p = parse(fwd.data)
    assert (str(p.src), p.sport, str(p.dst), p.dport) == ("3.3.3.101", 2727, "3.3.3.110", 2427)

    back = dp.process(build_udp("3.3.3.110", "3.3.3.101", 2427, 2727, crlf("200 7 OK\n")),
                      "ethernet6", 1.1)
    assert isinstance(back, Alg) and back.session is not None and back.nat_dst == ("10.1.1.101", 2727)
    ctx = MgcpContext(back.direction, back.src, back.dst, back.nat_src, back.nat_dst, back.ingress,
                      back.egress, "gateway")
    r2 = step(r.state, ctx, back.payload, 1.1)
    assert r2.verdict == "forward" and r2.route_to is None
    fwd = dp.finish_alg(back, r2.verdict, r2.data, r2.route_to, r2.pinholes_open,
                        r2.pinholes_close, 1.1)
    p = parse(fwd.data)
    assert (str(p.src), p.sport, str(p.dst), p.dport) == ("3.3.3.110", 2427, "10.1.1.101", 2727)


def test_endpoint_records_per_gateway_are_bounded(monkeypatch):
    """A gateway naming ever new endpoints (RSIP here) cannot grow the state
    without end: past the bound a new name is refused; known ones still pass."""
    import gateway.mgcp.alg as mgcp_alg
    monkeypatch.setattr(mgcp_alg, "MAX_ENDPOINTS_PER_GATEWAY", 3)
    f = Flow()
    for n in range(3):
        r = f.send(GW_MSG, crlf(f"RSIP {100 + n} aaln/{n}@gw-25.att.net MGCP 1.0\nRM: restart\n"))
        assert r.verdict == "forward"
    assert f.state.endpoint_counts["2.2.2.25"] == 3
    r = f.send(GW_MSG, crlf("RSIP 200 aaln/9@gw-25.att.net MGCP 1.0\nRM: restart\n"))
    assert r.verdict == "drop" and "already has 3 endpoints" in r.reason
    r = f.send(GW_MSG, crlf("RSIP 201 aaln/1@gw-25.att.net MGCP 1.0\nRM: graceful\n"))
    assert r.verdict == "forward"
    # another gateway has its own allowance
    other = MgcpContext("none", ("2.2.2.26", 2427), CA_ADDR, role="gateway")
    assert f.send(other, crlf("RSIP 300 aaln/9@gw-26.att.net MGCP 1.0\nRM: restart\n")).verdict == "forward"
