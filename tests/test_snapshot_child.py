"""A snapshot written by a forked child (journal/snapshot_child.py) is the
snapshot the node would have written itself, byte for byte; a child that
fails or dies is reported with its reason and leaves no file; when no child
can be made the snapshot is written in-process with a log line; the snapshot
thread's periodic snapshots go through a child, the one at stop does not."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from actors.snapshots import SnapshotService
from gateway import domain
from gateway.nodefile import RetentionSettings
from journal import checkpoint
from journal.checkpoint import SnapshotTaker, open_at_snapshot
from journal.replay import snapshot_dir
from journal.snapshot import list_snapshots, read_snapshot
from journal.snapshot_child import SnapshotChildError, write_in_child
from journal.store import Journal
from test_replication_harness import call_events

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _filled(path, n_calls: int) -> Journal:
    j = Journal.open(path, fsync=False)
    evs = [e for i in range(n_calls) for e in call_events(i, activity=3)]
    for k in range(0, len(evs), 8):
        j.append_batch([(e, 1000.0 + k) for e in evs[k:k + 8]], epoch=1)
    return j


def _caught_up(j: Journal) -> SnapshotTaker:
    t = SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, [])
    t.catch_up()
    return t


def test_the_childs_snapshot_is_byte_for_byte_the_in_process_one(tmp_path):
    with _filled(tmp_path / "j", 60) as j:
        taker = _caught_up(j)
        in_child = taker.write(in_child=True)
        data = in_child.read_bytes()
        in_child.unlink()
        taker.written = 0
        here = taker.write(in_child=False)
        assert here == in_child and here.read_bytes() == data
        assert read_snapshot(here).seq == j.head
    rec = open_at_snapshot(tmp_path / "j", domain.apply, domain.EMPTY, fsync=False)
    try:
        assert rec.snapshot == here and rec.folded == 0 and rec.state == taker.state
    finally:
        rec.journal.close()


def test_a_failing_child_is_reported_with_its_reason_and_the_parent_carries_on(tmp_path):
    def fails():
        (tmp_path / "half").write_bytes(b"x")
        raise ValueError("disk said no")

    with pytest.raises(SnapshotChildError, match="ValueError: disk said no"):
        write_in_child(fails)
    assert (tmp_path / "half").exists()          # it ran in the child, and only once
    assert write_in_child(lambda: tmp_path / "fine") == tmp_path / "fine"


def test_a_child_killed_meanwhile_is_reported_by_its_signal(tmp_path):
    def dies():
        os.kill(os.getpid(), signal.SIGKILL)
        return tmp_path / "never"

    with pytest.raises(SnapshotChildError, match="signal 9"):
        write_in_child(dies)


def test_the_parents_threads_run_while_the_child_writes(tmp_path):
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    try:
        started = len(ticks)
        write_in_child(lambda: (time.sleep(0.3), tmp_path / "slow")[1])
        assert len(ticks) - started >= 20         # the parent's thread ran through the child's 0.3 s
    finally:
        stop.set()
        t.join()


def test_without_a_child_the_snapshot_is_written_here_with_a_log_line(tmp_path, monkeypatch, caplog):
    def no_fork(write):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(checkpoint, "write_in_child", no_fork)
    with _filled(tmp_path / "j", 10) as j:
        taker = _caught_up(j)
        path = taker.write(in_child=True)
        assert path is not None and read_snapshot(path).seq == j.head
    assert any("no writer process" in m and "writing it here" in m for m in caplog.messages)


def test_the_service_writes_periodic_snapshots_by_a_child_and_the_final_one_itself(tmp_path, monkeypatch):
    children = []
    real = checkpoint.write_in_child

    def counted(write):
        children.append(1)
        return real(write)

    monkeypatch.setattr(checkpoint, "write_in_child", counted)
    with _filled(tmp_path / "j", 20) as j:
        svc = SnapshotService(_caught_up(j), RetentionSettings(snapshot_every=1000, snapshots_kept=3,
                                                               keep_for=1e9, max_disk=1 << 40),
                              clock=lambda: 1e9)
        svc.taker.written = 0
        assert svc.take() is not None and len(children) == 1
        evs = [e for i in range(20, 25) for e in call_events(i, activity=3)]
        j.append_batch([(e, 5000.0) for e in evs], epoch=1)
        svc.stop(final=True)
        assert len(children) == 1                    # the final snapshot: in-process
        assert list_snapshots(snapshot_dir(j))[-1][0] == j.head


def test_the_writer_process_ends_when_its_node_is_killed(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    pid_file = tmp_path / "writer.pid"
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from journal.snapshot_child import write_in_child\n"
        "def slow():\n"
        f"    Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        f"    return Path({str(tmp_path / 'late')!r})\n"
        "write_in_child(slow)\n")
    node = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and node.poll() is None
            time.sleep(0.02)
        writer = int(pid_file.read_text())
        node.kill()
        node.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{writer}").exists() and "Z" not in _state(writer):
            assert time.monotonic() < deadline, "the writer outlived its node"
            time.sleep(0.02)
    finally:
        node.kill()
        node.wait(10)


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_the_snapshot_thread_itself_forks_the_writer(tmp_path, monkeypatch):
    # The node's snapshots are taken on the service's own thread, not the
    # main one: the child must work when forked from there.
    children = []
    real = checkpoint.write_in_child

    def counted(write):
        children.append(threading.current_thread().name)
        return real(write)

    monkeypatch.setattr(checkpoint, "write_in_child", counted)
    with _filled(tmp_path / "j", 260) as j:
        assert j.head >= 1000
        svc = SnapshotService(SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, []),
                              RetentionSettings(snapshot_every=1000, snapshots_kept=2, keep_for=1e9,
                                                max_disk=1 << 40),
                              clock=lambda: 1e9, check_every=0.01, name="snapshots-fork")
        svc.start()
        try:
            deadline = time.monotonic() + 30
            while svc.taken == 0:
                assert time.monotonic() < deadline and svc.failed is None, svc.failed
                time.sleep(0.01)
        finally:
            svc.stop(final=False)
        assert children == ["snapshots-fork"] and svc.failed is None
        assert list_snapshots(snapshot_dir(j))[-1][0] == j.head
