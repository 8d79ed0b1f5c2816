"""Segment files: the journal is a directory of append-only files, each named by
the sequence number of its first record (``00000000000000000001.seg``), so the
file holding any sequence number is found from the directory listing alone.

Scanning a segment checks every frame (CRC, format, gapless sequence). Damage
at the very end of the newest segment is what an interrupted write leaves
(DESIGN.md, "Event sourcing": a torn tail is detected by CRC and truncated); it
is reported and cut off by the store. Damage followed by valid frames, or in a
segment that later segments follow, cannot come from an interrupted append: it
is lost data, raised as :class:`JournalCorrupt` and never silently skipped.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import mmap
import os
import re
import zlib
from pathlib import Path
from typing import Callable, Iterator

from .record import HEADER, HEADER_SIZE, MAX_BODY, READABLE_FORMATS, FrameError, Record, decode_record, frame_end

log = logging.getLogger(__name__)

SUFFIX = ".seg"
_NAME = re.compile(r"^(\d{20})\.seg$")
# One offset is remembered every INDEX_STRIDE records, so finding a sequence
# number costs at most INDEX_STRIDE header reads, and the index stays small.
INDEX_STRIDE = 128
# Looking for a valid frame after damage computes the CRC of each candidate
# over the length it claims: at most this many times the bytes after the
# damage (plus one MiB), so the check stays linear in the segment whatever
# those bytes claim. The first valid frame there costs at most those bytes.
CHECK_FACTOR = 4
CHECK_EXTRA = 1 << 20
NOT_TOLD = "whether valid records follow could not be told within the check's bound"
# Where a frame may start: a readable format byte, then a length of at most
# MAX_BODY (16 MiB: its first octet 0 or 1). Found by the regex engine, so
# a run of format bytes (or of anything else) costs no Python per octet.
assert MAX_BODY <= 0x01FFFFFF
_CANDIDATE = re.compile(b"[" + re.escape(bytes(sorted(READABLE_FORMATS))) + rb"][\x00\x01]")


class JournalCorrupt(Exception):
    """Damage that an interrupted append cannot explain: records would be lost."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: {reason} at offset {offset}")
        self.path = path
        self.offset = offset
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class TailDamage:
    """A torn or corrupt tail of the newest segment, cut off on open."""

    path: Path
    offset: int
    reason: str
    dropped_bytes: int


@dataclasses.dataclass(slots=True)
class SegmentScan:
    first_seq: int
    path: Path
    count: int
    valid_end: int
    file_size: int
    index: list[int]
    damage: TailDamage | None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first sequence number, path) of every segment, oldest first."""
    out = []
    for entry in os.scandir(directory):
        m = _NAME.match(entry.name)
        if m and entry.is_file():
            out.append((int(m.group(1)), Path(entry.path)))
    out.sort()
    return out


def scan_segment(path: Path, first_seq: int, *, is_last: bool,
                 visit: Callable[[Record], None] | None = None, start: int = 0) -> SegmentScan:
    """Check every frame of a segment (from offset ``start``, where record
    ``first_seq`` is), calling ``visit`` on each record.

    A damaged tail of the newest segment is returned as ``damage`` (and
    logged); any other damage raises :class:`JournalCorrupt`."""
    size = path.stat().st_size
    index: list[int] = []
    count = 0
    off = start
    damage = None
    if size:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            while off < size:
                try:
                    rec, stop = decode_record(mm, off, size)
                except FrameError as exc:
                    if not is_last:
                        raise JournalCorrupt(path, off, f"{exc.reason} in a sealed segment") from None
                    after = _valid_frame_after(mm, off + 1, size)
                    if after is None:
                        raise JournalCorrupt(path, off, f"{exc.reason}; {NOT_TOLD}") from None
                    if after:
                        raise JournalCorrupt(path, off, f"{exc.reason}, followed by valid records") from None
                    damage = TailDamage(path, off, exc.reason, size - off)
                    log.warning("journal: damaged tail in %s at offset %d: %s (%d bytes)",
                                path, off, exc.reason, size - off)
                    break
                expected = first_seq + count
                if rec.seq != expected:
                    raise JournalCorrupt(path, off, f"sequence {rec.seq} where {expected} was expected")
                if count % INDEX_STRIDE == 0:
                    index.append(off)
                if visit is not None:
                    visit(rec)
                count += 1
                off = stop
    return SegmentScan(first_seq, path, count, off, size, index, damage)


def header_index(path: Path, end: int) -> tuple[list[int], int]:
    """(offset of every INDEX_STRIDE-th frame, number of frames) of the first
    ``end`` bytes of ``path``, by walking the frame headers (no CRC check, no
    decode: a segment the journal has not read yet, listed behind a
    snapshot). A walk that does not land exactly on ``end`` raises
    :class:`JournalCorrupt`."""
    index: list[int] = []
    count = 0
    for _buf, _i, _stop, off in iter_spans(path, 0, end):
        if count % INDEX_STRIDE == 0:
            index.append(off)
        count += 1
    return index, count


def _valid_frame_after(buf: mmap.mmap, start: int, end: int) -> bool | None:
    """Is there any frame with a good CRC at or after ``start``? Only candidate
    offsets holding a known format byte are tried. None when the CRCs to
    compute went past the bound (CHECK_FACTOR) before an answer."""
    budget = CHECK_FACTOR * (end - start) + CHECK_EXTRA
    for m in _CANDIDATE.finditer(buf, start, end):
        pos = m.start()
        if end - pos < HEADER_SIZE:
            break
        # frame_end's checks, without its exception for each refusal (there
        # may be a candidate every few octets): the length, then the CRC.
        _fmt, length, crc = HEADER.unpack_from(buf, pos)
        body = pos + HEADER_SIZE
        if length <= MAX_BODY and body + length <= end:
            budget -= length                    # what the CRC reads
            if budget < 0:
                return None
            if zlib.crc32(buf[body:body + length], zlib.crc32(buf[pos + 1:pos + 5])) == crc:
                return True
    return False


def iter_spans(path: Path, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """``(buffer, frame start, frame stop, file offset)`` for each frame of ``path`` between
    two offsets already known to be frame boundaries (checked when the segment
    was scanned or written). Reads in large blocks and does not copy frames;
    the buffer changes between blocks. Frames are not checked here."""
    block = 1 << 20
    unpack = HEADER.unpack_from
    with open(path, "rb") as f:
        f.seek(start)
        buf = b""
        base = start          # file offset of buf[0]
        i = 0                 # read position in buf
        n = 0                 # len(buf)
        while base + i < end:
            if n - i < HEADER_SIZE:
                buf, base, i, n = _refill(f, path, buf, base, i, end, HEADER_SIZE, block)
            length = unpack(buf, i)[1]
            stop = i + HEADER_SIZE + length
            if stop > n:
                buf, base, i, n = _refill(f, path, buf, base, i, end, HEADER_SIZE + length, block)
                stop = HEADER_SIZE + length
            yield buf, i, stop, base + i
            i = stop


def _refill(f, path: Path, buf: bytes, base: int, i: int, end: int, need: int,
            block: int) -> tuple[bytes, int, int, int]:
    buf = buf[i:]
    base += i
    avail = end - (base + len(buf))
    buf += f.read(min(max(block, need - len(buf)), avail))
    if len(buf) < need:
        raise JournalCorrupt(path, base, "segment shorter than its committed size")
    return buf, base, 0, len(buf)


def iter_frames(path: Path, start: int, end: int) -> Iterator[tuple[bytes, int]]:
    """(frame bytes, file offset) of the frames of ``path`` between two frame boundaries."""
    for buf, i, stop, offset in iter_spans(path, start, end):
        yield buf[i:stop], offset


def fsync_dir(directory: Path) -> None:
    """Make a created, renamed or removed name in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_records(directory: Path, from_seq: int = 1) -> Iterator[Record]:
    """Records from ``from_seq`` on, read without locking or repairing the
    journal (another process may hold it open). A damaged tail of the newest
    segment ends the iteration with a log line; other damage raises
    :class:`JournalCorrupt`. Records before ``from_seq`` are CRC-checked, not decoded."""
    found = list_segments(Path(directory))
    firsts = [first for first, _ in found]
    start = max(0, bisect.bisect_right(firsts, from_seq) - 1)
    expected = found[start][0] if found else 1
    for i in range(start, len(found)):
        first, path = found[i]
        if first != expected:
            raise JournalCorrupt(path, 0, f"segment starts at {first} where {expected} was expected")
        is_last = i == len(found) - 1
        size = path.stat().st_size
        if size == 0:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            off = 0
            while off < size:
                try:
                    if expected < from_seq:
                        off = frame_end(mm, off, size)
                        expected += 1
                        continue
                    rec, stop = decode_record(mm, off, size)
                except FrameError as exc:
                    after = _valid_frame_after(mm, off + 1, size) if is_last else True
                    if after is None:
                        raise JournalCorrupt(path, off, f"{exc.reason}; {NOT_TOLD}") from None
                    if not after:
                        log.warning("journal: damaged tail in %s at offset %d: %s (%d bytes); "
                                    "reading stops there", path, off, exc.reason, size - off)
                        return
                    raise JournalCorrupt(path, off, exc.reason) from None
                if rec.seq != expected:
                    raise JournalCorrupt(path, off, f"sequence {rec.seq} where {expected} was expected")
                expected += 1
                off = stop
                yield rec
