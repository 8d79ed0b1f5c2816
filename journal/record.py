"""The journal's record: one event with its position in the log, and its frame.

A frame on disk is::

    [format u8][length u32 BE][crc32 u32 BE][body: `length` bytes]

The CRC (zlib's CRC-32) covers the length field and the body, so a frame whose
length was torn or flipped fails the check as surely as one whose body was.
The format byte names the body's layout; readers keep the decoder of every
format they ever wrote, so an old journal stays readable after the layout
changes (DESIGN.md, "Event sourcing": old shapes are read, never rewritten).

Body of format 0xA1 is one msgpack array::

    [seq, epoch, timestamp, stream, version, type, schema, payload]

``payload`` is the event's plain-data payload (:meth:`gateway.events.Event.to_payload`),
nested in the same msgpack document so a record costs one unpack to read.
A record of type ``step`` holds the events one step made for one entity
(:class:`gateway.events.StepEvents`): :meth:`Record.events` gives them, in
order, for a record of either kind; an id such a record writes relative to
its stream (``gateway.event_steps.LocalId``) is msgpack's ext type, its code
where the id's name starts in the stream.
Nothing here reads a clock: the timestamp is the caller's.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Any

import msgpack

from gateway import events as _events

FORMAT_V1 = 0xA1
# Every format this build can read. A new layout gets a new byte and keeps the old decoders.
READABLE_FORMATS = frozenset({FORMAT_V1})

HEADER = struct.Struct(">BII")
HEADER_SIZE = HEADER.size
_LENGTH = struct.Struct(">I")
# A body larger than this is taken as a damaged length field, not as a record:
# one event is a few hundred bytes, and a bound keeps a flipped bit from making
# the reader swallow the rest of a segment as "one frame".
MAX_BODY = 16 * 1024 * 1024


class FrameError(Exception):
    """A frame that cannot be read. ``torn`` is True when the bytes simply end
    early (an interrupted write), False when the bytes are there but wrong."""

    def __init__(self, reason: str, offset: int, *, torn: bool) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.reason = reason
        self.offset = offset
        self.torn = torn


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One journaled event and where it sits: global ``seq`` (from 1, gapless),
    per-stream ``version`` (from 1), the HA ``epoch`` it was written in, and the
    caller-given ``timestamp`` (seconds)."""

    seq: int
    epoch: int
    timestamp: float
    stream: str
    version: int
    type: str
    schema: int
    payload: dict[str, Any]

    def event(self) -> _events.Event:
        """The domain event, upcast to this build's schema (a step record's
        :class:`gateway.events.StepEvents`: see :meth:`events`)."""
        return _events.decode(self.type, self.schema, self.payload, self.stream)

    def events(self) -> tuple[_events.Event, ...] | list[_events.Event]:
        """The domain events this record holds, in order: one, or a step's."""
        return _events.expand(_events.decode(self.type, self.schema, self.payload, self.stream))

    def label(self) -> str:
        """The record's type, or a step record's event types (reports)."""
        if self.type != _events.STEP_TYPE:
            return self.type
        return f"{self.type}: {', '.join(t for t, _p in self.entries())}"

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        """``(type, payload)`` of each event this record holds, as journaled,
        without decoding them (views of the raw history): a step record's
        events with their ``key`` put back (:func:`gateway.events.step_entries`)."""
        if self.type != _events.STEP_TYPE:
            return [(self.type, self.payload)]
        return _events.step_entries(self.payload, self.stream) or [(self.type, self.payload)]

    @classmethod
    def of(cls, ev: _events.Event, *, seq: int, epoch: int, timestamp: float, version: int) -> "Record":
        return cls(seq, epoch, float(timestamp), ev.stream, version, ev.TYPE, ev.SCHEMA, ev.to_payload())


def encode_record(record: Record, fmt: int = FORMAT_V1) -> bytes:
    """The frame of ``record`` (header + body)."""
    if fmt != FORMAT_V1:
        raise ValueError(f"cannot write record format {fmt:#x}")
    body = msgpack.packb(
        [record.seq, record.epoch, record.timestamp, record.stream, record.version,
         record.type, record.schema, record.payload],
        use_bin_type=True, default=_pack_local_id,
    )
    if len(body) > MAX_BODY:
        raise ValueError(f"record body of {len(body)} bytes exceeds {MAX_BODY}")
    length = _LENGTH.pack(len(body))
    return bytes((fmt,)) + length + _LENGTH.pack(zlib.crc32(body, zlib.crc32(length))) + body


def frame_end(buf: Any, offset: int = 0, end: int | None = None) -> int:
    """Check the frame at ``offset`` of ``buf`` (bytes, mmap, memoryview) and
    return where it ends. Raises :class:`FrameError`."""
    end = len(buf) if end is None else end
    if end - offset < HEADER_SIZE:
        raise FrameError(f"header cut short ({end - offset} of {HEADER_SIZE} bytes)", offset, torn=True)
    fmt, length, crc = HEADER.unpack_from(buf, offset)
    if fmt not in READABLE_FORMATS:
        raise FrameError(f"unknown format byte {fmt:#04x}", offset, torn=False)
    if length > MAX_BODY:
        raise FrameError(f"length {length} exceeds the {MAX_BODY}-byte bound", offset, torn=False)
    body_start = offset + HEADER_SIZE
    stop = body_start + length
    if stop > end:
        raise FrameError(f"body cut short ({end - body_start} of {length} bytes)", offset, torn=True)
    if zlib.crc32(buf[body_start:stop], zlib.crc32(buf[offset + 1:offset + 5])) != crc:
        raise FrameError("CRC mismatch", offset, torn=False)
    return stop


def decode_record(buf: Any, offset: int = 0, end: int | None = None) -> tuple[Record, int]:
    """Read the frame at ``offset``: the record and the offset just past it.
    Raises :class:`FrameError` for a torn, corrupt or unreadable frame."""
    if end is None:
        end = len(buf)
    # Fast path for a good frame (replay reads every record through here);
    # any failed check falls back to frame_end, which names the problem.
    if end - offset >= HEADER_SIZE:
        fmt, length, crc = _unpack_header(buf, offset)
        start = offset + HEADER_SIZE
        stop = start + length
        if fmt == FORMAT_V1 and stop <= end and length <= MAX_BODY:
            body = buf[start:stop]
            if _crc32(body, _crc32(buf[offset + 1:start - 4])) == crc:
                try:
                    fields = unpack_complete(body)
                except Exception as exc:  # msgpack raises several types for malformed input
                    raise FrameError(f"undecodable body ({exc.__class__.__name__})", offset, torn=False) from None
                try:
                    return _record_v1(fields), stop
                except (TypeError, ValueError) as exc:
                    raise FrameError(f"malformed body ({exc})", offset, torn=False) from None
    frame_end(buf, offset, end)   # raises: each case the fast path rejects fails one of its checks
    raise AssertionError("frame_end accepted a frame the fast path rejected")


_unpack_header = HEADER.unpack_from
_crc32 = zlib.crc32
_unpackb = msgpack.unpackb

# msgpack's decoder allocates each array (and map) at the size it claims
# before reading its items: claims nested up to its 1,024 levels, never
# filled, make it allocate about 2 x size^2 octets (33 KB: 41 MB). A body
# up to this size is decoded at once (its worst, 2 MB, is bounded);
# a larger one is first walked without building anything, which fails
# unless every claimed item is there, so its decoding allocates in
# proportion to its bytes.
WALK_ABOVE = 1024


def unpack_complete(data) -> Any:
    """``msgpack.unpackb(data)`` (map keys of any type), in memory bounded
    by ``len(data)``. Raises msgpack's errors for malformed input."""
    if len(data) > WALK_ABOVE:
        walker = msgpack.Unpacker(max_buffer_size=len(data))
        walker.feed(data)
        walker.skip()
        if walker.tell() != len(data):
            raise msgpack.ExtraData(None, bytes(data[walker.tell():]))
    return _unpackb(data, strict_map_key=False, ext_hook=slice)


def _pack_local_id(value: Any) -> msgpack.ExtType:
    # A step record's id relative to its stream (gateway/event_steps.py
    # LocalId, a slice) is msgpack's ext type: its code where the name starts
    # in the stream, its data what follows the "#". Reading makes the slice
    # again (``ext_hook=slice``: no Python code runs per id).
    if type(value) is slice:
        return msgpack.ExtType(value.start, value.stop)
    raise TypeError(f"cannot journal a {type(value).__name__}")


def _record_v1(fields: Any) -> Record:
    if not isinstance(fields, list) or len(fields) != 8:
        raise ValueError("expected an 8-field array")
    seq, epoch, ts, stream, version, type_, schema, payload = fields
    if (type(seq) is not int or type(epoch) is not int or type(version) is not int
            or type(schema) is not int or type(stream) is not str or type(type_) is not str
            or type(payload) is not dict):
        raise ValueError("field of the wrong type")
    if type(ts) is not float:
        if type(ts) is not int:
            raise ValueError("field of the wrong type")
        ts = float(ts)
    return Record(seq, epoch, ts, stream, version, type_, schema, payload)
