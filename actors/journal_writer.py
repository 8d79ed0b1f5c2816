"""Group commit of events to the journal, and completion after replication.

Producers (entity actors) submit the events of one step with a callback; one
writer thread takes everything queued (up to ``max_batch``), appends it with
ONE write and ONE fsync (``Journal.append_batch``), telling the replicator
between the two (the standby stores the frames while this fsync runs), and
completes the callbacks once the batch is durable here and:
- ``async`` replication (or no replicator): right after the fsync, on the
  writer thread;
- ``sync`` replication (the default): once the standby acknowledged the batch,
  so no event a peer has seen can be lost in a failover. A completion thread
  waits for acknowledgements so the writer can go on with the next batch.
  When a thread drives the completions (:meth:`drive_completions`: the
  ingest worker's loop), that thread completes them instead
  (:meth:`complete_ready`), woken when the standby's acknowledgement
  arrives: the verdicts are then given by the thread that completed them,
  with no hop through the completion thread.
If no standby is connected, sync mode completes after the fsync and the node
reports itself as running without a standby (``degraded``); if a connected
standby does not acknowledge within ``ack_timeout`` the batch completes anyway
and the lapse is counted and logged: a wedged standby must not stall calls.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Callable

from actors.thread_names import name_native_thread
from gateway.events import expand, in_steps

log = logging.getLogger("gateway.journal")

Callback = Callable[[list], None]


class JournalWriter:
    def __init__(self, journal, *, epoch: Callable[[], int], replicator=None,
                 mode: str = "sync", max_batch: int = 1000, ack_timeout: float = 0.5,
                 clock: Callable[[], float] = time.time,
                 on_appended: Callable[[list], None] | None = None,
                 on_failed: Callable[[BaseException], None] | None = None) -> None:
        self.journal = journal
        self.epoch = epoch
        self.replicator = replicator
        self.mode = mode
        self.max_batch = max_batch
        self.ack_timeout = ack_timeout
        self.clock = clock
        self.on_appended = on_appended
        # Told of every failed append (after the batch's callbacks got None):
        # the node decides what a journal it can no longer write means.
        self.on_failed = on_failed
        self.failures = 0
        self.stale_steps = 0
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: collections.deque = collections.deque()
        self._pending_cv = threading.Condition()
        self._stop = False
        # gather / hand_over: the steps one thread submits during a drain.
        self._gathered: list | None = None
        self._gather_ident: int | None = None
        # drive_completions: the driving thread's wake-up (None: the completion thread).
        self._completion_wake: Callable[[], None] | None = None
        self.batches = 0
        self.records = 0        # journaled records (a step's events on one entity: one record)
        self.events = 0         # the events they hold
        self.ack_lapses = 0
        self.unreplicated_batches = 0
        # Only sync replication waits for acknowledgements, so only it needs
        # the completion thread (fixed for the writer's life, so completions
        # stay in submission order).
        self._waits_for_acks = mode == "sync" and replicator is not None
        self._threads = [threading.Thread(target=self._write_loop, name="journal-writer", daemon=True)]
        if self._waits_for_acks:
            self._threads.append(threading.Thread(target=self._complete_loop, name="journal-acks",
                                                  daemon=True))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Complete everything submitted before, then stop both threads."""
        self._q.put(None)
        for t in self._threads:
            if t.is_alive():
                t.join(5)

    def submit(self, events: list, callback: Callback | None = None) -> None:
        """Journal ``events`` (one entity step); ``callback(records)`` runs on
        completion (see the module docstring for what completion means).

        The events are written only in the epoch they were computed in: a
        step submitted by an active node that is demoted before the writer
        reaches it completes with ``None`` (its packet is not forwarded)
        instead of entering the journal under the peer's newer epoch, where
        only a divergence cut on rejoining would have removed it.

        Each run of the step's events on one entity is ONE record
        (:func:`gateway.events.in_steps`); ``callback`` gets those records."""
        item = (in_steps(events), callback, self.epoch())
        if self._gather_ident is not None and self._gather_ident == threading.get_ident():
            self._gathered.append(item)           # type: ignore[union-attr]
        else:
            self._q.put(item)

    def gather(self) -> None:
        """Until :meth:`hand_over`, the steps the calling thread submits are
        kept and then reach the writer thread together: the packet loop
        gathers the steps of one drain, so the writer wakes once per drain,
        not once per step. The order of submission is kept."""
        self._gathered = []
        self._gather_ident = threading.get_ident()

    def hand_over(self) -> None:
        """End :meth:`gather` (on the same thread): hand what it kept to the writer."""
        items, self._gathered, self._gather_ident = self._gathered, None, None
        if items:
            self._q.put(items)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is complete (for handover)."""
        done = threading.Event()
        self.submit([], lambda _r: done.set())
        return done.wait(timeout)

    # ------------------------------------------------- driven completions
    def drive_completions(self, wake: Callable[[], None]) -> None:
        """From now on the calling thread completes acknowledged batches
        (:meth:`complete_ready`); ``wake()`` tells it one may be ready: after
        each append, and when the standby's acknowledgement advances."""
        if not self._waits_for_acks:
            return                 # completed on the writer thread after the fsync
        with self._pending_cv:
            self._completion_wake = wake
        self.replicator.on_acked = self._acked

    def undrive_completions(self) -> None:
        """The completion thread takes the pending batches back."""
        if not self._waits_for_acks:
            return
        self.replicator.on_acked = None
        with self._pending_cv:
            self._completion_wake = None
            self._pending_cv.notify_all()

    def _acked(self) -> None:
        wake = self._completion_wake
        if wake is not None and self._pending:
            wake()

    def has_pending(self) -> bool:
        return bool(self._pending)

    def complete_ready(self, now: float | None = None) -> int:
        """On the driving thread: complete, in order, the batches the standby
        acknowledged, those with no standby to wait for, and those it did not
        acknowledge within ``ack_timeout`` (counted and logged, as the
        completion thread does). Returns the batches completed."""
        pending, rep = self._pending, self.replicator
        done = 0
        while pending:
            seq, out, since = pending[0]
            if seq and rep.has_standby():
                if rep.acked_seq() < seq:
                    now = time.monotonic() if now is None else now
                    if now - since <= self.ack_timeout:
                        break               # its acknowledgement will wake the driver
                    self._lapsed(seq)
            elif seq:
                self.unreplicated_batches += 1
            with self._pending_cv:
                pending.popleft()
            self._complete(out)
            done += 1
        return done

    # --------------------------------------------------------------- loops
    def _write_loop(self) -> None:
        name_native_thread()
        while True:
            item = self._q.get()
            if item is None:
                self._finish()
                return
            # An item is one step, or a drain's steps (hand_over) as a list.
            items = item if type(item) is list else [item]
            stop = False
            while len(items) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if type(nxt) is list:
                    items.extend(nxt)
                else:
                    items.append(nxt)
            epoch = self.epoch()
            if any(evs and e != epoch for evs, _cb, e in items):
                items = self._drop_stale(items, epoch)
            now = self.clock()
            flat = [(ev, now) for evs, _cb, _e in items for ev in evs]
            try:
                records = self.journal.append_batch(flat, epoch, written=self._written) if flat else []
            except Exception as exc:
                log.exception("journal: append of %d events failed; their packets are dropped", len(flat))
                self.failures += 1
                for _evs, cb, _e in items:
                    if cb:
                        self._safe(cb, None)
                if self.on_failed is not None:
                    self._safe(self.on_failed, exc)
                if stop:
                    self._finish()
                    return
                continue
            self.batches += 1
            self.records += len(records)
            self.events += sum(len(expand(ev)) for ev, _t in flat)
            if self.on_appended and records:
                self._safe(self.on_appended, records)
            # Split the records back to their producers, in order.
            out, i = [], 0
            for evs, cb, _e in items:
                out.append((cb, records[i:i + len(evs)]))
                i += len(evs)
            if self._waits_for_acks:
                with self._pending_cv:
                    self._pending.append((self.journal.head, out, time.monotonic()))
                    wake = self._completion_wake
                    if wake is None:
                        self._pending_cv.notify_all()
                if wake is not None:
                    wake()
            else:
                # Nothing to wait for after the fsync: complete here. Handing
                # the batch to the completion thread cost a thread switch
                # (~75-140 us) on every held packet's way out.
                self._complete(out)
            if stop:
                self._finish()
                return

    def _written(self) -> None:
        # Between the batch's write and its fsync (Journal.append_batch): the
        # replication thread streams the frames to the standby meanwhile.
        if self.replicator is not None:
            self.replicator.notify_appended()

    def _drop_stale(self, items: list, epoch: int) -> list:
        """Complete with None the steps computed in another epoch; the rest."""
        keep, stale = [], []
        for item in items:
            (stale if item[0] and item[2] != epoch else keep).append(item)
        self.stale_steps += len(stale)
        log.warning("journal: %d step(s) computed in epoch %s not written in epoch %d; "
                    "their packets are dropped", len(stale),
                    "/".join(sorted({str(e) for _evs, _cb, e in stale})), epoch)
        for _evs, cb, _e in stale:
            if cb:
                self._safe(cb, None)
        return keep

    def _finish(self) -> None:
        # The completion thread ends once it has completed everything before this.
        with self._pending_cv:
            self._stop = True
            self._pending_cv.notify_all()

    def _complete_loop(self) -> None:
        name_native_thread()
        while True:
            with self._pending_cv:
                # While a thread drives the completions this one waits aside.
                while (not self._pending or self._completion_wake is not None) and not self._stop:
                    self._pending_cv.wait()
                if not self._pending:
                    return
                seq, out, _since = self._pending.popleft()
            if self.mode == "sync" and self.replicator is not None and seq:
                if self.replicator.has_standby():
                    if not self.replicator.wait_acked(seq, self.ack_timeout):
                        self._lapsed(seq)
                else:
                    self.unreplicated_batches += 1
            self._complete(out)

    def _lapsed(self, seq: int) -> None:
        """A connected standby did not acknowledge ``seq`` in time: the batch
        completes anyway (a wedged standby must not stall calls), counted."""
        self.ack_lapses += 1
        log.warning("journal: standby did not acknowledge seq %d within %.0f ms",
                    seq, self.ack_timeout * 1000)

    def _complete(self, out: list) -> None:
        for cb, recs in out:
            if cb:
                self._safe(cb, recs)

    @staticmethod
    def _safe(fn, arg) -> None:
        try:
            fn(arg)
        except Exception:
            log.exception("journal: completion callback failed")
