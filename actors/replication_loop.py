"""The HA transport thread's turn (ARCHITECTURE.md, "High availability"): the
lease checked before anything is sent, heartbeats and HELLO on time, the
peer's silence judged only with nothing of it waiting (a standby triggers
``heartbeat_lost``; an active forgets a silent standby), the peer's process
exit seen on its connection, the commands of other threads, and the journal
streamed to the standby."""

from __future__ import annotations

import faulthandler
import logging
import queue
import sys

import zmq
from zmq.utils.monitor import recv_monitor_message

from actors.replication_sockets import _readable, _waiting
from journal.replication import Ack, Handover, encode
from journal.segment import JournalCorrupt

log = logging.getLogger("gateway.replication")


class TransportLoop:
    """The transport thread's loop; a part of :class:`actors.replication.Replicator` (a base class),
    run on its transport thread."""

    def _loop(self, wake_rx, router, dealer, link=None) -> None:
        poller = zmq.Poller()
        poller.register(wake_rx, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        poller.register(dealer, zmq.POLLIN)
        if link is not None:
            poller.register(link, zmq.POLLIN)
        self._active_seen = self._last_turn = self.clock()
        next_hb = 0.0
        loss = self.hb_interval * self.hb_threshold
        # The loop wakes at least once per heartbeat interval; a turn that
        # comes later than this after the previous one found this thread
        # stalled.
        stall_gap = 1.5 * self.hb_interval + 0.05
        armed_at = float("-inf")
        while not self._stop.is_set():
            now = self.clock()
            if self.stall_dump is not None and now - armed_at >= self.hb_interval / 2:
                # Each arming starts a watchdog thread (and ends the last):
                # twice per heartbeat interval, not at every turn.
                faulthandler.dump_traceback_later(self.stall_dump + self.hb_interval / 2,
                                                  file=sys.stderr)
                armed_at = now
            stalled = now - self._last_turn > stall_gap
            self._last_turn = now
            if self.role == "active":
                if now - self._renewed_at > stall_gap and not self._late_logged:
                    self._late_logged = True
                    log.warning("replication: the lease's renewal is late: last heartbeat as active "
                                "%.0f ms ago; last turns (ms: start+checks/poll/rest, s = standby): %s",
                                (now - self._renewed_at) * 1000, self._turns.history(now))
                self._trigger("lease_check", now)
            if self._hello_asap and self.role == "standby" and not self._cutting.is_set() \
                    and not self._receiving_snapshot(now):
                self._hello_asap = False
                self._helloed = self._send_dealer(dealer, self._hello())
            if now >= next_hb:
                if self.role == "standby" and not self._helloed and not self._cutting.is_set() \
                        and not self._receiving_snapshot(now):
                    self._helloed = self._send_dealer(dealer, self._hello())
                self._heartbeat(dealer, now)
                next_hb = now + self.hb_interval
            wake_at = next_hb
            if self.role == "standby" and self._exited_at is not None:
                wake_at = min(wake_at, self._check_exited(now, dealer, router))
            # Silence is judged only with nothing from the peer waiting on our
            # sockets: this thread may itself have been busy (storing and
            # folding a large batch, rejoining) for longer than the detection
            # time while the peer's heartbeats queued up. Counting that as the
            # peer's silence made a loaded standby promote itself (two actives).
            if self.role == "standby":
                # A node that stood still heard nothing meanwhile: silence is
                # observed only while awake, so the detection time starts
                # again from its waking. Without this a standby stalled past
                # the detection time promoted on waking while its peer, which
                # had found it silent, promoted too (tests/test_ha_lease.py).
                if stalled:
                    self._active_seen = max(self._active_seen, now)
                # Only a standby acts on heartbeat loss (gateway.ha ignores it otherwise).
                if now - self._active_seen > loss and not _waiting(dealer, router) \
                        and self.applier.wait_idle(self.hb_interval / 4):
                    # Promote only with every stored record folded; if that
                    # took a while, read the peer again before deciding. The
                    # wait is bounded: a store waiting on a stalled disk must
                    # not stop this thread's heartbeats (the next turn asks
                    # again).
                    later = self.clock()
                    if later - now <= self.hb_interval / 2 and not _waiting(dealer, router):
                        self._active_seen = later    # one trigger per detection period
                        sp = self._standby_peer
                        self._trigger("heartbeat_lost", later,
                                      sp[1:] if sp is not None and later - sp[0] <= loss else None)
                wake_at = min(wake_at, self._active_seen + loss + 0.001)
            elif self.role == "active" and self.sender.peers and not _waiting(router):
                gone = self.sender.expire(now - loss)
                for p in gone:
                    log.warning("replication: standby %s silent for %.0f ms; replicating to nobody",
                                p.node, loss * 1000)
                if gone:
                    self._update_acked()
            if self._handover_deadline is not None and now > self._handover_deadline:
                self._handover_deadline = None
                if self.role == "active":
                    log.warning("replication: the standby did not take over within %.1f s",
                                self.handover_timeout)
                    self._trigger("handover_aborted", now, self._handover_sent)
            timeout_ms = max(1, int((wake_at - self.clock()) * 1000) + 1)
            asleep = self.clock()
            events = dict(poller.poll(timeout_ms))
            woke = self.clock()
            # Back from the poll much later than asked: this thread could not
            # run (another held the GIL, a collection, SIGSTOP). What it reads
            # now may be old (a HANDOVER, above).
            self._stood_still = stalled or (woke - asleep
                                            > timeout_ms / 1000 + 0.5 * self.hb_interval + 0.05)
            if wake_rx in events:
                while _readable(wake_rx):
                    wake_rx.recv()
            if link is not None and link in events:
                self._link_events(link)
            self._commands(dealer)
            t_cmds = self.clock()
            if router in events:
                self._drain_router(router)
            t_router = self.clock()
            if dealer in events:
                self._drain_dealer(dealer)
            t_dealer = self.clock()
            if self.role == "active":
                self._stream(router)
            self._turns.note(now, asleep, timeout_ms / 1000, woke, t_cmds, t_router, t_dealer,
                             self.clock(), self.role == "active")

    def _link_events(self, link) -> None:
        """The DEALER's connection to the peer came up or went down."""
        while _readable(link):
            try:
                event = recv_monitor_message(link)["event"]
            except (zmq.ZMQError, ValueError, KeyError, IndexError):
                continue
            now = self.clock()
            if event != zmq.EVENT_DISCONNECTED:
                self._links += 1
                continue
            p = self._peer_info
            if self.role == "standby" and p.get("role") == "active" \
                    and now - self._active_seen <= self.hb_interval * self.hb_threshold:
                # The active's process exited. Its supervisor removes its
                # addresses within milliseconds of that (actors/fence.py);
                # the grace below covers it, then this node takes over
                # without waiting for the detection time.
                if self._exited_at is None:
                    self._exited_at, self._exited_link = now, self._links
                    log.warning("replication: the active %s closed its HA connection (its process "
                                "exited); taking over in %.0f ms unless it is back as active",
                                p.get("node", "peer"), self.exit_grace * 1000)
            elif self.role == "active" and self.sender.peers:
                # The standby's process exited: sync-mode completions stop
                # waiting for its acknowledgements now, not after the
                # detection time (a standby that is back says HELLO again).
                gone = [peer.node for peer in self.sender.peers.values()]
                self.sender.peers.clear()
                self._update_acked()
                log.warning("replication: standby %s closed its HA connection (its process exited); "
                            "replicating to nobody", ", ".join(gone))

    def _check_exited(self, now: float, dealer, router) -> float:
        """Standby, after the active's connection closed: take over once the
        grace has passed, unless an active was heard over a new connection
        (the connection dropped and came back: the active lives). Returns
        when to look again."""
        if self._active_seen > self._exited_at and self._links > self._exited_link:
            log.info("replication: the active is back; not taking over")
            self._exited_at = None
            return now + self.hb_interval
        due = self._exited_at + self.exit_grace
        if now < due:
            return due
        if _waiting(dealer, router):
            return now                  # read what the peer sent first
        if not self.applier.wait_idle(self.hb_interval / 4):
            # Promote with every stored record folded; the store may wait on
            # a busy disk: keep the heartbeats going and look again soon.
            return self.clock() + 0.01
        self._exited_at = None
        later = self.clock()
        self._active_seen = later
        self._trigger("active_exited", later)
        return later + self.hb_interval

    def _commands(self, dealer) -> None:
        while True:
            try:
                c = self._cmds.get_nowait()
            except queue.Empty:
                return
            if c[0] == "role":
                if c[1] != self.role:
                    self._helloed = False
                    self._handover_deadline = None
                    self._handover_sent = False
                    self._active_seen = self.clock()
                    self._exited_at = None
                    if c[1] == "active":
                        self.sender.peers.clear()
                        self._update_acked()
                self._heartbeat(dealer, self.clock())
            elif c[0] == "ack":
                if self.role == "standby":
                    self._send_dealer(dealer, Ack(c[1], self.epoch))
            elif c[0] == "handover":
                if self.role == "active":
                    self._handover_deadline = self.clock() + self.handover_timeout
                    self._handover_sent = False

    def _stream(self, router) -> None:
        self._stream_snapshots(router)
        try:
            batches = self.sender.batches(self.journal.written_head, self.epoch)
        except (ValueError, JournalCorrupt, FileNotFoundError) as exc:
            batches = self._lost_backlog(router, exc)
        for ident, msg in batches:
            router.send_multipart([ident, *encode(msg)])
        if self._handover_deadline is None or self._handover_sent:
            return
        if not self.sender.peers:
            log.warning("replication: failover requested but no standby is connected")
            self._handover_deadline = None
            self._trigger("handover_aborted", self.clock(), False)
        elif (self.sender.min_acked() or 0) >= self.journal.head:
            for ident in list(self.sender.peers):
                router.send_multipart([ident, *encode(Handover(self.epoch, self.journal.head))])
            self._handover_sent = True
