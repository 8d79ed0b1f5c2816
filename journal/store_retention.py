"""Cutting the journal: a rejoining node's diverged tail dropped
(``truncate_after``), where a snapshot's record sits (``position``), the
segments before a kept snapshot deleted (``remove_before``) and a standby's
journal started again at its active's snapshot (``restart_at``).

``JournalRetention`` is a part of :class:`journal.store.Journal` (a base class)."""

from __future__ import annotations

import bisect
import logging
import os

from .record import HEADER, FrameError, decode_record
from .segment import INDEX_STRIDE, JournalCorrupt, fsync_dir, iter_frames, iter_spans, segment_name
from .store_errors import AppendRejected, JournalFailed
from .store_segments import _Segment

log = logging.getLogger("journal.store")


class JournalRetention:
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
