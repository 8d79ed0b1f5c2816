"""Reading the journal back: records and stored frames by sequence number,
read outside the lock from an immutable view of the segments, and the index
of a segment listed behind a snapshot built when first read.

``JournalReads`` is a part of :class:`journal.store.Journal` (a base class)."""

from __future__ import annotations

import bisect
from typing import Iterator

from .record import FrameError, Record, decode_record
from .segment import INDEX_STRIDE, JournalCorrupt, header_index, iter_frames, iter_spans
from .store_segments import _Segment, _View


class JournalReads:
    def read(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Record]:
        """Records from ``from_seq`` to ``to_seq`` (default: the head when called), in order."""
        for buf, i, stop, seq in self._spans(from_seq, to_seq):
            try:
                yield decode_record(buf, i, stop)[0]
            except FrameError as exc:
                raise JournalCorrupt(self.path, 0, f"record {seq}: {exc}") from None

    def read_frames(self, from_seq: int, max_count: int) -> list[bytes]:
        """Up to ``max_count`` encoded frames from ``from_seq``, as stored: durable ones only."""
        return self._frames(from_seq, max_count, self.head)

    @property
    def written_head(self) -> int:
        """The last sequence written: the head, or past it while an append's
        fsync runs (``Journal.append_batch``'s ``written``)."""
        return max(self.head, self._written_ahead)

    def read_written(self, from_seq: int, max_count: int) -> list[bytes]:
        """Like :meth:`read_frames` up to :attr:`written_head`: the replication
        stream's read, which may send a frame while its fsync still runs."""
        return self._frames(from_seq, max_count, self.written_head)

    def _frames(self, from_seq: int, max_count: int, last: int) -> list[bytes]:
        if max_count <= 0 or from_seq > last:
            return []
        max_count = min(max_count, last - from_seq + 1)
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
