"""A MIP keeps a phone's media port (gateway/sip/alg_pinholes.py,
gateway/alg_nat.py ``dedicated_of``): a MIP maps one private address to one
public address, so every port of that address is the host's own. A phone
behind a MIP that announces RTP port 6000 for every call is reached on
MIP:6000 for every call; translated to 20000, 20002, ... per call, every call
after the first met the first call's flow on the inside (its reply tuple) and
its media was refused. Addresses that several hosts share still get a pair of
their own per call."""

from __future__ import annotations

from functools import cache
from ipaddress import IPv4Address
from pathlib import Path

from actors.algs import SipAdapter
from gateway.alg_nat import dedicated_of
from gateway.config import load_file
from gateway.datapath import Alg, Datapath, Forward
from gateway.datapath.pinholes import PinholeTable
from gateway.packet import build_udp
from gateway.sip import parse_message
from gateway.sip.alg import EMPTY, SipContext, step
from gateway.sip.state import Pinhole
from gateway.sip.state_fold import fold

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MIP, HOST, CALLER, IFACE = "1.1.1.5", "10.1.1.3", "1.1.1.4", "1.1.1.1"


@cache
def _mip_example_engine():
    """The engine of the manual's "Incoming Call with MIP" example (read-only
    here: each test that processes packets builds a datapath of its own)."""
    return _mip_datapath().engine


def _mip_datapath() -> Datapath:
    return Datapath(load_file(EXAMPLES / "ch2-incoming-call-with-mip.cfg"))


def _sdp(addr: str, port: int) -> bytes:
    return (f"v=0\r\no=p 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8\r\n").encode()


def _message(first: str, n: int, to: str, contact: str, sdp_addr: str) -> bytes:
    """Call ``n``'s INVITE or its answer: the same dialog, an SDP for port 6000."""
    body = _sdp(sdp_addr, 6000)
    head = [first, f"Via: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bK{n}",
            f"From: <sip:phone2@{CALLER}>;tag=f{n}", f"To: {to}", f"Call-ID: c{n}@{CALLER}",
            "CSeq: 1 INVITE", f"Contact: {contact}", "Content-Type: application/sdp",
            f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(head).encode() + body


def _invite(n: int) -> bytes:
    return _message(f"INVITE sip:phone1@{MIP} SIP/2.0", n, f"<sip:phone1@{MIP}>",
                    f"<sip:phone2@{CALLER}:5060>", CALLER)


def _ok(n: int) -> bytes:
    return _message("SIP/2.0 200 OK", n, f"<sip:phone1@{HOST}>;tag=t{n}", f"<sip:phone1@{HOST}:5060>", HOST)


def _calls(dedicated, n: int = 2):
    """``n`` concurrent calls from the caller to the phone behind the MIP,
    each answered with m=audio 6000: the answers' SDP as forwarded, the
    media pinholes each call opened toward the phone, every event."""
    inbound = SipContext("inbound", (CALLER, 5060), (MIP, 5060), nat_dst=(HOST, 5060),
                         dedicated=dedicated)
    outbound = SipContext("outbound", (HOST, 5060), (CALLER, 5060), nat_src=(MIP, 5060),
                          dedicated=dedicated)
    st, answers, holes, events = EMPTY, [], [], []
    for i in range(n):
        r = step(st, inbound, _invite(i), 1.0 + i)
        assert r.verdict == "forward", r.logs
        r2 = step(r.state, outbound, _ok(i), 1.5 + i)
        assert r2.verdict == "forward", r2.logs
        st = r2.state
        events += r.events + r2.events
        answers.append(parse_message(r2.data).sdp)
        holes.append(sorted((p.dst, p.to) for p in r2.pinholes_open
                            if p.kind == "media" and p.to is not None))
    return st, answers, holes, events


def test_a_mip_keeps_the_phone_s_media_port_for_every_call():
    dedicated = dedicated_of(_mip_example_engine())
    st, answers, holes, events = _calls(dedicated)
    for sd, opened in zip(answers, holes):
        assert sd.session_conn.addr.text == MIP and sd.media[0].port == 6000
        assert opened == [((MIP, 6000), (HOST, 6000)), ((MIP, 6001), (HOST, 6001))]
    # Nothing is allocated on the MIP's address: the phone's Contact keeps
    # its port too (each call's binding, the same public pair).
    for call in st.calls.values():
        assert [(b.private_port, b.public_ip, b.public_port) for b in call.bindings] == [(5060, MIP, 5060)]
    # The journal's events give the same state (a standby or a replay).
    assert fold(events) == st


def test_an_address_shared_by_hosts_still_gets_a_pair_per_call():
    # Without the test (or for an address that is not a MIP) every call's
    # media gets a public pair of its own from the media range.
    for dedicated in (None, lambda addr: False):
        _st, answers, holes, _ev = _calls(dedicated)
        ports = [sd.media[0].port for sd in answers]
        assert len(set(ports)) == 2 and all(p >= 20000 and p % 2 == 0 for p in ports), ports
        assert [h[0][0] for h in holes] == [(MIP, p) for p in ports]


def test_the_sip_context_knows_which_public_addresses_are_a_mip():
    dp = _mip_datapath()
    out = dp.process(build_udp(CALLER, MIP, 5060, 5060, _invite(7)), "ethernet3", 0.0)
    assert isinstance(out, Alg)
    dedicated = SipAdapter.context(out, dp.engine).dedicated
    assert dedicated(MIP) is True
    # The interface's own address is shared by every host behind it.
    assert dedicated(IFACE) is False and dedicated(CALLER) is False
    assert dedicated("pbx.example.com") is False
    assert SipAdapter.context(out).dedicated is None


def _hole(pid: str, call: str, expires: float | None) -> Pinhole:
    return Pinhole(pid, call, f"{call}#g1", "media", "udp", "inbound", (MIP, 6000), (HOST, 6000),
                   None, expires)


def test_of_pinholes_sharing_a_destination_the_newest_live_one_answers():
    t = PinholeTable()
    t.install(_hole("a#p1", "a", 100.0))
    t.install(_hole("b#p1", "b", 130.0))
    key = (17, int(IPv4Address(MIP)), 6000)
    assert t.match(*key, 10.0).call == "b"
    assert t.translating_to(17, int(IPv4Address(HOST)), 6000, 10.0).call == "b"
    # Only live ones answer.
    assert t.match(*key, 100.0).call == "b" and t.match(*key, 130.0) is None
    t.remove("b#p1")
    assert t.match(*key, 10.0).call == "a"
    t.install(_hole("b#p1", "b", 130.0))
    # Rebuilt from a state that holds calls in no order (a takeover): the
    # newest by its deadline still answers.
    t.rebuild([_hole("b#p1", "b", 130.0), _hole("a#p1", "a", 100.0)])
    assert t.match(*key, 10.0).call == "b"


def test_media_of_calls_sharing_one_flow_through_a_mip_passes_both_ways():
    # Two calls' pinholes to MIP:6000 (as the ALG now opens them); the
    # caller's media (one flow: SIPp with one RTP port for every call) and
    # the phone's answer pass, translated to the MIP's own port.
    dp = _mip_datapath()
    dp.install_pinholes([_hole("a#p1", "a", 100.0), _hole("b#p1", "b", 130.0)])
    fwd = dp.process(build_udp(CALLER, MIP, 6000, 6000, b"\x80" + b"r" * 171), "ethernet3", 1.0)
    assert isinstance(fwd, Forward) and fwd.path == "fast-pinhole", fwd
    (sess,) = [s for s in dp.sessions if s.kind == "media"]
    assert sess.call == "b"
    back = dp.process(build_udp(HOST, CALLER, 6000, 6000, b"\x80" + b"r" * 171), "ethernet1", 1.1)
    assert isinstance(back, Forward) and back.path == "fast-session", back
    assert parse_src(back.data) == (MIP, 6000)


def parse_src(data: bytes) -> tuple[str, int]:
    return str(IPv4Address(data[12:16])), int.from_bytes(data[20:22], "big")


def test_a_registration_through_a_mip_keeps_the_contact_port():
    dedicated = dedicated_of(_mip_example_engine())
    reg = (f"REGISTER sip:{CALLER} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:5060;branch=z9hG4bKr\r\n"
           f"From: <sip:phone1@{CALLER}>;tag=r\r\nTo: <sip:phone1@{CALLER}>\r\nCall-ID: r@{HOST}\r\n"
           f"CSeq: 1 REGISTER\r\nContact: <sip:phone1@{HOST}:5070>\r\nExpires: 600\r\n"
           "Content-Length: 0\r\n\r\n").encode()
    for ded, port in ((dedicated, 5070), (None, 20000)):
        ctx = SipContext("outbound", (HOST, 5060), (CALLER, 5060), nat_src=(MIP, 5060), dedicated=ded)
        r = step(EMPTY, ctx, reg, 1.0)
        assert r.verdict == "forward", r.logs
        assert parse_message(r.data).get("contact") == f"<sip:phone1@{MIP}:{port}>"
        assert fold(r.events) == r.state
