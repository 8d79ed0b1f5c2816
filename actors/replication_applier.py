"""The standby's applier: stores and folds received records, and runs the
cut-and-rebuild of a divergence, on a thread of its own, so that the HA
transport thread keeps its heartbeats and acknowledgements going while the
node's state catches up (ARCHITECTURE.md, "High availability")."""

from __future__ import annotations

import collections
import logging
import threading

from actors.thread_names import name_native_thread
from actors.thread_priority import ordinary_thread_priority

log = logging.getLogger("gateway.replication")


class Applier:
    """Standby side: folds stored records and runs the cut-and-rebuild of a
    divergence on a thread of its own, in order, so the transport thread
    keeps sending heartbeats and acknowledgements while the node's state
    catches up (a rebuild of a long journal took seconds on a loaded box:
    the active forgot the silent standby, it rejoined, and again)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._records = 0             # records waiting to be folded
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def submit(self, fn, *args, records: int = 0) -> None:
        with self._cv:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._jobs.append((fn, args, records))
            self._records += records
            self._cv.notify_all()

    def backlog(self) -> int:
        return self._records

    def idle(self) -> bool:
        with self._cv:
            return not self._jobs and not self._busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._stopped or (not self._jobs and not self._busy), timeout)

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
                self._cv.wait_for(lambda: self._stopped or self._jobs)
                if not self._jobs:
                    return                       # stopped with nothing left
                fn, args, records = self._jobs.popleft()
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
