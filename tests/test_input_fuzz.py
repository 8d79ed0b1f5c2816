"""Bounded fuzzing of the inputs a gateway reads from outside: configuration
text, packets, capture files and journal frames. Each gives its result or its
module's own error type, never another exception, within 50 ms of CPU time and
a bounded amount of memory per input.

CPU time of this thread (time.thread_time), not wall time: the machines that
run this are shared, and a preempted example is not a slow parser. Memory is
the tracemalloc peak of a second run of the same input."""

from __future__ import annotations

import gc
import struct
import time
import tracemalloc
import zlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from actors.capture_file import CaptureError, CaptureReader
from actors.link_layer import SUPPORTED, ipv4
from gateway.config import ConfigError, parse_text
from gateway.datapath.integrity import signalling_damage
from gateway.errors import RemoteProtocolError
from gateway.events import UnknownEvent, in_steps
from gateway.packet import build_tcp, build_udp, parse, sack_option
from journal.record import FrameError, Record, decode_record, encode_record
from test_replication_harness import call_events

CPU_BUDGET = 0.050
MEMORY_BUDGET = 8 * 1024 * 1024
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def bounded(fn, *args, expected: tuple[type[BaseException], ...]):
    """Run ``fn(*args)``: its result or one of ``expected``, within the budgets."""
    def once():
        try:
            return fn(*args)
        except expected as exc:
            return exc
    def timed():
        # A collection of the whole test session's heap can land in any one
        # measurement; it is not this input's cost.
        enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.thread_time()
            r = once()
            return time.thread_time() - started, r
        finally:
            if enabled:
                gc.enable()
    spent, result = timed()
    if spent > CPU_BUDGET:
        # One slow run (page faults, caches flushed by other work on the
        # machine) is not the input's cost either: the least of three.
        spent = min(spent, *(timed()[0] for _ in range(2)))
    assert spent <= CPU_BUDGET, f"{spent * 1000:.1f} ms of CPU"
    tracemalloc.start()
    try:
        once()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_BUDGET, f"peak {peak} bytes"
    return result


def mutate(data: bytes, edits) -> bytes:
    """``data`` with byte flips, cuts and insertions at the given positions."""
    b = bytearray(data)
    for kind, pos, value in edits:
        if not b and kind != "insert":
            continue
        i = pos % (len(b) + (1 if kind == "insert" else 0))
        if kind == "flip":
            b[i] ^= value or 1
        elif kind == "set":
            b[i] = value
        elif kind == "cut":
            del b[i:]
        else:
            b[i:i] = bytes([value]) * (value % 7 + 1)
    return bytes(b)


edits = st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert"]),
                           st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)


# -- configuration --------------------------------------------------------------------

_CFG_WORDS = ["set", "unset", "interface", "ethernet1", "zone", "trust", "untrust", "ip",
              "10.1.1.1/24", "policy", "id", "from", "to", "any", "permit", "nat", "src", "dip",
              "dip(5)", "mip(1.1.1.5)", "sip", "mgcp", "#", '"', "\u201c", "9" * 5000, "0" * 60,
              "\x0c", "\x0b", "\r", "\n", "\r\n", "\x85", "\u2028", "\u2029", "\x00", "\t", " "]


@FUZZ
@given(st.one_of(st.text(max_size=2000),
                 st.lists(st.sampled_from(_CFG_WORDS), max_size=60).map(" ".join)))
def test_config_text(text):
    result = bounded(parse_text, text, "fuzz.cfg", expected=(ConfigError,))
    if isinstance(result, ConfigError):
        assert result.errors and all(d.line >= 1 and d.column >= 1 for d in result.diagnostics)


# -- packets --------------------------------------------------------------------------

SEEDS = [
    build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, b"INVITE sip:b@1.1.1.4 SIP/2.0\r\n\r\n"),
    build_udp("10.1.1.3", "1.1.1.4", 4000, 4002, b"\x80" * 172),
    build_tcp("10.1.1.3", "1.1.1.4", 40000, 5060, seq=1, ack=2, payload=b"REGISTER sip:x SIP/2.0\r\n\r\n",
              options=sack_option([(5, 9)])),
    build_tcp("10.1.1.3", "1.1.1.4", 40000, 1720, seq=1, payload=b"\x03\x00\x00\x08abcd"),
]


def _packet(data: bytes):
    pkt = parse(data)
    # What the datapath asks of a parsed packet: none of it may raise anything
    # but RemoteProtocolError (option walks).
    pkt.ip_checksum_ok, pkt.l4_checksum_ok, pkt.payload_bytes, pkt.ip_options
    signalling_damage(pkt)
    signalling_damage(pkt, True)
    if pkt.is_tcp and not pkt.frag_offset:
        pkt.tcp_options, pkt.sack_blocks
    return pkt


@FUZZ
@given(st.one_of(st.binary(max_size=1600),
                 st.tuples(st.sampled_from(SEEDS), edits).map(lambda t: mutate(*t))))
def test_packet_parse(data):
    bounded(_packet, data, expected=(RemoteProtocolError,))


# -- capture files --------------------------------------------------------------------

_ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"


def _pcap(linktype: int, frames) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", i, 0, len(f), len(f)) + f
    return out


def _pcapng(linktype: int, frames) -> bytes:
    def block(t, body):
        body += b"\x00" * (-len(body) % 4)
        return struct.pack("<II", t, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", linktype, 0, 0) + struct.pack("<HHB3xHH", 9, 1, 6, 0, 0))
    for f in frames:
        out += block(6, struct.pack("<IIIII", 0, 0, 1, len(f), len(f)) + f)
    return out


CAPTURES = [_pcap(1, [_ETH + SEEDS[0], b"", _ETH + SEEDS[2]]), _pcap(113, [b"\x00" * 14 + b"\x08\x00" + SEEDS[1]]),
            _pcapng(1, [_ETH + SEEDS[0], b"\x81\x00\x00\x01\x08\x00" + SEEDS[1]]), _pcapng(0, [b"\x02\0\0\0" + SEEDS[3]])]


@pytest.fixture(scope="module")
def capture_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "c.pcap"


def _read_capture(path: str):
    out = []
    with CaptureReader(path) as reader:
        for rec in reader:
            if rec.linktype in SUPPORTED:
                out.append(ipv4(rec.linktype, rec.data))
    return out


@FUZZ
@given(st.one_of(st.binary(max_size=512),
                 st.tuples(st.sampled_from(CAPTURES), edits).map(lambda t: mutate(*t))))
def test_capture_reader(capture_path, data):
    capture_path.write_bytes(data)
    bounded(_read_capture, str(capture_path), expected=(CaptureError,))


# -- journal frames -------------------------------------------------------------------

FRAMES = [encode_record(Record.of(ev, seq=i + 1, epoch=1, timestamp=1000.0 + i, version=i + 1))
          for i, ev in enumerate(call_events(7, activity=2) + in_steps(call_events(8, activity=2)))]


def _crc_valid(frame: bytes, body_edits) -> bytes:
    """The frame's body mutated and its CRC made right again: only the decoder stands."""
    body = mutate(frame[9:], body_edits)
    length = struct.pack(">I", len(body))
    return bytes((frame[0],)) + length + struct.pack(">I", zlib.crc32(body, zlib.crc32(length))) + body


def _record(data: bytes):
    rec, _end = decode_record(data)
    entries = rec.entries()             # the raw view never raises either
    try:
        return rec.events(), entries
    except UnknownEvent as exc:
        return exc


_ints = st.integers(-(1 << 63), (1 << 64) - 1)        # what msgpack carries
_bodies = st.recursive(st.none() | st.booleans() | _ints | st.floats() | st.text(max_size=8)
                       | st.binary(max_size=8),
                       lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=6),
                                                                                    inner, max_size=6),
                       max_leaves=30)


def _framed(value) -> bytes:
    body = msgpack.packb(value, use_bin_type=True)
    length = struct.pack(">I", len(body))
    return b"\xa1" + length + struct.pack(">I", zlib.crc32(body, zlib.crc32(length))) + body


@FUZZ
@given(st.one_of(
    st.binary(max_size=256),
    st.tuples(st.sampled_from(FRAMES), edits).map(lambda t: mutate(*t)),
    st.tuples(st.sampled_from(FRAMES), edits).map(lambda t: _crc_valid(*t)),
    st.tuples(_ints, _ints, st.floats(), st.sampled_from(["call/x", ""]), _ints,
              st.sampled_from(["sip.call_started", "sip.call_ended", "mgcp.call_started", "nope"]),
              st.integers(-1, 3), _bodies).map(lambda f: _framed(list(f))),
    _bodies.map(_framed),
))
def test_journal_record_decode(data):
    bounded(_record, data, expected=(FrameError,))
