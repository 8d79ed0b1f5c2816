"""The journal store: appends, reads across segments, standby copies, tail repair."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.events import Event, event
from journal.record import HEADER_SIZE, Record, encode_record
from journal.segment import JournalCorrupt, list_segments
from journal.store import AppendRejected, Journal, JournalFailed, JournalLocked


@event("test.journal_store.note")
@dataclasses.dataclass(frozen=True, slots=True)
class Note(Event):
    key: str
    text: str
    n: int

    @property
    def stream(self) -> str:
        return f"note/{self.key}"


def notes(count: int, keys: str = "abc", width: int = 10) -> list[tuple[Event, float]]:
    return [(Note(keys[i % len(keys)], "x" * width, i), 1000.0 + i) for i in range(count)]


@pytest.fixture
def jdir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


# ---------------------------------------------------------------- appends

def test_empty_journal(jdir):
    with Journal.open(jdir) as j:
        assert j.head == 0 and j.epoch == 0
        assert list(j.read()) == [] and j.read_frames(1, 10) == []
        assert j.stream_version("note/a") == 0
        assert j.report.records == 0 and j.report.truncated == ()


def test_append_assigns_gapless_seq_and_per_stream_versions(jdir):
    with Journal.open(jdir) as j:
        first = j.append_batch(notes(4, keys="ab"), epoch=1)
        second = j.append_batch(notes(3, keys="bc"), epoch=2)
        assert [r.seq for r in first + second] == list(range(1, 8))
        assert [(r.stream, r.version) for r in first + second] == [
            ("note/a", 1), ("note/b", 1), ("note/a", 2), ("note/b", 2),
            ("note/b", 3), ("note/c", 1), ("note/b", 4)]
        assert [r.epoch for r in first + second] == [1] * 4 + [2] * 3
        assert j.head == 7 and j.epoch == 2
        assert j.stream_version("note/b") == 4 and j.stream_version("note/c") == 1
        assert list(j.read()) == first + second
        assert j.append_batch([], epoch=2) == []


def test_records_carry_the_callers_timestamp(jdir):
    with Journal.open(jdir) as j:
        recs = j.append_batch([(Note("a", "", 0), 12.5), (Note("a", "", 1), 3)], epoch=1)
    assert [r.timestamp for r in recs] == [12.5, 3.0]


def test_one_write_and_one_fsync_per_batch(jdir, monkeypatch):
    calls = {"write": 0, "fdatasync": 0}
    real_write, real_sync = os.write, os.fdatasync

    def write(fd, data):
        calls["write"] += 1
        return real_write(fd, data)

    def fdatasync(fd):
        calls["fdatasync"] += 1
        return real_sync(fd)

    with Journal.open(jdir) as j:
        j.append_batch(notes(1), epoch=1)      # creates the segment
        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fdatasync", fdatasync)
        j.append_batch(notes(500), epoch=1)
    assert calls == {"write": 1, "fdatasync": 1}


def test_older_epoch_is_fenced_off(jdir):
    with Journal.open(jdir) as j:
        j.append_batch(notes(2), epoch=5)
        with pytest.raises(AppendRejected, match="epoch 4"):
            j.append_batch(notes(1), epoch=4)
        assert j.head == 2


def test_state_survives_reopen(jdir):
    with Journal.open(jdir) as j:
        written = j.append_batch(notes(10, keys="ab"), epoch=3)
    with Journal.open(jdir) as j:
        assert j.head == 10 and j.epoch == 3 and j.report.records == 10
        assert j.stream_version("note/a") == 5
        assert list(j.read()) == written
        more = j.append_batch(notes(1, keys="a"), epoch=3)
        assert more[0].seq == 11 and more[0].version == 6


def test_second_opener_is_locked_out(jdir):
    with Journal.open(jdir):
        with pytest.raises(JournalLocked):
            Journal.open(jdir)
    Journal.open(jdir).close()


def test_failed_fsync_stops_appends(jdir, monkeypatch):
    with Journal.open(jdir) as j:
        j.append_batch(notes(2), epoch=1)

        def broken(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", broken)
        with pytest.raises(JournalFailed):
            j.append_batch(notes(3), epoch=1)
        monkeypatch.undo()
        assert j.head == 2
        with pytest.raises(JournalFailed):
            j.append_batch(notes(1), epoch=1)
    with Journal.open(jdir) as j:
        assert j.head == 2 and [r.seq for r in j.read()] == [1, 2]


def test_written_frames_reach_the_stream_before_their_fsync_and_no_one_else(jdir, monkeypatch):
    # The replication stream may send a batch while its fsync runs (the
    # standby stores it meanwhile); every other reader sees a record only
    # once it is durable.
    real_sync = os.fdatasync
    order: list = []
    seen: dict = {}
    with Journal.open(jdir) as j:
        j.append_batch(notes(2), epoch=1)

        def during_write():
            order.append("written")
            seen.update(written_head=j.written_head, head=j.head, stream=j.read_written(3, 10),
                        durable=j.read_frames(3, 10), read=[r.seq for r in j.read(1)],
                        older=j.read_written(1, 2) == j.read_frames(1, 2))

        def fdatasync(fd):
            order.append("fsync")
            return real_sync(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        recs = j.append_batch(notes(3), epoch=1, written=during_write)
        assert order == ["written", "fsync"]
        assert seen == {"written_head": 5, "head": 2, "stream": [encode_record(r) for r in recs],
                        "durable": [], "read": [1, 2], "older": True}
        assert j.head == j.written_head == 5
        assert j.read_frames(3, 10) == j.read_written(3, 10) == [encode_record(r) for r in recs]


def test_a_failed_fsync_takes_back_what_the_stream_could_read(jdir, monkeypatch):
    with Journal.open(jdir) as j:
        j.append_batch(notes(2), epoch=1)
        seen = []

        def broken(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", broken)
        with pytest.raises(JournalFailed):
            j.append_batch(notes(3), epoch=1, written=lambda: seen.append(len(j.read_written(3, 10))))
        monkeypatch.undo()
        assert seen == [3]                                  # readable while the fsync ran
        assert j.head == j.written_head == 2
        assert j.read_written(3, 10) == [] and len(j.read_written(1, 10)) == 2
    with Journal.open(jdir) as j:
        assert j.head == 2


# ----------------------------------------------------- segments and reads

def test_rolls_segments_and_reads_across_them(jdir):
    with Journal.open(jdir, segment_bytes=2000) as j:
        written = []
        for _ in range(30):
            written += j.append_batch(notes(7, width=30), epoch=1)
        segs = list_segments(jdir)
        assert len(segs) > 5
        # Each segment is named by its first record's sequence number.
        assert segs[0][0] == 1
        assert [first for first, _ in segs] == [r.seq for r in written if any(r.seq == f for f, _ in segs)]
        assert list(j.read()) == written
        for start in (1, 2, 127, 128, 129, 130, 200, 210):
            assert [r.seq for r in j.read(start)] == list(range(start, 211))
        assert [r.seq for r in j.read(50, 60)] == list(range(50, 61))
        assert list(j.read(211)) == []
    with Journal.open(jdir, segment_bytes=2000) as j:
        assert list(j.read()) == written


def test_read_is_bounded_by_head_at_call(jdir):
    with Journal.open(jdir) as j:
        j.append_batch(notes(3), epoch=1)
        it = j.read()
        first = next(it)
        j.append_batch(notes(3), epoch=1)
        assert [first.seq] + [r.seq for r in it] == [1, 2, 3]


def test_read_frames_are_the_stored_bytes(jdir):
    with Journal.open(jdir, segment_bytes=1500) as j:
        written = j.append_batch(notes(300), epoch=1)
        assert j.read_frames(1, 0) == []
        assert j.read_frames(301, 5) == []
        frames = j.read_frames(10, 100)
        assert frames == [encode_record(r) for r in written[9:109]]
        assert len(j.read_frames(290, 100)) == 11
        raw = b"".join(p.read_bytes() for _, p in list_segments(jdir))
        assert b"".join(j.read_frames(1, 1000)) == raw


def test_live_tail_is_read_without_the_segment_files(jdir, monkeypatch):
    """Replication reads the frames just written: they come from memory, not
    from a walk of the segment from its nearest indexed offset."""
    import journal.store_reads as store_reads

    with Journal.open(jdir) as j:
        written = j.append_batch(notes(300), epoch=1)
        written += j.append_batch(notes(2), epoch=1)

        def no_disk(*_a, **_k):
            raise AssertionError("the live tail was read from the segment file")

        monkeypatch.setattr(store_reads, "iter_spans", no_disk)
        assert j.read_frames(299, 10) == [encode_record(r) for r in written[298:]]
        assert j.read_frames(302, 5) == [encode_record(written[-1])]


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.one_of(st.tuples(st.just("append"), st.integers(1, 40)),
                              st.tuples(st.just("frames"), st.integers(1, 400), st.integers(1, 60)),
                              st.tuples(st.just("cut"), st.integers(0, 60))),
                    min_size=1, max_size=25))
def test_read_frames_from_memory_equal_the_stored_bytes(ops):
    """Whatever the appends, cuts and tail bounds, read_frames answers the
    frames stored at those sequence numbers (the journal holds copies of one
    source's frames, so the frame of sequence s is always the source's s-th),
    and the reopened journal, read from its files alone, holds the same."""
    import journal.store as store

    old = store.TAIL_FRAMES, store.TAIL_BYTES
    store.TAIL_FRAMES, store.TAIL_BYTES = 16, 2000          # trims happen within a few ops
    try:
        with tempfile.TemporaryDirectory() as d:
            src = Journal.open(Path(d) / "src")
            src.append_batch(notes(500, keys="abcdefg"), epoch=1)
            pool = src.read_frames(1, 500)
            src.close()
            j = Journal.open(Path(d) / "j", segment_bytes=3000)
            for op in ops:
                if op[0] == "append":
                    if j.head < len(pool):
                        j.append_frames(pool[j.head:j.head + op[1]])
                elif op[0] == "cut" and j.head:
                    j.truncate_after(max(0, j.head - op[1]))
                elif op[0] == "frames":
                    from_seq, n = op[1], op[2]
                    got = j.read_frames(from_seq, n)
                    assert got == pool[from_seq - 1:min(from_seq - 1 + n, j.head)]
            head = j.head
            j.close()
            with Journal.open(Path(d) / "j") as again:
                assert again.head == head
                assert again.read_frames(1, head) == pool[:head]
    finally:
        store.TAIL_FRAMES, store.TAIL_BYTES = old


# --------------------------------------------------------- standby copies

def test_standby_stores_exactly_what_the_active_wrote(tmp_path):
    with Journal.open(tmp_path / "active", segment_bytes=4000) as active, \
            Journal.open(tmp_path / "standby", segment_bytes=4000) as standby:
        for epoch in (1, 1, 2, 2, 3):
            active.append_batch(notes(37, keys="abcde"), epoch=epoch)
            while standby.head < active.head:
                got = standby.append_frames(active.read_frames(standby.head + 1, 16))
                assert got and got[0].seq == standby.head - len(got) + 1
        assert list(standby.read()) == list(active.read())
        assert standby.stream_version("note/c") == active.stream_version("note/c")
        assert standby.epoch == 3
    # Segment boundaries follow each node's own batches; the byte stream is the same.
    assert (b"".join(p.read_bytes() for _, p in list_segments(tmp_path / "active"))
            == b"".join(p.read_bytes() for _, p in list_segments(tmp_path / "standby")))


def test_append_frames_rejects_gaps_duplicates_and_damage(tmp_path):
    with Journal.open(tmp_path / "a") as active, Journal.open(tmp_path / "s") as standby:
        active.append_batch(notes(10), epoch=1)
        frames = active.read_frames(1, 10)
        with pytest.raises(AppendRejected, match="gap"):
            standby.append_frames(frames[1:])
        standby.append_frames(frames[:4])
        with pytest.raises(AppendRejected, match="duplicate"):
            standby.append_frames(frames[3:])
        bad = bytearray(frames[4])
        bad[-1] ^= 0xFF
        with pytest.raises(AppendRejected, match="CRC"):
            standby.append_frames([bytes(bad)])
        with pytest.raises(AppendRejected, match="after the frame"):
            standby.append_frames([frames[4] + b"\x00"])
        with pytest.raises(AppendRejected, match="cut short"):
            standby.append_frames([frames[4][:-1]])
        assert standby.head == 4
        standby.append_frames(frames[4:])
        assert list(standby.read()) == list(active.read())


def test_append_records_validates_continuity(jdir):
    with Journal.open(jdir) as j:
        r1 = Record(1, 2, 0.0, "note/a", 1, Note.TYPE, 1, {"key": "a", "text": "", "n": 0})
        r2 = dataclasses.replace(r1, seq=2, version=2)
        with pytest.raises(AppendRejected, match="version 2 where 1"):
            j.append_records([dataclasses.replace(r1, version=2)])
        with pytest.raises(AppendRejected, match="gap"):
            j.append_records([r2])
        j.append_records([r1, r2])
        with pytest.raises(AppendRejected, match="epoch 1 after epoch 2"):
            j.append_records([dataclasses.replace(r1, seq=3, version=3, epoch=1)])
        assert list(j.read()) == [r1, r2]
        assert j.stream_version("note/a") == 2


# -------------------------------------------------------------- truncation

def test_truncate_after_drops_the_tail_and_rewinds_versions(jdir):
    with Journal.open(jdir, segment_bytes=1500) as j:
        written = j.append_batch(notes(100, keys="ab"), epoch=1)
        written += j.append_batch(notes(100, keys="bc"), epoch=2)
        assert j.truncate_after(150) == 50
        assert j.head == 150 and j.epoch == 2
        assert list(j.read()) == written[:150]
        assert j.stream_version("note/c") == 25 and j.stream_version("note/b") == 75
        again = j.append_batch(notes(1, keys="c"), epoch=3)
        assert again[0].seq == 151 and again[0].version == 26
        assert j.truncate_after(0) == 151
        assert j.head == 0 and j.epoch == 0 and j.stream_version("note/a") == 0
        assert j.append_batch(notes(1), epoch=1)[0].seq == 1
    with Journal.open(jdir) as j:
        assert j.head == 1


def test_truncate_after_makes_removed_segments_durable_before_cutting_the_kept_one(jdir, monkeypatch):
    # If a crash left the removed (later) segments in the directory while the
    # kept one was already cut, the journal would have a gap and not open again.
    import journal.store_retention as store_retention
    with Journal.open(jdir, segment_bytes=1500) as j:
        for epoch in (1, 2, 3):
            j.append_batch(notes(100), epoch=epoch)
        assert len(list_segments(jdir)) == 3
        ops = []
        real_unlink, real_fsync, real_fsync_dir = os.unlink, os.fsync, store_retention.fsync_dir
        monkeypatch.setattr(os, "unlink", lambda p, *a, **kw: (ops.append("unlink"), real_unlink(p, *a, **kw)))
        import stat

        def file_fsync(fd):
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                ops.append("fsync")
            return real_fsync(fd)
        monkeypatch.setattr(os, "fsync", file_fsync)
        monkeypatch.setattr(store_retention, "fsync_dir", lambda d: (ops.append("fsync_dir"), real_fsync_dir(d)))
        assert j.truncate_after(50) == 250
    assert ops.count("unlink") == 2
    last_unlink = len(ops) - 1 - ops[::-1].index("unlink")
    first_file_fsync = ops.index("fsync")
    assert "fsync_dir" in ops[last_unlink:first_file_fsync], ops
    with Journal.open(jdir) as j:
        assert j.head == 50


# ------------------------------------------------------------ tail repair

def _last_segment(jdir: Path) -> Path:
    return list_segments(jdir)[-1][1]


@pytest.mark.parametrize("cut", [1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 3, "all-but-one"])
def test_torn_last_frame_is_reported_and_truncated(jdir, caplog, cut):
    with Journal.open(jdir) as j:
        written = j.append_batch(notes(5), epoch=1)
    seg = _last_segment(jdir)
    frame_len = len(encode_record(written[-1]))
    keep = seg.stat().st_size - frame_len
    tail = frame_len - 1 if cut == "all-but-one" else cut
    with open(seg, "r+b") as f:
        f.truncate(keep + tail)
    with caplog.at_level(logging.WARNING, logger="journal"):
        with Journal.open(jdir) as j:
            assert j.head == 4 and list(j.read()) == written[:4]
            (damage,) = j.report.truncated
            assert damage.offset == keep and damage.dropped_bytes == tail and damage.path == seg
            assert "cut short" in damage.reason
            assert j.append_batch(notes(1), epoch=1)[0].seq == 5
    assert seg.stat().st_size == keep + frame_len
    assert any(f"offset {keep}" in m and "cut short" in m for m in caplog.messages)
    assert any("truncated" in m for m in caplog.messages)


def test_corrupt_last_frame_is_reported_and_truncated(jdir, caplog):
    with Journal.open(jdir) as j:
        written = j.append_batch(notes(5), epoch=1)
    seg = _last_segment(jdir)
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x40
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="journal"):
        with Journal.open(jdir) as j:
            assert j.head == 4 and list(j.read()) == written[:4]
            assert j.report.truncated[0].reason == "CRC mismatch"
    assert any("CRC mismatch" in m for m in caplog.messages)


def test_zeroed_tail_is_truncated(jdir):
    # What a filesystem may leave after a power cut: the size grew, the data did not.
    with Journal.open(jdir) as j:
        written = j.append_batch(notes(5), epoch=1)
    seg = _last_segment(jdir)
    with open(seg, "ab") as f:
        f.write(b"\x00" * 4096)
    with Journal.open(jdir) as j:
        assert list(j.read()) == written
        assert "unknown format byte 0x00" in j.report.truncated[0].reason


def test_corruption_followed_by_valid_records_is_an_error(jdir, caplog):
    with Journal.open(jdir) as j:
        written = j.append_batch(notes(5), epoch=1)
    seg = _last_segment(jdir)
    data = bytearray(seg.read_bytes())
    second = len(encode_record(written[0]))
    data[second + HEADER_SIZE + 2] ^= 0x01        # inside record 2's body
    seg.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="followed by valid records") as info:
        Journal.open(jdir)
    assert info.value.offset == second
    assert seg.read_bytes() == bytes(data)        # nothing was cut
    with pytest.raises(JournalCorrupt):
        Journal.open(jdir)


def test_damage_in_a_sealed_segment_is_an_error(jdir):
    with Journal.open(jdir, segment_bytes=500) as j:
        for _ in range(10):
            j.append_batch(notes(5), epoch=1)
    first_seg = list_segments(jdir)[0][1]
    with open(first_seg, "r+b") as f:
        f.truncate(first_seg.stat().st_size - 1)
    with pytest.raises(JournalCorrupt, match="sealed segment"):
        Journal.open(jdir)


def test_missing_segment_is_an_error(jdir):
    with Journal.open(jdir, segment_bytes=500) as j:
        for _ in range(10):
            j.append_batch(notes(5), epoch=1)
    os.unlink(list_segments(jdir)[1][1])
    with pytest.raises(JournalCorrupt, match="previous one ends"):
        Journal.open(jdir)


# ------------------------------------------------------------- round trip

events_st = st.builds(Note, key=st.sampled_from("abcdef"), text=st.text(max_size=30),
                      n=st.integers(-(2**63), 2**63 - 1))
batches_st = st.lists(st.lists(st.tuples(events_st, st.floats(0, 2e9)), min_size=1, max_size=20),
                      min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(batches=batches_st, segment_bytes=st.sampled_from([256, 4096, 1 << 20]))
def test_random_events_read_back_equal(batches, segment_bytes):
    with tempfile.TemporaryDirectory() as d:
        with Journal.open(d, fsync=False, segment_bytes=segment_bytes) as j:
            for epoch, batch in enumerate(batches, 1):
                j.append_batch(batch, epoch=epoch)
            flat = [ev for batch in batches for ev, _ in batch]
            assert [r.event() for r in j.read()] == flat
        with Journal.open(d, fsync=False, segment_bytes=segment_bytes) as j:
            recs = list(j.read())
            assert [r.event() for r in recs] == flat
            assert [r.timestamp for r in recs] == [ts for batch in batches for _, ts in batch]
            assert [r.seq for r in recs] == list(range(1, len(flat) + 1))
            for key in "abcdef":
                mine = [r.version for r in recs if r.stream == f"note/{key}"]
                assert mine == list(range(1, len(mine) + 1))
                assert j.stream_version(f"note/{key}") == len(mine)


# ------------------------------------------------------------ concurrency

def test_appends_from_several_threads_stay_gapless(jdir):
    import threading

    with Journal.open(jdir, fsync=False, segment_bytes=8192) as j:
        def writer(key: str) -> None:
            for _ in range(50):
                j.append_batch([(Note(key, "t", i), 0.0) for i in range(3)], epoch=1)

        threads = [threading.Thread(target=writer, args=(k,)) for k in "wxyz"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recs = list(j.read())
    assert [r.seq for r in recs] == list(range(1, 601))
    for key in "wxyz":
        assert [r.version for r in recs if r.stream == f"note/{key}"] == list(range(1, 151))


def test_read_only_reader_refuses_middle_corruption(jdir):
    from journal.segment import iter_records

    with Journal.open(jdir) as j:
        written = j.append_batch(notes(5), epoch=1)
    seg = _last_segment(jdir)
    data = bytearray(seg.read_bytes())
    data[HEADER_SIZE + 3] ^= 0x01                 # inside record 1's body
    seg.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="CRC mismatch"):
        list(iter_records(jdir))
    data[HEADER_SIZE + 3] ^= 0x01
    seg.write_bytes(bytes(data))
    assert list(iter_records(jdir, 3)) == written[2:]


def test_a_read_under_way_ends_where_a_truncation_cut(jdir):
    """Readers read outside the lock; a truncate_after meanwhile (a rejoining
    node cutting a diverged tail) ends their range at the cut instead of
    reporting the shortened segment as corrupt."""
    with Journal.open(jdir, fsync=False) as j:
        # More than the reader's 1 MiB block, so it must read the file again
        # after the cut.
        j.append_batch(notes(3000, width=600), epoch=1)
        reader = j.read(1)
        first = next(reader)
        assert first.seq == 1
        assert j.truncate_after(2) == 2998
        rest = list(reader)
        assert [r.seq for r in rest][:1] == [2] and all(r.seq <= 3000 for r in rest)
        assert [r.seq for r in j.read(1)] == [1, 2]
        assert len(j.read_frames(1, 100)) == 2
