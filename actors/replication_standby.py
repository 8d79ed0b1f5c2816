"""The standby's side of the HA transport: batches read from the active in
bounded drains, handed to the applier (:mod:`actors.replication_applier`) to
store, acknowledge and fold, a divergence cut and rebuilt, and a HANDOVER
taken only with every acknowledged record folded."""

from __future__ import annotations

import logging

from actors.replication_limits import APPEND_CHUNK, FOLD_BACKLOG, FOLD_COALESCE
from actors.replication_sockets import _readable
from journal.replication import (
    Batch, Handover, Heartbeat, ProtocolViolation, Refused, SnapChunk, Taken, decode,
)

log = logging.getLogger("gateway.replication")


class StandbyReceive:
    """Batches, handovers and refusals from the active; a part of :class:`actors.replication.Replicator` (a base class),
    run on its transport thread."""

    def _drain_dealer(self, dealer) -> None:
        pending: list[bytes] = []       # consecutive BATCH frames: one append, one ACK
        # Bounded: the heartbeats must go out while a long backlog streams in,
        # and the applier must not fall arbitrarily far behind.
        until = self.clock() + self.hb_interval / 2
        if self.applier.backlog() >= FOLD_BACKLOG:
            self.applier.wait_below(FOLD_BACKLOG, self.hb_interval / 4)
            if self.applier.backlog() >= FOLD_BACKLOG:
                return
        while _readable(dealer):
            if self.clock() > until or self.applier.backlog() + len(pending) >= FOLD_BACKLOG:
                break
            if len(pending) >= APPEND_CHUNK:
                self._apply(dealer, pending)
                pending = []
            frames = dealer.recv_multipart()
            try:
                msg = decode(frames)
            except ProtocolViolation as exc:
                log.warning("replication: dropped a message from the peer: %s", exc.reason)
                continue
            if isinstance(msg, Batch):
                self._active_seen = self._peer_last = self.clock()
                if self.role != "standby" or msg.epoch < self.epoch or self._cutting.is_set():
                    continue
                head = self._received_head() + len(pending)
                new, resync = self.receiver.admit(msg, head, self._peer_last)
                pending += new
                if resync:
                    self._apply(dealer, pending)
                    pending = []
                    self._send_dealer(dealer, self._hello())
                continue
            self._apply(dealer, pending)
            pending = []
            if isinstance(msg, Heartbeat):
                self._seen_peer(msg)
            elif isinstance(msg, Handover):
                self._active_seen = self.clock()
                if self._stood_still:
                    # Read after this node stood still: it may have waited
                    # past the sender's handover timeout, after which the
                    # sender gave up the role and the pair may have elected
                    # an active already. Taking over now could make two
                    # actives; the sender gives up and the pair elects one.
                    log.warning("replication: a handover read after this node stood still; ignored")
                elif self.role == "standby" and self.applier.wait_idle(self.handover_timeout / 2) \
                        and self.journal.head >= msg.head:
                    # Every frame handed to the applier stored and folded
                    # (the HANDOVER follows their acknowledgement).
                    self._trigger("handover_received", msg.epoch, self.clock())
                    if self.role == "active":
                        self._send_dealer(dealer, Taken(self.epoch))
                else:
                    log.warning("replication: handover at head %d but only %d applied; not taking over",
                                msg.head, self.journal.head)
            elif isinstance(msg, SnapChunk):
                self._snapshot_chunk(dealer, msg)
            elif isinstance(msg, Refused):
                self._helloed = False
                if msg.reason == "diverged":
                    if not self._cutting.is_set():
                        # Cut and rebuild on the applier; HELLO once it is done.
                        self._cutting.set()
                        self.applier.submit(self._cut, msg.head, after_deferred=True)
                    continue
                # "no snapshot to send": the active cannot serve this node
                # yet (it has no snapshot); like "not active", ask again at
                # the next beat rather than at once.
                if msg.reason not in ("not active", "no snapshot to send") and self.role == "standby" \
                        and not self._receiving_snapshot(self.clock()):
                    # Say HELLO again now (a "not active" peer waits for the
                    # next beat), or as soon as a cut in progress is done.
                    if self._cutting.is_set():
                        self._hello_asap = True
                    else:
                        self._helloed = self._send_dealer(dealer, self._hello())
        self._apply(dealer, pending)

    def _apply(self, dealer, frames: list[bytes]) -> None:
        """Hand received frames to the applier, which stores them, has the
        acknowledgement sent, then folds them. Not here: a store waits for
        an fsync and a fold for the node's state lock, and on a loaded box
        either took from 0.3 to 1.8 s, during which this thread sent no
        heartbeat (an active's heartbeats renew its lease) and read none
        (the pair changed roles back and forth)."""
        if not frames:
            return
        with self._store_lock:
            self._in_store += len(frames)
        self.applier.submit(self._store_and_fold, frames, records=len(frames))

    def _received_head(self) -> int:
        """The head this node will have once the frames handed to the
        applier are stored: where the next batch from the active must start."""
        with self._store_lock:
            return self._stored_head + self._in_store

    def _store_and_fold(self, frames: list[bytes]) -> None:
        """Applier: store, acknowledge (through the transport thread, which
        owns the sockets), fold. A promotion waits until the applier is idle
        (heartbeat loss, HANDOVER), so it sees every acknowledged record folded."""
        try:
            records = self.journal.append_frames(frames)
        except Exception as exc:      # AppendRejected, JournalFailed: start over from our head
            log.warning("replication: could not store %d frames from the active: %s", len(frames), exc)
            with self._store_lock:
                self._in_store -= len(frames)
            self._helloed = False
            self._wake()
            return
        with self._store_lock:
            self._stored_head = self.journal.head
            self._in_store -= len(frames)
        # Acknowledged as soon as the frames are durable here (what sync mode
        # waits for: no acknowledged event is lost in a failover), before the
        # fold: the active's held packets wait for this message.
        self._cmd(("ack", self.journal.head))
        self._unfolded += records
        if len(self._unfolded) >= FOLD_COALESCE or self.fold_delay <= 0:
            self._fold_unfolded()
        else:
            self.applier.defer(self._fold_unfolded, self.fold_delay)

    def _fold_unfolded(self) -> None:
        """Applier: fold the stored, acknowledged records not folded yet, in
        one batch. Folding each small batch as it came cost the standby a
        cold run of the fold machinery per batch (bench/bench_cold_step.py);
        a promotion waits for the applier to be idle, which folds them at
        once, so a takeover still starts from every acknowledged record."""
        records, self._unfolded = self._unfolded, []
        if records:
            self._fold(records)

    def _fold(self, records: list) -> None:
        try:
            self.on_records(records)
        except Exception:
            log.exception("replication: folding %d records failed", len(records))

    def _cut(self, head: int) -> None:
        """Applier: the node cuts its journal after ``head`` and rebuilds."""
        try:
            self._trigger("diverged", head)
        finally:
            with self._store_lock:
                self._stored_head = self.journal.head
            self._cutting.clear()
            self._hello_asap = True
            self._wake()
