"""gatewayd's garbage-collector watch: long collections are logged with what
they were (a collection holds every thread, heartbeats included)."""

from __future__ import annotations

import gc
import logging

from ops.gatewayd import GcPauses, watch_gc_pauses


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_only_collections_past_the_limit_are_logged(caplog):
    clock = Clock()
    watch = GcPauses(logging.getLogger("test.gc"), warn_after=0.05, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.gc"):
        watch("start", {"generation": 0})
        clock.t += 0.01
        watch("stop", {"generation": 0, "collected": 3, "uncollectable": 0})
        watch("start", {"generation": 1})
        clock.t += 0.59
        watch("stop", {"generation": 1, "collected": 269150, "uncollectable": 0})
    assert watch.long_pauses == 1 and abs(watch.longest - 0.59) < 1e-9
    (rec,) = caplog.records
    assert "generation 1" in rec.getMessage() and "590 ms" in rec.getMessage()
    assert "269150 objects collected" in rec.getMessage()


def test_installed_once_however_often_it_is_asked():
    try:
        first = watch_gc_pauses(10.0)
        second = watch_gc_pauses(10.0)
        mine = [cb for cb in gc.callbacks if isinstance(cb, GcPauses)]
        assert mine == [second] and first is not second
        gc.collect()
        assert second.longest > 0.0 and second.long_pauses == 0
    finally:
        for cb in [cb for cb in gc.callbacks if isinstance(cb, GcPauses)]:
            gc.callbacks.remove(cb)


def test_the_pause_log_and_the_metrics_histogram_are_hooks_of_their_own():
    # One of each kind: installing the metrics' histogram keeps the pause
    # log's hook (and the other way round); both see the same collection.
    from ops.metrics import GcPauseHistogram
    try:
        watch = watch_gc_pauses(10.0)
        hist = GcPauseHistogram().install()
        again = watch_gc_pauses(10.0)
        hooks = [cb for cb in gc.callbacks if isinstance(cb, (GcPauses, GcPauseHistogram))]
        assert hooks == [hist, again] and watch not in gc.callbacks
        gc.collect()
        assert again.longest > 0.0 and sum(hist.counts[2]) == 1 and hist.sums[2] > 0.0
    finally:
        for cb in [cb for cb in gc.callbacks if isinstance(cb, (GcPauses, GcPauseHistogram))]:
            gc.callbacks.remove(cb)
