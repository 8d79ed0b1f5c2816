"""A standby rejoining with a long diverged tail (it was active alone and
wrote records nobody acknowledged) is in sync again within seconds, and its
heartbeats never stop meanwhile: the cut and the rebuild of its state, and
the fold of the backlog, run off the replication thread (actors/replication_applier.py,
the applier), and the backlog is stored in bounded chunks.

Before: the rebuild and the folds ran on the replication thread; a standby
busy with them for longer than the detection time was forgotten by the
active ("standby silent for ... ms"), rejoined, was forgotten again."""

from __future__ import annotations

import threading
import time

from journal.store import Journal
from tests.test_replication_harness import call_events, pair, wait_for  # noqa: F401 (fixture)

PREFIX, TAIL, NEW = 3000, 10_000, 3000


def _write(journal_dir, batches):
    j = Journal.open(journal_dir, fsync=False)
    for events, epoch in batches:
        for i in range(0, len(events), 500):
            j.append_batch([(e, 1000.0) for e in events[i:i + 500]], epoch)
    head = j.head
    j.close()
    return head


def _events(first: int, n: int) -> list:
    out = []
    i = first
    while len(out) < n:
        out += call_events(i)
        i += 1
    return out[:n]


def test_diverged_standby_resyncs_in_seconds_with_heartbeats_flowing(pair):   # noqa: F811
    common = _events(0, PREFIX)
    # a: the common prefix (epoch 1), then its own term (epoch 3) after b crashed
    _write(pair.tmp / "journal-a", [(common, 1), (_events(10_000, NEW), 3)])
    # b: the prefix, then 10k records of its lone term (epoch 2) nobody acknowledged
    _write(pair.tmp / "journal-b", [(common, 1), (_events(50_000, TAIL), 2)])
    hb, threshold = 0.2, 3           # the defaults (set nsrp ... hb-interval 200, threshold 3)
    detection = hb * threshold
    a = pair.node("a", role="active", epoch=3, hb_interval=hb, hb_threshold=threshold)
    b = pair.node("b", hb_interval=hb, hb_threshold=threshold)
    # b is slow to rebuild and to fold (a loaded box): 1.5 s per rebuild,
    # 50 ms per fold of a batch.
    recover = b._recover

    def slow_recover():
        time.sleep(1.5)
        recover()
    b._recover = slow_recover
    b.fold_delay = 0.05
    a.start()
    silent = []
    stop = threading.Event()

    def watch():
        # From the first time a hears b: through the cuts, the rebuilds, the join
        # and the backlog.
        while not stop.is_set():
            st = a.repl.status()
            if st.peer_seen_ago is not None:
                silent.append(st.peer_seen_ago)
            time.sleep(0.01)
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    t0 = time.monotonic()
    b.start()
    try:
        assert wait_for(lambda: b.journal.head == a.journal.head and b.applied == a.journal.head
                        and b.repl.status().role == "standby" and a.repl.sender.peers,
                        timeout=20), (b.journal.head, b.applied, a.journal.head)
        took = time.monotonic() - t0
    finally:
        stop.set()
        w.join(2)
    print(f"\nin sync after {took:.2f} s; longest silence of b seen by a {max(silent) * 1000:.0f} ms")
    assert b.diverged, "b's tail was not cut"
    assert took < 10, took
    # b was heard from all along (the active never had reason to forget it)
    assert max(silent) < detection, max(silent)
    assert b.role.role == "standby" and a.role.role == "active"
    assert b.frames() == a.frames()
