"""SIP over TCP through the datapath: Content-Length framing per connection
and direction, every complete message through the SIP ALG, and the sequence
adjustment a length-changing rewrite needs (gateway/datapath/seqadj.py,
tcp_stream.SipStream, sip_segment.step_segment), also across a takeover.

The corpus capture sip_ipv4_tcp.pcap (INVITE/100/180/200/ACK/BYE/200 over one
connection) is replayed in a closed loop: the caller 10.33.6.100 is behind
the gateway's NAT (tests/data/pcap-sip-tcp-behind-nat.cfg), and each packet
of the far side is given as that side would send it: to the gateway's public
address, acknowledging what it received (the gateway's rewritten stream),
not what the capture's caller sent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from actors.algs import SipAdapter
from gateway import domain
from gateway.config import load_file
from gateway.datapath import Alg, Datapath, Drop, Forward, seqadj
from gateway.datapath.tcp_stream import FramedStream, SipStream
from gateway.packet import ACK, build_tcp, parse, rewrite, sack_option
from gateway.sip.framing import frame_stream

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcap"
CFG = ROOT / "tests" / "data" / "pcap-sip-tcp-behind-nat.cfg"
PHONE, PEER, PUBLIC = "10.33.6.100", "10.33.6.101", "10.33.6.1"


def _ips(name: str, remap: dict | None = None) -> list[tuple[float, bytes]]:
    from scapy.all import IP, TCP, rdpcap
    out = []
    for p in rdpcap(str(CORPUS / name)):
        if IP in p and TCP in p:
            raw = bytes(p[IP])[:p[IP].len]
            if remap:
                q = parse(raw)
                raw = rewrite(q, src=remap[str(q.src)][0], dst=remap[str(q.dst)][0],
                              sport=remap[str(q.src)][1] or q.sport, dport=remap[str(q.dst)][1] or q.dport)
            out.append((float(p.time), raw))
    return out


class Loop:
    """The gateway between the capture's caller (behind NAT) and callee,
    each side answering what it received."""

    def __init__(self, dp: Datapath | None = None, state=domain.EMPTY, public_port: int | None = None,
                 echo: bool = True):
        self.cfg = load_file(CFG)
        self.dp = dp if dp is not None else Datapath(self.cfg)
        self.state = state
        self.public_port = public_port
        # per direction ("c2s", "s2c"): original end seq -> end seq as emitted
        self.ends: dict[str, dict[int, int]] = {"c2s": {}, "s2c": {}}
        self.emitted: dict[str, list] = {"c2s": [], "s2c": []}
        self.alg_out: dict[str, list[bytes]] = {"c2s": [], "s2c": []}
        self.alg_in: dict[str, list[bytes]] = {"c2s": [], "s2c": []}
        self.drops: list[Drop] = []
        self.fed: list[tuple[float, bytes]] = []
        self.last_end: dict[str, int] = {}
        # The callee's stream as it would send it: its messages name the
        # caller as the gateway showed it (public address and port), so its
        # numbering differs from the capture's: capture end seq -> its own.
        self.echo = echo
        self.shift: dict[int, int] = {}
        self.delta = 0

    def _as_callee_sends(self, p) -> bytes:
        data = p.payload_bytes
        seq = (p.tcp_seq + self.delta) % (1 << 32)
        if data and self.echo:
            pub = f"{PUBLIC}:{self.public_port}".encode()
            new = data.replace(PHONE.encode() + b":5060", pub).replace(b"TCP " + PHONE.encode() + b";",
                                                                         b"TCP " + pub + b";")
            new = new.replace(PHONE.encode(), PUBLIC.encode())
            head, sep, body = new.partition(b"\r\n\r\n")
            lines = [ln if not ln.lower().startswith(b"content-length") else b"Content-Length: %d" % len(body)
                     for ln in head.split(b"\r\n")]
            new = b"\r\n".join(lines) + sep + body
            self.delta += len(new) - len(data)
            data = new
        end = (p.tcp_seq + len(p.payload_bytes) + (1 if p.tcp_flags & 0x03 else 0)) % (1 << 32)
        self.shift[end] = (seq + len(data) + (1 if p.tcp_flags & 0x03 else 0)) % (1 << 32)
        return rewrite(p, dst=PUBLIC, dport=self.public_port, tcp_seq=seq,
                       payload=data if data != p.payload_bytes else None)

    def feed(self, ts: float, raw: bytes):
        p = parse(raw)
        c2s = str(p.src) == PHONE
        d = "c2s" if c2s else "s2c"
        other = "s2c" if c2s else "c2s"
        ack = p.tcp_ack
        # What the receiver of this packet must see as acknowledgement: its
        # own numbering (the callee's, or the caller's as captured).
        want = self.shift.get(ack, ack) if c2s else ack
        if not c2s:
            raw = self._as_callee_sends(p)
        else:
            ack = want
        if p.tcp_flags & ACK:
            # The sender acknowledges what it received: the emitted stream.
            # (Octets the gateway held back never reached it: it repeats
            # its last acknowledgement.)
            got = self.ends[other].get(ack)
            if got is None:
                got = self.last_end.get(other, ack)
            raw = rewrite(parse(raw), tcp_ack=got)
        p = parse(raw)
        self.fed.append((ts, raw))
        o = self.dp.process(raw, "ethernet1" if c2s else "ethernet3", ts)
        if isinstance(o, Alg):
            assert o.alg == "sip" and o.transport == "tcp" and o.segment is not None
            ctx = SipAdapter.context(o, self.dp.engine)
            r = SipAdapter.step(self.state.sip, ctx, o.payload, ts, self.cfg.sip)
            assert r.verdict == "forward", r.reason
            self.state = replace(self.state, sip=r.state)
            for e in r.events:
                if e.TYPE.startswith("tcp."):
                    self.state = domain.apply(self.state, e)
            self.alg_in[d].append(o.payload)
            self.alg_out[d].append(r.data)
            o = self.dp.finish_alg(o, r.verdict, r.data, r.route_to, r.pinholes_open, r.pinholes_close, ts)
        if isinstance(o, Drop):
            self.drops.append(o)
            return o
        q = parse(o.data)
        assert q.ip_checksum_ok and q.l4_checksum_ok
        if c2s and self.public_port is None:
            self.public_port = q.sport
        end = (p.tcp_seq + len(p.payload_bytes) + (1 if p.tcp_flags & 0x03 else 0)) % (1 << 32)
        self.ends[d][end] = (q.tcp_seq + len(q.payload_bytes) + (1 if q.tcp_flags & 0x03 else 0)) % (1 << 32)
        self.emitted[d].append((p, q, want))
        self.last_end[d] = self.ends[d][end]
        return o

    def stream(self, d: str) -> bytes:
        """The receiver's byte stream from the emitted segments: each must
        start where the one before ended (no gap, no overlap)."""
        out = b""
        nxt = None
        for _p, q, _w in self.emitted[d]:
            if q.tcp_flags & 0x02:
                nxt = (q.tcp_seq + 1) % (1 << 32)
                continue
            data = q.payload_bytes
            if data:
                assert q.tcp_seq == nxt, (q.tcp_seq, nxt)
                out += data
                nxt = (nxt + len(data)) % (1 << 32)
            else:
                assert q.tcp_seq == nxt
        return out


@pytest.fixture(scope="module")
def invite_call():
    frames = _ips("sip_ipv4_tcp.pcap")
    loop = Loop()
    for ts, raw in frames:
        loop.feed(ts, raw)
    return frames, loop


def _messages(stream: bytes) -> list[bytes]:
    msgs, rest = frame_stream(stream)
    assert rest == b""
    return msgs


def test_every_message_through_the_alg_and_the_streams_line_up(invite_call):
    _frames, loop = invite_call
    assert loop.drops == []
    # INVITE, ACK, BYE from the caller; 100, 180, 200, 200 from the callee.
    assert [len(_messages(b"".join(loop.alg_in[d]))) for d in ("c2s", "s2c")] == [3, 4]
    for d in ("c2s", "s2c"):
        # What the receiver reassembles is exactly what the ALG made of the messages.
        assert loop.stream(d) == b"".join(loop.alg_out[d])
    # The rewrites changed lengths (the private address and port are longer
    # or shorter than the public ones), so the adjustment was exercised.
    assert loop.dp.stats()["sip_tcp"]["adjusted"] >= 3
    assert any(len(a) != len(b) for a, b in zip(loop.alg_in["s2c"], loop.alg_out["s2c"]))


def test_rewritten_addresses_and_content_length(invite_call):
    from gateway.sip import parse_message
    _frames, loop = invite_call
    out = loop.stream("c2s")
    for m in _messages(out):
        msg = parse_message(m)
        head, _, body = m.partition(b"\r\n\r\n")
        cl = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
        assert len(cl) == 1 and int(cl[0].split(b":")[1]) == len(body)
        for line in head.split(b"\r\n"):
            if line.lower().startswith((b"via", b"contact")):
                assert PHONE.encode() not in line, line
        if body:
            assert PHONE.encode() not in body
        assert msg is not None
    # Towards the phone its own address is back where the callee wrote the public one.
    for m in _messages(loop.stream("s2c")):
        via = [ln for ln in m.split(b"\r\n") if ln.lower().startswith(b"via")]
        assert all(PUBLIC.encode() + b":" not in v and PUBLIC.encode() + b";" not in v for v in via), via


def test_acknowledgements_go_back_to_each_senders_own_numbering(invite_call):
    _frames, loop = invite_call
    for d in ("c2s", "s2c"):
        for p, q, want in loop.emitted[d]:
            if p.tcp_flags & ACK:
                # The receiver of this packet gets its own numbering back.
                assert q.tcp_ack == want, (d, want, q.tcp_ack)


def test_sack_blocks_are_adjusted_like_the_acknowledgement(invite_call):
    _frames, loop = invite_call
    # The callee selectively acknowledges, in the stream it received, the
    # 200 answering the BYE while missing the ACK request: the gateway gives the edges back in
    # the caller's numbering.
    (_p1, q_ack_req), = [(p, q) for p, q, _w in loop.emitted["c2s"] if p.payload_bytes.startswith(b"ACK ")]
    (p_bye, q_bye), = [(p, q) for p, q, _w in loop.emitted["c2s"] if p.payload_bytes.startswith(b"SIP/2.0 200")]
    last = loop.emitted["s2c"][-1][0]
    seg = build_tcp(PEER, PUBLIC, 5060, loop.public_port, last.tcp_seq, q_ack_req.tcp_seq,
                    options=b"\x01\x01" + sack_option([(q_bye.tcp_seq, q_bye.tcp_seq + len(q_bye.payload_bytes))]))
    o = loop.dp.process(seg, "ethernet3", 1e10)
    assert isinstance(o, Forward)
    q = parse(o.data)
    (p_ack_req, _), = [(p, q) for p, q, _w in loop.emitted["c2s"] if p.payload_bytes.startswith(b"ACK ")]
    assert q.tcp_ack == p_ack_req.tcp_seq
    assert q.sack_blocks == ((p_bye.tcp_seq, p_bye.tcp_seq + len(p_bye.payload_bytes)),)
    assert q.l4_checksum_ok


def test_a_retransmission_of_a_rewritten_segment_leaves_as_the_first_copy(invite_call):
    frames, _loop = invite_call
    loop = Loop()
    for ts, raw in frames[:3]:
        loop.feed(ts, raw)
    first = loop.emitted["c2s"][-1][1]
    assert first.payload_bytes.startswith(b"INVITE")
    o = loop.dp.process(rewrite(parse(frames[2][1])), "ethernet1", frames[2][0] + 0.2)
    assert isinstance(o, Forward)
    again = parse(o.data)
    assert (again.tcp_seq, again.payload_bytes) == (first.tcp_seq, first.payload_bytes)
    assert again.l4_checksum_ok
    assert loop.dp.stats()["sip_tcp"]["retransmitted"] == 1


def test_takeover_rebuilds_the_adjustment_from_the_folded_state(invite_call):
    """A node takes over after the 180 Ringing: its datapath is new, its
    sessions start again from policy, and the connection's adjustment comes
    from the journaled tcp.seq_adjusted events (folded state)."""
    frames, whole = invite_call
    a = Loop()
    cut = 7                                   # INVITE, 100, 180 and their ACKs seen
    for ts, raw in frames[:cut]:
        a.feed(ts, raw)
    assert a.state.tcp.conns, "the rewrites were journaled as tcp.seq_adjusted"
    # The state as the standby folds it from the journal: every event of the run.
    dp = Datapath(a.cfg)
    dp.restore_tcp(a.state.tcp)
    b = Loop(dp, a.state, a.public_port)
    b.ends = a.ends
    for ts, raw in frames[cut:]:
        b.feed(ts, raw)
    assert b.drops == []
    # Every later segment leaves exactly as it did through the one gateway.
    assert [(q.tcp_seq, q.tcp_ack, q.payload_bytes) for _p, q, _w in b.emitted["c2s"]] == \
        [(q.tcp_seq, q.tcp_ack, q.payload_bytes) for _p, q, _w in whole.emitted["c2s"][-len(b.emitted["c2s"]):]]
    assert [(q.tcp_seq, q.tcp_ack, q.payload_bytes) for _p, q, _w in b.emitted["s2c"]] == \
        [(q.tcp_seq, q.tcp_ack, q.payload_bytes) for _p, q, _w in whole.emitted["s2c"][-len(b.emitted["s2c"]):]]


def test_without_the_state_a_takeover_would_break_the_stream(invite_call):
    """The same takeover with the adjustment not restored: the caller's next
    segment leaves at its unadjusted number (what the test above guards)."""
    frames, whole = invite_call
    a = Loop()
    for ts, raw in frames[:7]:
        a.feed(ts, raw)
    b = Loop(Datapath(a.cfg), a.state, a.public_port)
    b.ends = a.ends
    for ts, raw in frames[7:]:
        b.feed(ts, raw)
    assert [q.tcp_seq for _p, q, _w in b.emitted["c2s"]] != [q.tcp_seq for _p, q, _w in whole.emitted["c2s"][-len(b.emitted["c2s"]):]]


REMAP = {"127.0.0.1": (PHONE, 0)}


def _register_frames():
    """sip-tcp-method: a REGISTER whose first 400 octets come alone. Its
    loopback addresses: the client (port 58882) becomes the phone, the
    server (port 5060) the peer."""
    from scapy.all import IP, TCP, rdpcap
    out = []
    for p in rdpcap(str(CORPUS / "sip-tcp-method__sip-tcp.pcap")):
        raw = bytes(p[IP])[:p[IP].len]
        q = parse(raw)
        client = q.sport != 5060
        ip = IP(rewrite(q, src=PHONE if client else PEER, dst=PEER if client else PHONE))
        # Captured on loopback: checksums left to the (absent) offload.
        del ip.chksum
        del ip[TCP].chksum
        out.append((float(p.time), bytes(ip)))
    return out


def test_split_register_is_held_and_leaves_whole():
    frames = _register_frames()
    loop = Loop()
    results = [loop.feed(ts, raw) for ts, raw in frames]
    # The 400-octet first part is held (dropped, kept); the callee's ACK of
    # it (frame 5) acknowledges what it never got: a real callee would not
    # send it; here it only repeats the last acknowledgement.
    held = [o for o in results if isinstance(o, Drop)]
    assert [o.category for o in held] == ["held"], held
    assert loop.dp.stats()["sip_tcp"]["held"] == 1
    reg = [q for _p, q, _w in loop.emitted["c2s"] if q.payload_bytes]
    assert len(reg) == 1 and reg[0].payload_bytes.startswith(b"REGISTER ")
    msgs = _messages(loop.stream("c2s"))
    assert len(msgs) == 1 and msgs[0] == loop.alg_out["c2s"][0]
    assert len(loop.alg_in["c2s"][0]) == 585
    assert loop.stream("s2c").startswith(b"SIP/2.0 200")


# ------------------------------------------------------------------ seqadj

def _reference_fold(events, limit):
    """The connection table as a plain insertion-ordered dict (oldest
    adjusted first, evicted first): what TcpState must agree with."""
    conns: dict = {}
    for e in events:
        sides = dict(conns.pop(e.conn, ()))
        sides[e.sender] = seqadj.add(sides.get(e.sender, seqadj.NONE), e.position, e.change)
        conns[e.conn] = tuple(sorted(sides.items()))
        while len(conns) > limit:
            del conns[next(iter(conns))]
    return conns


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["a", "b"]), st.integers(0, 5000),
                          st.integers(-50, 50)), max_size=60),
       st.integers(1, 6))
def test_tcp_state_keeps_the_most_recently_adjusted_connections(adjustments, limit):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(seqadj, "MAX_CONNECTIONS", limit)
        _check_tcp_state(adjustments, limit)


def _check_tcp_state(adjustments, limit):
    events = [seqadj.TcpSeqAdjusted(f"c{c}", sender, pos, change)
              for c, sender, pos, change in adjustments]
    state = seqadj.EMPTY
    for i, e in enumerate(events):
        state = seqadj.apply(state, e)
        want = _reference_fold(events[:i + 1], limit)
        assert dict(state.conns.items()) == want
        assert set(state.order.keys()) == set(want) == set(state.by_order.values())
        for conn in want:
            assert state.adjustments(conn) == dict(want[conn])
    # The fold is a value: the same events give an equal state.
    again = seqadj.EMPTY
    for e in events:
        again = seqadj.apply(again, e)
    assert again == state


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1500), st.integers(-200, 200)), max_size=40),
       st.integers(0, (1 << 32) - 1))
def test_seqadj_ack_undoes_seq_at_every_segment_boundary(rewrites, isn):
    """Segments back to back, some rewritten with a change of length: the
    receiver's acknowledgement of any segment's end, mapped back, is that
    end in the sender's numbering; every sequence number maps to where the
    emitted stream has it."""
    adj = seqadj.NONE
    pos = isn
    new = isn
    bounds = [(pos, new)]
    for size, change in rewrites:
        change = max(change, -size + 1)
        assert seqadj.map_seq(adj, pos) == new % (1 << 32)
        adj = seqadj.add(adj, pos, change)
        assert seqadj.map_seq(adj, pos) == new % (1 << 32)      # a retransmission: same place
        pos = (pos + size) % (1 << 32)
        new = new + size + change
        bounds.append((pos, new % (1 << 32)))
    keep = bounds[-seqadj.MAX_ENTRIES:]
    for orig, emitted in keep:
        assert seqadj.map_seq(adj, orig) == emitted
        assert seqadj.map_ack(adj, emitted) == orig


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-300, 900), st.integers(0, 400)), max_size=12),
       st.binary(max_size=64))
def test_sip_stream_any_segments(segments, noise):
    """Any segments (retransmitted, overlapping, past gaps, not SIP): the
    stream answers forward/drop/hold/alg, never raises, and an ALG segment's
    messages are whole framed SIP messages."""
    body = b"v=0\r\n"
    msg = (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    stream_bytes = msg * 3 + noise
    s = SipStream()
    s.syn(True, 999)
    for rel, n in segments:
        start = max(0, rel)
        data = stream_bytes[start:start + n]
        if not data:
            continue
        kind, val = s.segment(True, (1000 + start) % (1 << 32), data)
        assert kind in ("forward", "drop", "alg", "hold")
        if kind == "alg":
            for _off, m in val.messages:
                assert frame_stream(m) == ([m], b"")
            FramedStream.finished(val, val.data + b"xx")


@pytest.mark.parametrize("flags", [ACK, ACK | 0x01], ids=["pure-ack", "fin"])
def test_a_segment_without_data_waits_for_the_rewrite_before_it(invite_call, flags):
    """The caller's INVITE is at the ALG (its rewrite will change its
    length) when the caller sends a segment without data behind it (a
    duplicate acknowledgement answering a retransmission, or its FIN). As
    Linux's in-order nf_nat_seqadj would, that segment leaves after the
    INVITE, at the number the INVITE's change moves it to; leaving at once
    it would both overtake the INVITE and name a sequence number inside it
    (tshark: previous segment not captured, then a retransmission)."""
    frames, _whole = invite_call
    loop = Loop()
    for ts, raw in frames[:2]:
        loop.feed(ts, raw)
    ts, raw = frames[2]
    p = parse(raw)
    assert p.payload_bytes.startswith(b"INVITE")
    invite = loop.dp.process(raw, "ethernet1", ts)
    assert isinstance(invite, Alg)
    end = (p.tcp_seq + len(p.payload_bytes)) % (1 << 32)
    behind = build_tcp(PHONE, PEER, p.sport, p.dport, end, p.tcp_ack, flags=flags)
    o = loop.dp.process(behind, "ethernet1", ts + 0.001)
    assert isinstance(o, Alg) and o.segment is not None and o.segment.messages == ()
    left = []
    for out in (invite, o):              # the connection's actor answers in order
        ctx = SipAdapter.context(out, loop.dp.engine)
        r = SipAdapter.step(loop.state.sip, ctx, out.payload, ts, loop.cfg.sip)
        assert r.verdict == "forward", r.reason
        loop.state = replace(loop.state, sip=r.state)
        f = loop.dp.finish_alg(out, r.verdict, r.data, r.route_to, r.pinholes_open,
                               r.pinholes_close, ts)
        assert isinstance(f, Forward)
        left.append(parse(f.data))
    q_invite, q_behind = left
    assert len(q_invite.payload_bytes) != len(p.payload_bytes)     # the rewrite changed it
    assert q_behind.payload_bytes == b"" and q_behind.tcp_flags == flags
    assert q_behind.tcp_seq == (q_invite.tcp_seq + len(q_invite.payload_bytes)) % (1 << 32)
    assert q_behind.l4_checksum_ok


def test_a_segment_without_data_leaves_at_once_when_nothing_is_at_the_alg(invite_call):
    frames, _whole = invite_call
    loop = Loop()
    for ts, raw in frames[:3]:
        loop.feed(ts, raw)
    p, q_invite, _w = loop.emitted["c2s"][-1]
    end = (p.tcp_seq + len(p.payload_bytes)) % (1 << 32)
    o = loop.dp.process(build_tcp(PHONE, PEER, p.sport, p.dport, end, p.tcp_ack), "ethernet1",
                        frames[2][0] + 0.001)
    assert isinstance(o, Forward)
    assert parse(o.data).tcp_seq == (q_invite.tcp_seq + len(q_invite.payload_bytes)) % (1 << 32)
