"""Record framing: round trip, detection of torn and corrupt frames, upcasting."""

from __future__ import annotations

import dataclasses
import time
import struct
import zlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.events import Event, UnknownEvent, event, upcaster
from journal.record import FORMAT_V1, HEADER_SIZE, FrameError, Record, decode_record, encode_record


# Test-only events: the registry is global, so the names are unique to this module.
@event("test.journal_record.sample")
@dataclasses.dataclass(frozen=True, slots=True)
class Sample(Event):
    key: str
    count: int
    blob: bytes
    ports: tuple[int, ...]
    flag: bool | None

    @property
    def stream(self) -> str:
        return f"sample/{self.key}"


# Schema 3 of this event renamed "who" to "caller" (schema 2) and then added
# "cause" (schema 3); journals written with schema 1 must still read.
@event("test.journal_record.hangup", schema=3)
@dataclasses.dataclass(frozen=True, slots=True)
class Hangup(Event):
    call_id: str
    caller: str
    cause: int

    @property
    def stream(self) -> str:
        return f"call/{self.call_id}"


@upcaster("test.journal_record.hangup", 1)
def _hangup_1_to_2(payload: dict) -> dict:
    payload["caller"] = payload.pop("who")
    return payload


@upcaster("test.journal_record.hangup", 2)
def _hangup_2_to_3(payload: dict) -> dict:
    payload.setdefault("cause", 16)   # Q.850 "normal call clearing"
    return payload


samples = st.builds(
    Sample,
    key=st.text(max_size=20),
    count=st.integers(min_value=-(2**63), max_value=2**64 - 1),
    blob=st.binary(max_size=64),
    ports=st.lists(st.integers(0, 65535), max_size=5).map(tuple),
    flag=st.none() | st.booleans(),
)


def record_of(ev: Event, seq: int = 1, epoch: int = 1, ts: float = 0.0, version: int = 1) -> Record:
    return Record.of(ev, seq=seq, epoch=epoch, timestamp=ts, version=version)


@settings(max_examples=200)
@given(ev=samples, seq=st.integers(1, 2**63), epoch=st.integers(0, 2**32),
       ts=st.floats(allow_nan=False, allow_infinity=False), version=st.integers(1, 2**40))
def test_round_trip(ev, seq, epoch, ts, version):
    rec = record_of(ev, seq, epoch, ts, version)
    frame = encode_record(rec)
    back, end = decode_record(frame)
    assert end == len(frame)
    assert back == rec
    assert back.event() == ev


def test_frame_layout_is_format_length_crc_body():
    frame = encode_record(record_of(Sample("k", 1, b"", (), None)))
    fmt, length, crc = struct.unpack_from(">BII", frame)
    assert fmt == FORMAT_V1 == frame[0]
    assert length == len(frame) - HEADER_SIZE
    assert crc == zlib.crc32(frame[1:5] + frame[HEADER_SIZE:])


def test_frames_decode_back_to_back():
    recs = [record_of(Sample(str(i), i, b"x" * i, (i,), True), seq=i + 1) for i in range(5)]
    buf = b"".join(encode_record(r) for r in recs)
    off, out = 0, []
    while off < len(buf):
        rec, off = decode_record(buf, off)
        out.append(rec)
    assert out == recs


@settings(max_examples=100)
@given(ev=samples, data=st.data())
def test_every_truncation_is_torn(ev, data):
    frame = encode_record(record_of(ev))
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(FrameError) as info:
        decode_record(frame[:cut])
    assert info.value.torn and info.value.offset == 0


@settings(max_examples=200)
@given(ev=samples, data=st.data())
def test_every_bit_flip_is_detected(ev, data):
    frame = bytearray(encode_record(record_of(ev)))
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError):
        decode_record(bytes(frame))


@settings(max_examples=300)
@given(garbage=st.binary(max_size=200))
def test_garbage_raises_only_frame_error(garbage):
    try:
        decode_record(garbage)
    except FrameError:
        pass


@settings(max_examples=100)
@given(body=st.one_of(st.binary(max_size=40),
                      st.lists(st.integers(-2**63, 2**63 - 1) | st.text(max_size=4), max_size=10).map(
                          lambda v: msgpack.packb(v))))
def test_wrong_body_with_good_crc_is_rejected(body):
    # A frame whose CRC is right but whose body is not a record (a bug or a
    # foreign writer) is reported as a FrameError, never as another exception.
    length = struct.pack(">I", len(body))
    frame = bytes((FORMAT_V1,)) + length + struct.pack(">I", zlib.crc32(body, zlib.crc32(length))) + body
    with pytest.raises(FrameError) as info:
        decode_record(frame)
    assert not info.value.torn


def test_unknown_format_byte_is_rejected():
    frame = bytearray(encode_record(record_of(Sample("k", 1, b"", (), None))))
    frame[0] = 0x02
    with pytest.raises(FrameError, match="unknown format byte 0x02"):
        decode_record(bytes(frame))


def test_absurd_length_is_corrupt_not_torn():
    frame = bytearray(encode_record(record_of(Sample("k", 1, b"", (), None))))
    frame[1:5] = struct.pack(">I", 0xFFFFFFF0)
    with pytest.raises(FrameError) as info:
        decode_record(bytes(frame))
    assert not info.value.torn


def test_old_schema_is_upcast_on_read():
    # A frame as a schema-1 writer produced it, with the old field name.
    old = Record(7, 2, 100.0, "call/c1", 3, "test.journal_record.hangup", 1, {"call_id": "c1", "who": "alice"})
    back, _ = decode_record(encode_record(old))
    assert back.schema == 1 and back.payload == {"call_id": "c1", "who": "alice"}  # stored as written
    assert back.event() == Hangup("c1", "alice", 16)
    mid = dataclasses.replace(old, schema=2, payload={"call_id": "c1", "caller": "bob", "cause": 17})
    assert decode_record(encode_record(mid))[0].event() == Hangup("c1", "bob", 17)


def test_newer_schema_than_build_is_refused():
    rec = Record(1, 1, 0.0, "call/c1", 1, "test.journal_record.hangup", 4, {"call_id": "c1"})
    with pytest.raises(UnknownEvent):
        decode_record(encode_record(rec))[0].event()


def _nested_claims(depth: int) -> bytes:
    """msgpack maps each holding an array that claims 19,968 items, nested
    ``depth`` deep, the claims never filled: the decoder allocated each
    claimed array before finding its items missing."""
    return b"\x98" + b"\x81\xdc\x4e\x00" * depth


def test_body_claiming_more_than_it_holds_is_refused_in_bounded_memory():
    """Found by the replication fuzz campaign: 33 KB of such claims took
    28 ms and a 41 MB peak of allocations (and a body may be 16 MiB: the
    claims grow with it). A body's containers are checked to be there in
    full, without building anything, before it is decoded."""
    import tracemalloc
    body = _nested_claims(8000)
    length = struct.pack(">I", len(body))
    frame = b"\xa1" + length + struct.pack(">I", zlib.crc32(body, zlib.crc32(length))) + body
    tracemalloc.start()
    try:
        t0 = time.thread_time()
        with pytest.raises(FrameError, match="undecodable body"):
            decode_record(frame)
        spent = time.thread_time() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024 and spent < 0.050, (peak, spent)
