"""The HA transport's messages with the peer: the DEALER connected to the
peer's ROUTER, heartbeats (an active's renew its lease) and HELLO, and what
this node's ROUTER hears: heartbeats answered, a standby's HELLO judged
against this journal (``journal/replication.py``), acknowledgements and the
end of a handover."""

from __future__ import annotations

import logging
import time

import zmq

from actors.replication_limits import MAX_MESSAGE_BYTES
from actors.replication_sockets import _readable
from journal.replication import (
    Ack, Heartbeat, Hello, ProtocolViolation, Refused, SnapAck, Taken, decode, encode, frame_mark,
    hello_verdict,
)

log = logging.getLogger("gateway.replication")


class PeerMessages:
    """Heartbeats, HELLO and the ROUTER's messages; a part of :class:`actors.replication.Replicator` (a base class),
    run on its transport thread."""

    def _new_dealer(self):
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IDENTITY, self.node_id.encode())
        # Never queue heartbeats for a dead peer: drop instead of piling up.
        dealer.setsockopt(zmq.SNDHWM, 1000)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        dealer.setsockopt(zmq.RECONNECT_IVL, max(10, int(self.hb_interval * 250)))
        self._secure(dealer, server=False)
        dealer.connect(self.peer)
        return dealer

    def _send_dealer(self, dealer, msg) -> bool:
        try:
            dealer.send_multipart(encode(msg), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False               # no connection to the peer right now

    def _heartbeat(self, dealer, now: float) -> None:
        """Send a heartbeat; as active, it renews the lease from ``now``
        (taken before the send: the peer cannot have received it earlier)."""
        self._send_dealer(dealer, self._hb(now))
        if self.role == "active":
            self._renewed_at, self._late_logged = now, False
            self._trigger("lease_renewed", now)

    def _hb(self, now: float) -> Heartbeat:
        head = self.journal.head
        return Heartbeat(self.node_id, self.role, self.epoch, head, self.priority, head, time.time())

    def _hello(self) -> Hello:
        head = self.journal.head
        epoch, crc = frame_mark(self.journal.read_frames(head, 1)[0]) if head else (0, 0)
        return Hello(self.node_id, head, epoch, crc, self.epoch)

    def _mark_at(self, seq: int) -> tuple[int, int]:
        return frame_mark(self.journal.read_frames(seq, 1)[0])

    def _seen_peer(self, hb: Heartbeat) -> None:
        now = self.clock()
        self._peer_last = now
        if hb.role == "active":
            self._active_seen = now
        elif hb.role == "standby":
            self._standby_peer = (now, hb.prio, hb.node)
        self._peer_info.update(role=hb.role, epoch=hb.epoch, head=hb.head, applied=hb.applied,
                               node=hb.node)
        self._trigger("peer_epoch", hb.role, hb.epoch, hb.prio, hb.node)

    def _drain_router(self, router) -> None:
        while _readable(router):
            ident, *frames = router.recv_multipart()
            try:
                msg = decode(frames)
            except ProtocolViolation as exc:
                log.warning("replication: dropped a message from %r: %s", ident, exc.reason)
                continue
            now = self.clock()
            self.sender.seen(ident, now)
            if isinstance(msg, Heartbeat):
                self._seen_peer(msg)
                router.send_multipart([ident, *encode(self._hb(now))])
                if self.role == "active" and msg.role == "standby" and ident not in self.sender.peers \
                        and ident not in self._snap_sends:
                    # A standby that lost its session (we restarted): ask it to re-HELLO.
                    # Not one being sent our snapshot: it is out of the sender's
                    # peers until it HELLOs from the snapshot's record, and a
                    # HELLO now would start the transfer over.
                    router.send_multipart([ident, *encode(Refused("hello again"))])
            elif isinstance(msg, Hello):
                self._hello_from(router, ident, msg, now)
            elif isinstance(msg, Ack):
                if self.sender.ack(ident, msg.seq, now) is not None:
                    self._update_acked()
            elif isinstance(msg, Taken):
                self._handover_deadline = None
                self._trigger("handover_done", msg.epoch)
            elif isinstance(msg, SnapAck):
                self._snapshot_acked(ident, msg, now)

    def _hello_from(self, router, ident: bytes, msg: Hello, now: float) -> None:
        if self.role != "active":
            router.send_multipart([ident, *encode(Refused("not active"))])
            return
        if msg.epoch > self.epoch:
            # The peer is in a newer term than ours; its heartbeat will demote us.
            router.send_multipart([ident, *encode(Refused("not active"))])
            return
        head = self.journal.head
        first = self.journal.first_seq
        if first > 1 and msg.last_seq < first:
            self._send_snapshot(router, ident, msg, now)
            return
        try:
            cut = hello_verdict(msg.last_seq, msg.last_epoch, msg.last_crc, head, self._mark_at)
        except (ValueError, IndexError) as exc:
            if self.journal.first_seq > 1:
                # The records that would tell where the two journals part
                # were removed by retention: the snapshot replaces the standby's.
                self._send_snapshot(router, ident, msg, now)
                return
            log.warning("replication: cannot check %s's journal against ours: %s", msg.node, exc)
            return
        if cut is not None:
            self.refused_hellos += 1
            log.warning("replication: standby %s diverged (its seq %d is not ours); it must cut after %d",
                        msg.node, msg.last_seq, cut)
            router.send_multipart([ident, *encode(Refused("diverged", cut))])
            return
        self.sender.hello(ident, msg.node, msg.last_seq, head, now)
        self._update_acked()
        log.info("replication: standby %s joined at seq %d (head %d)", msg.node, msg.last_seq, head)
