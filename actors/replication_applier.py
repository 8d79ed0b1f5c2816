"""The standby's applier: stores and folds received records, and runs the
cut-and-rebuild of a divergence, on a thread of its own, so that the HA
transport thread keeps its heartbeats and acknowledgements going while the
node's state catches up (ARCHITECTURE.md, "High availability")."""

from __future__ import annotations

import collections
import logging
import threading
import time

from actors.thread_names import name_native_thread
from actors.thread_priority import ordinary_thread_priority

log = logging.getLogger("gateway.replication")


class Applier:
    """Standby side: stores and folds received records and runs the
    cut-and-rebuild of a divergence on a thread of its own, in order, so the
    transport thread keeps sending heartbeats and acknowledgements while the
    node's state catches up (a rebuild of a long journal took seconds on a
    loaded box: the active forgot the silent standby, it rejoined, and
    again). The fold of stored records may be deferred (``defer``) so that
    several batches fold together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._records = 0             # records waiting to be folded
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        # A job that may wait until its due time (the standby's fold of
        # acknowledged records, ``defer``): run then, when the queue asks
        # for it (a job submitted with ``after_deferred``), or at once when
        # anyone waits for this applier to be idle (a promotion).
        self._deferred = None
        self._deferred_due = 0.0
        self._idle_waiters = 0        # threads in wait_idle: a deferred job runs at once

    def submit(self, fn, *args, records: int = 0, after_deferred: bool = False) -> None:
        """Run ``fn(*args)`` on the applier's thread, after the jobs before
        it; with ``after_deferred``, also after the deferred job (a cut or a
        snapshot install must meet every stored record folded)."""
        with self._cv:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._jobs.append((fn, args, records, after_deferred))
            self._records += records
            self._cv.notify_all()

    def defer(self, fn, delay: float) -> None:
        """Called on the applier's thread: run ``fn()`` once, ``delay``
        seconds from now, or sooner when a promotion waits (``wait_idle``)
        or a job submitted ``after_deferred`` comes next; jobs submitted
        meanwhile run before it. A deferred job already there keeps its
        earlier due time (and its function: the caller's is the same)."""
        with self._cv:
            if self._deferred is None:
                self._deferred, self._deferred_due = fn, time.monotonic() + delay

    def backlog(self) -> int:
        return self._records

    def idle(self) -> bool:
        with self._cv:
            return not self._jobs and not self._busy and self._deferred is None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Every job run, the deferred one at once rather than at its due time."""
        with self._cv:
            self._idle_waiters += 1
            self._cv.notify_all()
            try:
                return self._cv.wait_for(lambda: self._stopped or (not self._jobs and not self._busy
                                                                    and self._deferred is None), timeout)
            finally:
                self._idle_waiters -= 1

    def wait_below(self, records: int, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._stopped or self._records < records, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _run(self) -> None:
        name_native_thread()
        ordinary_thread_priority()       # started by the real-time transport thread
        while True:
            with self._cv:
                while True:
                    d, jobs = self._deferred, self._jobs
                    if d is not None and (self._idle_waiters or self._stopped or (jobs and jobs[0][3])
                                          or time.monotonic() >= self._deferred_due):
                        self._deferred = None
                        fn, args, records = d, (), 0
                        break
                    if jobs:
                        fn, args, records, _after = jobs.popleft()
                        break
                    if self._stopped:
                        return                   # stopped with nothing left
                    self._cv.wait(None if d is None else max(0.0, self._deferred_due - time.monotonic()))
                self._busy = True
            try:
                fn(*args)
            except Exception:
                log.exception("replication: applying on the standby failed (%s)",
                              getattr(fn, "__name__", fn))
            finally:
                with self._cv:
                    self._busy = False
                    self._records -= records
                    self._cv.notify_all()
