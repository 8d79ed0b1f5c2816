"""The standby's applier: stores run as they come, the fold of what they
stored waits (at most FOLD_DELAY) to be done for several batches together,
and anything that needs every stored record folded gets it first: a
promotion (``wait_idle``), a cut, a snapshot install."""

from __future__ import annotations

import threading
import time

from actors.replication_applier import Applier


def _applier():
    a = Applier("test-applier")
    log: list = []
    return a, log


def test_stores_run_before_the_deferred_fold_which_folds_them_together():
    a, log = _applier()
    pending: list = []
    gate = threading.Event()

    def fold():
        log.append(("fold", list(pending)))
        pending.clear()

    def store(n):
        gate.wait(5)
        pending.append(n)
        log.append(("store", n))
        a.defer(fold, 0.2)

    for n in range(3):
        a.submit(store, n)
    gate.set()
    deadline = time.monotonic() + 5
    while not any(e[0] == "fold" for e in log) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log == [("store", 0), ("store", 1), ("store", 2), ("fold", [0, 1, 2])]
    a.stop()


def test_the_deferred_fold_runs_by_its_due_time_without_anyone_asking():
    a, log = _applier()
    t0 = time.monotonic()
    done = threading.Event()
    a.submit(lambda: a.defer(lambda: (log.append(time.monotonic() - t0), done.set()), 0.05))
    assert done.wait(5)
    assert 0.04 <= log[0] < 2.0
    a.stop()


def test_waiting_for_idle_folds_at_once():
    a, log = _applier()
    a.submit(lambda: a.defer(lambda: log.append("fold"), 60.0))
    t0 = time.monotonic()
    assert a.wait_idle(5)
    assert log == ["fold"] and time.monotonic() - t0 < 5
    assert a.idle()
    a.stop()


def test_not_idle_while_a_fold_is_deferred():
    a, _log = _applier()
    started = threading.Event()
    a.submit(lambda: (a.defer(lambda: None, 60.0), started.set()))
    assert started.wait(5)
    time.sleep(0.05)
    assert not a.idle()
    assert a.wait_idle(5) and a.idle()
    a.stop()


def test_a_job_after_the_deferred_one_meets_it_done():
    # A cut (or a snapshot install) rebuilds from the journal: the records
    # stored before it must be folded first, not after (they would be folded twice).
    a, log = _applier()
    gate, cut = threading.Event(), threading.Event()
    a.submit(lambda: (gate.wait(5), a.defer(lambda: log.append("fold"), 60.0)))
    a.submit(lambda: log.append("store"))
    a.submit(lambda: (log.append("cut"), cut.set()), after_deferred=True)
    gate.set()
    assert cut.wait(5)
    assert log == ["store", "fold", "cut"]
    a.stop()


def test_stop_folds_what_waits():
    a, log = _applier()
    started = threading.Event()
    a.submit(lambda: (a.defer(lambda: log.append("fold"), 60.0), started.set()))
    assert started.wait(5)
    a.stop(5)
    assert log == ["fold"]
