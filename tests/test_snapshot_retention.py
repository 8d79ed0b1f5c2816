"""Retention and crashes (journal/checkpoint.py, actors/snapshots.py,
journal/store.py): segments go only when every kept snapshot covers them and
they are older than the retention time (or the disk bound is passed); a
process killed at any moment while it appends, snapshots and deletes leaves a
directory a node restarts from with the right state; stream versions follow
the horizon rule alike on both nodes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.node import Node
from actors.snapshots import SnapshotService
from gateway import domain
from gateway.config.model import Config
from gateway.nodefile import NodeFileError, RetentionSettings, parse_node_file
from journal import store
from journal.checkpoint import SnapshotTaker, disk_usage, open_at_snapshot, retention_pass
from journal.replay import snapshot_dir
from journal.segment import list_segments
from journal.snapshot import list_snapshots, remove_snapshots
from journal.store import Journal
from test_replication_harness import call_events

ROOT = Path(__file__).resolve().parents[1]
CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())


def events(n_calls: int) -> list:
    return [e for i in range(n_calls) for e in call_events(i, activity=3)]


def fold(evs) -> object:
    s = domain.EMPTY
    for e in evs:
        s = domain.apply(s, e)
    return s


def fill(j: Journal, evs, t0: float, per_batch: int = 8, dt: float = 1.0) -> None:
    for k in range(0, len(evs), per_batch):
        j.append_batch([(e, t0 + k * dt) for e in evs[k:k + per_batch]], epoch=1)


def taker_for(j: Journal) -> SnapshotTaker:
    return SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, [])


def test_retention_removes_only_old_segments_that_every_kept_snapshot_covers(tmp_path):
    evs = events(200)                                  # 800 events
    with Journal.open(tmp_path / "j", fsync=False, segment_bytes=4096) as j:
        fill(j, evs, t0=1000.0)
        taker = taker_for(j)
        taker.catch_up(300)
        taker.write()
        taker.catch_up(600)
        taker.write()
        segs = j.segments()
        assert len(segs) > 10
        # Young: nothing goes, whatever the snapshots cover.
        r = retention_pass(j, max_age=3600, max_bytes=1 << 40, now=1000.0 + 800)
        assert r.removed == 0 and j.first_seq == 1
        # Old: only what the oldest kept snapshot (record 300) covers.
        r = retention_pass(j, max_age=60, max_bytes=1 << 40, now=1000.0 + 10_000)
        assert r.removed > 0 and r.freed > 0
        assert 1 < j.first_seq <= 300
        assert all(last >= 300 for _f, last, _s, _p in j.segments()[:1])
        # The older snapshot still opens, with its record and everything after.
        assert [r.seq for r in j.read(300, 300)] == [300]
        # A standby that still needs record 200: age alone keeps it...
        with Journal.open(tmp_path / "k", fsync=False, segment_bytes=4096) as k:
            fill(k, evs, t0=1000.0)
            t = taker_for(k)
            t.catch_up(600)
            t.write()
            retention_pass(k, max_age=60, max_bytes=1 << 40, now=1e9, floor=200)
            assert k.first_seq <= 200
            # ...the disk bound does not.
            r = retention_pass(k, max_age=60, max_bytes=1, now=1e9, floor=200)
            assert k.first_seq > 200 and r.over_bound
    # Restart after retention: the node starts from the snapshot.
    node = Node("gw-a", CFG, str(tmp_path / "j"), fsync=False, timer_thread=False)
    try:
        assert node.state == fold(evs) and node.recovery["snapshot"] == f"{600:020d}.snap"
    finally:
        node.stop()


def test_the_disk_bound_removes_covered_segments_whatever_their_age(tmp_path):
    evs = events(200)
    with Journal.open(tmp_path / "j", fsync=False, segment_bytes=4096) as j:
        fill(j, evs, t0=1000.0)
        taker = taker_for(j)
        taker.catch_up(700)
        taker.write()
        before = disk_usage(j)
        r = retention_pass(j, max_age=1e9, max_bytes=before // 3, now=1000.0)
        assert r.removed > 0 and r.disk <= before // 3 + 4096 * 2 or r.over_bound
        assert j.first_seq <= 700                      # never past the snapshot's record


def test_snapshot_service_takes_snapshots_keeps_n_and_applies_retention(tmp_path):
    evs = events(300)
    with Journal.open(tmp_path / "j", fsync=False, segment_bytes=4096) as j:
        svc = SnapshotService(taker_for(j), RetentionSettings(snapshot_every=1000, snapshots_kept=2,
                                                              keep_for=60.0, max_disk=1 << 40),
                              clock=lambda: 1e9)
        for k in range(0, len(evs), 100):
            fill(j, evs[k:k + 100], t0=1000.0 + k)
            if svc.journal.head - svc.taker.written >= 200:
                assert svc.take() is not None
        assert svc.taken == 6 and len(list_snapshots(snapshot_dir(j))) == 2
        assert j.first_seq > 1 and svc.status()["segments_removed"] > 0
        first_kept = list_snapshots(snapshot_dir(j))[0][0]
        assert j.first_seq <= first_kept


def test_node_file_retention_settings_and_their_errors():
    base = 'node = "a"\nconfig = "c"\njournal = "j"\n'
    s = parse_node_file(base)
    assert s.retention == RetentionSettings()
    s = parse_node_file(base + '[journal_retention]\nsnapshot_every = 50000\nsnapshots_kept = 3\n'
                               'keep_for = "2h"\nmax_disk = "500MiB"\n')
    assert s.retention == RetentionSettings(50000, 3, 7200.0, 500 * 1024 ** 2)
    for bad, hint in [('keep_for = "2 hours"', "a duration such as"), ('max_disk = 10', "a size such as"),
                      ("snapshot_every = 10", "at least 1000"), ("snapshots_kept = 0", "1..100"),
                      ("keep = 1", "unknown key")]:
        with pytest.raises(NodeFileError, match=hint):
            parse_node_file(base + "[journal_retention]\n" + bad + "\n", "n.toml")


def test_stream_versions_forget_silent_streams_alike_on_both_nodes(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "VERSION_HORIZON", 10)
    a = Journal.open(tmp_path / "a", fsync=False)
    b = Journal.open(tmp_path / "b", fsync=False)
    try:
        first = call_events(0, activity=1)
        a.append_batch([(e, 1.0) for e in first], epoch=1)
        filler = [e for i in range(1, 16) for e in call_events(i, activity=0)]
        a.append_batch([(e, 2.0) for e in filler], epoch=1)
        again = a.append_batch([(call_events(0, activity=1)[1], 3.0)], epoch=1)
        assert again[0].version == 1                   # silent for more than the horizon
        b.append_frames(a.read_frames(1, a.head))      # the standby checks by the same rule
        assert b.head == a.head
        table = a.versions_table()
        assert all(last > a.head - 10 for _s, _v, last in table)
    finally:
        a.close()
        b.close()


CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from gateway import domain
from journal.checkpoint import SnapshotTaker, retention_pass
from journal.snapshot import remove_snapshots
from journal.store import Journal
from test_replication_harness import call_events
j = Journal.open(sys.argv[1], fsync=True, segment_bytes=8192)
taker = SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, [])
i = 0
print("ready", flush=True)
while True:
    evs = [e for c in range(i, i + 5) for e in call_events(c, activity=3)]
    j.append_batch([(e, 1000.0 + i) for e in evs], epoch=1)
    i += 5
    if i % 20 == 0:
        taker.catch_up()
        taker.write()
        remove_snapshots(taker.directory, keep=2)
        retention_pass(j, max_age=1.0, max_bytes=1 << 40, now=1e9)
"""


@pytest.mark.parametrize("trial", range(8))
def test_a_node_killed_at_any_moment_while_snapshotting_restarts_with_the_right_state(tmp_path, trial):
    rnd = random.Random(trial)
    path = tmp_path / "j"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(ROOT / "tests")],
                             stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rnd.uniform(0.3, 1.5))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    node = Node("gw-a", CFG, str(path), fsync=False, timer_thread=False)
    try:
        head = node.journal.head
        assert head > 0
        # Record k is the k-th event the child generated, whatever was cut.
        expected = fold(events(head // 4 + 1)[:head])
        assert node.state == expected
        assert not [p for p in snapshot_dir(path).iterdir() if p.name.endswith(".tmp")]
    finally:
        node.stop()


def test_a_write_interrupted_before_the_rename_leaves_the_older_snapshots(tmp_path, monkeypatch):
    evs = events(100)
    with Journal.open(tmp_path / "j", fsync=False, segment_bytes=4096) as j:
        fill(j, evs, t0=1000.0)
        taker = taker_for(j)
        taker.catch_up(200)
        taker.write()
        taker.catch_up(400)
        import journal.snapshot as snapmod

        def crash(*_a):
            raise OSError("power lost")
        monkeypatch.setattr(snapmod.os, "replace", crash)
        with pytest.raises(OSError):
            taker.write()
        monkeypatch.undo()
    assert [s for s, _ in list_snapshots(snapshot_dir(tmp_path / "j"))] == [200]
    rec = open_at_snapshot(tmp_path / "j", domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot.name == f"{200:020d}.snap" and rec.state == fold(evs)
    finally:
        rec.journal.close()
    assert remove_snapshots(snapshot_dir(tmp_path / "j")) == []
    assert list_segments(tmp_path / "j")


def test_a_node_stopped_cleanly_snapshots_its_head_and_restarts_without_folding(tmp_path):
    import threading
    node = Node("gw-a", CFG, str(tmp_path / "a"), fsync=False, timer_thread=False,
                retention=RetentionSettings(snapshot_every=10**6))
    node.start()
    done = threading.Event()
    node.writer.submit(events(50), lambda _r: done.set())
    assert done.wait(5)
    head = node.journal.head
    node.stop()
    again = Node("gw-a", CFG, str(tmp_path / "a"), fsync=False, timer_thread=False)
    try:
        assert again.recovery["snapshot"] == f"{head:020d}.snap" and again.recovery["folded"] == 0
        assert again.state == fold(events(50))
    finally:
        again.stop()


def test_history_after_retention_lists_what_is_kept(tmp_path):
    evs = events(100)
    with Journal.open(tmp_path / "j", fsync=False, segment_bytes=4096) as j:
        fill(j, evs, t0=1000.0)
        t = taker_for(j)
        t.catch_up(350)
        t.write()
        retention_pass(j, max_age=1.0, max_bytes=1 << 40, now=1e9)
        assert j.first_seq > 1
    node = Node("gw-a", CFG, str(tmp_path / "j"), fsync=False, timer_thread=False)
    try:
        got = node.history("call-99@10.0.0.1")
        assert [r["type"] for r in got] == ["sip.call_started"] + ["sip.call_activity"] * 3
    finally:
        node.stop()


def test_gwctl_replay_after_retention_uses_the_snapshot_and_names_what_is_kept(tmp_path, capsys):
    import json
    from ops.gwctl import main as gwctl
    evs = events(100)
    with Journal.open(tmp_path / "j", fsync=False, segment_bytes=4096) as j:
        fill(j, evs, t0=1000.0)
        t = taker_for(j)
        t.catch_up(350)
        t.write()
        retention_pass(j, max_age=1.0, max_bytes=1 << 40, now=1e9)
        assert j.first_seq > 100
    assert gwctl(["replay", str(tmp_path / "j"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["last_seq"] == 400 and len(out["calls"]) == 100
    assert gwctl(["replay", str(tmp_path / "j"), "--until", "100"]) == 1
    assert "older than what retention kept" in capsys.readouterr().err


def test_snapshot_thread_folds_as_the_journal_grows_and_waits_while_overloaded(tmp_path):
    """The thread folds a little at a time between snapshots (a snapshot then
    folds only what came since its last turn, not its whole interval at once,
    which took 4-5 s during an INVITE flood), and while the node is
    overloaded it neither folds nor snapshots, up to twice the interval."""
    import time as _time
    evs = events(300)
    with Journal.open(tmp_path / "j", fsync=False, segment_bytes=1 << 20) as j:
        svc = SnapshotService(taker_for(j), RetentionSettings(snapshot_every=1000, snapshots_kept=2,
                                                              keep_for=60.0, max_disk=1 << 40),
                              clock=lambda: 1e9, check_every=0.02)
        overloaded = {"now": True}
        svc.busy = lambda: overloaded["now"]
        svc.start()
        try:
            fill(j, evs[:100], t0=1000.0)
            _time.sleep(0.3)
            assert svc.taker.seq == 0 and svc.taken == 0          # overloaded: nothing
            overloaded["now"] = False
            deadline = _time.monotonic() + 5
            while svc.taker.seq < j.head and _time.monotonic() < deadline:
                _time.sleep(0.02)
            assert svc.taker.seq == j.head and svc.taken == 0     # folded, not yet due
        finally:
            svc.stop(final=False)
