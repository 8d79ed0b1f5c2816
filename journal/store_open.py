"""Opening a journal directory: lock it, check every frame (from a snapshot's
record on when opened at one), cut a damaged tail of the newest segment and
build the segment table and stream versions.

``JournalOpening`` is a part of :class:`journal.store.Journal` (a base class)."""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .record import HEADER, FrameError, Record, decode_record
from .segment import JournalCorrupt, TailDamage, fsync_dir, header_index, list_segments, scan_segment, segment_name
from .store_errors import JournalLocked, StartMismatch
from .store_segments import OpenReport, _Segment

if TYPE_CHECKING:
    from .store import Journal

log = logging.getLogger("journal.store")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


def _cut_damaged_tail(path: Path, scan, damage: list[TailDamage]) -> None:
    """A scan that found a damaged tail (only the newest segment may have
    one: a write cut short): cut the file where the last whole frame ends,
    durably, and report it."""
    if scan.damage is None:
        return
    damage.append(scan.damage)
    with open(path, "r+b") as f:
        f.truncate(scan.valid_end)
        f.flush()
        os.fsync(f.fileno())
    log.warning("journal: truncated %s to %d bytes (dropped %d bytes: %s)",
                path, scan.valid_end, scan.damage.dropped_bytes, scan.damage.reason)


class JournalOpening:
    @classmethod
    def open(cls, path: str | os.PathLike, *, fsync: bool = True,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, start: dict | None = None,
             visit: Callable[[Record], None] | None = None) -> "Journal":
        """Open (creating if needed) the journal in directory ``path``.

        Every frame is checked (with ``start``, a snapshot's ``journal``
        section plus its ``seq`` and ``epoch``: every frame from that record
        on; raises :class:`StartMismatch` when that record is not there). A
        torn or corrupt tail of the newest segment is logged, truncated and
        listed in :attr:`report`; damage anywhere else raises
        :class:`~journal.segment.JournalCorrupt`.

        ``visit`` is called with every record checked, in order (with
        ``start``, from that record on), as it is read: a caller folding the
        journal does it in this one pass instead of decoding every record a
        second time (journal/checkpoint.py). An exception it raises fails
        the open."""
        directory = Path(path)
        if not directory.is_dir():
            directory.mkdir(parents=True)
            if fsync:
                fsync_dir(directory.parent)   # the new directory's own name must survive a crash
        lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JournalLocked(f"{directory} is open in another process") from None
            raise
        try:
            if start is not None:
                return cls._load_from(directory, lock_fd, start, fsync=fsync, segment_bytes=segment_bytes,
                                      extra=visit)
            return cls._load(directory, lock_fd, fsync=fsync, segment_bytes=segment_bytes, extra=visit)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def _load(cls, directory: Path, lock_fd: int, *, fsync: bool, segment_bytes: int,
              extra: Callable[[Record], None] | None = None) -> "Journal":
        found = list_segments(directory)
        versions: dict[str, tuple[int, int]] = {}
        last_epoch = [0]

        def visit(rec: Record) -> None:
            versions[rec.stream] = (rec.version, rec.seq)
            last_epoch[0] = rec.epoch
            if extra is not None:
                extra(rec)

        segments: list[_Segment] = []
        damage: list[TailDamage] = []
        for i, (first, seg_path) in enumerate(found):
            if segments and first != segments[-1].last_seq + 1:
                raise JournalCorrupt(seg_path, 0, f"segment starts at {first} but the previous one "
                                                  f"ends at {segments[-1].last_seq}")
            is_last = i == len(found) - 1
            scan = scan_segment(seg_path, first, is_last=is_last, visit=visit)
            if scan.count == 0 and not is_last:
                raise JournalCorrupt(seg_path, 0, "empty segment before the newest one")
            _cut_damaged_tail(seg_path, scan, damage)
            segments.append(_Segment(first, seg_path, scan.count, scan.valid_end, scan.index))
        head = segments[-1].last_seq if segments else 0
        report = OpenReport(len(segments), sum(s.count for s in segments), head, tuple(damage))
        return cls(directory, lock_fd, segments, versions, last_epoch[0], report,
                   fsync=fsync, segment_bytes=segment_bytes)

    @classmethod
    def _load_from(cls, directory: Path, lock_fd: int, start: dict, *, fsync: bool,
                   segment_bytes: int, extra: Callable[[Record], None] | None = None) -> "Journal":
        """Open at a snapshot's record: the segments before it are listed, the
        record is checked against the snapshot, every frame after it is read."""
        seq, seg_first, offset = int(start["seq"]), int(start["segment"]), int(start["offset"])
        found = list_segments(directory)
        firsts = [f for f, _ in found]
        if seg_first not in firsts:
            raise StartMismatch(f"{directory}: the segment of record {seq} ({segment_name(seg_first)}) "
                                f"is not there")
        at = firsts.index(seg_first)
        path = found[at][1]
        size = path.stat().st_size
        if size == 0:
            raise StartMismatch(f"{path}: empty, record {seq} is not there")
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                rec, stop = decode_record(mm, offset, size)
            except FrameError as exc:
                raise StartMismatch(f"{path}: no record at offset {offset} ({exc.reason})") from None
            crc = HEADER.unpack_from(mm, offset)[2]
        if rec.seq != seq or crc != int(start["crc"]) or rec.epoch != int(start["epoch"]):
            raise StartMismatch(f"{path}: the record at offset {offset} is {rec.seq} (epoch {rec.epoch}), "
                                f"not the snapshot's record {seq} (epoch {start['epoch']})")
        versions = {str(v[0]): (int(v[1]), int(v[2])) for v in start["versions"]}
        last_epoch = [rec.epoch]

        def visit(r: Record) -> None:
            versions[r.stream] = (r.version, r.seq)
            last_epoch[0] = r.epoch
            if extra is not None:
                extra(r)

        segments: list[_Segment] = []
        for i in range(at):
            first, p = found[i]
            # Counted from the names; read (and checked) when first needed.
            segments.append(_Segment(first, p, found[i + 1][0] - first, p.stat().st_size, None))
        damage: list[TailDamage] = []
        for i in range(at, len(found)):
            first, p = found[i]
            is_last = i == len(found) - 1
            begin = offset if i == at else 0
            first_here = seq if i == at else first
            if segments and i > at and first != segments[-1].last_seq + 1:
                raise JournalCorrupt(p, 0, f"segment starts at {first} but the previous one "
                                           f"ends at {segments[-1].last_seq}")
            scan = scan_segment(p, first_here, is_last=is_last, visit=visit, start=begin)
            if i > at and scan.count == 0 and not is_last:
                raise JournalCorrupt(p, 0, "empty segment before the newest one")
            _cut_damaged_tail(p, scan, damage)
            if i == at:
                # The frames before the record are walked by their headers
                # only (no CRC, no decode): this builds the segment's index.
                offsets, count = header_index(p, scan.valid_end)
                if count != seq - seg_first + scan.count:
                    raise StartMismatch(f"{p}: record {seq} is not frame {seq - seg_first} of its segment")
                segments.append(_Segment(first, p, count, scan.valid_end, offsets))
            else:
                segments.append(_Segment(first, p, scan.count, scan.valid_end, scan.index))
        head = segments[-1].last_seq
        report = OpenReport(len(segments), head - seq + 1, head, tuple(damage), resumed_from=seq)
        return cls(directory, lock_fd, segments, versions, last_epoch[0], report,
                   fsync=fsync, segment_bytes=segment_bytes)
