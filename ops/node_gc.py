"""The node's cyclic garbage collector: higher thresholds, what start loaded
frozen, and collections that held every thread for long logged."""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("gatewayd")

# The cyclic garbage collector under call load: every SIP message allocates
# hundreds of short-lived objects (parsed message, events, new immutable state
# values), so at CPython's default threshold (700) a young collection ran every
# few messages, and each full collection walked the whole call state. Sampled
# under 120 calls/s it held the GIL 14% of the time (py-spy --native), in
# pauses that delay every thread of the node. The state and the configuration
# hold no reference cycles to reclaim; what is loaded at start is frozen (never
# scanned again) and young collections run every 50,000 allocations.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    watch_gc_pauses()


# A collection holds the GIL: every thread of the node (the NFQUEUE worker,
# the actors, the heartbeats of replication) stands still for its length. A
# pause near the heartbeat loss time (3 x 200 ms) looks like a dead node to
# the peer, so long ones are logged with what they were.
GC_PAUSE_WARN = 0.05


class TimedCollections:
    """A ``gc.callbacks`` hook that times each collection and hands its pause
    (seconds) and the collector's info to :meth:`record`. :meth:`install`
    keeps one hook of each kind: a node started again in one process (tests,
    a restart) does not count every pause twice."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        self.record(self.clock() - self._started, info)

    def record(self, took: float, info: dict) -> None:
        raise NotImplementedError

    def install(self):
        for cb in list(gc.callbacks):
            if type(cb) is type(self):
                gc.callbacks.remove(cb)
        gc.callbacks.append(self)
        return self


class GcPauses(TimedCollections):
    """Collections longer than ``warn_after`` seconds are logged at WARNING
    (generation, pause, objects collected) and counted."""

    def __init__(self, logger: logging.Logger, warn_after: float = GC_PAUSE_WARN,
                 clock=time.perf_counter) -> None:
        super().__init__(clock)
        self.log = logger
        self.warn_after = warn_after
        self.long_pauses = 0
        self.longest = 0.0

    def record(self, took: float, info: dict) -> None:
        self.longest = max(self.longest, took)
        if took >= self.warn_after:
            self.long_pauses += 1
            self.log.warning("gc: generation %d collection held every thread for %.0f ms "
                             "(%d objects collected, %d uncollectable)", info.get("generation", -1),
                             took * 1000, info.get("collected", 0), info.get("uncollectable", 0))


def watch_gc_pauses(warn_after: float = GC_PAUSE_WARN) -> GcPauses:
    return GcPauses(log, warn_after).install()
