"""The node's HA role: the role machine's steps and the work of each change.

gateway/ha.py decides (``ha.step``: triggers in, a new role and actions
out); :class:`RoleController` does what it decided for one node
(ARCHITECTURE.md, "High availability"): tells the transport the role, takes
over (addresses, timers, pinholes), stands down, hands over to the standby
on a graceful failover, cuts a diverged journal back to what the active
holds, and installs the active's snapshot on a standby that fell too far
behind. The slow parts run on the role thread (actors/role_work.py), so the
HA transport goes back to its heartbeats, which renew the lease, while a
takeover is still under way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from actors.algs import next_deadline
from actors.role_work import RoleWork
from actors.thread_priority import ordinary_thread_priority
from gateway import domain, ha
from gateway.datapath.pinholes import sip_media_pinholes
from journal.checkpoint import decode_state, state_at
from journal.record import HEADER, decode_record
from journal.replay import JournalGap, snapshot_dir
from journal.snapshot import read_snapshot, remove_snapshots, write_snapshot

if TYPE_CHECKING:
    from actors.node import Node

log = logging.getLogger("gateway.node")


class RoleController:
    """One node's role (``role``: a gateway.ha.RoleState) and the work of its
    changes. ``ha_lock`` guards the role's steps; ``role_changed`` is
    notified on every change (``failover`` waits on it); ``role_work`` is the
    role thread.

    What it uses of its node, and why:

    - ``node_id``: log lines.
    - ``addresses`` (acquire, release, lease): the service addresses go with
      the active role; the fencing supervisor learns the lease covering them.
    - ``replicator`` (set_role, handover, epoch, role): the transport
      announces the role and epoch; a graceful failover hands over through it.
    - ``writer`` (flush): every submitted event is journaled (and, in sync
      mode, on the standby) before a handover.
    - ``journal`` (truncate_after, restart_at): a diverged journal is cut; a
      received snapshot starts it again.
    - ``snapshots`` (lock, reset): no snapshot is taken while the journal is
      cut or restarted; the snapshot thread follows the rebuilt state.
    - ``state``, ``state_lock``, ``applied``, ``counters``: a takeover reads
      the state; a cut or a received snapshot replaces it.
    - ``directory``, ``_entity``, ``_end_entity``, ``_mirror_all``,
      ``_streams``, ``_open_pinholes``: the entity actors and their timers
      follow a rebuilt state; a takeover arms every entity's timer.
    - ``timers`` (rebuild, specs, cancel): armed at a takeover, cancelled at
      a stand-down.
    - ``datapath``, ``dp_lock``: a takeover rebuilds the pinholes and drops
      the sessions of an earlier term.
    - ``live_config`` (follow): the configuration of a rebuilt state.
    - ``clock``: the time of ``last_failover``.
    - ``on_trigger``: the re-entrant steps (a handover without a replicator,
      the operator's failover) go through the node's entry point, as before.
    """

    def __init__(self, node: "Node", role: ha.RoleState) -> None:
        self.node = node
        self.ha_lock = threading.RLock()
        self.role = role
        self.role_changed = threading.Condition(self.ha_lock)
        self.last_failover: dict | None = None
        self.role_work = RoleWork(name="roles")
        # Called at the end of every takeover (gatewayd: the traffic-shaping
        # trees and marks, actors/shaping.py, installed again by the new
        # active).
        self.on_takeover: list[Callable[[], None]] = []
        # Run at a takeover after the datapath's pinholes are rebuilt and
        # before the addresses are acquired (announced).
        self.before_announce: list[Callable[[], None]] = []

    @property
    def forwarding(self) -> bool:
        # Per packet: forwarding, and (fenced nodes) within the lease, one
        # monotonic-time compare. An expired lease is acted on (demotion) by
        # the replication thread's lease check, not by the packet threads.
        return ha.may_forward(self.role, time.monotonic())

    # ------------------------------------------------------------------ HA
    def on_trigger(self, trigger: str, *args) -> None:
        """Step the role machine and return once the role change's work (a
        takeover, a stand-down) is done: for the node's own callers."""
        self._on_trigger(trigger, args, wait=True)

    def on_transport_trigger(self, trigger: str, *args) -> None:
        """The HA transport's entry: the role machine steps at once, the
        role change's work runs on the role thread (actors.role_work), so
        the transport goes back to its heartbeats, which renew the lease,
        while a takeover is still under way."""
        self._on_trigger(trigger, args, wait=False)

    def _on_trigger(self, trigger: str, args: tuple, *, wait: bool) -> None:
        node = self.node
        if trigger == "diverged":
            # Not under the HA lock: the rebuild may take seconds, and the
            # replication thread takes that lock for every heartbeat heard.
            self._diverged(*args)
            return
        if trigger == "snapshot_received":
            # Likewise: the active's snapshot replaces this standby's journal.
            self.install_snapshot(*args)
            return
        with self.ha_lock:
            before = self.role
            self.role, actions = ha.step(self.role, trigger, *args)
            if self.role.lease_until != before.lease_until and node.addresses is not None \
                    and hasattr(node.addresses, "lease"):
                # Before any address is added: the supervisor must know the
                # lease that covers them (actors/fence.py).
                node.addresses.lease(self.role.lease_until if self.role.lease is not None else None)
            queued = False
            for a in actions:
                work = self._act(a, before)
                if work is not None:
                    # Queued under the HA lock: the role thread runs the works
                    # in the order the role machine decided them.
                    self.role_work.run(work, a.kind, wait=False)
                    queued = True
            if node.replicator is not None \
                    and getattr(node.replicator, "epoch", None) != self.role.epoch \
                    and getattr(node.replicator, "role", None) == self.role.role:
                # An epoch the transport does not know, without a role change
                # (a standby adopting its active's epoch, gateway/ha.py
                # on_peer_epoch, or a restarted standby's epoch from its
                # journal): its heartbeats and HELLO carry the epoch, so it
                # is told; otherwise the peer shows this node's epoch as 0.
                node.replicator.set_role(self.role.role, self.role.epoch)
            if self.role != before:
                self.role_changed.notify_all()
        if wait and queued:
            self.role_work.drain()

    def _act(self, a: ha.Action, before: ha.RoleState) -> Callable[[], None] | None:
        """Do the quick part of an action (tell the transport the role) and
        return the rest, for the role thread, or None."""
        node = self.node
        log.info("node %s: %s (epoch %d): %s", node.node_id, a.kind, a.epoch, a.reason)
        if a.kind == "promote":
            if node.replicator is not None:
                node.replicator.set_role("active", self.role.epoch)
            return lambda: self._promoted(a)
        if a.kind == "demote":
            if node.replicator is not None:
                node.replicator.set_role("standby", self.role.epoch)
            return self._stand_down
        if a.kind == "start_forwarding" and before.role == "active":
            # A handover that found no standby: the addresses were given up
            # before it (_handover); take them back.
            if node.addresses is not None:
                return node.addresses.acquire
        elif a.kind == "handover":
            # Everything submitted reaches the journal (and, in sync mode, the
            # standby) before the standby is told to take over.
            threading.Thread(target=self._handover, daemon=True, name="handover").start()
        return None

    def _promoted(self, a: ha.Action) -> None:
        t0 = time.monotonic()
        # Read without the HA lock: a caller holding it may be waiting for
        # this thread (failover, on_trigger's drain). The role is one value.
        current = self.role
        if current.role != "active" or current.epoch != a.epoch:
            # Demoted again before the takeover began (its stand-down is
            # queued behind this): nothing to take over.
            log.info("node %s: takeover of epoch %d skipped: now %s in epoch %d",
                     self.node.node_id, a.epoch, current.role, current.epoch)
            return
        self._take_over()
        self.last_failover = {"at": self.node.clock(), "epoch": a.epoch, "reason": a.reason,
                              "takeover_ms": round((time.monotonic() - t0) * 1000, 1)}

    def _handover(self) -> None:
        node = self.node
        ordinary_thread_priority()       # started by the real-time transport thread
        node.writer.flush()
        # The addresses go before the standby is told to take over, so the
        # two nodes never hold them at once (the old active forwards nothing
        # from failover_requested on anyway).
        if node.addresses is not None:
            node.addresses.release()
        if node.replicator is not None:
            node.replicator.handover()
        else:
            node.on_trigger("handover_aborted")

    def _diverged(self, head: int) -> None:
        """Rejoining as standby, this node's journal has records the active
        never had (written after the last acknowledgement before a crash): cut
        them and rebuild the state from what remains."""
        with self._snapshots_paused():
            self._cut_and_rebuild(head)

    def _snapshots_paused(self):
        """No snapshot is taken while the journal is cut or started again (a
        snapshot being read from segments that go away would fail)."""
        snapshots = self.node.snapshots
        return snapshots.lock if snapshots is not None else contextlib.nullcontext()

    def _cut_and_rebuild(self, head: int) -> None:
        node = self.node
        cut = node.journal.truncate_after(head)
        log.warning("node %s: journal diverged from the active; dropped %d unreplicated records "
                    "after seq %d", node.node_id, cut, head)
        # Snapshots of records that are gone describe a history that never was.
        remove_snapshots(snapshot_dir(node.journal), after=node.journal.head)
        try:
            state, seq, epoch, ts, n = state_at(node.journal, domain.apply, domain.EMPTY)
        except JournalGap as exc:
            # The cut went below every snapshot and retention removed the
            # first records: no state can be rebuilt from what is left.
            log.error("node %s: after the cut no state can be rebuilt (%s); the node keeps its "
                      "previous state and must be restarted with an empty journal directory "
                      "(it then takes the active's snapshot)", node.node_id, exc)
            raise
        self._restate(state, seq, epoch, ts, n)

    def _restate(self, state, seq: int, epoch: int, ts, folded: int) -> None:
        """The state was rebuilt (a cut, a received snapshot): swap it in and
        let the entity actors and the snapshot thread follow."""
        node = self.node
        with node.state_lock:
            node.state = state
            node.applied = seq
            node._state_is_fold = True
            node.counters["events"] += folded
        # Entities of the cut records are gone: the actors follow the state again.
        for key in node.directory.keys("entity"):
            node._end_entity(key[1])
        node._mirror_all()
        if node.live_config is not None:
            node.live_config.follow(())        # the rebuilt state's configuration
        if node.snapshots is not None:
            node.snapshots.reset(state, seq, epoch, ts)

    def install_snapshot(self, path, frame: bytes) -> None:
        """Standby: the active's snapshot (received whole at ``path``, CRC
        checked) and the frame of its record replace this node's journal and
        state, so it can follow an active whose journal no longer holds what
        this node missed. The snapshot is made this node's own first (its
        record's position here: the start of a new segment), then the
        journal starts again at the record: a crash between the two leaves a
        snapshot that does not match the journal, skipped at restart."""
        node = self.node
        snap = read_snapshot(path)
        state = decode_state(snap.state)
        rec, _ = decode_record(frame)
        crc = HEADER.unpack_from(frame, 0)[2]
        if snap.journal is None or (rec.seq, rec.epoch, crc) != (snap.seq, snap.epoch, snap.journal["crc"]):
            raise ValueError(f"snapshot {path} does not go with the record it came with")
        directory = snapshot_dir(node.journal)
        mark = {"segment": snap.seq, "offset": 0, "crc": crc, "versions": snap.journal["versions"]}
        with self._snapshots_paused():
            write_snapshot(directory, snap.seq, snap.state, snap.epoch, timestamp=snap.timestamp,
                           journal=mark)
            node.journal.restart_at(frame, snap.journal["versions"])
            remove_snapshots(directory, keep=1)
            log.warning("node %s: took the active's snapshot of record %d (epoch %d)", node.node_id,
                        snap.seq, snap.epoch)
            self._restate(state, snap.seq, snap.epoch, snap.timestamp, 0)

    def _take_over(self) -> None:
        """Active from now on: own the addresses, arm timers, install pinholes."""
        node = self.node
        with node.state_lock:
            st = node.state
        if node.datapath is not None and self.before_announce:
            # The pinholes first, and what is made from them before any packet
            # (the kernel's media flows, actors/kernel_media.py): media goes
            # on at the kernel's rate from the first packet to the new active.
            self._rebuild_datapath(st)
            self._run_hooks(self.before_announce)
        if node.addresses is not None:
            node.addresses.acquire()
        specs = []
        for stream in node._streams(st):
            # Each ALG's state knows its own entities' deadlines.
            deadline = next_deadline(st, stream)
            if deadline is not None:
                specs.append((stream, deadline, node._entity(stream)))
        node.timers.rebuild(specs)
        if node.datapath is not None and not self.before_announce:
            self._rebuild_datapath(st)
        self._run_hooks(self.on_takeover)

    def _run_hooks(self, hooks: list[Callable[[], None]]) -> None:
        """A takeover's hooks, each on its own: one that fails is logged and
        the takeover goes on (the addresses, the timers, the other hooks)."""
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("node %s: takeover hook %r failed", self.node.node_id, hook)

    def _rebuild_datapath(self, st) -> None:
        node = self.node
        with node.dp_lock:
            # Sessions left from this node's earlier term as active are
            # stale (the calls moved on without it); flows start again
            # from policy and the pinholes below.
            for sess in list(node.datapath.sessions):
                node.datapath.remove_session(sess)
            node.datapath.rebuild(node._open_pinholes(st) + sip_media_pinholes(st.sip))
            restore = getattr(node.datapath, "restore_tcp", None)
            if restore is not None:
                # SIP connections whose rewrites changed lengths go on
                # with the same sequence adjustment (gateway.datapath.seqadj).
                restore(st.tcp)

    def _stand_down(self) -> None:
        node = self.node
        for key in list(node.timers.specs()):
            node.timers.cancel(key.key)
        if node.addresses is not None:
            node.addresses.release()

    # ---------------------------------------------------------- operator
    def failover(self, timeout: float = 3.0) -> dict:
        """Graceful switch-over from the active (``gwctl failover``)."""
        with self.ha_lock:
            if self.role.role != "active":
                raise RuntimeError(f"this node is {self.role.role}; run failover on the active node")
            epoch = self.role.epoch
        t0 = time.monotonic()
        # Not under the HA lock: on_trigger may wait for the role thread, and
        # the transport thread takes that lock for every heartbeat it sends.
        self.node.on_trigger("failover_requested")
        with self.ha_lock:
            deadline = t0 + timeout
            while self.role.role == "active":
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.role_changed.wait(left)
            ms = round((time.monotonic() - t0) * 1000, 1)
        if self.role.role == "active":
            return {"ok": False, "role": self.role.role, "epoch": self.role.epoch, "ms": ms,
                    "reason": "no standby took over; still active" if self.role.forwarding
                    else "handover not confirmed"}
        return {"ok": True, "role": self.role.role, "from_epoch": epoch, "epoch": self.role.epoch, "ms": ms}
