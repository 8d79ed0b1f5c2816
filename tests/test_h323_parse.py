"""H.225.0 / H.245 parsing: every address of the corpus capture is found at
octets that hold exactly the decoded value; malformed input raises only
RemoteProtocolError."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.h323 import per
from gateway.h323.h245 import logical_channel, parse_h245
from gateway.h323.nat import address_edit
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.h323.tpkt import frame_tpkt
from gateway.span import apply_edits

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap"


def _segments(name):
    from scapy.all import IP, TCP, UDP, rdpcap
    out = []
    for n, p in enumerate(rdpcap(str(CORPUS / name)), 1):
        if IP not in p:
            continue
        ip = p[IP]
        raw = bytes(ip)[:ip.len]          # without the Ethernet trailer
        if TCP in p:
            l4 = p[TCP]
            data = raw[ip.ihl * 4 + l4.dataofs * 4:]
            out.append((n, "tcp", (ip.src, l4.sport), (ip.dst, l4.dport), l4.seq, data))
        elif UDP in p:
            l4 = p[UDP]
            out.append((n, "udp", (ip.src, l4.sport), (ip.dst, l4.dport), None, raw[ip.ihl * 4 + 8:]))
    return out


def _streams(name):
    """TCP payload per direction, reassembled by sequence number (duplicates
    and keep-alive probes dropped), framed by TPKT as it arrives."""
    seen: dict = {}
    for n, proto, src, dst, seq, data in _segments(name):
        if proto != "tcp" or not data:
            continue
        s = seen.setdefault((src, dst), {"next": None, "buf": b"", "msgs": []})
        if s["next"] is None:
            s["next"] = seq
        if seq != s["next"]:
            continue                      # retransmission or keep-alive
        s["next"] = seq + len(data)
        try:
            msgs, s["buf"] = frame_tpkt(s["buf"] + data)
        except RemoteProtocolError:
            s["buf"] = b""
            msgs = ()
        s["msgs"].extend((n, m) for m in msgs)
    return seen


@pytest.fixture(scope="module")
def streams():
    return _streams("h323.pcap")


@pytest.fixture(scope="module")
def ras():
    return [(n, data) for n, proto, src, dst, _, data in _segments("h323.pcap") if proto == "udp"]


def _check_located(addresses, data):
    for a in addresses:
        assert data[a.span.start:a.span.end] == a.octets
        assert len(a.span) == 6


def test_call_signalling_messages_parse(streams):
    found = {}
    for (src, dst), s in streams.items():
        if 1720 not in (src[1], dst[1]):
            continue
        for n, m in s["msgs"]:
            try:
                msg = parse_call_signal(m)
            except RemoteProtocolError:
                found.setdefault("malformed", []).append(n)
                continue
            _check_located(msg.addresses, m)
            found.setdefault(msg.name, []).append((n, msg))
    assert found["malformed"] == [65]
    setup = found["setup"][0][1]
    assert setup.address("sourceCallSignalAddress").span.text == "10.1.3.143:32803"
    assert setup.address("destCallSignalAddress").span.text == "10.1.6.18:1720"
    assert setup.call_identifier() == bytes.fromhex("c0fef93ecd9ed6119ab2000476222017")
    connect = found["connect"][0][1]
    assert connect.address("h245Address").span.text == "10.1.6.18:1232"
    assert connect.from_destination and connect.call_reference == setup.call_reference
    # The 192.168.0.1 stream sends the TPKT header of its Alerting in one
    # segment and the rest in the next.
    assert [n for n, _ in found["alerting"]] == [14, 50]
    assert [n for n, _ in found["releaseComplete"]] == [66]
    assert {n for n, _ in found["callProceeding"]} == {10}


def test_h245_messages_parse(streams):
    names = []
    media = set()
    for (src, dst), s in streams.items():
        if 1232 not in (src[1], dst[1]):
            continue
        for n, m in s["msgs"]:
            msg = parse_h245(m)
            _check_located(msg.addresses, m)
            names.append(msg.name)
            media.update((a.field, a.span.text) for a in msg.addresses)
            if msg.name == "openLogicalChannelAck":
                number, session = logical_channel(msg.name, msg.fields)
                assert number in (61, 101) and session == 1
    assert names.count("openLogicalChannel") == 2 and names.count("openLogicalChannelAck") == 2
    assert names.count("terminalCapabilitySetAck") == 2    # one shares a segment with an MSD ack
    assert ("mediaChannel", "10.1.3.143:5000") in media
    assert ("mediaControlChannel", "10.1.3.143:5001") in media
    assert ("mediaChannel", "10.1.6.18:2006") in media


def test_ras_messages_parse(ras):
    kinds = {}
    for n, data in ras:
        if n == 59:
            with pytest.raises(RemoteProtocolError, match="OBJECT IDENTIFIER"):
                parse_ras(data)
            continue
        msg = parse_ras(data)
        _check_located(msg.addresses, data)
        kinds.setdefault(msg.kind, []).append(msg)
    assert set(kinds) == {"gatekeeperConfirm", "registrationRequest", "registrationConfirm",
                          "admissionRequest", "admissionConfirm", "infoRequest", "disengageRequest"}
    rrq = kinds["registrationRequest"][0]
    assert rrq.seq == 2
    assert rrq.address("rasAddress").span.text == "17.2.0.124:2034"
    assert rrq.address("callSignalAddress").span.text == "17.2.0.124:1720"
    acf = kinds["admissionConfirm"][0]
    assert acf.address("destCallSignalAddress").span.text == "17.2.0.122:1720"
    assert len(kinds["registrationConfirm"][1].all("rasAddress")) == 3


def test_structure_walk_agrees_with_the_search(streams, ras):
    """The slow path (bit-level structure) finds the same offsets as the
    fast search on every corpus message that has addresses."""
    checked = 0
    for n, data in ras:
        if n == 59:
            continue
        msg = parse_ras(data)
        if msg.addresses:
            assert per.structure_offsets(per.RAS_MESSAGE, data, "ras") == [a.span.start for a in msg.addresses]
            checked += 1
    for s in streams.values():
        for n, m in s["msgs"]:
            if n == 65 or m[4] != 0x08:
                continue
            msg = parse_call_signal(m)
            if msg.addresses:
                start = m.index(b"\x7e", 4) + 4    # user-user IE: id, 2 length octets, discriminator
                offs = per.structure_offsets(per.USER_INFORMATION, m[start:], "uuie")
                assert [start + o for o in offs] == [a.span.start for a in msg.addresses]
                checked += 1
    assert checked >= 10


def _setup_frame(streams):
    for s in streams.values():
        for n, m in s["msgs"]:
            if n == 6:
                return m
    raise AssertionError("no Setup")


def test_ambiguous_octets_fall_back_to_the_structure(streams):
    """The source address's six octets copied into the conferenceID: the
    search sees them twice and the structure decides."""
    m = bytearray(_setup_frame(streams))
    src = bytes.fromhex("0a01038f8023")
    conf = bytes.fromhex("f8fdf93ecd9ed6119ab2000476222017")
    i = bytes(m).index(conf)
    m[i + 2:i + 8] = src
    msg = parse_call_signal(bytes(m))
    a = msg.address("sourceCallSignalAddress")
    assert a.span.start != i + 2 and bytes(m)[a.span.start:a.span.end] == src
    assert msg.fields["conferenceID"][2:8] == src


def test_nat_rewrite_keeps_length_and_decodes(streams):
    m = _setup_frame(streams)
    msg = parse_call_signal(m)
    a = msg.address("sourceCallSignalAddress")
    out = apply_edits(m, [address_edit(a, "1.1.1.5", 32803)])
    assert len(out) == len(m)
    again = parse_call_signal(out)
    assert again.address("sourceCallSignalAddress").span.text == "1.1.1.5:32803"
    assert again.address("destCallSignalAddress").span.text == "10.1.6.18:1720"
    assert again.fields["sourceCallSignalAddress"][1]["ip"] == IPv4Address("1.1.1.5").packed


def test_h245_rewrite_decodes(streams):
    for s in streams.values():
        for n, m in s["msgs"]:
            if n == 41:
                msg = parse_h245(m)
                edits = [address_edit(a, "1.1.1.5", a.port + 10000) for a in msg.addresses]
                out = apply_edits(m, edits)
                again = parse_h245(out)
                assert [a.span.text for a in again.addresses] == ["1.1.1.5:15000", "1.1.1.5:15001"]
                return
    raise AssertionError("no OLCAck")


def test_overflow_capture_is_an_empty_tpkt():
    (frame,) = [d for *_, d in _segments("h323-overflow.pcap")]
    assert frame == b"\x03\x00\x00\x04"
    msgs, rest = frame_tpkt(frame[:3])
    assert msgs == () and rest == frame[:3]
    msgs, rest = frame_tpkt(frame)
    assert msgs == (frame,) and rest == b""
    with pytest.raises(RemoteProtocolError):
        parse_call_signal(frame)
    with pytest.raises(RemoteProtocolError):
        parse_h245(frame)


def test_tpkt_framing_splits_and_joins():
    a = b"\x03\x00\x00\x06ab"
    b = b"\x03\x00\x00\x05c"
    assert frame_tpkt(a + b + a[:5]) == ((a, b), a[:5])
    assert frame_tpkt(b"") == ((), b"")
    with pytest.raises(RemoteProtocolError):
        frame_tpkt(b"\x04\x00\x00\x06ab")
    with pytest.raises(RemoteProtocolError):
        frame_tpkt(b"\x03\x00\x00\x02")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_tpkt_fuzz(data):
    try:
        msgs, rest = frame_tpkt(data)
    except RemoteProtocolError:
        return
    assert b"".join(msgs) + rest == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_ras_fuzz(data):
    try:
        msg = parse_ras(data)
    except RemoteProtocolError:
        return
    _check_located(msg.addresses, data)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_call_signal_fuzz_mutations(streams, data):
    """Corrupted corpus messages: parse (addresses where they say) or raise
    RemoteProtocolError."""
    msgs = [m for s in streams.values() for _, m in s["msgs"]]
    m = bytearray(data.draw(st.sampled_from(msgs)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(m) - 1))
        m[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(m)))
    raw = bytes(m[:cut])
    raw = raw[:2] + len(raw).to_bytes(2, "big") + raw[4:] if len(raw) >= 4 and data.draw(st.booleans()) else raw
    for parse in (parse_call_signal, parse_h245):
        try:
            msg = parse(raw)
        except RemoteProtocolError:
            continue
        _check_located(msg.addresses, raw)


def _faststart_setup(streams):
    """The corpus Setup with the corpus OpenLogicalChannel twice in
    fastStart (the capture has none); built with pycrate's encoder."""
    m = _setup_frame(streams)
    uu_at = m.index(b"\x7e", 4)
    value = per.decode(per.USER_INFORMATION, m[uu_at + 4:], "setup")
    olc_msg = next(x for s in streams.values() for n, x in s["msgs"] if n == 38)
    olc = per.decode(per.H245_MESSAGE, olc_msg[4:], "olc")[1][1]
    per.OPEN_LOGICAL_CHANNEL.set_val(olc)
    item = per.OPEN_LOGICAL_CHANNEL.to_aper()
    value["h323-uu-pdu"]["h323-message-body"][1]["fastStart"] = [item, item]
    per.USER_INFORMATION.set_val(value)
    pdu = per.USER_INFORMATION.to_aper()
    q = m[4:uu_at] + b"\x7e" + (len(pdu) + 1).to_bytes(2, "big") + b"\x05" + pdu
    return b"\x03\x00" + (len(q) + 4).to_bytes(2, "big") + q


def test_faststart_addresses(streams):
    msg_bytes = _faststart_setup(streams)
    msg = parse_call_signal(msg_bytes)
    _check_located(msg.addresses, msg_bytes)
    fs = [a for a in msg.addresses if "fastStart" in a.path]
    assert [(a.field, a.span.text) for a in fs] == [("mediaControlChannel", "10.1.3.143:5001")] * 2
    assert len(msg.nested) == 2
    start = msg_bytes.index(b"\x7e", 4) + 4
    offs = per.structure_offsets(per.USER_INFORMATION, msg_bytes[start:], "uuie")
    assert [start + o for o in offs] == [a.span.start for a in msg.addresses]
    out = apply_edits(msg_bytes, [address_edit(a, "1.1.1.5", a.port) for a in fs])
    assert len(out) == len(msg_bytes)
    assert [a.span.text for a in parse_call_signal(out).addresses if "fastStart" in a.path] == ["1.1.1.5:5001"] * 2
