"""Readers of the journal (the replication thread streaming frames to the
standby and building HELLOs) do not wait for an append's fsync, which on a
loaded disk took up to seconds and held that thread's heartbeats; a record
becomes visible to them once it is durable."""

from __future__ import annotations

import os
import threading
import time

from journal import store as store_mod
from journal.store import Journal
from tests.test_replication_harness import call_events


def test_read_frames_does_not_wait_for_an_fsync_in_progress(tmp_path, monkeypatch):
    j = Journal.open(tmp_path / "j")
    j.append_batch([(e, 1.0) for e in call_events(0)], 1)
    in_sync, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def slow_fdatasync(fd):
        in_sync.set()
        assert release.wait(10)
        real(fd)

    monkeypatch.setattr(store_mod.os, "fdatasync", slow_fdatasync)
    t = threading.Thread(target=j.append_batch, args=([(e, 2.0) for e in call_events(1)], 1))
    t.start()
    try:
        assert in_sync.wait(5)
        t0 = time.monotonic()
        frames = j.read_frames(1, 100)
        assert time.monotonic() - t0 < 0.5, "the reader waited for the fsync"
        # Only what is durable is visible: the batch being synced is not.
        assert len(frames) == 2 and j.head == 2
    finally:
        release.set()
        t.join(10)
    assert j.head == 4 and len(j.read_frames(1, 100)) == 4
    j.close()
