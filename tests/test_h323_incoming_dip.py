"""Manual ch. 1 "Example: Incoming Calls with NAT" through the datapath:
IP_Phone 10.1.1.5 registers with the gatekeeper 2.2.2.25 through DIP 5
(incoming); IP_Phone2 2.2.2.5 then calls the DIP address over TCP 1720. The
connection is decided at its SYN: the RAS registration table, not the
policy alone, names the internal host."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from scapy.layers.inet import IP

from gateway.config import parse_text
from gateway.datapath import Datapath, Drop, Forward
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.packet import ACK, PSH, SYN, build_tcp, build_udp

from test_h323_datapath import F, ROOT, Gateway, readdress

PHONE, GKP, PHONE2 = "10.1.1.5", "2.2.2.25", "2.2.2.5"
RRQ = readdress(F[61], parse_ras, {"callSignalAddress": (PHONE, 1720), "rasAddress": (PHONE, 1719)})
SETUP = readdress(F[6], parse_call_signal, {"sourceCallSignalAddress": (PHONE2, 32803)})


class DipGateway(Gateway):
    def __init__(self, route: str = "0.0.0.0/0") -> None:
        super().__init__()
        # The example as printed, with the chapter's default route (its
        # other examples: "set vrouter trust-vr route 0.0.0.0/0 interface
        # ethernet3 gateway 1.1.1.250") so the gatekeeper can be reached.
        text = (ROOT / "examples" / "ch1-incoming-calls-with-nat.cfg").read_text()
        text = text.replace("save", f"set vrouter trust-vr route {route} interface ethernet3 gateway 1.1.1.250\nsave")
        self.dp = Datapath(parse_text(text))


def _registered(gw: DipGateway, now: float) -> str:
    out = gw.send(build_udp(PHONE, GKP, 1719, 1719, RRQ), "ethernet1", now)
    assert isinstance(out, Forward), out
    rrq = IP(out.data)
    dip = rrq.src
    assert IPv4Address("1.1.1.12") <= IPv4Address(dip) <= IPv4Address("1.1.1.150")
    public = parse_ras(bytes(rrq.payload.payload)).address("callSignalAddress")
    assert public.span.text == f"{dip}:1720"
    rcf = readdress(F[62], parse_ras, {"callSignalAddress": (dip, 1720)})
    out = gw.send(build_udp(GKP, dip, 1719, rrq.sport, rcf), "ethernet3", now + 0.1)
    assert isinstance(out, Forward), out
    assert (dip, 1720) in gw.state.registrations
    return dip


def test_tcp_setup_to_an_incoming_dip_address_reaches_the_registered_phone():
    gw = DipGateway()
    dip = _registered(gw, 10.0)
    syn = build_tcp(PHONE2, dip, 32803, 1720, seq=1000, flags=SYN)
    out = gw.send(syn, "ethernet3", 20.0)
    assert isinstance(out, Forward), out              # was: policy deny, no binding
    assert (IP(out.data).dst, IP(out.data).dport) == (PHONE, 1720)
    setup = readdress(SETUP, parse_call_signal, {"destCallSignalAddress": (dip, 1720)})
    out = gw.send(build_tcp(PHONE2, dip, 32803, 1720, seq=1001, ack=5001, flags=PSH | ACK, payload=setup),
                  "ethernet3", 20.1)
    assert isinstance(out, Forward), (out, gw.logs)
    pkt = IP(out.data)
    assert pkt.dst == PHONE
    msg = parse_call_signal(bytes(pkt.payload.payload))
    assert msg.address("destCallSignalAddress").span.text == f"{PHONE}:1720"
    assert len(gw.state.calls) == 1


def test_without_a_registration_the_syn_is_refused():
    gw = DipGateway()
    out = gw.send(build_tcp(PHONE2, "1.1.1.12", 32803, 1720, seq=1000, flags=SYN), "ethernet3", 1.0)
    assert isinstance(out, Drop) and "incoming-DIP" in out.reason


def test_expired_registration_no_longer_routes():
    from gateway.h323.alg import on_timer
    gw = DipGateway()
    dip = _registered(gw, 10.0)
    reg = gw.state.registrations[(dip, 1720)]
    res = on_timer(gw.state, f"h323-reg/{dip}:1720", reg.expires_at)
    assert res.pinholes_close == (f"h323-reg/{dip}:1720",)
    gw.dp.remove_pinholes(res.pinholes_close)
    gw.state = res.state
    out = gw.send(build_tcp(PHONE2, dip, 32803, 1720, seq=1000, flags=SYN), "ethernet3", reg.expires_at + 1)
    assert isinstance(out, Drop)


def test_policy_still_decides_a_registered_address():
    """The registration names the host; the policy (from untrust to trust
    IP_Phone2 dip(5) h.323 permit) still decides who may call it: another
    caller is refused, not let through as by a pinhole."""
    gw = DipGateway()
    dip = _registered(gw, 10.0)
    out = gw.send(build_tcp("3.3.3.3", dip, 32803, 1720, seq=1000, flags=SYN), "ethernet3", 20.0)
    assert isinstance(out, Drop) and out.category == "policy", out


def test_show_registrations_lists_the_h323_registration(tmp_path):
    """``gwctl show registrations`` (the node's show) lists H.323
    registrations with the SIP ones; status counts them."""
    import threading

    from actors.node import Node
    from gateway.datapath import Alg

    gw = DipGateway()
    node = Node("n1", gw.dp.config, str(tmp_path / "j"),
                datapath=gw.dp, clock=lambda: 10.0, fsync=False, timer_thread=False)
    node.start()
    try:
        def send(buf, ingress):
            with node.dp_lock:
                out = gw.dp.process(buf, ingress, 10.0)
            if isinstance(out, Alg):
                box, done = [], threading.Event()
                node.handle_alg(out, lambda final: (box.append(final), done.set()))
                assert done.wait(10)
                out = box[0]
            return out

        out = send(build_udp(PHONE, GKP, 1719, 1719, RRQ), "ethernet1")
        rrq = IP(out.data)
        rcf = readdress(F[62], parse_ras, {"callSignalAddress": (rrq.src, 1720)})
        assert isinstance(send(build_udp(GKP, rrq.src, 1719, rrq.sport, rcf), "ethernet3"), Forward)
        node.quiesce()
        regs = node.show("registrations")
        assert [(r["alg"], r["public"], r["private"]) for r in regs] == [("h323", f"{rrq.src}:1720",
                                                                          f"{PHONE}:1720")]
        assert node.status()["registrations"] == 1
    finally:
        node.stop()


@pytest.mark.parametrize("route", ["0.0.0.0/0", f"{GKP}/32"])
def test_callee_media_before_its_connect_does_not_block_the_callers(route):
    """fastStart to a phone behind an incoming DIP: the phone sends RTP
    right after its Connect, and its first packets can cross the datapath
    while the Connect still waits in the ALG. They take the policy's NAT (an
    address of the non-sticky DIP pool, maybe not the one the Connect will
    carry). Once the Connect has given the phone's public RTP pair, the
    caller's RTP to that pair must reach the phone (it was dropped: "the
    reply tuple of this flow belongs to another session"), and the phone's
    next packets leave from that pair (symmetric RTP, RFC 4961). With no
    route to the caller in the configuration (the example as printed routes
    nothing to 2.2.2.5; the lab puts it on-link) no NAT is known for the
    early packets: they are dropped, never sent with the private source."""
    from ops.lab import h323msg as m

    gw = DipGateway(route)
    dip = _registered(gw, 10.0)
    guid = bytes(range(16))
    assert isinstance(gw.send(build_tcp(PHONE2, dip, 32803, 1720, seq=1000, flags=SYN), "ethernet3", 20.0), Forward)
    assert isinstance(gw.send(build_tcp(PHONE, PHONE2, 1720, 32803, seq=5000, ack=1001, flags=SYN | ACK),
                              "ethernet1", 20.0), Forward)
    offer = m.faststart_offer((PHONE2, 20000), (PHONE2, 20001))
    setup = m.q931(m.SETUP, 7, False, m.uuie(m.setup_body("phone2", "phone1", guid, (PHONE2, 32803),
                                                           (dip, 1720), offer)))
    out = gw.send(build_tcp(PHONE2, dip, 32803, 1720, seq=1001, ack=5001, flags=PSH | ACK, payload=setup),
                  "ethernet3", 20.1)
    assert isinstance(out, Forward), out
    rtp = b"\x80\x08" + bytes(170)
    early = gw.send(build_udp(PHONE, PHONE2, 30000, 20000, rtp), "ethernet1", 20.15)
    assert isinstance(early, Drop) or IP(early.data).src != PHONE, early
    answer, _ = m.faststart_answer(offer, (PHONE, 30000), (PHONE, 30001))
    connect = m.q931(m.CONNECT, 7, True, m.uuie(m.connect_body(guid, None, answer)))
    out = gw.send(build_tcp(PHONE, PHONE2, 1720, 32803, seq=5001, ack=1001 + len(setup), flags=PSH | ACK,
                            payload=connect), "ethernet1", 20.2)
    assert isinstance(out, Forward), out
    told = parse_call_signal(bytes(IP(out.data).payload.payload)).address("mediaChannel").span.text
    assert told == f"{dip}:30000"
    out = gw.send(build_udp(PHONE2, dip, 20000, 30000, rtp), "ethernet3", 20.3)
    assert isinstance(out, Forward), out
    assert (IP(out.data).dst, IP(out.data).dport) == (PHONE, 30000)
    out = gw.send(build_udp(PHONE, PHONE2, 30000, 20000, rtp), "ethernet1", 20.4)
    assert isinstance(out, Forward), out
    assert (IP(out.data).src, IP(out.data).sport) == (dip, 30000)
