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

import logging
import os
from pathlib import Path
from threading import Lock
from typing import Callable, Iterable, Sequence

from gateway.events import Event

from .record import FrameError, Record, decode_record, encode_record
from .segment import INDEX_STRIDE, fsync_dir, segment_name
from .store_errors import AppendRejected, JournalFailed, JournalLocked, StartMismatch  # noqa: F401
from .store_open import DEFAULT_SEGMENT_BYTES, JournalOpening  # noqa: F401
from .store_reads import JournalReads
from .store_retention import JournalRetention
from .store_segments import OpenReport, _Segment  # noqa: F401

log = logging.getLogger(__name__)

# Records after which a silent stream's version is forgotten (module docstring).
VERSION_HORIZON = 1 << 20


def _within(entry: tuple[int, int], seq: int) -> int:
    """The version ``(version, last seq)`` gives a record ``seq``: 0 once silent past the horizon."""
    return entry[0] if seq - entry[1] <= VERSION_HORIZON else 0


# The newest frames are also kept in memory, so that replication reads the
# live tail (a few frames per batch, just written) without opening the segment
# and walking up to INDEX_STRIDE frames from the nearest indexed offset: at a
# low call rate every held message is a batch of its own, and that walk was
# the replication thread's largest cost per batch. Older frames (a standby
# catching up) are read from the segments as before.
TAIL_FRAMES = 4096
TAIL_BYTES = 4 * 1024 * 1024


# Opening, reading and cutting the journal are its base classes (store_open.py,
# store_reads.py, store_retention.py); here are its state, appends and versions.
class Journal(JournalOpening, JournalReads, JournalRetention):
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
        # readers once durable, when its append updates the table; the
        # replication stream alone may read it from the moment it is written
        # (read_written), so that the standby's round trip overlaps the fsync.
        self._append_lock = Lock()
        # The last sequence written but not yet durable (0: none): set
        # between an append's write and the end of its fsync.
        self._written_ahead = 0
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

    def append_batch(self, items: Sequence[tuple[Event, float]], epoch: int, *,
                     written: Callable[[], None] | None = None) -> list[Record]:
        """Append ``(event, timestamp)`` pairs as one group commit: one write,
        one fsync. Returns the records (with their sequence numbers and stream
        versions) once they are durable.

        ``written()`` is called between the write and the fsync, when
        :meth:`read_written` serves the new frames: the journal writer wakes
        the replication thread there, so the frames travel to the standby
        and are stored there while this fsync runs (sync replication then
        waits for the longer of the two, not for their sum)."""
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
            self._write(frames, records, pending, written)
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

    def _write(self, frames: list[bytes], records: list[Record], versions: dict[str, tuple[int, int]],
               written: Callable[[], None] | None = None) -> None:
        seg = self._writable_segment()
        data = b"".join(frames)
        before = seg.size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if written is not None:
                # Readable by the replication stream from here (read_written).
                self._keep_tail(frames, records[0].seq)
                self._written_ahead = records[-1].seq
                written()
            if self._fsync:
                os.fdatasync(self._fd)
        except BaseException as exc:
            # After a failed write or fsync the kernel's view of the file is
            # unknown (a failed fsync may have dropped dirty pages): take no
            # more appends; reopening rescans and repairs the tail. Frames
            # the stream may already have sent stay the standby's: the node
            # hands its calls over to it when its journal fails.
            self._failed = exc
            self._written_ahead = 0
            self._drop_tail()
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
        if written is None:
            self._keep_tail(frames, records[0].seq)
        self._written_ahead = 0

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
