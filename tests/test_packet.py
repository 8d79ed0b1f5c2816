"""The packet codec against scapy (both ways), RFC 1624 incremental checksums
against full recomputation, and the rule that bad input raises only
RemoteProtocolError."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from scapy.all import IP, TCP, UDP, IPOption_RR, Raw, fragment, rdpcap  # type: ignore[attr-defined]

from gateway.errors import RemoteProtocolError
from gateway.packet import (
    ACK, PSH, SYN, TCPOPT_SACK, build_tcp, build_udp, checksum_update, internet_checksum,
    ones_sum, parse, pseudo_header_sum, rewrite, sack_option,
)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

addrs = st.integers(0, 0xFFFFFFFF).map(IPv4Address)
ports = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
payloads = st.binary(max_size=300)


def _ip_layer(src, dst, ttl, ident, tos, with_opts):
    opts = [IPOption_RR(routers=["1.2.3.4"])] if with_opts else []
    return IP(src=str(src), dst=str(dst), ttl=ttl, id=ident, tos=tos, options=opts)


@st.composite
def scapy_packets(draw):
    ip = _ip_layer(draw(addrs), draw(addrs), draw(st.integers(1, 255)), draw(st.integers(0, 0xFFFF)),
                   draw(st.integers(0, 255)), draw(st.booleans()))
    data = draw(payloads)
    if draw(st.booleans()):
        opts = []
        if draw(st.booleans()):
            opts.append(("MSS", 1460))
        if draw(st.booleans()):
            opts += [("NOP", None), ("NOP", None), ("Timestamp", (draw(u32), draw(u32)))]
        if draw(st.booleans()):
            n = draw(st.integers(1, 2))  # MSS + timestamps + 2 blocks fit in 40 bytes
            opts += [("NOP", None), ("SAck", tuple(draw(u32) for _ in range(2 * n)))]
        l4 = TCP(sport=draw(ports), dport=draw(ports), seq=draw(u32), ack=draw(u32),
                 flags=draw(st.integers(0, 255)), window=draw(st.integers(0, 0xFFFF)), options=opts)
    else:
        l4 = UDP(sport=draw(ports), dport=draw(ports))
    return ip / l4 / Raw(data)


def _same_fields(p, s):
    """Our parse ``p`` agrees with scapy's dissection ``s``."""
    ip = s[IP]
    assert (p.ihl, p.tos, p.total_length, p.ident, p.ttl, p.proto, p.ip_checksum) == (
        ip.ihl, ip.tos, ip.len, ip.id, ip.ttl, ip.proto, ip.chksum)
    assert (str(p.src), str(p.dst)) == (ip.src, ip.dst)
    assert p.src_bytes == IPv4Address(ip.src).packed and p.dst_int == int(IPv4Address(ip.dst))
    assert (p.more_fragments, p.dont_fragment, p.frag_offset) == (bool(ip.flags.MF), bool(ip.flags.DF), ip.frag * 8)
    assert p.l4_offset == ip.ihl * 4
    if p.is_fragment and p.frag_offset:
        assert p.sport is None
        return
    if UDP in s:
        u = s[UDP]
        assert (p.sport, p.dport, p.udp_length, p.l4_checksum) == (u.sport, u.dport, u.len, u.chksum)
        if not p.more_fragments:
            assert p.payload_bytes == bytes(u.payload)[:u.len - 8]
    elif TCP in s:
        t = s[TCP]
        assert (p.sport, p.dport, p.tcp_seq, p.tcp_ack, p.tcp_data_offset, p.tcp_window, p.tcp_urgent,
                p.l4_checksum) == (t.sport, t.dport, t.seq, t.ack, t.dataofs, t.window, t.urgptr, t.chksum)
        assert p.tcp_flags == int(t.flags) & 0xFF
        sack = [v for k, v in t.options if k == "SAck"]
        if sack:
            flat = sack[0]
            assert p.sack_blocks == tuple(zip(flat[0::2], flat[1::2]))
        assert p.payload_bytes == bytes(t.payload)[:p.total_length - p.payload_offset]


def _scapy_checksums(raw: bytes):
    """(ip, l4) checksums as scapy computes them from scratch for ``raw``."""
    s = IP(raw)
    del s[IP].chksum
    l4 = s[UDP] if UDP in s else s[TCP]
    had_zero_udp = UDP in s and s[UDP].chksum == 0
    del l4.chksum
    r = IP(bytes(s))
    return r[IP].chksum, (0 if had_zero_udp else (r[UDP] if UDP in r else r[TCP]).chksum)


def _assert_checksums_right(raw: bytes):
    s = IP(raw)
    ip_c, l4_c = _scapy_checksums(raw)
    assert s[IP].chksum == ip_c
    got = (s[UDP] if UDP in s else s[TCP]).chksum
    assert got == l4_c


# ------------------------------------------------------------ parse vs scapy

@FAST
@given(scapy_packets())
def test_scapy_built_packets_parse_to_the_same_fields(s):
    raw = bytes(s)
    p = parse(raw)
    _same_fields(p, IP(raw))
    assert p.ip_checksum_ok and p.l4_checksum_ok


def test_ip_options_are_kept():
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_RR(routers=["1.2.3.4"])]) / UDP() / b"x")
    p = parse(raw)
    assert p.ihl > 5 and p.ip_options == raw[20:p.l4_offset] and p.payload_bytes == b"x"


def test_fragments_are_flagged_and_later_ones_not_l4_parsed():
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=7) / UDP(sport=5060, dport=5060) / Raw(bytes(range(256)) * 8)
    frags = fragment(big, fragsize=512)
    assert len(frags) > 2
    first, *rest = [parse(bytes(f)) for f in frags]
    assert first.is_fragment and first.more_fragments and first.offset == 0
    assert (first.sport, first.dport, first.udp_length) == (5060, 5060, 8 + 2048)
    assert first.l4_checksum_ok is None
    for f, raw in zip(rest, frags[1:]):
        assert f.is_fragment and f.offset > 0 and f.sport is None
        assert f.payload_offset == f.l4_offset and f.payload_end == f.total_length
        _same_fields(f, IP(bytes(raw)))
    assert not rest[-1].more_fragments


def test_non_tcp_udp_payload_is_the_ip_payload():
    raw = bytes(IP(src="1.1.1.1", dst="2.2.2.2", proto=1) / b"\x08\x00\x00\x00abcd")
    p = parse(raw)
    assert p.sport is None and p.payload_bytes == b"\x08\x00\x00\x00abcd" and p.l4_checksum_ok is None


def test_padding_past_total_length_is_ignored_and_dropped_by_rewrite():
    raw = build_udp("10.0.0.1", "10.0.0.2", 1, 2, b"hello")
    p = parse(raw + b"\x00" * 6)
    assert p.payload_bytes == b"hello" and p.total_length == len(raw)
    assert rewrite(p, sport=9) == rewrite(parse(raw), sport=9)
    assert len(rewrite(p, sport=9)) == len(raw)


def test_accepts_bytearray_and_memoryview():
    raw = build_udp("10.0.0.1", "10.0.0.2", 1, 2, b"hello")
    assert parse(bytearray(raw)) == parse(memoryview(raw)) == parse(raw)


# ------------------------------------------------------------ builds vs scapy

@FAST
@given(addrs, addrs, ports, ports, payloads, st.integers(1, 255), st.integers(0, 0xFFFF))
def test_build_udp_is_what_scapy_builds(src, dst, sport, dport, data, ttl, ident):
    ours = build_udp(src, dst, sport, dport, data, ttl=ttl, ident=ident)
    theirs = bytes(IP(src=str(src), dst=str(dst), ttl=ttl, id=ident) / UDP(sport=sport, dport=dport) / Raw(data))
    assert ours == theirs


@FAST
@given(addrs, addrs, ports, ports, u32, u32, st.integers(0, 255), payloads,
       st.lists(st.tuples(u32, u32), min_size=0, max_size=3))
def test_build_tcp_is_accepted_by_scapy(src, dst, sport, dport, seq, ack, flags, data, blocks):
    opts = (b"\x01\x01" + sack_option(blocks)) if blocks else b""
    raw = build_tcp(src, dst, sport, dport, seq, ack, flags, data, options=opts, ident=3)
    _assert_checksums_right(raw)
    s = IP(raw)
    assert (s[TCP].seq, s[TCP].ack, int(s[TCP].flags), bytes(s[TCP].payload)) == (seq, ack, flags, data)
    assert parse(raw).sack_blocks == tuple(blocks)


# ------------------------------------------------------------ rewrite

@st.composite
def edits(draw, tcp: bool):
    e = {}
    if draw(st.booleans()):
        e["src"] = draw(addrs)
    if draw(st.booleans()):
        e["dst"] = draw(addrs)
    if draw(st.booleans()):
        e["sport"] = draw(ports)
    if draw(st.booleans()):
        e["dport"] = draw(ports)
    if tcp and draw(st.booleans()):
        e["tcp_seq"] = draw(u32)
    if tcp and draw(st.booleans()):
        e["tcp_ack"] = draw(u32)
    return e


@FAST
@given(scapy_packets(), st.data())
def test_rewrite_checksums_are_what_scapy_computes(s, data):
    raw = bytes(s)
    p = parse(raw)
    e = data.draw(edits(p.is_tcp))
    if p.sack_blocks and data.draw(st.booleans()):
        e["sack_blocks"] = [(data.draw(u32), data.draw(u32)) for _ in p.sack_blocks]
    if data.draw(st.booleans()):
        e["payload"] = data.draw(payloads)
    out = rewrite(p, **e)
    _assert_checksums_right(out)
    q = parse(out)
    for name in ("src", "dst", "sport", "dport", "tcp_seq", "tcp_ack", "sack_blocks"):
        if name in e:
            want = tuple(e[name]) if name == "sack_blocks" else e[name]
            assert getattr(q, name) == want
    if "payload" in e:
        assert q.payload_bytes == e["payload"]
        assert q.total_length == len(out)
    else:
        assert q.payload_bytes == p.payload_bytes


@FAST
@given(scapy_packets(), st.data())
def test_incremental_equals_full_recompute(s, data):
    p = parse(bytes(s))
    e = data.draw(edits(p.is_tcp))
    inc = rewrite(p, **e)
    full = rewrite(p, payload=p.payload_bytes, **e)  # the payload path recomputes from scratch
    assert inc == full


@FAST
@given(st.binary(min_size=2, max_size=200), st.data())
def test_checksum_update_matches_recompute(blob, data):
    start = data.draw(st.integers(0, len(blob) - 1))
    length = data.draw(st.integers(1, len(blob) - start))
    new = data.draw(st.binary(min_size=length, max_size=length))
    after = blob[:start] + new + blob[start + length:]
    assume(any(after) and any(blob))
    assert checksum_update(internet_checksum(blob), blob[start:start + length], new, odd=bool(start & 1)) \
        == internet_checksum(after)


def test_zero_udp_checksum_stays_zero_unless_payload_changes():
    raw = bytearray(build_udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"abc"))
    raw[26:28] = b"\x00\x00"  # sender computed no checksum (RFC 768)
    p = parse(bytes(raw))
    out = parse(rewrite(p, src="192.0.2.1", sport=3000))
    assert out.l4_checksum == 0 and out.ip_checksum_ok
    out = parse(rewrite(p, payload=b"longer payload"))
    assert out.l4_checksum != 0 and out.l4_checksum_ok


def test_wrong_checksum_is_preserved_by_incremental_update():
    raw = bytearray(build_udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"abc"))
    raw[27] ^= 0x55
    out = parse(rewrite(parse(bytes(raw)), dst="198.51.100.9"))
    assert out.l4_checksum_ok is False


def test_rewrite_of_first_fragment_fixes_whole_datagram_checksum():
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=7) / UDP(sport=5060, dport=5060) / Raw(bytes(range(256)) * 8)
    frags = [bytes(f) for f in fragment(big, fragsize=512)]
    new = [rewrite(parse(f), src="203.0.113.5") for f in frags[:1]]
    new += [rewrite(parse(f), src="203.0.113.5") for f in frags[1:]]
    for f in new:
        assert parse(f).ip_checksum_ok
    whole = bytes(IP(src="203.0.113.5", dst="10.0.0.2", id=7) / UDP(sport=5060, dport=5060) / Raw(bytes(range(256)) * 8))
    assert parse(new[0]).l4_checksum == parse(whole).l4_checksum
    with pytest.raises(ValueError):
        rewrite(parse(frags[1]), sport=1)
    with pytest.raises(ValueError):
        rewrite(parse(frags[0]), payload=b"x")


def test_rewrite_refuses_what_the_packet_cannot_take():
    udp = parse(build_udp("10.0.0.1", "10.0.0.2", 1, 2, b"x"))
    with pytest.raises(ValueError):
        rewrite(udp, tcp_seq=1)
    tcp = parse(build_tcp("10.0.0.1", "10.0.0.2", 1, 2, 100, 200, ACK | PSH, b"data"))
    with pytest.raises(ValueError):
        rewrite(tcp, sack_blocks=[(1, 2)])
    with pytest.raises(ValueError):
        rewrite(udp, payload=b"x" * 70000)
    with pytest.raises(ValueError):
        rewrite(udp, src=b"\x01\x02\x03")


def test_sack_at_odd_offset():
    # NOP then SACK: the blocks start at an odd offset of the TCP header.
    opts = b"\x01" + sack_option([(10, 20), (30, 40)]) + b"\x01\x01\x01"
    p = parse(build_tcp("10.0.0.1", "10.0.0.2", 1, 2, 5, 6, ACK, b"z", options=opts))
    assert (p.tcp_options[1].offset - p.l4_offset) % 2 == 1
    out = rewrite(p, sack_blocks=[(0xFFFFFFF0, 7), (123456, 654321)])
    _assert_checksums_right(out)
    assert parse(out).sack_blocks == ((0xFFFFFFF0, 7), (123456, 654321))


def test_checksum_helpers():
    # RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2 and internet_checksum(data) == 0x220D
    assert ones_sum(b"\x01") == 0x0100
    assert pseudo_header_sum(0x0A000001, 0x0A000002, 17, 8) == (0x0A00 + 1 + 0x0A00 + 2 + 17 + 8)


# ------------------------------------------------------------ bad input

def test_header_errors():
    good = build_tcp("10.0.0.1", "10.0.0.2", 1, 2, 5, 6, SYN, b"", options=b"\x02\x04\x05\xb4")
    cases = {
        "version": bytes([0x65]) + good[1:],
        "ihl": bytes([0x44]) + good[1:],
        "total length": good[:2] + (len(good) + 1).to_bytes(2, "big") + good[4:],
        "short total": good[:2] + (19).to_bytes(2, "big") + good[4:],
        "truncated": good[:19],
        "doff small": good[:32] + bytes([0x40]) + good[33:],
        "doff past end": good[:32] + bytes([0xF0]) + good[33:],
        "tcp truncated": good[:2] + (39).to_bytes(2, "big") + good[4:39],
    }
    for name, raw in cases.items():
        with pytest.raises(RemoteProtocolError):
            parse(raw)
        assert name
    u = build_udp("10.0.0.1", "10.0.0.2", 1, 2, b"abcd")
    for ulen in (7, len(u) - 20 + 1):
        with pytest.raises(RemoteProtocolError):
            parse(u[:24] + ulen.to_bytes(2, "big") + u[26:])
    with pytest.raises(RemoteProtocolError):
        parse(u[:2] + (27).to_bytes(2, "big") + u[4:27])


def test_bad_tcp_options_raise_from_the_accessor():
    raw = build_tcp("10.0.0.1", "10.0.0.2", 1, 2, 5, 6, ACK, b"", options=b"\x08\x01\x00\x00")
    p = parse(raw)
    with pytest.raises(RemoteProtocolError):
        p.tcp_options
    raw = build_tcp("10.0.0.1", "10.0.0.2", 1, 2, 5, 6, ACK, b"", options=b"\x05\x05\x00\x00\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError):
        parse(raw).sack_blocks


def _touch(p):
    p.src, p.dst, p.payload_bytes, p.ip_options, p.is_fragment, p.ip_checksum_ok, p.l4_checksum_ok
    p.tcp_options, p.sack_blocks


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_raises_only_remote_protocol_error(blob):
    try:
        _touch(parse(blob))
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scapy_packets(), st.data())
def test_truncated_and_mutated_packets_raise_only_remote_protocol_error(s, data):
    raw = bytearray(bytes(s))
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[:data.draw(st.integers(0, len(raw)))]
    try:
        _touch(parse(bytes(raw)))
    except RemoteProtocolError:
        pass


# ------------------------------------------------------------ real captures

def _corpus_frames():
    for path in sorted(CORPUS.glob("*.pcap")):
        for i, frame in enumerate(rdpcap(str(path))):
            if IP in frame:
                yield pytest.param(bytes(frame[IP]), id=f"{path.stem}-{i}")


CORPUS_FRAMES = list(_corpus_frames())


def test_corpus_is_there():
    assert len(CORPUS_FRAMES) > 400


@pytest.mark.parametrize("raw", CORPUS_FRAMES)
def test_real_packets(raw):
    try:
        p = parse(raw)
    except RemoteProtocolError:
        # Only the deliberately broken h323-overflow frame may fail.
        assert len(raw) < 60
        return
    _same_fields(p, IP(raw))
    ip_c, l4_c = _scapy_checksums(raw)
    assert p.ip_checksum_ok == (p.ip_checksum == ip_c)
    if p.sport is not None:
        assert p.l4_checksum_ok == (p.l4_checksum == l4_c)
    if p.sport is not None and p.l4_checksum_ok and p.ip_checksum_ok:
        out = rewrite(p, src="203.0.113.7", dport=(p.dport + 1) & 0xFFFF)
        q = parse(out)
        assert q.l4_checksum_ok and q.ip_checksum_ok and q.payload_bytes == p.payload_bytes
        _assert_checksums_right(out)
