"""The H.323 ALG driven through step(): the manual's chapter 1 flows, the
corpus call, timers, and state == fold of events."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from gateway.h323 import events as ev
from gateway.h323.alg import H323Context, media_activity, on_timer, step
from gateway.h323.h245 import parse_h245
from gateway.h323.nat import address_edit
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.h323.state import EMPTY, fold
from gateway.h323.tpkt import frame_tpkt
from gateway.span import apply_edits

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap"


def _frames():
    from scapy.all import IP, TCP, UDP, rdpcap
    out = {}
    for n, p in enumerate(rdpcap(str(CORPUS / "h323.pcap")), 1):
        if IP in p and (TCP in p or UDP in p):
            ip = p[IP]
            raw = bytes(ip)[:ip.len]
            off = ip.ihl * 4 + (p[TCP].dataofs * 4 if TCP in p else 8)
            out[n] = raw[off:]
    return out


F = _frames()
SETUP, CONNECT, ALERTING, PROCEEDING = F[6], F[18], F[14], F[10]
OLC, OLC_ACK = F[38], F[41]
RRQ, RCF, ARQ, ACF = F[61], F[62], F[63], F[64]


def _readdress(data: bytes, parse, mapping: dict) -> bytes:
    """The corpus message with its addresses replaced (test fixtures for the
    manual's topologies)."""
    msg = parse(data)
    edits = []
    for a in msg.addresses:
        new = mapping.get(a.field) or mapping.get((str(a.ip), a.port))
        if new is not None:
            edits.append(address_edit(a, *new))
    return apply_edits(data, edits)


def _release(call_ref: int, from_dest: bool) -> bytes:
    q = bytes([0x08, 0x02, ((call_ref >> 8) & 0x7F) | (0x80 if from_dest else 0), call_ref & 0xFF, 0x5A])
    return b"\x03\x00" + (len(q) + 4).to_bytes(2, "big") + q


def _check(res, old):
    assert res.verdict == "forward", res.reason
    assert fold(res.events, old) == res.state
    return res.state


def test_outgoing_call_with_mip():
    """Manual ch. 1 "Outgoing Calls with NAT": IP_Phone1 10.1.1.5 (MIP
    1.1.1.5) calls IP_Phone2 2.2.2.5."""
    setup = _readdress(SETUP, parse_call_signal, {"sourceCallSignalAddress": ("10.1.1.5", 32803),
                                                  "destCallSignalAddress": ("2.2.2.5", 1720)})
    out = H323Context("q931", "outbound", ("10.1.1.5", 32803), ("2.2.2.5", 1720), nat_src=("1.1.1.5", 32803))
    res = step(EMPTY, out, setup, 100.0)
    s = _check(res, EMPTY)
    assert len(res.data) == len(setup)
    m = parse_call_signal(res.data)
    assert m.address("sourceCallSignalAddress").span.text == "1.1.1.5:32803"
    assert m.address("destCallSignalAddress").span.text == "2.2.2.5:1720"
    key = m.call_identifier().hex()
    assert key in s.calls and s.calls[key].phase == "setup"

    inbound = H323Context("q931", "inbound", ("2.2.2.5", 1720), ("1.1.1.5", 32803),
                          nat_dst=("10.1.1.5", 32803), conn=out.connection())
    for frame in (PROCEEDING, ALERTING):
        res = step(s, inbound, frame, 101.0)
        s = _check(res, s)
    connect = _readdress(CONNECT, parse_call_signal, {"h245Address": ("2.2.2.5", 1232)})
    res = step(s, inbound, connect, 102.0)
    s = _check(res, s)
    assert s.calls[key].phase == "connected"
    (h245,) = res.pinholes_open
    assert (h245.kind, h245.transport, h245.dst, h245.to) == ("h245", "tcp", ("2.2.2.5", 1232), None)

    # H.245 from IP_Phone1 to the h245Address: its media address becomes the MIP.
    ack = _readdress(OLC_ACK, parse_h245, {("10.1.3.143", 5000): ("10.1.1.5", 5000),
                                           ("10.1.3.143", 5001): ("10.1.1.5", 5001)})
    hctx = H323Context("h245", "outbound", ("10.1.1.5", 40000), ("2.2.2.5", 1232), nat_src=("1.1.1.5", 40000))
    res = step(s, hctx, ack, 103.0)
    s = _check(res, s)
    assert len(res.data) == len(ack)
    assert [a.span.text for a in parse_h245(res.data).addresses] == ["1.1.1.5:5000", "1.1.1.5:5001"]
    holes = {(p.kind, p.dst, p.to) for p in res.pinholes_open}
    assert holes == {("rtp", ("1.1.1.5", 5000), ("10.1.1.5", 5000)),
                     ("rtcp", ("1.1.1.5", 5001), ("10.1.1.5", 5001))}
    assert len({p.group for p in res.pinholes_open}) == 1

    # The far side's OLC (RTCP address 2.2.2.5) comes in: pinhole, no rewrite.
    olc = _readdress(OLC, parse_h245, {("10.1.3.143", 5001): ("2.2.2.5", 2007)})
    hin = H323Context("h245", "inbound", ("2.2.2.5", 1232), ("1.1.1.5", 40000), nat_dst=("10.1.1.5", 40000))
    res = step(s, hin, olc, 103.5)
    s = _check(res, s)
    assert res.data == olc and res.pinholes_open[0].dst == ("2.2.2.5", 2007)

    res = step(s, inbound, _release(s.calls[key].call_reference, True), 104.0)
    s2 = _check(res, s)
    assert key not in s2.calls and not s2.h245_index and not s2.ports_in_use
    assert set(res.pinholes_close) == set(s.calls[key].pinholes)


def test_incoming_call_through_dip_registration():
    """Manual ch. 1 "Incoming Calls with NAT": DIP 5 (1.1.1.12-1.1.1.150,
    incoming). IP_Phone 10.1.1.5 registers with a gatekeeper outside through
    the DIP; a call to its DIP address reaches it."""
    rrq = _readdress(RRQ, parse_ras, {"callSignalAddress": ("10.1.1.5", 1720),
                                      "rasAddress": ("10.1.1.5", 1719)})
    out = H323Context("ras", "outbound", ("10.1.1.5", 1719), ("2.2.2.25", 1719), nat_src=("1.1.1.12", 1719))
    res = step(EMPTY, out, rrq, 10.0)
    s = _check(res, EMPTY)
    m = parse_ras(res.data)
    assert m.address("callSignalAddress").span.text == "1.1.1.12:1720"
    assert m.address("rasAddress").span.text == "1.1.1.12:1719"
    assert ("10.1.1.5:1719", 2) in s.ras

    rcf = _readdress(RCF, parse_ras, {"callSignalAddress": ("1.1.1.12", 1720)})
    inb = H323Context("ras", "inbound", ("2.2.2.25", 1719), ("1.1.1.12", 1719), nat_dst=("10.1.1.5", 1719))
    res = step(s, inb, rcf, 10.2)
    s = _check(res, s)
    assert parse_ras(res.data).address("callSignalAddress").span.text == "10.1.1.5:1720"
    assert not s.ras
    reg = s.registrations[("1.1.1.12", 1720)]
    assert reg.private == ("10.1.1.5", 1720)

    setup = _readdress(SETUP, parse_call_signal, {"sourceCallSignalAddress": ("2.2.2.5", 32803),
                                                  "destCallSignalAddress": ("1.1.1.12", 1720)})
    call_in = H323Context("q931", "inbound", ("2.2.2.5", 32803), ("1.1.1.12", 1720))
    res = step(s, call_in, setup, 20.0)
    s = _check(res, s)
    assert res.route_to == ("10.1.1.5", 1720)
    assert parse_call_signal(res.data).address("destCallSignalAddress").span.text == "10.1.1.5:1720"

    # Without a registration the DIP address leads nowhere: dropped.
    res = step(EMPTY, call_in, setup, 20.0)
    assert res.verdict == "drop" and "registration" in res.reason and res.state is EMPTY

    # The registration expires.
    res = on_timer(s, "h323-reg/1.1.1.12:1720", reg.expires_at)
    assert ("1.1.1.12", 1720) not in res.state.registrations
    assert fold(res.events, s) == res.state


def test_admission_opens_the_call_signalling_pinhole():
    """Manual ch. 1 "Gatekeeper in the Untrust Zone with NAT": ARQ from
    10.1.1.5 to the gatekeeper 2.2.2.25; the ACF's destCallSignalAddress
    (IP_Phone2 2.2.2.5) is where the Q.931 connection goes."""
    arq = _readdress(ARQ, parse_ras, {})
    a = parse_ras(arq)
    out = H323Context("ras", "outbound", ("10.1.1.5", 1719), ("2.2.2.25", 1719), nat_src=("1.1.1.5", 1719))
    res = step(EMPTY, out, arq, 1.0)
    s = _check(res, EMPTY)
    acf = _readdress(ACF, parse_ras, {"destCallSignalAddress": ("2.2.2.5", 1720)})
    inb = H323Context("ras", "inbound", ("2.2.2.25", 1719), ("1.1.1.5", 1719), nat_dst=("10.1.1.5", 1719))
    res = step(s, inb, acf, 1.1)
    s = _check(res, s)
    (hole,) = res.pinholes_open
    assert (hole.kind, hole.transport, hole.dst) == ("q931", "tcp", ("2.2.2.5", 1720))
    assert hole.call == a.fields["callIdentifier"]["guid"].hex()
    # Retransmitted ACF: its transaction is gone, nothing more happens.
    res = step(s, inb, acf, 1.2)
    assert res.verdict == "forward" and not res.events


def test_corpus_call_without_nat():
    none = H323Context("q931", "none", ("10.1.3.143", 32803), ("10.1.6.18", 1720))
    s = EMPTY
    for frame in (SETUP, PROCEEDING, ALERTING, CONNECT):
        res = step(s, none, frame, 5.0)
        s = _check(res, s)
        assert res.data == frame and not res.edits
    (call,) = s.calls.values()
    assert ("10.1.6.18", 1232) in s.h245_index
    h = H323Context("h245", "none", ("10.1.3.143", 32804), ("10.1.6.18", 1232))
    res = step(s, h, OLC_ACK, 6.0)
    s = _check(res, s)
    assert {p.dst for p in res.pinholes_open} == {("10.1.3.143", 5000), ("10.1.3.143", 5001)}
    pid = res.pinholes_open[0].id
    res = media_activity(s, pid, 100.0)
    s = _check(res, s)
    # media stays 120 s after it was last seen
    res = on_timer(s, f"h323-call/{call.key}", 200.0)
    assert call.key in res.state.calls
    res = on_timer(s, f"h323-call/{call.key}", 221.0)
    assert call.key not in res.state.calls and "media inactivity" in res.logs[0]
    assert fold(res.events, s) == res.state


def test_unknown_call_signalling_is_dropped():
    none = H323Context("q931", "none", ("10.1.6.18", 1720), ("10.1.3.143", 32803))
    res = step(EMPTY, none, CONNECT, 1.0)
    assert res.verdict == "drop" and res.state is EMPTY
    res = step(EMPTY, none, b"\x03\x00\x00\x04", 1.0)
    assert res.verdict == "drop" and "malformed" in res.reason
    h = H323Context("h245", "none", ("1.2.3.4", 5), ("6.7.8.9", 10))
    assert step(EMPTY, h, OLC, 1.0).verdict == "drop"


def test_ras_transaction_times_out():
    out = H323Context("ras", "none", ("17.2.0.124", 2034), ("17.2.0.161", 1719))
    res = step(EMPTY, out, ARQ, 0.0)
    s = res.state
    (timer,) = [t for t in res.timers if t.key.startswith("h323-ras/")]
    assert timer.deadline == 30.0
    assert on_timer(s, timer.key, 29.0).state == s
    res = on_timer(s, timer.key, 30.0)
    assert not res.state.ras and isinstance(res.events[0], ev.RasEnded)


MESSAGES = [
    ("q931", SETUP), ("q931", PROCEEDING), ("q931", ALERTING), ("q931", CONNECT),
    ("q931", _release(30708, True)), ("h245", OLC), ("h245", OLC_ACK),
    ("ras", RRQ), ("ras", RCF), ("ras", ARQ), ("ras", ACF), ("ras", F[59]),
]
CTXS = [
    lambda ch: H323Context(ch, "none", ("10.1.3.143", 32803), ("10.1.6.18", 1720)),
    lambda ch: H323Context(ch, "outbound", ("10.1.3.143", 32803), ("10.1.6.18", 1720),
                           nat_src=("1.1.1.5", 32803)),
    lambda ch: H323Context(ch, "inbound", ("10.1.6.18", 1232), ("10.1.3.143", 32804),
                           nat_dst=("192.168.1.2", 32804), conn="10.1.3.143:32803-10.1.6.18:1720"),
    lambda ch: H323Context(ch, "outbound", ("17.2.0.124", 2034), ("17.2.0.161", 1719),
                           nat_src=("1.1.1.12", 2034)),
    lambda ch: H323Context(ch, "inbound", ("17.2.0.161", 1719), ("1.1.1.12", 2034),
                           nat_dst=("17.2.0.124", 2034)),
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(MESSAGES) - 1), st.integers(0, len(CTXS) - 1),
                          st.sampled_from(["msg", "timer", "media"])), max_size=14))
def test_state_is_the_fold_of_events(ops):
    s = EMPTY
    log = []
    now = 0.0
    for i, c, kind in ops:
        now += 40.0
        if kind == "msg":
            ch, data = MESSAGES[i]
            res = step(s, CTXS[c](ch), data, now)
            if res.verdict == "forward":
                assert len(res.data) == len(data)
        elif kind == "timer":
            keys = [f"h323-call/{k}" for k in s.calls] + [f"h323-ras/{r}/{q}" for r, q in s.ras]
            if not keys:
                continue
            res = on_timer(s, keys[i % len(keys)], now + 100000.0)
        else:
            pins = [p for c_ in s.calls.values() for p in c_.pinholes]
            if not pins:
                continue
            res = media_activity(s, pins[i % len(pins)], now)
        assert fold(res.events, s) == res.state
        log.extend(res.events)
        s = res.state
        # journal round trip: every event survives its payload form
        for e in res.events:
            assert type(e).from_payload(e.to_payload()) == e
    assert fold(log) == s
