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
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import fcntl
import logging
import os
from pathlib import Path
from threading import Lock
from typing import Iterable, Iterator, Sequence

from gateway.events import Event

from .record import FrameError, Record, decode_record, encode_record
from .segment import (INDEX_STRIDE, JournalCorrupt, TailDamage, fsync_dir, iter_frames, iter_spans,
                      list_segments, scan_segment, segment_name)

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

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


@dataclasses.dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    count: int
    size: int
    index: list[int]          # offset of record first_seq + k * INDEX_STRIDE

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

    def __init__(self, path: Path, lock_fd: int, segments: list[_Segment], versions: dict[str, int],
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
             segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> "Journal":
        """Open (creating if needed) the journal in directory ``path``.

        Every frame is checked. A torn or corrupt tail of the newest segment is
        logged, truncated and listed in :attr:`report`; damage anywhere else
        raises :class:`~journal.segment.JournalCorrupt`."""
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
            return cls._load(directory, lock_fd, fsync=fsync, segment_bytes=segment_bytes)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def _load(cls, directory: Path, lock_fd: int, *, fsync: bool, segment_bytes: int) -> "Journal":
        found = list_segments(directory)
        versions: dict[str, int] = {}
        last_epoch = [0]

        def visit(rec: Record) -> None:
            versions[rec.stream] = rec.version
            last_epoch[0] = rec.epoch

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
        """Version of the last record of ``stream`` (0 when it has none)."""
        return self._versions.get(stream, 0)

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
            pending: dict[str, int] = {}
            records: list[Record] = []
            frames: list[bytes] = []
            for ev, ts in items:
                seq += 1
                stream = ev.stream
                version = pending.get(stream) or self._versions.get(stream, 0)
                version += 1
                pending[stream] = version
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

    def _validate(self, records: list[Record]) -> dict[str, int]:
        expected = self.head + 1
        epoch = self._epoch
        pending: dict[str, int] = {}
        for rec in records:
            if rec.seq != expected:
                kind = "duplicate" if rec.seq < expected else "gap"
                raise AppendRejected(f"{kind}: sequence {rec.seq} where {expected} was expected")
            if rec.epoch < epoch:
                raise AppendRejected(f"sequence {rec.seq}: epoch {rec.epoch} after epoch {epoch}")
            version = (pending.get(rec.stream) or self._versions.get(rec.stream, 0)) + 1
            if rec.version != version:
                raise AppendRejected(f"sequence {rec.seq}: {rec.stream} version {rec.version} "
                                     f"where {version} was expected")
            pending[rec.stream] = version
            epoch = rec.epoch
            expected += 1
        return pending

    def _check_writable(self) -> None:
        if self._closed:
            raise ValueError("journal is closed")
        if self._failed is not None:
            raise JournalFailed(f"an earlier write failed ({self._failed!r}); reopen the journal")

    def _write(self, frames: list[bytes], records: list[Record], versions: dict[str, int]) -> None:
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
            views = [_View(s.first_seq, s.path, s.count, s.size, tuple(s.index))
                     for s in self._segments[start:] if s.first_seq <= to_seq]
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
            for rec in dropped:
                self._versions[rec.stream] = min(self._versions.get(rec.stream, 0), rec.version - 1)
            for stream in [s for s, v in self._versions.items() if v == 0]:
                del self._versions[stream]
            self._epoch = 0
            if seq >= self.first_seq:
                last = next(self._read_unlocked(seq, seq))
                self._epoch = last.epoch
            log.warning("journal: dropped %d records after sequence %d", len(dropped), seq)
            return len(dropped)

    def _read_unlocked(self, from_seq: int, to_seq: int) -> Iterator[Record]:
        for s in self._segments:
            if s.last_seq < from_seq or s.first_seq > to_seq:
                continue
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
