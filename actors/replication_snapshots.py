"""Rejoin after retention (``journal/replication.py``, "Rejoin after
retention"): a standby that missed records the active's retention deleted gets
the active's newest snapshot, then says HELLO at the snapshot's record and is
streamed the journal after it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from actors.replication_limits import SNAPSHOT_STALL
from journal.replay import snapshot_dir
from journal.replication import (
    Hello, Refused, SnapAck, SnapChunk, SnapshotReceive, SnapshotSend, encode,
)
from journal.segment import JournalCorrupt, fsync_dir
from journal.snapshot import list_snapshots

log = logging.getLogger("gateway.replication")


class SnapshotRejoin:
    """Snapshot transfers, both sides; a part of :class:`actors.replication.Replicator` (a base class),
    run on its transport thread."""

    # ------------------------------------------ rejoin after retention
    # A standby that missed records the active's retention has deleted gets
    # the active's newest snapshot (journal/replication.py, "Rejoin after
    # retention"), then says HELLO at the snapshot's record and is streamed
    # the journal after it. Nothing here touches heartbeats or the lease.

    def _send_snapshot(self, router, ident: bytes, msg: Hello, now: float) -> None:
        """Active: start sending our newest snapshot whose record we still hold."""
        self.sender.forget(ident)
        self._update_acked()
        first = self.journal.first_seq
        for seq, path in reversed(list_snapshots(snapshot_dir(self.journal))):
            if seq < first:
                continue
            try:
                data = path.read_bytes()
                frame = self.journal.read_frames(seq, 1)[0]
            except (OSError, ValueError, IndexError, JournalCorrupt) as exc:
                log.warning("replication: cannot send snapshot %s: %s", path, exc)
                continue
            self._snap_sends[ident] = SnapshotSend(seq, data, frame, last_seen=now)
            log.warning("replication: standby %s is at record %d, before our oldest kept record %d: "
                        "sending it our snapshot of record %d (%d bytes)", msg.node, msg.last_seq,
                        first, seq, len(data))
            return
        log.error("replication: standby %s is at record %d, before our oldest kept record %d, and no "
                  "snapshot can be sent: it cannot rejoin", msg.node, msg.last_seq, first)
        router.send_multipart([ident, *encode(Refused("no snapshot to send"))])

    def _stream_snapshots(self, router) -> None:
        now = self.clock()
        for ident, send in list(self._snap_sends.items()):
            if now - send.last_seen > SNAPSHOT_STALL:
                log.warning("replication: snapshot transfer to %r stalled; dropped", ident)
                del self._snap_sends[ident]
                continue
            for chunk in send.chunks():
                router.send_multipart([ident, *encode(chunk)])

    def _snapshot_acked(self, ident: bytes, msg: SnapAck, now: float) -> None:
        send = self._snap_sends.get(ident)
        if send is not None and send.ack(msg, now):
            del self._snap_sends[ident]
            self.snapshots_sent += 1
            log.info("replication: snapshot of record %d delivered to %r", send.seq, ident)

    def _lost_backlog(self, router, exc: BaseException) -> list:
        """Active: a standby's backlog was removed by retention while it
        streamed: it starts over (HELLO, then the snapshot)."""
        first = self.journal.first_seq
        for p in [p for p in self.sender.peers.values() if p.sent + 1 < first]:
            log.warning("replication: standby %s needs record %d, removed by retention (%s); "
                        "asking it to rejoin", p.node, p.sent + 1, exc)
            self.sender.forget(p.identity)
            router.send_multipart([p.identity, *encode(Refused("hello again"))])
        self._update_acked()
        try:
            return self.sender.batches(self.journal.written_head, self.epoch)
        except (ValueError, JournalCorrupt, FileNotFoundError):
            return []

    def _snapshot_chunk(self, dealer, msg: SnapChunk) -> None:
        """Standby: store a chunk; the last one installs the snapshot."""
        if self.role != "standby" or self._cutting.is_set():
            return
        if msg.offset == 0:
            self._snapshot_abort()
            directory = snapshot_dir(self.journal)
            directory.mkdir(parents=True, exist_ok=True)
            self._snap_tmp = directory / f".{msg.seq:020d}.incoming.{os.getpid()}.tmp"
            self._snap_fd = os.open(self._snap_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._snap_recv = SnapshotReceive(msg.seq, msg.total, msg.frame)
        recv = self._snap_recv
        if recv is None or not recv.admit(msg):
            # A chunk out of order (a connection lost meanwhile): start over.
            self._snapshot_abort()
            self._helloed = self._send_dealer(dealer, self._hello())
            return
        try:
            view = memoryview(msg.data)
            while view:
                view = view[os.write(self._snap_fd, view):]
            if recv.complete:
                os.fsync(self._snap_fd)
        except OSError as exc:
            log.error("replication: cannot store the active's snapshot: %s", exc)
            self._snapshot_abort()
            return
        self._snap_chunk_at = self.clock()
        self._send_dealer(dealer, SnapAck(recv.seq, recv.received))
        if recv.complete:
            os.close(self._snap_fd)
            self._snap_fd = None
            path, frame = self._snap_tmp, recv.frame
            self._snap_recv = self._snap_tmp = None
            self._cutting.set()
            self.applier.submit(self._install_snapshot, path, frame, after_deferred=True)

    def _receiving_snapshot(self, now: float) -> bool:
        """Standby: a snapshot is arriving (a chunk within SNAPSHOT_STALL).
        No HELLO meanwhile: the active would start the transfer over, and the
        one under way would be installed and then sent again. A transfer
        that stopped is given up here, so the next HELLO asks anew."""
        if self._snap_recv is None:
            return False
        if now - self._snap_chunk_at <= SNAPSHOT_STALL:
            return True
        log.warning("replication: the active's snapshot stopped arriving; asking for it again")
        self._snapshot_abort()
        return False

    def _snapshot_abort(self) -> None:
        if self._snap_fd is not None:
            os.close(self._snap_fd)
            self._snap_fd = None
        if self._snap_tmp is not None:
            self._snap_tmp.unlink(missing_ok=True)
            self._snap_tmp = None
        self._snap_recv = None

    def _install_snapshot(self, path: Path, frame: bytes) -> None:
        """Applier: the node takes the snapshot; then HELLO from its record."""
        try:
            self.on_trigger("snapshot_received", path, frame)
            self.snapshots_received += 1
        except Exception:  # noqa: BLE001 - logged; the standby asks again with its old journal
            log.exception("replication: installing the active's snapshot failed")
        finally:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
            with self._store_lock:
                # The journal now starts at the snapshot's record.
                self._stored_head = self.journal.head
            self._cutting.clear()
            self._hello_asap = True
            self._wake()
