"""Snapshots (journal/checkpoint.py, journal/state_codec.py, journal/snapshot.py):
for the suites' event streams, the fold of every record equals the state
loaded from a snapshot of record N plus the fold of the records after N, as
values and as encoded bytes; damaged, partial and foreign snapshots are
skipped with a log line; opening at a snapshot reads nothing before it."""

from __future__ import annotations

import io
import json
import logging
import random
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import domain
from journal.checkpoint import (SnapshotTaker, decode_state, encode_state, open_at_snapshot, state_at)
from journal.replay import JournalGap, replay, snapshot_dir
from journal.segment import iter_records, list_segments
from journal.snapshot import list_snapshots, read_snapshot, write_snapshot
from journal.state_codec import StateDecodeError, decode_tree
from journal.store import Journal, StartMismatch
from ops.gatewayd import main as gatewayd
from test_journal_sip_replay import sip_histories
from test_replication_harness import call_events

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcap"
NAT_CFG = ROOT / "tests" / "data" / "pcap-ua-behind-nat.cfg"


def fold(records) -> object:
    s = domain.EMPTY
    for r in records:
        for ev in r.events():
            s = domain.apply(s, ev)
    return s


def write_events(path: Path, events, *, batch: int = 3, segment_bytes: int = 2048) -> None:
    with Journal.open(path, fsync=False, segment_bytes=segment_bytes) as j:
        for i in range(0, len(events), batch):
            j.append_batch([(e, 1000.0 + i) for e in events[i:i + batch]], epoch=1)


def snapshot_at(path: Path, n: int, snaps: Path) -> Path:
    """A snapshot of record n taken as the node takes one (a taker folding the journal)."""
    with Journal.open(path, fsync=False) as j:
        taker = SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, [], directory=snaps)
        taker.catch_up(n)
        return taker.write()


def check_equivalence(path: Path, points) -> None:
    """fold(all) == load(snapshot at N) + fold(after N), for each N."""
    records = list(iter_records(path))
    full = fold(records)
    for n in points:
        snaps = path.parent / f"snaps-{path.name}-{n}"
        shutil.rmtree(snaps, ignore_errors=True)
        snapshot_at(path, n, snaps)
        rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False, snapshots=snaps)
        try:
            assert rec.snapshot is not None and rec.snapshot.name == f"{n:020d}.snap"
            assert rec.folded == len(records) - n and rec.seq == len(records)
            assert rec.state == full
            # byte for byte: the restored state encodes as the full fold does
            assert encode_state(rec.state, canonical=True) == encode_state(full, canonical=True)
            # and the versions the journal checks go on as without the snapshot
            for r in records[-5:]:
                assert rec.journal.stream_version(r.stream) >= r.version
        finally:
            rec.journal.close()
        # gwctl replay's path: the same answer from the snapshot
        state, last = replay(path, domain.apply, domain.EMPTY, decode_snapshot=decode_state, snapshots=snaps)
        assert (state, last) == (full, len(records))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history_=sip_histories(), data=st.data())
def test_sip_histories_snapshot_plus_tail_equals_full_fold(tmp_path_factory, history_, data):
    tmp = tmp_path_factory.mktemp("h")
    write_events(tmp / "j", history_)
    n = data.draw(st.integers(1, len(history_)))
    check_equivalence(tmp / "j", [n])


@pytest.fixture(scope="module")
def capture_journals(tmp_path_factory):
    """Journals of the corpus captures run in pcap mode (SIP over UDP and TCP,
    MGCP, H.323) and of the derived H.323 call of tests/test_h323_pcap.py."""
    tmp = tmp_path_factory.mktemp("captures")
    out = {}
    for name in ["sip.pcap", "register-invite-reinvite-bye.pcap", "sip_ipv4_tcp.pcap", "h323.pcap"]:
        j = tmp / name.replace(".pcap", "")
        with redirect_stdout(io.StringIO()):
            assert gatewayd(["--pcap-in", str(CORPUS / name), "--pcap-out", str(tmp / f"{name}.out"),
                             "--config", str(NAT_CFG), "--journal", str(j), "--json",
                             "--log-level", "ERROR"]) == 0
        out[name] = j
    from test_h323_pcap import CFG as H323_CFG, derive
    src = tmp / "h323-derived.pcap"
    derive(src)
    j = tmp / "h323-derived"
    with redirect_stdout(io.StringIO()):
        assert gatewayd(["--pcap-in", str(src), "--pcap-out", str(tmp / "h323d.out"), "--config",
                         str(H323_CFG), "--journal", str(j), "--json", "--log-level", "ERROR"]) == 0
    out["h323-derived"] = j
    return out


def test_capture_journals_snapshot_plus_tail_equals_full_fold(capture_journals):
    domains = set()
    for name, path in capture_journals.items():
        if not list_segments(path):
            continue
        records = list(iter_records(path))
        domains |= {t.partition(".")[0] for r in records for t, _p in r.entries()}
        points = sorted({1, len(records) // 3, len(records) // 2, len(records) - 1, len(records)} - {0})
        check_equivalence(path, points)
    assert {"sip", "h323"} <= domains, domains


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seq=st.lists(__import__("test_mgcp_alg_replay").ops, min_size=15, max_size=50), data=st.data())
def test_mgcp_streams_snapshot_plus_tail_equals_full_fold(tmp_path_factory, seq, data):
    """The MGCP ALG's events for the MGCP suite's operation sequences
    (tests/test_mgcp_alg_replay.py: commands, answers, calls, media, timers)."""
    from test_mgcp_alg_replay import events_of
    events = events_of(seq)
    if not events:
        return
    tmp = tmp_path_factory.mktemp("m")
    write_events(tmp / "j", events)
    check_equivalence(tmp / "j", [data.draw(st.integers(1, len(events)))])


def test_node_message_sequences_snapshot_plus_tail_equals_full_fold(tmp_path):
    """The live node's own journal (SIP messages through the ALG, timers, media)."""
    import threading
    from types import SimpleNamespace

    from actors.node import MediaReport, Node
    from gateway.config.model import Config
    from test_node import Clock
    from test_sip_alg_replay import MESSAGES

    clock = Clock()
    node = Node("gw-a", Config(zones={}, interfaces={}, addresses={}, policies=(), routes=()),
                str(tmp_path / "a"), clock=clock, fsync=False, timer_thread=False)
    rnd = random.Random(7)
    node.start()
    try:
        for _ in range(120):
            clock.t += rnd.uniform(0, 60)
            kind = rnd.choice(["msg", "msg", "msg", "timer", "media"])
            if kind == "msg":
                ctx, data = rnd.choice(MESSAGES)
                done = threading.Event()
                node.handle_alg(SimpleNamespace(key="k"), lambda _o: done.set(), ctx, data)
                assert done.wait(5)
            elif kind == "timer":
                node.timers.fire_due()
            else:
                groups = sorted(node.sip.group_index)
                if groups:
                    g = rnd.choice(groups)
                    node._entity(f"call/{node.sip.group_index[g]}").tell(MediaReport("sip", g, None, clock.t))
            assert node.quiesce(5)
        live = node.state
    finally:
        node.stop()
    records = list(iter_records(tmp_path / "a"))
    assert fold(records) == live and len(records) > 20
    check_equivalence(tmp_path / "a", sorted({1, len(records) // 4, len(records) // 2, len(records)}))


# --------------------------------------------------- damaged snapshots


def _journal_with_snapshots(tmp_path: Path, calls: int = 40, every: int = 30):
    path = tmp_path / "j"
    events = [e for i in range(calls) for e in call_events(i, activity=2)]
    write_events(path, events, batch=5)
    with Journal.open(path, fsync=False) as j:
        taker = SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, [])
        for n in range(every, j.head + 1, every):
            taker.catch_up(n)
            taker.write()
    return path, fold(iter_records(path))


def test_a_damaged_newest_snapshot_is_skipped_with_a_log_line_and_the_older_used(tmp_path, caplog):
    path, full = _journal_with_snapshots(tmp_path)
    snaps = list_snapshots(snapshot_dir(path))
    newest = snaps[-1][1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x40
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="journal.checkpoint"):
        rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot == snaps[-2][1]
        assert rec.state == full
        assert any("skipping snapshot" in m and "CRC" in m for m in caplog.messages)
    finally:
        rec.journal.close()


def test_a_partial_snapshot_and_a_leftover_temporary_file_are_ignored(tmp_path, caplog):
    path, full = _journal_with_snapshots(tmp_path)
    snaps = list_snapshots(snapshot_dir(path))
    newest = snaps[-1][1]
    newest.write_bytes(newest.read_bytes()[:-100])                     # a partial file
    (snapshot_dir(path) / ".00000000000000099999.snap.12345.tmp").write_bytes(b"GWSNAP\x01")
    with caplog.at_level(logging.WARNING):
        rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot == snaps[-2][1] and rec.state == full
        assert not any(p.name.endswith(".tmp") for p in snapshot_dir(path).iterdir())
        assert any("length" in m for m in caplog.messages)
    finally:
        rec.journal.close()


def test_every_snapshot_damaged_falls_back_to_the_whole_journal(tmp_path, caplog):
    path, full = _journal_with_snapshots(tmp_path)
    for _seq, p in list_snapshots(snapshot_dir(path)):
        p.write_bytes(b"GWSNAP" + b"\0" * 20)
    rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot is None and rec.state == full and rec.folded == rec.seq
    finally:
        rec.journal.close()


def test_a_snapshot_of_another_history_is_not_used(tmp_path, caplog):
    """A journal cut and written again after the snapshot's record: the record
    at that position is another one (its CRC differs): the snapshot is skipped."""
    path, _ = _journal_with_snapshots(tmp_path)
    newest_seq = list_snapshots(snapshot_dir(path))[-1][0]
    with Journal.open(path, fsync=False) as j:
        j.truncate_after(newest_seq - 1)
        j.append_batch([(e, 5000.0) for e in call_events(999, activity=20)], epoch=2)
    with caplog.at_level(logging.WARNING):
        rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot is not None and rec.snapshot.name != f"{newest_seq:020d}.snap"
        assert rec.state == fold(iter_records(path))
        assert any("not the snapshot's record" in m for m in caplog.messages)
    finally:
        rec.journal.close()


def test_a_state_naming_a_class_outside_the_state_is_refused():
    import pickle
    evil = pickle.dumps(shutil.rmtree)
    with pytest.raises(StateDecodeError, match="not part of the state"):
        decode_tree(["p", evil])
    with pytest.raises(StateDecodeError):
        decode_tree(["d", "os:system", {}])


def test_opening_at_a_snapshot_reads_nothing_before_it(tmp_path):
    """A sealed segment before the snapshot, damaged: not read at open (the
    restart does not pay for it); reading it later finds the damage."""
    path, full = _journal_with_snapshots(tmp_path, calls=60, every=100)
    segs = list_segments(path)
    newest_seq = list_snapshots(snapshot_dir(path))[-1][0]
    early = [p for first, p in segs[:-1] if first < 20][0]
    data = bytearray(early.read_bytes())
    data[30] ^= 0xFF                                   # inside a record body: CRC fails
    early.write_bytes(bytes(data))
    rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot.name == f"{newest_seq:020d}.snap" and rec.state == full
        assert rec.journal.report.resumed_from == newest_seq
        with pytest.raises(Exception, match="CRC|record"):
            list(rec.journal.read(1))
    finally:
        rec.journal.close()


def test_open_at_a_position_that_is_not_the_record_raises_start_mismatch(tmp_path):
    path, _ = _journal_with_snapshots(tmp_path)
    snap = read_snapshot(list_snapshots(snapshot_dir(path))[-1][1])
    bad = dict(snap.journal, seq=snap.seq, epoch=snap.epoch, crc=snap.journal["crc"] ^ 1)
    with pytest.raises(StartMismatch):
        Journal.open(path, fsync=False, start=bad)
    Journal.open(path, fsync=False).close()            # the lock was released


def test_state_at_after_a_cut_uses_the_newest_snapshot_still_matching(tmp_path):
    path, _ = _journal_with_snapshots(tmp_path)
    snaps = list_snapshots(snapshot_dir(path))
    with Journal.open(path, fsync=False) as j:
        j.truncate_after(snaps[-1][0] - 5)
        state, seq, *_ = state_at(j, domain.apply, domain.EMPTY)
        assert seq == j.head and state == fold(j.read(1))


def test_no_snapshot_and_missing_first_records_is_a_gap_not_a_silent_state(tmp_path):
    path, _ = _journal_with_snapshots(tmp_path)
    shutil.rmtree(snapshot_dir(path))
    with Journal.open(path, fsync=False) as j:
        assert j.remove_before(40)[0] >= 1
    with pytest.raises(JournalGap):
        open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False)


def test_write_snapshot_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError):
        write_snapshot(tmp_path, 1, object(), 1)
    p = write_snapshot(tmp_path, 7, encode_state(domain.EMPTY), 3, timestamp=1.5,
                       journal={"segment": 1, "offset": 0, "crc": 5, "versions": [["s", 1, 7]]})
    snap = read_snapshot(p)
    assert (snap.seq, snap.epoch, snap.timestamp, snap.journal["versions"]) == (7, 3, 1.5, [["s", 1, 7]])
    assert decode_state(snap.state) == domain.EMPTY
    assert json.dumps(snap.journal)


def test_a_state_written_in_parts_is_the_same_bytes_as_written_whole(tmp_path):
    from journal.checkpoint import encode_state_parts
    path, full = _journal_with_snapshots(tmp_path, calls=600, every=2000)
    parts = encode_state_parts(full)
    assert len(parts) > 10 and b"".join(parts) == encode_state(full)
    mark = {"segment": 1, "offset": 0, "crc": 5, "versions": [["s", 1, 7]]}
    whole = write_snapshot(tmp_path / "w", 9, encode_state(full), 2, timestamp=3.0, journal=mark)
    split = write_snapshot(tmp_path / "p", 9, parts, 2, timestamp=3.0, journal=mark)
    assert whole.read_bytes() == split.read_bytes()
    assert decode_state(read_snapshot(split).state) == full
