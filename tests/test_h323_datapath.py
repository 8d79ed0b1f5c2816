"""A whole H.323 call through the datapath and the real H.323 ALG (with the
node's adapter mapping), on the manual's ch. 1 "Outgoing Calls with NAT":
IP_Phone1 10.1.1.5 behind MIP 1.1.1.5, the gatekeeper 10.1.1.25 behind MIP
1.1.1.25, IP_Phone2 2.2.2.5 outside.

RAS (GRQ/GCF, RRQ/RCF, ARQ/ACF) on UDP 1719, Q.931 on TCP 1720 (Setup ..
Connect with h245Address), the H.245 connection through its pinhole
(OpenLogicalChannel / Ack, one split across segments, one retransmitted, two
in one segment), RTP and RTCP both ways through media pinholes, and
ReleaseComplete closing everything. Every packet leaving by the untrust
interface must carry only public addresses (IP header and every H.323
address field) and right checksums (scapy recomputes them)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP

from actors.algs import H323Adapter
from gateway.config import load_file
from gateway.datapath import Alg, Datapath, Drop, Forward
from gateway.datapath.tcp_stream import TpktStream, seq_diff
from gateway.h323 import per
from gateway.h323.h245 import parse_h245
from gateway.h323.nat import address_edit
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.h323.segment import SPLIT_NOT_REWRITTEN
from gateway.h323.state import EMPTY, fold
from gateway.packet import ACK, PSH, SYN, build_tcp, build_udp
from gateway.span import apply_edits

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcap"
TRUST = IPv4Network("10.1.1.0/24")
PHONE1, GK, PHONE2 = "10.1.1.5", "10.1.1.25", "2.2.2.5"
MIP1, MIP_GK = "1.1.1.5", "1.1.1.25"


def _frames():
    from scapy.all import rdpcap
    out = {}
    for n, p in enumerate(rdpcap(str(CORPUS / "h323.pcap")), 1):
        if IP in p and (TCP in p or UDP in p):
            ip = p[IP]
            raw = bytes(ip)[:ip.len]
            out[n] = raw[ip.ihl * 4 + (p[TCP].dataofs * 4 if TCP in p else 8):]
    return out


F = _frames()


def readdress(data: bytes, parse, mapping: dict) -> bytes:
    msg = parse(data)
    edits = [address_edit(a, *mapping[a.field]) for a in msg.addresses if a.field in mapping]
    return apply_edits(data, edits)


def ras(kind: str, fields: dict) -> bytes:
    """A RAS message built with pycrate's encoder (test fixture only: the
    gateway never re-encodes)."""
    per.RAS_MESSAGE.set_val((kind, fields))
    return per.RAS_MESSAGE.to_aper()


def ta(ip: str, port: int):
    return ("ipAddress", {"ip": IPv4Address(ip).packed, "port": port})


SETUP = readdress(F[6], parse_call_signal, {"destCallSignalAddress": (PHONE2, 1720),
                                            "sourceCallSignalAddress": (PHONE1, 32803)})
GUID = parse_call_signal(SETUP).call_identifier()
PROCEEDING, ALERTING = F[10], F[14]
CONNECT = readdress(F[18], parse_call_signal, {"h245Address": (PHONE2, 1232)})
OLC1 = readdress(F[38], parse_h245, {"mediaControlChannel": (PHONE1, 5001)})
OLC2 = readdress(F[39], parse_h245, {"mediaControlChannel": (PHONE2, 2007)})
ACK1 = readdress(F[41], parse_h245, {"mediaChannel": (PHONE1, 5000), "mediaControlChannel": (PHONE1, 5001)})
ACK2 = readdress(F[42], parse_h245, {"mediaChannel": (PHONE2, 2006), "mediaControlChannel": (PHONE2, 2007)})
PROTO = (0, 0, 8, 2250, 0, 4)
GRQ = ras("gatekeeperRequest", {"requestSeqNum": 1, "protocolIdentifier": PROTO,
                                "rasAddress": ta(PHONE2, 1719),
                                "endpointType": {"terminal": {}, "mc": False, "undefinedNode": False}})
GCF = readdress(F[60], parse_ras, {"rasAddress": (GK, 1719)})
RRQ = readdress(F[61], parse_ras, {"callSignalAddress": (PHONE2, 1720), "rasAddress": (PHONE2, 1719)})
RCF = readdress(F[62], parse_ras, {"callSignalAddress": (PHONE2, 1720)})


def _arq_acf():
    """The corpus ARQ/ACF readdressed, the ARQ's callIdentifier replaced in
    place by the Setup's (pycrate's encoder cannot be trusted with the RAS
    extension additions: what it encodes does not decode)."""
    arq = readdress(F[63], parse_ras, {"destCallSignalAddress": (PHONE2, 1720)})
    old_guid = per.decode(per.RAS_MESSAGE, arq, "arq")[1]["callIdentifier"]["guid"]
    assert arq.count(old_guid) == 1
    arq = arq.replace(old_guid, GUID)
    acf = readdress(F[64], parse_ras, {"destCallSignalAddress": (PHONE2, 1720)})
    return arq, acf


ARQ, ACF = _arq_acf()


def release(call_ref: int, from_dest: bool) -> bytes:
    q = bytes([0x08, 0x02, ((call_ref >> 8) & 0x7F) | (0x80 if from_dest else 0), call_ref & 0xFF, 0x5A])
    return b"\x03\x00" + (len(q) + 4).to_bytes(2, "big") + q


def checked(data: bytes) -> IP:
    """scapy's view of the packet, both checksums checked against scapy's own."""
    pkt = IP(data)
    fresh = IP(data)
    del fresh.chksum
    del fresh.payload.chksum
    fresh = IP(bytes(fresh))
    assert pkt.chksum == fresh.chksum, "IP checksum"
    assert pkt.payload.chksum == fresh.payload.chksum, "L4 checksum"
    return pkt


class Gateway:
    """The datapath and the ALG as the node runs them, without threads."""

    def __init__(self) -> None:
        self.dp = Datapath(load_file(ROOT / "examples" / "ch1-outgoing-calls-with-nat.cfg"))
        self.state = EMPTY
        self.events: list = []
        self.logs: list[str] = []
        self.alg_messages = 0
        self.untrust_out: list[IP] = []

    def send(self, buf: bytes, ingress: str, now: float):
        out = self.dp.process(buf, ingress, now)
        if isinstance(out, Alg):
            assert out.alg == "h323"
            self.alg_messages += 1
            ctx = H323Adapter.context(out)
            r = H323Adapter.step(self.state, ctx, bytes(out.payload), now, H323Adapter.settings(None))
            self.logs.extend(r.logs)
            assert fold(r.events, self.state) == r.state
            if r.verdict == "forward":
                self.state = r.state
                self.events.extend(r.events)
            out = self.dp.finish_alg(out, r.verdict, r.data, r.route_to,
                                     H323Adapter.for_datapath(r.pinholes_open), r.pinholes_close, now,
                                     reason=r.reason)
            ended, _groups = H323Adapter.released(r.events)
            for key in ended:
                self.dp.release_call(key)
        if isinstance(out, Forward):
            pkt = checked(out.data)
            if IPv4Address(pkt.dst) not in TRUST:
                self.untrust_out.append(pkt)
        return out


class Conn:
    """One TCP connection's sequence numbers, both ways."""

    def __init__(self, gw: Gateway, a: tuple, b: tuple, a_if: str, b_if: str, b_seen: tuple) -> None:
        self.gw, self.a, self.b, self.a_if, self.b_if, self.b_seen = gw, a, b, a_if, b_if, b_seen
        self.seq = {"a": 1000, "b": 5000}

    def open(self, now: float):
        a, b, seen = self.a, self.b, self.b_seen
        out = [self.gw.send(build_tcp(a[0], b[0], a[1], b[1], seq=self.seq["a"], flags=SYN), self.a_if, now)]
        self.seq["a"] += 1
        out.append(self.gw.send(build_tcp(seen[0], seen[2], seen[1], seen[3], seq=self.seq["b"],
                                          ack=self.seq["a"], flags=SYN | ACK), self.b_if, now))
        self.seq["b"] += 1
        return out

    def data(self, side: str, payload: bytes, now: float, seq: int | None = None):
        s = self.seq[side] if seq is None else seq
        if side == "a":
            buf = build_tcp(self.a[0], self.b[0], self.a[1], self.b[1], seq=s, ack=self.seq["b"],
                            flags=PSH | ACK, payload=payload)
            out = self.gw.send(buf, self.a_if, now)
        else:
            src, dst, sport, dport = self.b_seen[0], self.b_seen[2], self.b_seen[1], self.b_seen[3]
            buf = build_tcp(src, dst, sport, dport, seq=s, ack=self.seq["a"], flags=PSH | ACK,
                            payload=payload)
            out = self.gw.send(buf, self.b_if, now)
        if seq is None:
            self.seq[side] += len(payload)
        return out


def conn_out(gw, private: tuple, public_peer: tuple, mip: str) -> Conn:
    """A connection from a trust host to an untrust one; ``b_seen``: how the
    untrust side addresses its packets (src ip, sport, dst ip, dport)."""
    return Conn(gw, private, public_peer, "ethernet1", "ethernet3",
                (public_peer[0], public_peer[1], mip, private[1]))


def forwarded(out) -> IP:
    assert isinstance(out, Forward), out
    return IP(out.data)


def addresses_of(pkt: IP) -> list[str]:
    """Every H.323 transport address the packet carries."""
    data = bytes(pkt.payload.payload)
    if not data:
        return []
    if UDP in pkt:
        if 1719 not in (pkt[UDP].sport, pkt[UDP].dport):
            return []                           # RTP/RTCP
        return [a.span.text for a in parse_ras(data).addresses]
    out = []
    if data[:1] == b"\x03":
        pos = 0
        while pos + 4 <= len(data):
            n = int.from_bytes(data[pos + 2:pos + 4], "big")
            msg = data[pos:pos + n]
            if len(msg) < n:
                break
            parse = parse_call_signal if msg[4:5] == b"\x08" else parse_h245
            out += [a.span.text for a in parse(msg).addresses]
            pos += n
    return out


def test_outgoing_call_with_nat_end_to_end():
    gw = Gateway()
    t = 100.0

    # -- RAS: IP_Phone2 discovers and registers with the gatekeeper's MIP.
    out = gw.send(build_udp(PHONE2, MIP_GK, 1719, 1719, GRQ), "ethernet3", t)
    p = forwarded(out)
    assert (p.dst, p[UDP].dport) == (GK, 1719)
    p = forwarded(gw.send(build_udp(GK, PHONE2, 1719, 1719, GCF), "ethernet1", t))
    assert (p.src, p.dst) == (MIP_GK, PHONE2)
    assert [a.span.text for a in parse_ras(bytes(p[UDP].payload)).addresses] == [f"{MIP_GK}:1719"]
    forwarded(gw.send(build_udp(PHONE2, MIP_GK, 1719, 1719, RRQ), "ethernet3", t))
    forwarded(gw.send(build_udp(GK, PHONE2, 1719, 1719, RCF), "ethernet1", t))
    assert not gw.state.ras                       # both transactions answered

    # -- Q.931: IP_Phone1 calls IP_Phone2.
    q931 = conn_out(gw, (PHONE1, 32803), (PHONE2, 1720), MIP1)
    syn, synack = q931.open(t)
    assert forwarded(syn).src == MIP1 and forwarded(synack).dst == PHONE1
    p = forwarded(q931.data("a", SETUP, t + 0.1))
    assert len(p[TCP].payload) == len(SETUP)
    assert set(addresses_of(p)) == {f"{PHONE2}:1720", f"{MIP1}:32803"}
    key = GUID.hex()
    assert key in gw.state.calls

    # IP_Phone2 asks the gatekeeper to admit the call.
    forwarded(gw.send(build_udp(PHONE2, MIP_GK, 1719, 1719, ARQ), "ethernet3", t + 0.2))
    p = forwarded(gw.send(build_udp(GK, PHONE2, 1719, 1719, ACF), "ethernet1", t + 0.2))
    assert p.src == MIP_GK
    assert any(h.kind == "q931" for h in gw.state.calls[key].pinholes.values())

    for msg in (PROCEEDING, ALERTING):
        forwarded(q931.data("b", msg, t + 0.3))
    p = forwarded(q931.data("b", CONNECT, t + 0.4))
    assert p.dst == PHONE1 and addresses_of(p) == [f"{PHONE2}:1232"]
    assert gw.state.calls[key].phase == "connected"
    assert (6, int(IPv4Address(PHONE2)), 1232) in {h.key for h in gw.dp.pinholes.holes()}

    # -- H.245: IP_Phone1 connects to the h245Address through its pinhole.
    h245 = conn_out(gw, (PHONE1, 40000), (PHONE2, 1232), MIP1)
    syn, synack = h245.open(t + 0.5)
    assert syn.path == "fast-pinhole" and forwarded(syn).src == MIP1
    assert forwarded(synack).dst == PHONE1
    p = forwarded(h245.data("a", OLC1, t + 0.6))
    assert addresses_of(p) == [f"{MIP1}:5001"]
    # Phone2's OLC and OLCAck in one segment: two messages, one verdict.
    p = forwarded(h245.data("b", OLC2 + ACK2, t + 0.7))
    assert addresses_of(p) == [f"{PHONE2}:2007", f"{PHONE2}:2006", f"{PHONE2}:2007"]
    # Phone1's OLCAck: the TPKT header alone, then the body (Nagle-style).
    head_seq = h245.seq["a"]
    first = h245.data("a", ACK1[:4], t + 0.8)
    assert isinstance(first, Forward) and bytes(IP(first.data)[TCP].payload) == ACK1[:4]
    body = h245.data("a", ACK1[4:], t + 0.8)
    p = forwarded(body)
    whole = ACK1[:4] + bytes(p[TCP].payload)
    assert [a.span.text for a in parse_h245(whole).addresses] == [f"{MIP1}:5000", f"{MIP1}:5001"]
    # Its retransmission leaves exactly as the first copy did.
    again = h245.data("a", ACK1[4:], t + 1.0, seq=head_seq + 4)
    assert isinstance(again, Forward) and IP(again.data)[TCP].payload == p[TCP].payload
    # ... also when the sender joins header and body in one retransmission.
    joined = h245.data("a", ACK1, t + 1.1, seq=head_seq)
    assert bytes(IP(joined.data)[TCP].payload) == whole
    assert gw.dp.stats()["h323_tcp"]["retransmitted"] == 2

    holes = {(h.pinhole.kind, IPv4Address(h.key[1]).exploded, h.key[2], h.to) for h in gw.dp.pinholes.holes()}
    assert ("media", MIP1, 5000, (int(IPv4Address(PHONE1)), 5000)) in holes
    assert ("media", PHONE2, 2006, None) in holes

    # -- RTP both ways through the media pinholes.
    p = forwarded(gw.send(build_udp(PHONE1, PHONE2, 5000, 2006, b"\x80" * 40), "ethernet1", t + 2))
    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == (MIP1, 5000, PHONE2, 2006)
    p = forwarded(gw.send(build_udp(PHONE2, MIP1, 2006, 5000, b"\x80" * 40), "ethernet3", t + 2))
    assert (p.dst, p[UDP].dport) == (PHONE1, 5000)
    p = forwarded(gw.send(build_udp(PHONE2, MIP1, 2007, 5001, b"\x81" * 20), "ethernet3", t + 2))
    assert (p.dst, p[UDP].dport) == (PHONE1, 5001)

    # -- ReleaseComplete from IP_Phone2 ends the call and closes its pinholes.
    ref = gw.state.calls[key].call_reference
    forwarded(q931.data("b", release(ref, True), t + 10))
    assert key not in gw.state.calls and not gw.state.h245_index
    assert not [h for h in gw.dp.pinholes.holes() if h.call == key]
    late = gw.send(build_udp(PHONE2, MIP1, 2006, 5000, b"\x80" * 40), "ethernet3", t + 11)
    assert isinstance(late, Drop)

    # Nothing private left by the untrust interface.
    assert gw.untrust_out
    for pkt in gw.untrust_out:
        assert IPv4Address(pkt.src) not in TRUST
        for text in addresses_of(pkt):
            assert IPv4Address(text.split(":")[0]) not in TRUST, (text, pkt.summary())
        raw = bytes(pkt.payload.payload)
        for private in (PHONE1, GK):
            assert IPv4Address(private).packed not in raw
    assert not any(SPLIT_NOT_REWRITTEN in line for line in gw.logs)


def test_address_split_across_segments_is_logged_not_rewritten():
    gw = Gateway()
    q931 = conn_out(gw, (PHONE1, 32803), (PHONE2, 1720), MIP1)
    q931.open(0.0)
    src = parse_call_signal(SETUP).address("sourceCallSignalAddress").span
    cut = src.start + 3                       # inside the address's six octets
    first = q931.data("a", SETUP[:cut], 1.0)
    assert isinstance(first, Forward) and bytes(IP(first.data)[TCP].payload) == SETUP[:cut]
    rest = forwarded(q931.data("a", SETUP[cut:], 1.0))
    assert bytes(rest[TCP].payload) == SETUP[cut:]
    assert any(SPLIT_NOT_REWRITTEN in line for line in gw.logs)
    assert gw.dp.stats()["h323_tcp"]["split_messages"] == 1
    assert GUID.hex() in gw.state.calls             # the ALG still follows the call


def test_gap_and_dropped_segment():
    """A segment past a gap passes unmodified; once the gap fills, the
    messages it completed still reach the ALG. A segment the ALG dropped is
    dropped again when retransmitted."""
    gw = Gateway()
    q931 = conn_out(gw, (PHONE1, 32803), (PHONE2, 1720), MIP1)
    q931.open(0.0)
    base = q931.seq["a"]
    later = q931.data("a", SETUP[60:], 1.0, seq=base + 60)
    assert isinstance(later, Forward) and bytes(IP(later.data)[TCP].payload) == SETUP[60:]
    assert gw.dp.stats()["h323_tcp"]["out_of_order"] == 1
    p = forwarded(q931.data("a", SETUP[:60], 1.1, seq=base))
    assert GUID.hex() in gw.state.calls
    assert len(p[TCP].payload) == 60
    # Q.931 of no call is dropped (stateful inspection), and stays dropped.
    stray = conn_out(gw, (PHONE1, 32900), (PHONE2, 1720), MIP1)
    stray.open(2.0)
    s0 = stray.seq["a"]
    assert isinstance(stray.data("a", CONNECT, 2.1), Drop)
    again = stray.data("a", CONNECT, 2.2, seq=s0)
    assert isinstance(again, Drop) and "dropped" in again.reason


def test_not_tpkt_on_1720_is_dropped():
    gw = Gateway()
    c = conn_out(gw, (PHONE1, 33000), (PHONE2, 1720), MIP1)
    c.open(0.0)
    out = c.data("a", b"GET / HTTP/1.0\r\n\r\n", 1.0)
    assert isinstance(out, Drop) and "TPKT" in out.reason


def test_mid_stream_start_resynchronises():
    """A connection this node did not see open (a takeover): segments pass
    until one starts at a message boundary, then the ALG follows."""
    gw = Gateway()
    seq = 777
    mid = build_tcp(PHONE1, PHONE2, 32803, 1720, seq=seq, flags=PSH | ACK, payload=SETUP[10:40])
    out = gw.send(mid, "ethernet1", 0.0)
    assert isinstance(out, Forward) and IP(out.data).src == MIP1
    setup = build_tcp(PHONE1, PHONE2, 32803, 1720, seq=seq + 30, flags=PSH | ACK, payload=SETUP)
    p = forwarded(gw.send(setup, "ethernet1", 0.1))
    assert f"{MIP1}:32803" in addresses_of(p)
    assert gw.dp.stats()["h323_tcp"]["unsynced"] == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-200, 400), st.integers(0, 120)), max_size=12), st.binary(max_size=64))
def test_stream_any_segments(segments, noise):
    """Any sequence of segments (retransmitted, overlapping, past gaps, not
    TPKT): the stream answers forward/drop/alg, never raises, and an ALG
    segment's messages are whole TPKT messages of the stream."""
    stream_bytes = SETUP + CONNECT + noise
    s = TpktStream("q931")
    s.syn(True, 999)
    for rel, n in segments:
        start = max(0, rel)
        data = stream_bytes[start:start + n]
        if not data:
            continue
        kind, val = s.segment(True, (1000 + start) % (1 << 32), data)
        assert kind in ("forward", "drop", "alg")
        if kind == "alg":
            for off, msg in val.messages:
                assert msg[:2] == b"\x03\x00" and int.from_bytes(msg[2:4], "big") == len(msg)
            TpktStream.finished(val, val.data)
        elif kind == "forward":
            assert len(val) == len(data)
    assert seq_diff(5, (1 << 32) - 5) == 10 and seq_diff((1 << 32) - 5, 5) == -10
