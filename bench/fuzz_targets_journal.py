"""The fuzz targets of the journal: frames, segment files and the
replication messages a peer sends."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from fuzz_target_base import Mutator, _scratch


# -- journal: frames, segments, replication messages --------------------------------

JRN_TOKENS = [b"\xa1", b"\xa2", b"\x00", b"\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
              b"\x01\x00\x00\x00", b"\xc0", b"\xc1", b"\xc2", b"\xc3", b"\x90", b"\x98", b"\x80", b"\xde\xff\xff",
              b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xcf" + b"\xff" * 8, b"\xd3" + b"\x80" + b"\x00" * 7,
              b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\xa0", b"\xc4\xff", b"\xd9\xff", b"\xc7\x05\x01"]
JRN_RUNS = [b"\x00", b"\x90", b"\x91", b"\xc0", b"\xa1", b"\x81\xa1x\xc0"]


def _journal_frames() -> list[bytes]:
    from journal.record import Record, encode_record
    from test_replication_harness import call_events
    from gateway.events import in_steps
    evs = call_events(7, activity=3) + call_events(8, activity=1) + in_steps(call_events(9, activity=2))
    return [encode_record(Record.of(ev, seq=i + 1, epoch=1, timestamp=1000.0 + i, version=i + 1))
            for i, ev in enumerate(evs)]


def _fix_crcs(data: bytes) -> bytes:
    """Each frame's length and CRC made right again where a frame header
    can be read, so that the body decoder is what stands."""
    from journal.record import HEADER_SIZE, MAX_BODY
    b = bytearray(data)
    pos = 0
    while len(b) - pos >= HEADER_SIZE:
        length = int.from_bytes(b[pos + 1:pos + 5], "big")
        if length > min(MAX_BODY, len(b) - pos - HEADER_SIZE):
            length = len(b) - pos - HEADER_SIZE
            b[pos + 1:pos + 5] = length.to_bytes(4, "big")
        body = bytes(b[pos + HEADER_SIZE:pos + HEADER_SIZE + length])
        crc = zlib.crc32(body, zlib.crc32(bytes(b[pos + 1:pos + 5])))
        b[pos + 5:pos + 9] = struct.pack(">I", crc)
        pos += HEADER_SIZE + length
    return bytes(b)


def _read_events(records) -> list:
    from gateway.events import UnknownEvent
    out = []
    for rec in records:
        out.append(rec.entries())           # the raw view never raises either
        try:
            out.append(rec.events())
        except UnknownEvent as exc:
            out.append(exc)
    return out


def _journal_record():
    from journal.record import FrameError, decode_record
    frames = _journal_frames()

    def read(data: bytes):
        rec, end = decode_record(data)
        assert 0 < end <= len(data)
        return _read_events([rec])

    return frames, Mutator(JRN_TOKENS, JRN_RUNS, max_len=1 << 16, finish=_fix_crcs, pool=frames), read, (FrameError,)


def _journal_segment():
    from journal.segment import JournalCorrupt, iter_records, scan_segment, segment_name
    directory = Path(_scratch()) / "journal"
    directory.mkdir(exist_ok=True)
    path = directory / segment_name(1)
    frames = _journal_frames()
    seeds = [b"".join(frames), b"".join(frames[:3]), b"".join(frames[2:])]

    def read(data: bytes):
        path.write_bytes(data)
        # Both readings: the store's scan at start (the newest segment, whose
        # tail may be torn, and a sealed one) and the replay reader.
        try:
            scan_segment(path, 1, is_last=False)
        except JournalCorrupt:
            pass
        scan = scan_segment(path, 1, is_last=True)
        assert scan.valid_end <= scan.file_size == len(data)
        return _read_events(iter_records(directory))

    return seeds, Mutator(JRN_TOKENS, JRN_RUNS, max_len=1 << 18, finish=_fix_crcs, pool=frames), read, \
        (JournalCorrupt,)


def _replication():
    import msgpack
    from journal.record import FrameError, decode_record
    from journal.replication import Ack, Batch, Handover, Heartbeat, Hello, ProtocolViolation, Refused, Taken, \
        decode, encode
    frames = _journal_frames()
    messages = [Hello("a", 5, 1, 0x1234, 2), Batch(1, frames[:3], 3, 1), Batch(4, frames[3:], 9, 2), Ack(3, 1),
                Heartbeat("b", "active", 2, 9, 100, 9, 1000.5), Handover(2, 9), Taken(3), Refused("diverged", 4),
                Refused("not active")]
    # One input: the type frame, a NUL, the msgpack body (what ZeroMQ's two
    # frames carry); without a NUL, one frame.
    seeds = [kind + b"\x00" + body for kind, body in map(encode, messages)]
    tokens = JRN_TOKENS + [b"HELLO", b"BATCH", b"ACK", b"HB", b"HANDOVER", b"TAKEN", b"REFUSED", b"\x00",
                           msgpack.packb("frames"), msgpack.packb("first"), msgpack.packb("role")]

    def read(data: bytes):
        kind, sep, body = data.partition(b"\x00")
        msg = decode([kind, body] if sep else [kind])
        if isinstance(msg, Batch):
            # The standby appends the batch's frames to its journal: each is read.
            for frame in msg.frames:
                try:
                    decode_record(frame)
                except FrameError:
                    pass
        return msg

    return seeds, Mutator(tokens, JRN_RUNS, max_len=1 << 18, pool=seeds), read, (ProtocolViolation,)
