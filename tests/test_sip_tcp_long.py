"""SIP messages over TCP longer than one segment (tcp_stream.SipStream
retained segments, gateway/datapath/resegment.py): held without a verdict
until whole, rewritten by the ALG as one message, and released as the same
segments, each with its share at its own place in the sequence space.

The gateway is the one of tests/data/pcap-sip-tcp-behind-nat.cfg (the phone
10.33.6.100 behind NAT, the callee 10.33.6.101 outside). A harness plays the
node: a retained segment's release function is entered with the set, the
completing segment runs the ALG, then every verdict is given in order
(actors.node._releasing). What left is checked as the callee's TCP would
take it: contiguous, exactly the rewritten message, no private address."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from actors.algs import SipAdapter
from actors.node import _releasing
from gateway import domain
from gateway.config import load_file, parse_text, render
from gateway.datapath import Alg, Datapath, Drop, resegment
from gateway.packet import ACK, PSH, SYN, build_tcp, parse
from gateway.sip.framing import frame_stream

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "tests" / "data" / "pcap-sip-tcp-behind-nat.cfg"
PHONE, PEER, PUBLIC = "10.33.6.100", "10.33.6.101", "10.33.6.1"
MSS = 1460
ISN_C, ISN_S = 4_294_960_000, 77_000      # the caller's wraps around 2**32 mid-message
_MOD = 1 << 32


def invite(body_octets: int, call: str = "big-1") -> bytes:
    """An INVITE whose SDP has about ``body_octets`` octets: the phone's
    address in o= and c= at the top, and in the media's c= line at the end,
    after session attributes that make it long (as ICE and codec lists do)."""
    top = [f"v=0", f"o=- 1 1 IN IP4 {PHONE}", "s=-", f"c=IN IP4 {PHONE}", "t=0 0"]
    tail = ["m=audio 20000 RTP/AVP 0 8", f"c=IN IP4 {PHONE}", "a=rtpmap:0 PCMU/8000", "a=sendrecv"]
    lines = list(top)
    i = 0
    while sum(len(x) + 2 for x in lines + tail) < body_octets:
        lines.append(f"a=x-filler-{i:05d}:" + "z" * 48)
        i += 1
    body = ("\r\n".join(lines + tail) + "\r\n").encode()
    head = (f"INVITE sip:bob@{PEER} SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {PHONE}:5060;branch=z9hG4bK-{call}\r\n"
            f"From: <sip:alice@{PHONE}>;tag=1\r\nTo: <sip:bob@{PEER}>\r\n"
            f"Call-ID: {call}@{PHONE}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:alice@{PHONE}:5060;transport=tcp>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class Gate:
    """The datapath with the node's part of the work done in line."""

    def __init__(self, max_message: int | None = None) -> None:
        cfg = load_file(CFG)
        if max_message is not None:
            cfg = replace(cfg, sip=replace(cfg.sip, tcp_max_message=max_message))
        self.cfg = cfg
        self.dp = Datapath(cfg)
        self.state = domain.EMPTY
        self.out: list = []              # (direction, parsed packet), in verdict order
        self.drops: list[Drop] = []
        self.alg_in: list[bytes] = []
        self.alg_out: list[bytes] = []
        self.events: list = []
        self.public_port = 0
        self.waiting = 0
        self.fed: list[tuple[float, bytes]] = []      # every packet given, with its time
        self.emitted: list[tuple[float, bytes]] = []  # every packet that left, with the time given
        self.now = 1.0

    def _give(self, d: str, v) -> None:
        if isinstance(v, Drop):
            self.drops.append(v)
        else:
            q = parse(v.data)
            assert q.ip_checksum_ok and q.l4_checksum_ok
            self.out.append((d, q))
            self.emitted.append((self.now, v.data))

    def feed(self, raw: bytes, now: float | None = None):
        if now is None:
            now = self.now = self.now + 0.001
        self.now = now
        self.fed.append((now, raw))
        c2s = str(parse(raw).src) == PHONE
        d = "c2s" if c2s else "s2c"
        o = self.dp.process(raw, "ethernet1" if c2s else "ethernet3", now)

        def give(v, _d=d):
            self._give(_d, v)
        if not isinstance(o, Alg):
            give(o)
            return o
        seg = o.segment
        if seg.retained is not None:
            if seg.part:
                seg.retained.wait(seg, give)
                self.waiting += 1
                return "retained"
            give = _releasing(seg.retained, seg, give)
        ctx = SipAdapter.context(o, self.dp.engine)
        r = SipAdapter.step(self.state.sip, ctx, o.payload, now, self.cfg.sip)
        if r.verdict != "forward":
            final = self.dp.drop(r.reason)
        else:
            self.state = replace(self.state, sip=r.state)
            for e in r.events:
                if e.TYPE.startswith("tcp."):
                    self.state = domain.apply(self.state, e)
                    self.events.append(e)
            self.alg_in.append(o.payload)
            self.alg_out.append(r.data)
            final = self.dp.finish_alg(o, r.verdict, r.data, r.route_to, r.pinholes_open,
                                       r.pinholes_close, now)
        give(final)
        return final

    def connect(self) -> None:
        o = self.feed(build_tcp(PHONE, PEER, 40000, 5060, ISN_C, 0, SYN))
        self.public_port = parse(o.data).sport
        self.feed(build_tcp(PEER, PUBLIC, 5060, self.public_port, ISN_S, ISN_C + 1, SYN | ACK))
        self.feed(build_tcp(PHONE, PEER, 40000, 5060, ISN_C + 1, ISN_S + 1, ACK))
        self.out.clear()

    def segments(self, data: bytes, offset: int = 0, mss: int = MSS) -> list[tuple[int, bytes]]:
        """(sequence number, payload) of the caller's segments of ``data``."""
        return [((ISN_C + 1 + offset + i) % _MOD, data[i:i + mss]) for i in range(0, len(data), mss)]

    def send(self, seq: int, payload: bytes, now: float | None = None):
        return self.feed(build_tcp(PHONE, PEER, 40000, 5060, seq, ISN_S + 1, ACK | PSH, payload), now)

    def received(self, d: str = "c2s") -> bytes:
        """The receiver's stream: every data segment must start where the
        one before it ended, or repeat exactly octets already received (a
        retransmission), in the order they left."""
        out = b""
        for dd, q in self.out:
            if dd != d or not q.payload_bytes:
                continue
            off = (q.tcp_seq - ISN_C - 1) % _MOD
            data = q.payload_bytes
            assert off <= len(out), ("gap", off, len(out))
            assert out[off:off + len(data)] == data[:len(out) - off], "a retransmission differs"
            out += data[len(out) - off:]
        return out


def _rewritten(gate: Gate, msg: bytes) -> bytes:
    got = gate.received()
    assert got == b"".join(gate.alg_out)
    assert PHONE.encode() not in got
    (m,), rest = frame_stream(got)
    assert rest == b""
    head, _, body = m.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert body.count(PUBLIC.encode()) == 3          # o=, session c=, media c=
    return m


@pytest.mark.parametrize("octets,count", [(1600, 2), (3400, 3), (64 * 1024, 45)],
                         ids=["2-segments", "3-segments", "64KiB-sdp"])
def test_a_long_invite_in_order_leaves_rewritten_in_its_segments(octets, count):
    msg = invite(octets - 450)
    gate = Gate()
    gate.connect()
    segs = gate.segments(msg)
    assert len(segs) == count and len(msg) > MSS
    for seq, data in segs:
        gate.send(seq, data)
    assert gate.drops == []
    assert gate.alg_in == [msg]
    m = _rewritten(gate, msg)
    # Same number of packets, none longer than the sender's segments.
    sent = [q for d, q in gate.out if d == "c2s"]
    assert len(sent) == count and max(len(q.payload_bytes) for q in sent) <= MSS
    assert len(m) != len(msg)             # the adjustment is exercised
    # Every resized segment is one journaled adjustment, as the datapath
    # spread it; the callee's acknowledgement of the whole message goes back
    # to the caller as the end of what it sent.
    layout = [(s, len(p)) for s, p in segs]
    assert [(e.position, e.change) for e in gate.events] == resegment.changes(layout, len(m))
    end_emitted = (sent[-1].tcp_seq + len(sent[-1].payload_bytes)) % _MOD
    o = gate.feed(build_tcp(PEER, PUBLIC, 5060, gate.public_port, ISN_S + 1, end_emitted, ACK))
    assert parse(o.data).tcp_ack == (ISN_C + 1 + len(msg)) % _MOD
    # ... and so is each segment's end, acknowledged: the sender's own end of it.
    for q, (s, p) in zip(sent, segs):
        o = gate.feed(build_tcp(PEER, PUBLIC, 5060, gate.public_port, ISN_S + 1,
                                (q.tcp_seq + len(q.payload_bytes)) % _MOD, ACK))
        assert parse(o.data).tcp_ack == (s + len(p)) % _MOD
    stats = gate.dp.stats()["sip_tcp"]
    assert stats["retained"] == count - 1 and stats["retained_octets"] == 0


def test_out_of_order_and_retransmitted_segments():
    msg = invite(9000)
    gate = Gate()
    gate.connect()
    segs = gate.segments(msg)
    order = list(range(len(segs)))
    random.Random(7).shuffle(order)
    if order[-1] == 0:
        order.reverse()
    dup = order[: len(order) // 2]
    for i in order[:-1]:
        gate.send(*segs[i])
    for i in dup[:2]:
        # A retransmission of a retained segment: the original still waits.
        assert isinstance(gate.send(*segs[i]), Drop)
    gate.send(*segs[order[-1]])
    assert gate.alg_in == [msg]
    assert all("retained" in d.reason for d in gate.drops), gate.drops
    _rewritten(gate, msg)
    n_out = len([q for d, q in gate.out if d == "c2s"])
    assert n_out == len(segs)
    # After the release, a retransmission of a segment leaves as its share did.
    (k, (seq, data)) = next((i, s) for i, s in enumerate(segs) if i)
    first = [q for d, q in gate.out if d == "c2s"][k]
    o = gate.send(seq, data)
    q = parse(o.data)
    assert (q.tcp_seq, q.payload_bytes) == (first.tcp_seq, first.payload_bytes)


def test_a_segment_with_the_end_of_one_message_and_the_start_of_the_next():
    a, b = invite(2500, "one"), invite(2500, "two")
    stream = a + b
    gate = Gate()
    gate.connect()
    # Cut so that one segment carries the end of the first and the start of the second.
    cuts = [0, 1400, len(a) - 300, len(a) + 900, len(stream)]
    segs = [((ISN_C + 1 + x) % _MOD, stream[x:y]) for x, y in zip(cuts, cuts[1:])]
    results = [gate.send(s, p) for s, p in segs]
    assert results[:3] == ["retained"] * 3
    assert gate.drops == []
    assert gate.alg_in == [stream]               # both messages, one set
    got = gate.received()
    assert PHONE.encode() not in got
    msgs, rest = frame_stream(got)
    assert rest == b"" and len(msgs) == 2
    assert b"Call-ID: one@" in msgs[0] and b"Call-ID: two@" in msgs[1]
    # The segment that carried both left with the end of the first and the start of the second.
    sent = [q.payload_bytes for d, q in gate.out if d == "c2s"]
    assert len(sent) == 4 and sum(map(len, sent[:2])) < len(msgs[0]) < sum(map(len, sent[:3]))


def test_beyond_the_limit_is_dropped_never_forwarded():
    msg = invite(20000)
    gate = Gate(max_message=8000)
    gate.connect()
    segs = gate.segments(msg)
    results = [gate.send(s, p) for s, p in segs]
    assert isinstance(results[0], Drop) and "tcp-max-message 8000" in results[0].reason
    assert all(isinstance(r, Drop) for r in results)
    assert [q for d, q in gate.out if d == "c2s" and q.payload_bytes] == []
    assert gate.dp.stats()["sip_tcp"]["over_limit"] == 1
    # The sender's retransmission meets the same verdict.
    assert isinstance(gate.send(*segs[0]), Drop)


def test_a_message_whose_headers_do_not_say_its_length_yet_is_limited_too():
    msg = invite(20000)
    gate = Gate(max_message=2000)
    gate.connect()
    head = msg[:msg.index(b"Content-Length")]
    filler = b"X-Pad: " + b"p" * 3000 + b"\r\n"
    data = head + filler + msg[msg.index(b"Content-Length"):]
    results = [gate.send(s, p) for s, p in gate.segments(data)]
    assert any(isinstance(r, Drop) and "tcp-max-message" in r.reason for r in results)
    assert [q for d, q in gate.out if d == "c2s" and q.payload_bytes] == []


def test_retained_octets_are_bounded_for_all_connections():
    msg = invite(9000)
    gate = Gate()
    gate.connect()
    stream = gate.dp._tpkt[next(iter(gate.dp._tpkt))]
    stream.retained_total = 4000
    segs = gate.segments(msg)
    r = [gate.send(s, p) for s, p in segs[:4]]
    assert r[:2] == ["retained", "retained"]
    assert isinstance(r[2], Drop) and "already retained" in r[2].reason
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] <= 4000


def test_a_set_that_waits_too_long_is_forgotten_and_the_retransmission_starts_again():
    msg = invite(5000)
    gate = Gate()
    gate.connect()
    segs = gate.segments(msg)
    for s, p in segs[:2]:
        assert gate.send(s, p, now=1.0) == "retained"
    # The rest comes after the hold time: the set is forgotten (its packets
    # are dropped by the ingest's verdict timeout), the sender starts over.
    for s, p in segs:
        gate.send(s, p, now=10.0)
    assert gate.dp.stats()["sip_tcp"]["retained_expired"] == 1
    assert gate.alg_in == [msg]
    got = b"".join(q.payload_bytes for d, q in gate.out if d == "c2s")
    assert got == gate.alg_out[0] and PHONE.encode() not in got


def test_a_takeover_loses_the_retained_set_and_the_new_active_reassembles_the_retransmission():
    """The packets of a retained set are queued on the failed node: lost.
    The new active (no stream state) sees the sender's retransmission of
    the whole message as a connection first seen mid-stream."""
    msg = invite(5000)
    gate = Gate()
    gate.connect()
    segs = gate.segments(msg)
    for s, p in segs[:2]:
        assert gate.send(s, p) == "retained"
    new = Gate()
    new.public_port = gate.public_port
    new.dp.restore_tcp(gate.state.tcp)
    for s, p in segs:
        new.send(s, p)
    assert new.alg_in == [msg]
    got = b"".join(q.payload_bytes for d, q in new.out if d == "c2s")
    assert got == new.alg_out[0] and PHONE.encode() not in got


def test_spread_keeps_segment_sizes_and_puts_changes_at_the_end():
    assert resegment.spread([1460, 1460, 300], 3220 + 40) == [1460, 1460, 340]
    assert resegment.spread([1460, 1460, 1450], 4370 + 30) == [1460, 1460, 1460] \
        or sum(resegment.spread([1460, 1460, 1450], 4400)) == 4400
    assert resegment.spread([1460, 1460, 10], 2930 - 20) == [1460, 1449, 1]
    assert sum(resegment.spread([5, 5], 3)) == 3
    assert resegment.changes([(100, 1460), (1560, 300)], 1760) == []


def test_tcp_max_message_setting():
    cfg = parse_text("set sip tcp-max-message 70000\n")
    assert cfg.sip.tcp_max_message == 70000
    assert "set sip tcp-max-message 70000" in render(cfg)
    assert parse_text(render(cfg)) == cfg
    assert parse_text(render(cfg) + "unset sip tcp-max-message\n").sip.tcp_max_message == 131072


def test_an_acknowledgement_behind_a_retained_set_waits_and_takes_its_adjustment():
    msg = invite(4000)
    gate = Gate()
    gate.connect()
    segs = gate.segments(msg)
    for s, p in segs[:-1]:
        gate.send(s, p)
    # The caller acknowledges something of the callee's while its INVITE is
    # retained: its number lies after the retained octets.
    end = (segs[-1][0] + len(segs[-1][1])) % _MOD
    assert gate.feed(build_tcp(PHONE, PEER, 40000, 5060, end, ISN_S + 1, ACK)) == "retained"
    gate.send(*segs[-1])
    sent = [q for d, q in gate.out if d == "c2s"]
    assert [bool(q.payload_bytes) for q in sent] == [True] * len(segs) + [False]
    data_end = (sent[-2].tcp_seq + len(sent[-2].payload_bytes)) % _MOD
    assert sent[-1].tcp_seq == data_end != end
    _rewritten(gate, msg)


def test_a_duplicate_of_a_later_held_part_does_not_end_the_holding():
    # Two 1-octet parts are held to leave coalesced; the network then
    # delivers the second one again. The holding goes on (a sender
    # retransmits from the first held octet, never from the second alone):
    # the duplicate is dropped and the message leaves whole and rewritten
    # with the parts that follow. Before, the duplicate ended the holding,
    # the held octets were discarded and the message never reached the ALG.
    msg = invite(1500)
    cuts = [0, 1, 2, 423, len(msg)]
    segs = [((ISN_C + 1 + a) % _MOD, msg[a:b]) for a, b in zip(cuts, cuts[1:])]
    gate = Gate()
    gate.connect()
    assert gate.send(*segs[0]).category == "held"
    assert gate.send(*segs[1]).category == "held"
    dup = gate.send(*segs[1])
    assert dup.category == "alg" and "duplicate of octets held" in dup.reason
    for s, p in segs[2:]:
        gate.send(s, p)
    assert gate.alg_in == [msg]
    got = gate.received()
    assert got == gate.alg_out[0] and PHONE.encode() not in got
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] == 0
    # Counted once each: the duplicate, and every segment of the connection's data.
    counts = gate.dp.stats()["sip_tcp"]
    assert counts["held_retransmissions"] == 1 and counts["segments"] == len(segs) + 1


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_cut_order_and_duplicates_leave_exactly_the_rewritten_message(data):
    msg = invite(data.draw(st.integers(1500, 12000), label="octets"))
    n = len(msg)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=10), label="cuts")))
    bounds = [0] + cuts + [n]
    segs = [((ISN_C + 1 + a) % _MOD, msg[a:b]) for a, b in zip(bounds, bounds[1:]) if b - a <= MSS]
    if sum(len(p) for _s, p in segs) != n:
        segs = Gate().segments(msg)
    order = data.draw(st.permutations(range(len(segs))), label="order")
    dups = data.draw(st.lists(st.sampled_from(range(len(segs))), max_size=4), label="dups")
    gate = Gate()
    gate.connect()
    sent_last = False
    for k, i in enumerate(order):
        gate.send(*segs[i])
        if k == len(order) - 1:
            sent_last = True
        elif dups and k % 3 == 0:
            gate.send(*segs[dups.pop()])
    assert sent_last and gate.alg_in == [msg]
    got = gate.received()
    assert got == gate.alg_out[0] and PHONE.encode() not in got
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] == 0


def test_a_connection_that_stops_sending_keeps_no_retained_octets():
    msg = invite(5000)
    gate = Gate()
    gate.connect()
    for s, p in gate.segments(msg)[:2]:
        assert gate.send(s, p, now=1.0) == "retained"
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] == 2 * MSS
    gate.dp.expire(3.0)
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] == 2 * MSS
    gate.dp.expire(6.0)
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] == 0
    assert gate.dp.stats()["sip_tcp"]["retained_expired"] == 1
    # The session's end frees them too.
    for s, p in gate.segments(msg)[:2]:
        gate.send(s, p, now=7.0)
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] == 2 * MSS
    (sess,) = [s for s in gate.dp.sessions if s.alg == "sip"]
    gate.dp.remove_session(sess)
    assert gate.dp.stats()["sip_tcp"]["retained_octets"] == 0
