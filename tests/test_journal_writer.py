"""Group commit and completion (actors/journal_writer.py): in sync mode a
submit completes only once the standby acknowledged it, or after the fsync
when no standby is connected (counted as unreplicated), or after the ack
timeout when a connected standby is wedged (counted as a lapse); in async mode
right after the fsync. With a real pair over loopback CURVE."""

from __future__ import annotations

import os
import threading
import time

from test_replication_harness import call_events, pair, wait_for  # noqa: F401  (fixture)


def timed_submit(node, events):
    """(records, seconds from the fsync to completion, standby head at completion)."""
    appended_at = {}
    orig = node.writer.on_appended

    def on_appended(recs):
        appended_at["t"] = time.monotonic()
        orig(recs)

    node.writer.on_appended = on_appended
    done = threading.Event()
    seen = {}

    def cb(recs):
        seen["t"] = time.monotonic()
        seen["peer_head"] = node.peer_head() if hasattr(node, "peer_head") else None
        seen["recs"] = recs
        done.set()

    node.writer.submit(events, cb)
    assert done.wait(3)
    node.writer.on_appended = orig
    return seen["recs"], seen["t"] - appended_at["t"], seen["peer_head"]


def test_sync_completion_waits_for_the_standby_acknowledgement(pair):
    a = pair.node("a", role="active", epoch=1, hb_threshold=10).start()
    b = pair.node("b", hb_threshold=10).start()
    assert wait_for(lambda: a.repl.has_standby())
    b.store_delay = 0.12                                  # the standby acknowledges late
    a.peer_head = lambda: b.journal.head
    recs, waited, peer_head = timed_submit(a, call_events(1))
    assert waited >= 0.1                                  # not completed at the fsync
    assert peer_head >= recs[-1].seq                      # the standby had it when we completed
    assert (a.writer.ack_lapses, a.writer.unreplicated_batches) == (0, 0)


def test_sync_completion_does_not_wait_for_the_standby_fold(pair):
    # The acknowledgement says "stored"; folding it into the standby's state
    # comes after (the fold still precedes anything else on its thread).
    a = pair.node("a", role="active", epoch=1, hb_threshold=20).start()
    b = pair.node("b", hb_threshold=20).start()
    assert wait_for(lambda: a.repl.has_standby())
    b.fold_delay = 0.3
    a.peer_head = lambda: b.journal.head
    recs, waited, peer_head = timed_submit(a, call_events(1))
    assert waited < 0.2
    assert peer_head >= recs[-1].seq                      # stored there before we completed
    assert (a.writer.ack_lapses, a.writer.unreplicated_batches) == (0, 0)
    assert wait_for(lambda: b.received[-1:] == [recs[-1].seq])


def test_async_completes_on_the_writer_thread(pair):
    a = pair.node("a", role="active", epoch=1, mode="async").start(repl=False)
    threads = []
    done = threading.Event()
    a.writer.submit(call_events(1), lambda _r: (threads.append(threading.current_thread().name),
                                                done.set()))
    assert done.wait(3)
    assert threads == ["journal-writer"]
    assert [t.name for t in a.writer._threads] == ["journal-writer"]


def test_sync_without_a_standby_completes_after_the_fsync_as_unreplicated(pair):
    a = pair.node("a", role="active", epoch=1).start()
    recs, waited, _ = timed_submit(a, call_events(1))
    assert [r.seq for r in recs] == [1] and waited < 0.1      # the call's two events: one record
    assert a.writer.unreplicated_batches == 1 and a.writer.ack_lapses == 0
    assert a.journal.head == 1


def test_wedged_standby_lapses_after_the_ack_timeout(pair):
    a = pair.node("a", role="active", epoch=1, hb_threshold=20, ack_timeout=0.1).start()
    b = pair.node("b", hb_threshold=20).start()
    assert wait_for(lambda: a.repl.has_standby())
    b.store_delay = 0.4
    _recs, waited, _ = timed_submit(a, call_events(1))
    assert 0.09 <= waited < 0.35
    assert a.writer.ack_lapses == 1


def test_async_completes_at_the_fsync_and_still_replicates(pair):
    a = pair.node("a", role="active", epoch=1, mode="async", hb_threshold=10).start()
    b = pair.node("b", mode="async", hb_threshold=10).start()
    assert wait_for(lambda: a.repl.has_standby())
    b.store_delay = 0.15
    recs, waited, _ = timed_submit(a, call_events(1))
    assert waited < 0.1 and b.journal.head < recs[-1].seq
    assert wait_for(lambda: b.journal.head == recs[-1].seq)


def test_group_commit_and_stop_completes_everything_submitted(pair):
    a = pair.node("a", role="active", epoch=1, mode="async").start(repl=False)
    done = []
    for i in range(300):
        a.writer.submit(call_events(i), done.append)
    a.writer.stop()
    a._writer_on = False
    assert len(done) == 300 and all(len(r) == 1 for r in done)   # a step of one call: one record
    assert [r.seq for recs in done for r in recs] == list(range(1, 301))
    assert [e for recs in done for r in recs for e in r.events()] == \
        [e for i in range(300) for e in call_events(i)]
    assert a.writer.batches < 300                        # several submits per write and fsync


def test_the_standby_stores_a_batch_while_the_actives_fsync_runs(pair, monkeypatch):
    # Sync replication waits for the longer of the active's fsync and the
    # standby's round trip, not for their sum: the frames leave between the
    # write and the fsync. The batch still completes only once durable here.
    a = pair.node("a", role="active", epoch=1, hb_threshold=20, fsync=True).start()
    b = pair.node("b", hb_threshold=20).start()
    assert wait_for(lambda: a.repl.has_standby())
    real = os.fdatasync
    seen: dict = {}

    def slow(fd):
        if fd == a.journal._fd and threading.current_thread().name == "journal-writer":
            seen["stored_during_fsync"] = wait_for(lambda: b.journal.head > a.journal.head, timeout=2)
            seen["standby_head"], seen["active_head"] = b.journal.head, a.journal.head
            seen["fsync_end"] = time.monotonic()
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    done = threading.Event()
    got: dict = {}
    a.writer.submit(call_events(1), lambda recs: (got.update(t=time.monotonic(), recs=recs), done.set()))
    assert done.wait(5)
    seq = got["recs"][-1].seq
    assert seen["stored_during_fsync"] and seen["standby_head"] == seq > seen["active_head"]
    assert got["t"] >= seen["fsync_end"]
    assert (a.writer.ack_lapses, a.writer.unreplicated_batches) == (0, 0)
