"""The journal store: append batches of events durably, read them back in order.

``append_batch`` is the unit of group commit (DESIGN.md, "Event sourcing"): all
frames of a batch go out in one ``write`` and are made durable by one
``fdatasync``; when it returns, every record of the batch is acknowledged and
survives a crash. The caller does the batching (a writer thread gathers the
appends of many actors); this module starts no thread.

A standby stores what the active sent with ``append_frames`` (the very bytes
the active wrote) or ``append_records``; both keep the sender's sequence
numbers and refuse gaps, duplicates, wrong stream versions and epochs going
backwards. The epoch check is also the journal's share of fencing (DESIGN.md,
"High availability"): once a record of epoch N is stored, a writer still
acting in an older epoch is refused.

One process owns a journal directory at a time (an exclusive ``flock`` on
``LOCK``). A lock serialises appends, so several threads may append and read.

Snapshots and retention (ARCHITECTURE.md, "Journal"): opened at a snapshot's
record (``start``), the journal reads only from that record on; the segments
before it are listed, not read, and are checked when first read (their frame
headers walked, the CRCs checked by whoever decodes the records). Segments
wholly before a kept snapshot can be deleted (:meth:`Journal.remove_before`),
and a standby that takes a snapshot from its active starts its journal again
at the snapshot's record (:meth:`Journal.restart_at`).

Stream versions: a record's version is the number of its stream's records
within the last ``VERSION_HORIZON`` records (a stream silent for longer starts
again at 1). The rule is a function of the records alone, so both nodes of a
pair apply it alike, and the table of versions stays bounded (a day of calls
is tens of millions of streams) and fits in a snapshot.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import fcntl
import logging
import mmap
import os
from pathlib import Path
from threading import Lock
from typing import Callable, Iterable, Iterator, Sequence

from gateway.events import Event

from .record import HEADER, FrameError, Record, decode_record, encode_record
from .segment import (INDEX_STRIDE, JournalCorrupt, TailDamage, fsync_dir, header_index, iter_frames,
                      iter_spans, list_segments, scan_segment, segment_name)

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# Records after which a silent stream's version is forgotten (module docstring).
VERSION_HORIZON = 1 << 20


def _within(entry: tuple[int, int], seq: int) -> int:
    """The version ``(version, last seq)`` gives a record ``seq``: 0 once silent past the horizon."""
    return entry[0] if seq - entry[1] <= VERSION_HORIZON else 0


class StartMismatch(Exception):
    """A snapshot's journal position that is not this journal's: its segment
    is gone, or the record there is not the one the snapshot was taken at."""

# The newest frames are also kept in memory, so that replication reads the
# live tail (a few frames per batch, just written) without opening the segment
# and walking up to INDEX_STRIDE frames from the nearest indexed offset: at a
# low call rate every held message is a batch of its own, and that walk was
# the replication thread's largest cost per batch. Older frames (a standby
# catching up) are read from the segments as before.
TAIL_FRAMES = 4096
TAIL_BYTES = 4 * 1024 * 1024


class JournalLocked(Exception):
    """Another process has the journal open."""


class JournalFailed(Exception):
    """A write or fsync failed: what reached the disk is unknown, so the journal
    takes no more appends. Reopen it (the scan repairs the tail)."""


class AppendRejected(ValueError):
    """Records or frames that do not continue this journal (gap, duplicate,
    stream version, older epoch) or that are not valid frames."""


@dataclasses.dataclass(frozen=True, slots=True)
class OpenReport:
    """What opening the journal found: ``truncated`` lists the damaged tails cut off."""

    segments: int
    records: int
    head: int
    truncated: tuple[TailDamage, ...]
    resumed_from: int | None = None     # opened at this snapshot record, not read before it


@dataclasses.dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    count: int
    size: int
    index: list[int] | None   # offset of record first_seq + k * INDEX_STRIDE (None: not read yet)

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


@dataclasses.dataclass(frozen=True, slots=True)
class _View:
    """An immutable picture of one segment for a reader, taken under the lock."""

    first_seq: int
    path: Path
    count: int
    size: int
    index: tuple[int, ...]


class Journal:
    """An open journal directory. Build with :meth:`Journal.open`."""

    def __init__(self, path: Path, lock_fd: int, segments: list[_Segment],
                 versions: dict[str, tuple[int, int]],
                 epoch: int, report: OpenReport, *, fsync: bool, segment_bytes: int) -> None:
        self.path = path
        self.report = report
        self._lock_fd = lock_fd
        self._segments = segments
        self._firsts = [s.first_seq for s in segments]
        self._versions = versions
        self._epoch = epoch
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        # _append_lock orders the appends and is held across their write and
        # fsync; _lock guards the segment table and is held only to change or
        # copy it, never across an fsync: readers (the replication thread
        # streaming to the standby, building HELLOs) must not wait for a
        # group commit (up to seconds on a loaded disk), which delayed the
        # heartbeats that thread also sends. A record becomes visible to
        # readers once durable, when its append updates the table.
        self._append_lock = Lock()
        self._pruned_at = self.head
        self._lock = Lock()
        self._cuts = 0                  # truncate_after calls: readers outside the lock check it
        self._fd: int | None = None
        self._failed: BaseException | None = None
        self._closed = False
        # The newest frames as written (see TAIL_FRAMES): _tail[i] is the
        # frame of sequence _tail_first + i; it always ends at the head once
        # a write completes. Its own lock, so that a reader of the tail does
        # not wait for a write's fsync under the journal's lock.
        self._tail: list[bytes] = []
        self._tail_first = 0
        self._tail_bytes = 0
        self._tail_lock = Lock()
        if segments:
            self._fd = os.open(segments[-1].path, os.O_WRONLY | os.O_APPEND)

    # ----------------------------------------------------------------- open

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
            if scan.damage is not None:
                damage.append(scan.damage)
                with open(seg_path, "r+b") as f:
                    f.truncate(scan.valid_end)
                    f.flush()
                    os.fsync(f.fileno())
                log.warning("journal: truncated %s to %d bytes (dropped %d bytes: %s)",
                            seg_path, scan.valid_end, scan.damage.dropped_bytes, scan.damage.reason)
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
            if scan.damage is not None:
                damage.append(scan.damage)
                with open(p, "r+b") as f:
                    f.truncate(scan.valid_end)
                    f.flush()
                    os.fsync(f.fileno())
                log.warning("journal: truncated %s to %d bytes (dropped %d bytes: %s)",
                            p, scan.valid_end, scan.damage.dropped_bytes, scan.damage.reason)
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

    # ----------------------------------------------------------- properties

    @property
    def head(self) -> int:
        """Sequence number of the last record (0 when empty)."""
        segs = self._segments
        return segs[-1].last_seq if segs else 0

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest record kept (1 unless older segments were removed)."""
        segs = self._segments
        return segs[0].first_seq if segs else 1

    @property
    def epoch(self) -> int:
        """Epoch of the last record (0 when empty)."""
        return self._epoch

    def stream_version(self, stream: str) -> int:
        """Version of the last record of ``stream`` (0 when it has none within
        the last ``VERSION_HORIZON`` records: the next one would be 1)."""
        return self._known(stream, self.head + 1)

    def _known(self, stream: str, seq: int) -> int:
        """The version a record ``seq`` of ``stream`` follows (module docstring)."""
        e = self._versions.get(stream)
        return 0 if e is None else _within(e, seq)

    def versions_table(self) -> list[list]:
        """``[stream, version, last seq]`` of every stream still counted (for a snapshot)."""
        with self._lock:
            floor = self.head + 1 - VERSION_HORIZON
            return [[k, v, last] for k, (v, last) in self._versions.items() if last >= floor]

    @property
    def size_bytes(self) -> int:
        """Bytes of every segment kept."""
        return sum(s.size for s in self._segments)

    def segments(self) -> list[tuple[int, int, int, Path]]:
        """(first seq, last seq, bytes, path) of every segment, oldest first."""
        with self._lock:
            return [(s.first_seq, s.last_seq, s.size, s.path) for s in self._segments]

    # -------------------------------------------------------------- appends

    def append_batch(self, items: Sequence[tuple[Event, float]], epoch: int) -> list[Record]:
        """Append ``(event, timestamp)`` pairs as one group commit: one write,
        one fsync. Returns the records (with their sequence numbers and stream
        versions) once they are durable."""
        if not items:
            return []
        with self._append_lock:
            self._check_writable()
            if epoch < self._epoch:
                raise AppendRejected(f"epoch {epoch} is older than the journal's {self._epoch}")
            seq = self.head
            pending: dict[str, tuple[int, int]] = {}
            records: list[Record] = []
            frames: list[bytes] = []
            for ev, ts in items:
                seq += 1
                stream = ev.stream
                p = pending.get(stream)
                version = (_within(p, seq) if p is not None else self._known(stream, seq)) + 1
                pending[stream] = (version, seq)
                rec = Record(seq, epoch, float(ts), stream, version, ev.TYPE, ev.SCHEMA, ev.to_payload())
                records.append(rec)
                frames.append(encode_record(rec))
            self._write(frames, records, pending)
            return records

    def append_records(self, records: Iterable[Record]) -> None:
        """Store records written elsewhere (a standby), keeping their sequence numbers."""
        records = list(records)
        if not records:
            return
        with self._append_lock:
            self._check_writable()
            pending = self._validate(records)
            self._write([encode_record(r) for r in records], records, pending)

    def append_frames(self, frames: Iterable[bytes]) -> list[Record]:
        """Store encoded frames exactly as received, after checking each one
        (CRC, one frame per item) and that they continue this journal."""
        frames = [bytes(f) for f in frames]
        if not frames:
            return []
        records = []
        for i, frame in enumerate(frames):
            try:
                rec, stop = decode_record(frame)
            except FrameError as exc:
                raise AppendRejected(f"frame {i}: {exc}") from None
            if stop != len(frame):
                raise AppendRejected(f"frame {i}: {len(frame) - stop} bytes after the frame")
            records.append(rec)
        with self._append_lock:
            self._check_writable()
            pending = self._validate(records)
            self._write(frames, records, pending)
        return records

    def _validate(self, records: list[Record]) -> dict[str, tuple[int, int]]:
        expected = self.head + 1
        epoch = self._epoch
        pending: dict[str, tuple[int, int]] = {}
        for rec in records:
            if rec.seq != expected:
                kind = "duplicate" if rec.seq < expected else "gap"
                raise AppendRejected(f"{kind}: sequence {rec.seq} where {expected} was expected")
            if rec.epoch < epoch:
                raise AppendRejected(f"sequence {rec.seq}: epoch {rec.epoch} after epoch {epoch}")
            p = pending.get(rec.stream)
            version = (_within(p, rec.seq) if p is not None else self._known(rec.stream, rec.seq)) + 1
            if rec.version != version:
                raise AppendRejected(f"sequence {rec.seq}: {rec.stream} version {rec.version} "
                                     f"where {version} was expected")
            pending[rec.stream] = (version, rec.seq)
            epoch = rec.epoch
            expected += 1
        return pending

    def _check_writable(self) -> None:
        if self._closed:
            raise ValueError("journal is closed")
        if self._failed is not None:
            raise JournalFailed(f"an earlier write failed ({self._failed!r}); reopen the journal")

    def _write(self, frames: list[bytes], records: list[Record], versions: dict[str, tuple[int, int]]) -> None:
        seg = self._writable_segment()
        data = b"".join(frames)
        before = seg.size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self._fsync:
                os.fdatasync(self._fd)
        except BaseException as exc:
            # After a failed write or fsync the kernel's view of the file is
            # unknown (a failed fsync may have dropped dirty pages): take no
            # more appends; reopening rescans and repairs the tail.
            self._failed = exc
            try:
                os.ftruncate(self._fd, before)
            except OSError:
                pass
            raise JournalFailed(f"append to {seg.path} failed: {exc!r}") from exc
        with self._lock:
            offset = before
            for frame in frames:
                if seg.count % INDEX_STRIDE == 0:
                    seg.index.append(offset)
                seg.count += 1
                offset += len(frame)
            seg.size = offset
            self._versions.update(versions)
            self._epoch = records[-1].epoch
            head = records[-1].seq
            if head - self._pruned_at >= VERSION_HORIZON // 4:
                # Streams silent past the horizon count from 1 again: forget them
                # (keeps the table bounded; module docstring).
                floor = head + 1 - VERSION_HORIZON
                for stream in [k for k, (_v, last) in self._versions.items() if last < floor]:
                    del self._versions[stream]
                self._pruned_at = head
        self._keep_tail(frames, records[0].seq)

    def _keep_tail(self, frames: list[bytes], first: int) -> None:
        with self._tail_lock:
            tail = self._tail
            if not tail or self._tail_first + len(tail) != first:
                tail.clear()
                self._tail_first = first
                self._tail_bytes = 0
            tail.extend(frames)
            self._tail_bytes += sum(map(len, frames))
            if len(tail) > 2 * TAIL_FRAMES or self._tail_bytes > 2 * TAIL_BYTES:
                # Back within the bounds, the newest frame always kept (one
                # trim per many writes: amortised O(1) a frame).
                drop, size = 0, self._tail_bytes
                while drop < len(tail) - 1 and (len(tail) - drop > TAIL_FRAMES or size > TAIL_BYTES):
                    size -= len(tail[drop])
                    drop += 1
                del tail[:drop]
                self._tail_first += drop
                self._tail_bytes = size

    def _drop_tail(self) -> None:
        with self._tail_lock:
            self._tail.clear()
            self._tail_first = 0
            self._tail_bytes = 0

    def _writable_segment(self) -> _Segment:
        if self._segments:
            seg = self._segments[-1]
            if seg.size < self._segment_bytes or seg.count == 0:
                return seg
        first = self.head + 1
        path = self.path / segment_name(first)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        if self._fsync:
            fsync_dir(self.path)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        seg = _Segment(first, path, 0, 0, [])
        with self._lock:
            self._segments.append(seg)
            self._firsts.append(first)
        return seg

    # ---------------------------------------------------------------- reads

    def read(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Record]:
        """Records from ``from_seq`` to ``to_seq`` (default: the head when called), in order."""
        for buf, i, stop, seq in self._spans(from_seq, to_seq):
            try:
                yield decode_record(buf, i, stop)[0]
            except FrameError as exc:
                raise JournalCorrupt(self.path, 0, f"record {seq}: {exc}") from None

    def read_frames(self, from_seq: int, max_count: int) -> list[bytes]:
        """Up to ``max_count`` encoded frames from ``from_seq``, as stored (for replication)."""
        if max_count <= 0 or from_seq > self.head:
            return []
        with self._tail_lock:
            k = from_seq - self._tail_first
            if self._tail and 0 <= k < len(self._tail):
                return self._tail[k:k + max_count]
        return [buf[i:stop] for buf, i, stop, _ in self._spans(from_seq, from_seq + max_count - 1)]

    def _spans(self, from_seq: int, to_seq: int | None) -> Iterator[tuple[bytes, int, int, int]]:
        """(buffer, start, stop, seq) of each frame in the range."""
        with self._lock:
            if self._closed:
                raise ValueError("journal is closed")
            if from_seq < self.first_seq:
                raise ValueError(f"sequence {from_seq} is older than the oldest kept ({self.first_seq})")
            head = self.head
            to_seq = head if to_seq is None else min(to_seq, head)
            start = max(0, bisect.bisect_right(self._firsts, from_seq) - 1)
            wanted = [s for s in self._segments[start:] if s.first_seq <= to_seq]
        for s in wanted:
            if s.index is None:
                self._read_index(s)
        with self._lock:
            views = [_View(s.first_seq, s.path, s.count, s.size, tuple(s.index)) for s in wanted]
            cuts = self._cuts
        if from_seq > to_seq:
            return
        # The views are read outside the lock (appends only add bytes after
        # them); a truncate_after meanwhile may take bytes away: the range read
        # then ends where the journal now ends, it is not corruption.
        try:
            for v in views:
                if v.first_seq + v.count - 1 < from_seq:
                    continue
                k = max(0, from_seq - v.first_seq) // INDEX_STRIDE
                seq = v.first_seq + k * INDEX_STRIDE
                for buf, i, stop, _off in iter_spans(v.path, v.index[k], v.size):
                    if seq > to_seq:
                        return
                    if seq >= from_seq:
                        yield buf, i, stop, seq
                    seq += 1
        except (JournalCorrupt, FileNotFoundError):
            if self._cuts == cuts:
                raise

    # ------------------------------------------------------------ truncation

    def truncate_after(self, seq: int) -> int:
        """Drop every record after ``seq`` (a rejoining node discarding a tail
        its new active never had). Returns how many records were dropped."""
        with self._append_lock, self._lock:
            if self._closed:
                raise ValueError("journal is closed")
            head = self.head
            if seq >= head:
                return 0
            if seq < self.first_seq - 1:
                raise ValueError(f"cannot truncate below the oldest kept record ({self.first_seq})")
            dropped = list(self._read_unlocked(seq + 1, head))
            self._cuts += 1
            self._drop_tail()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            while self._segments and self._segments[-1].first_seq > seq and len(self._segments) > 1:
                gone = self._segments.pop()
                self._firsts.pop()
                # Newest first, each removal durable before the next and before
                # the kept segment is cut: after a crash, what is left is always
                # a gapless prefix (a later segment coming back behind a removed
                # or shortened one would be a gap the journal refuses to open).
                os.unlink(gone.path)
                fsync_dir(self.path)
            seg = self._segments[-1]
            if seg.index is None:
                self._read_index(seg)
            keep = max(0, seq - seg.first_seq + 1)
            if keep == seg.count:
                size = seg.size
            elif keep == 0:
                size = 0
            else:
                n = keep // INDEX_STRIDE * INDEX_STRIDE
                for _frame, off in iter_frames(seg.path, seg.index[keep // INDEX_STRIDE], seg.size):
                    if n == keep:
                        size = off
                        break
                    n += 1
            with open(seg.path, "r+b") as f:
                f.truncate(size)
                os.fsync(f.fileno())
            fsync_dir(self.path)
            seg.count = keep
            seg.size = size
            del seg.index[(keep + INDEX_STRIDE - 1) // INDEX_STRIDE:]
            self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
            self._rebuild_versions(seq, dropped)
            self._epoch = 0
            if seq >= self.first_seq:
                last = next(self._read_unlocked(seq, seq))
                self._epoch = last.epoch
            log.warning("journal: dropped %d records after sequence %d", len(dropped), seq)
            return len(dropped)

    # ------------------------------------------------- snapshots, retention

    def position(self, seq: int) -> dict:
        """Where record ``seq`` sits: ``{segment, offset, crc}`` (a snapshot's
        ``journal`` section, with :meth:`versions_table`)."""
        with self._lock:
            if not self.first_seq <= seq <= self.head:
                raise ValueError(f"record {seq} is not in the journal ({self.first_seq}-{self.head})")
            seg = self._segments[bisect.bisect_right(self._firsts, seq) - 1]
        if seg.index is None:
            self._read_index(seg)
        k = (seq - seg.first_seq) // INDEX_STRIDE
        n = seg.first_seq + k * INDEX_STRIDE
        for buf, i, _stop, off in iter_spans(seg.path, seg.index[k], seg.size):
            if n == seq:
                return {"segment": seg.first_seq, "offset": off, "crc": HEADER.unpack_from(buf, i)[2]}
            n += 1
        raise JournalCorrupt(seg.path, 0, f"record {seq} not found in its segment")

    def remove_before(self, seq: int) -> tuple[int, int]:
        """Delete the segments whose records are all before ``seq`` (never the
        newest segment). Oldest first, so a crash leaves a gapless suffix.
        Returns (segments removed, bytes freed)."""
        removed = freed = 0
        with self._lock:
            if self._closed:
                raise ValueError("journal is closed")
            while len(self._segments) > 1 and self._segments[0].last_seq < seq:
                gone = self._segments.pop(0)
                self._firsts.pop(0)
                os.unlink(gone.path)
                removed += 1
                freed += gone.size
            if removed:
                self._cuts += 1
                fsync_dir(self.path)
        return removed, freed

    def restart_at(self, frame: bytes, versions: list) -> None:
        """Start the journal again at the record ``frame`` (a standby that took
        its active's snapshot of that record): every segment goes, newest
        first (a crash leaves a gapless prefix, which the snapshot, whose
        record is not in it, does not match: the node then starts from that
        prefix and asks again); then one segment holds the record."""
        try:
            rec, stop = decode_record(frame)
        except FrameError as exc:
            raise AppendRejected(f"snapshot record: {exc}") from None
        if stop != len(frame):
            raise AppendRejected("snapshot record: bytes after the frame")
        with self._append_lock, self._lock:
            self._check_writable()
            self._cuts += 1
            self._drop_tail()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            while self._segments:
                gone = self._segments.pop()
                os.unlink(gone.path)
                fsync_dir(self.path)
            self._firsts = []
            self._versions = {str(v[0]): (int(v[1]), int(v[2])) for v in versions}
            self._versions[rec.stream] = (rec.version, rec.seq)
            path = self.path / segment_name(rec.seq)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, frame)
                if self._fsync:
                    os.fdatasync(fd)
                    fsync_dir(self.path)
            except BaseException as exc:
                self._failed = exc
                os.close(fd)
                raise JournalFailed(f"writing {path} failed: {exc!r}") from exc
            self._fd = fd
            self._segments.append(_Segment(rec.seq, path, 1, len(frame), [0]))
            self._firsts.append(rec.seq)
            self._epoch = rec.epoch
            self._pruned_at = rec.seq
        log.warning("journal: started again at record %d (epoch %d) from the active's snapshot",
                    rec.seq, rec.epoch)

    def _rebuild_versions(self, seq: int, dropped: list[Record]) -> None:
        """After a cut: each stream of a dropped record goes back to its last
        record at or before ``seq`` (found by reading back over the horizon,
        or as far as the journal goes)."""
        streams = {r.stream for r in dropped}
        for stream in streams:
            self._versions.pop(stream, None)
        if not streams:
            return
        lo = max(self.first_seq, seq + 1 - VERSION_HORIZON)
        if lo <= seq:
            for rec in self._read_unlocked(lo, seq):
                if rec.stream in streams:
                    self._versions[rec.stream] = (rec.version, rec.seq)

    def _read_index(self, seg: _Segment) -> None:
        """Index a sealed segment listed behind a snapshot (read outside the
        lock: it is never appended to; a removal meanwhile just ends the read)."""
        offsets, count = header_index(seg.path, seg.size)
        if count != seg.count:
            raise JournalCorrupt(seg.path, 0, f"{count} records where the next segment's name says "
                                              f"{seg.count}")
        seg.index = offsets

    def _read_unlocked(self, from_seq: int, to_seq: int) -> Iterator[Record]:
        for s in self._segments:
            if s.last_seq < from_seq or s.first_seq > to_seq:
                continue
            if s.index is None:
                self._read_index(s)
            k = max(0, from_seq - s.first_seq) // INDEX_STRIDE
            n = s.first_seq + k * INDEX_STRIDE
            for frame, _off in iter_frames(s.path, s.index[k], s.size):
                if n > to_seq:
                    return
                if n >= from_seq:
                    yield decode_record(frame)[0]
                n += 1

    # ---------------------------------------------------------------- close

    def close(self) -> None:
        with self._append_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop_tail()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            os.close(self._lock_fd)

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
