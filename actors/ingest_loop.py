"""The ingest worker's thread: its wake-up pipe, the loop that drains the
queue and runs the node's turns after each drain, and the housekeeping
(media activity, expiry, alarms, overload) every interval."""

from __future__ import annotations

import logging
import os
import select
import threading
import time

from actors.thread_names import name_native_thread
from gateway.datapath import Drop

log = logging.getLogger("voip_alg.ingest")


class WorkerLoop:
    """The worker's loop and housekeeping; a part of :class:`actors.ingest.NfqueueWorker` (a base class)."""

    # -- the loop -----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass                      # a wake-up is already pending

    def _run(self) -> None:
        name_native_thread()
        nfq = self._nfq
        fd = nfq.get_fd()
        next_house = self.clock() + self.housekeeping_interval
        turns = self.turns
        self._loop_ident = threading.get_ident()
        if turns is not None:
            turns.drive(self._wake)
        self._ready.set()
        try:
            while not self._stop.is_set():
                now = self.clock()
                wait = 0.0 if turns is not None and turns.has_turns() else \
                    max(0.0, min(next_house - now, 0.5))
                r, _w, _x = select.select([fd, self._wake_r], [], [], wait)
                if fd in r:
                    t0 = time.perf_counter()
                    nfq.run(block=False)
                    self.verdicts.flush()
                    if turns is not None:
                        # The turns of what this drain held (the ALG steps)
                        # belong to the drain's cost: the overload signal.
                        turns.run_turns()
                    dt = time.perf_counter() - t0
                    if dt > self._max_batch:
                        self._max_batch = dt
                if self._wake_r in r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                now = self.clock()
                if now >= next_house:
                    next_house = now + self.housekeeping_interval
                    self._housekeeping(now)
                if turns is not None:
                    turns.run_turns()              # timers, media reports, operators' asks
                if self._verdicts:
                    self._apply_verdicts()
                self.verdicts.flush()              # answers, held packets timed out
        except BaseException as e:           # the loop must say why it ended
            self._error = e
            log.exception("NFQUEUE %d worker stopped", self.queue_num)
        finally:
            if turns is not None:
                turns.undrive()            # the pool's own threads take the actors back
            # Held packets must not stay queued for ever.
            self._apply_verdicts()
            for token in list(self._held):
                self._give(token, Drop("worker stopping", "worker"))
            self.verdicts.flush()

    def _housekeeping(self, now: float) -> None:
        for token, (_pkt, since, _alg) in list(self._held.items()):
            if now - since > self.hold_timeout:
                self.counters["held_timeout"] += 1
                self._give(token, Drop(f"alg: no verdict within {self.hold_timeout:g} s",
                                       "held-timeout"))
        if self.overload is not None:
            # The node's load since the last turn: what waits for its ALG
            # step and journal write, how long completions took, how long
            # the queue's drains took (gateway/overload.py).
            ov = self.overload
            was = ov.overloaded
            latency = self._latency_sum / self._latency_n if self._latency_n else 0.0
            if ov.observe(now, len(self._held), latency, self._max_batch) and not was:
                log.warning("overload: %d messages held, mean completion %.0f ms, queue drain "
                            "%.0f ms; new dialogs limited to %.0f/s", len(self._held),
                            latency * 1000, self._max_batch * 1000, ov.budget)
            elif was and not ov.overloaded:
                log.warning("overload: ended (%d new dialogs shed so far)", ov.shed)
            self._latency_sum = self._max_batch = 0.0
            self._latency_n = 0
        with self.lock:
            expired = self.datapath.expire(now)
            activity = self.datapath.drain_activity() if self.on_activity else []
            alarms = self.datapath.drain_alarms()
        for a in alarms:
            log.warning("%s", a)
            if self.on_alarm:
                self._safe(self.on_alarm, a)
        if expired and self.on_expired:
            self._safe(self.on_expired, expired)
        if self.on_activity is not None:
            # Also when empty: a receiver that holds back reports of steady
            # media (Node.coalesce_media) passes them on once a channel is quiet.
            self._safe(self.on_activity, activity)

    @staticmethod
    def _safe(fn, arg) -> None:
        try:
            fn(arg)
        except Exception:
            log.exception("ingest callback %r failed", fn)
