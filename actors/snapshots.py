"""The node's snapshot thread: a snapshot every ``snapshot_every`` journal
records (and, with ``snapshot_interval``, every so many seconds), the oldest
beyond ``snapshots_kept`` deleted, then the retention pass
(ARCHITECTURE.md, "Journal"; journal/checkpoint.py).

The thread folds the journal on its own (``SnapshotTaker``): it takes no lock
the datapath or the actors take, except the journal's own for a moment per
read. What it costs the datapath is the interpreter it shares: the fold
yields every few thousand records, and the state is pickled and written by
a forked child process (journal/snapshot_child.py), outside the node's
interpreter; the snapshot at a clean stop is written in-process. ``status()``
reports the last snapshot's figures; bench/bench_snapshots.py measures how
long the datapath's threads wait meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from actors.thread_names import name_native_thread
from gateway.nodefile import RetentionSettings
from journal.checkpoint import SnapshotTaker, disk_usage, retention_pass
from journal.snapshot import remove_snapshots

log = logging.getLogger("gateway.snapshots")


class SnapshotService:
    def __init__(self, taker: SnapshotTaker, settings: RetentionSettings, *,
                 clock: Callable[[], float] = time.time,
                 floor: Callable[[], int | None] = lambda: None,
                 check_every: float = 1.0, name: str = "snapshots",
                 monotonic: Callable[[], float] = time.monotonic,
                 folded: Callable[[], tuple[Any, int] | None] | None = None) -> None:
        self.taker = taker
        # The node's own fold of the journal when it has one (a standby):
        # SnapshotTaker.catch_up takes it instead of folding again.
        self.folded = folded
        self.journal = taker.journal
        self.settings = settings
        self.clock = clock
        self.floor = floor
        self.check_every = check_every
        # The taker and the journal's shape: held while a snapshot is taken,
        # and by the node while it cuts or restarts the journal (node.paused()).
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name
        self.taken = 0
        self.failed: str | None = None
        self.last: dict[str, Any] = {}
        self.removed_segments = 0
        # Whether the node is overloaded now (gatewayd: the ingest worker's
        # overload control); snapshots and their folding wait meanwhile.
        self.busy: Callable[[], bool] = lambda: False
        # For snapshot_interval: when the last snapshot was taken (or the
        # service made: the snapshot a restart started from is that recent).
        self.monotonic = monotonic
        self.last_taken_at = monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, *, final: bool = True) -> None:
        """Stop the thread; with ``final``, snapshot the head first if it moved
        since the last snapshot (a planned restart then folds nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        if final and self.failed is None and self.journal.head > self.taker.written:
            self.take(in_child=False)        # the node is stopping: nothing waits for the interpreter

    def due(self) -> bool:
        """A snapshot is due every ``snapshot_every`` records, and with
        ``snapshot_interval`` also once that long has passed since the last
        with any event after it: the tail a restart folds is bounded by
        time as well as by count (gateway/nodefile.py)."""
        tail = self.journal.head - self.taker.written
        if tail >= self.settings.snapshot_every:
            return True
        interval = self.settings.snapshot_interval
        return interval is not None and tail > 0 and self.monotonic() - self.last_taken_at >= interval

    def _run(self) -> None:
        name_native_thread()
        while not self._stop.wait(self.check_every):
            if self.failed is not None:
                continue
            if self.busy() and not self.overdue():
                # Overloaded: the snapshot waits (up to twice its interval);
                # the calls need the interpreter more.
                continue
            if self.due():
                self.take()
            else:
                # Fold as the journal grows, a second's worth at a time: a
                # snapshot then folds only what came since, instead of its
                # whole interval at once (200,000 events folded in 4-5 s
                # during an INVITE flood made the pair fail legitimate calls).
                with self.lock:
                    self.taker.catch_up(folded=self.folded)

    def overdue(self) -> bool:
        return self.journal.head - self.taker.written >= 2 * self.settings.snapshot_every

    def take(self, *, in_child: bool = True) -> dict | None:
        """Fold up to the head, write the snapshot (by a child process unless
        ``in_child`` is false: journal/snapshot_child.py), prune, retention.
        Returns its figures."""
        with self.lock:
            t0 = time.monotonic()
            try:
                n = self.taker.catch_up(folded=self.folded)
                t1 = time.monotonic()
                path = self.taker.write(in_child=in_child)
            except Exception as exc:  # noqa: BLE001 - a snapshot that fails must not kill the node
                self.failed = f"{type(exc).__name__}: {exc}"
                log.error("snapshot at record %d failed, no more snapshots until restart: %s",
                          self.taker.seq, self.failed)
                return None
            t2 = time.monotonic()
            if path is None:
                return None
            remove_snapshots(self.taker.directory, keep=self.settings.snapshots_kept)
            r = retention_pass(self.journal, max_age=self.settings.keep_for,
                               max_bytes=self.settings.max_disk, now=self.clock(), floor=self.floor(),
                               directory=self.taker.directory)
            self.removed_segments += r.removed
            if r.over_bound:
                log.warning("journal: %d bytes on disk, over the %d-byte bound (max_disk): what is "
                            "left is not yet covered by a snapshot", r.disk, self.settings.max_disk)
            self.taken += 1
            self.last_taken_at = self.monotonic()
            self.last = {"seq": self.taker.seq, "at": self.clock(), "folded": n,
                         "fold_ms": round((t1 - t0) * 1000, 1), "write_ms": round((t2 - t1) * 1000, 1),
                         "bytes": path.stat().st_size, "disk_bytes": r.disk,
                         "segments_removed": r.removed}
            log.info("snapshot at record %d (%d bytes; fold %.0f ms, write %.0f ms); journal from %d, "
                     "%d bytes on disk", self.taker.seq, self.last["bytes"], self.last["fold_ms"],
                     self.last["write_ms"], self.journal.first_seq, r.disk)
            return self.last

    def reset(self, state: Any, seq: int, epoch: int, timestamp: float | None) -> None:
        """The node's journal was cut or started again: fold from there."""
        with self.lock:
            self.taker.restart_from(state, seq, epoch, timestamp, self.journal.versions_table())

    def status(self) -> dict:
        return {"taken": self.taken, "last": self.last or None, "failed": self.failed,
                "every": self.settings.snapshot_every, "journal_first": self.journal.first_seq,
                "disk_bytes": disk_usage(self.journal, self.taker.directory),
                "segments_removed": self.removed_segments}
