"""One gateway node: the ALG entity actors, the journal, HA, timers and control.

What runs where (ARCHITECTURE.md, "The node"):
- Packet-ingest workers (``actors/ingest.py``, or the pcap driver) run the pure
  datapath; signalling for an ALG comes here as ``handle_alg(outcome, done)``.
- Every SIP dialog (Call-ID) has an actor that takes its messages one at a time
  and in order; every call, registration, protect-deny entry and pinhole has an
  entity actor that owns its timer and answers ``show``. All are pooled pykka
  actors (``actors/runtime.py``), found through the O(1) ``Directory``.
- The SIP ALG's state is one immutable value folded from events (the same
  ``apply`` the journal replay and the standby use). A dialog actor runs the
  pure ``step`` against it under a short lock and swaps in the result: the
  actor gives per-call order, the lock makes the shared tables (Incoming DIP,
  media ports) consistent across calls.
- The step's events go to the journal writer (group commit, then the standby's
  acknowledgement in sync mode); only then is the held packet released. A
  dropped message changes no state.
- The standby folds the records it receives with the same ``apply`` and mirrors
  the entity actors, so ``show`` answers the same on both; on promotion it arms
  the timers and installs the pinholes from that state.
- The role machine's steps and the work of each role change (takeover,
  stand-down, handover, a diverged journal's cut, a received snapshot) are
  the role controller's, ``actors/node_roles.py``.

The node is made of parts, one job each, in modules of their own: the ALG
host (``actors/node_algs.py``: turns, steps, commit, release, timers, media
steps), the standby's fold (``actors/node_standby.py``), what follows the
events (``actors/node_entities.py``: entity actors, media sessions), media
reports (``actors/node_media.py``) and the operator's views
(``actors/node_views.py``) are its base classes and hold no state of their
own beyond what their docstrings name; the role controller is an object
(``node.roles``) because it owns the role, its lock and its thread. This
module makes the node: its state, journal, writer, pool, timers, replicator,
snapshots and lifecycle.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import replace
from operator import attrgetter
from typing import Any, Callable

from actors.algs import all_pinholes, all_streams
from actors.directory import Directory
from actors.journal_writer import JournalWriter
from actors.node_algs import AlgHost, _start_on
# Kept importable from here (callers and tests name them through the node).
from actors.node_algs import JOURNAL_FAILED_DROP, _releasing  # noqa: F401
from actors.node_entities import EntityMirror
from actors.node_media import MediaBatch, MediaReport, MediaReports
from actors.node_roles import RoleController
from actors.node_standby import StandbyFold
from actors.node_views import NodeViews
from actors.runtime import DispatcherPool, PooledActor
from actors.timers import TimerFired, TimerService
from gateway import domain, ha
from gateway.config.model import Config
from journal.checkpoint import SnapshotTaker, is_large_recovery, open_at_snapshot
from journal.gc_pause import collections_paused

log = logging.getLogger("gateway.node")


class EntityActor(PooledActor):
    """A call, registration, protect-deny entry or pinhole: owns its timer and
    its summary; a call's media reports of one drain come here together."""

    def __init__(self, node: "Node", stream: str) -> None:
        super().__init__()
        self.node = node
        self.stream = stream

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TimerFired):
            if self.node.timers.take(message.key, message.generation):
                self.node._timer(self.stream)
        elif isinstance(message, MediaReport):
            self.node._media(message)
        elif isinstance(message, MediaBatch):
            self.node._media(*message.reports)
        elif message == "summary":
            return self.node.entity_summary(self.stream)
        return None


def _kept_by_roles(name: str, doc: str) -> property:
    """A node attribute its role controller keeps (actors/node_roles.py),
    read and set on the node as before."""
    return property(attrgetter(f"roles.{name}"), lambda node, value: setattr(node.roles, name, value),
                    doc=doc)


class Node(AlgHost, StandbyFold, EntityMirror, MediaReports, NodeViews):
    """A node of the pair. ``start()``/``stop()``; ingest workers call
    :meth:`handle_alg`; the HA transport calls :meth:`on_trigger`."""

    role = _kept_by_roles("role", "gateway.ha.RoleState: this node's role, epoch and lease.")
    last_failover = _kept_by_roles("last_failover", "The last takeover: when, epoch, reason, takeover_ms.")
    on_takeover = _kept_by_roles(
        "on_takeover", "Called at the end of every takeover (gatewayd: the traffic-shaping trees "
        "and marks, actors/shaping.py, installed again by the new active).")
    before_announce = _kept_by_roles(
        "before_announce", "Run at a takeover after the datapath's pinholes are rebuilt and before "
        "the addresses are acquired (announced).")

    def __init__(self, node_id: str, config: Config, journal_dir: str, *,
                 datapath=None, replicator_factory: Callable[["Node"], Any] | None = None,
                 addresses=None, clock: Callable[[], float] = time.time,
                 threads: int = 2, fsync: bool = True, mode: str | None = None,
                 priority: int | None = None, timer_thread: bool = True,
                 media_refresh: float = 0.0, lease: float | None = None,
                 retention=None, segment_bytes: int | None = None) -> None:
        self.node_id = node_id
        self.config = config
        self.clock = clock
        self.datapath = datapath
        self.dp_lock = threading.RLock()
        self.addresses = addresses
        nsrp = getattr(config, "nsrp", None)
        self.mode = mode or getattr(nsrp, "rto_mirror", None) or "sync"
        prio = priority if priority is not None else getattr(nsrp, "priority", 100)
        # The newest usable snapshot and the records after it (journal/checkpoint.py).
        t0 = time.monotonic()
        recovered = open_at_snapshot(journal_dir, domain.apply, domain.EMPTY, fsync=fsync, freeze=True,
                                     **({"segment_bytes": segment_bytes} if segment_bytes else {}))
        self.journal = recovered.journal
        self.recovery = {"snapshot": recovered.snapshot.name if recovered.snapshot else None,
                         "folded": recovered.folded, "skipped": recovered.skipped,
                         "ms": round((time.monotonic() - t0) * 1000, 1)}
        self.pool = DispatcherPool(threads=threads, name=f"{node_id}-actors")
        self.directory = Directory()
        # Without a timer thread (pcap mode) the capture's clock drives both.
        self.timers = TimerService(wall=clock, monotonic=time.monotonic if timer_thread else clock)
        self._timer_thread = timer_thread
        self._started = False
        self.state_lock = threading.RLock()
        self.state = recovered.state
        self.applied = recovered.seq
        # The state is the fold of the journal up to `applied` (recovered,
        # rebuilt, or folded from the active's records), until a step of
        # this node changes it (see _folded_state).
        self._state_is_fold = True
        # lease: gateway.ha's fencing lease length L (None: not fenced, a lone node).
        self.roles = RoleController(self, ha.RoleState(node_id, priority=prio, epoch=self.journal.epoch,
                                                       lease=lease))
        self.ha_lock = self.roles.ha_lock
        self.role_changed = self.roles.role_changed
        self.counters = {"sip_forwarded": 0, "sip_dropped": 0, "events": 0}
        self.drop_reasons: dict[str, int] = {}       # reason text (capped) -> count
        self.drop_codes: dict[str, int] = {}         # gateway.drops code -> count
        # Media reports while a voice channel's traffic goes on (report_media).
        self.media_refresh = media_refresh
        self._media_reported: dict[str, float] = {}
        self._media_pending: dict[str, float] = {}
        self.replicator = replicator_factory(self) if replicator_factory else None
        self.writer = JournalWriter(self.journal, epoch=lambda: self.role.epoch,
                                    replicator=self.replicator, mode=self.mode, clock=clock,
                                    on_failed=self._journal_failed)
        self._journal_handover_asked = False
        self.role_work = self.roles.role_work
        # actors/live_config.py: the running configuration (gwctl config apply).
        self.live_config = None
        self.snapshots = None
        if retention is not None:
            from actors.snapshots import SnapshotService
            taker = SnapshotTaker(self.journal, domain.apply, recovered.state, recovered.seq,
                                  recovered.epoch, recovered.timestamp, self.journal.versions_table())
            self.snapshots = SnapshotService(taker, retention, clock=clock, floor=self._standby_floor,
                                             name=f"snapshots-{node_id}", folded=self._folded_state)
        self._recover(recovered.folded)

    # ------------------------------------------------------------ lifecycle
    def _recover(self, folded: int) -> None:
        """A restarted node resumes where it stopped: the state is the newest
        usable snapshot plus the records after it (opened in __init__)."""
        self.counters["events"] += folded
        if self.journal.head:
            log.info("node %s: recovered from %s and %d events of the journal (head %d, epoch %d, %.0f ms)",
                     self.node_id, self.recovery["snapshot"] or "no snapshot", folded,
                     self.journal.head, self.journal.epoch, self.recovery["ms"])
        with collections_paused():
            self._mirror_all()
            if is_large_recovery(self.recovery["snapshot"], folded):
                # The directory's entries (one per entity: hundreds of
                # thousands) join the recovered state, which open_at_snapshot
                # froze, out of the collector's sight: the first collection
                # would otherwise walk them all (~80 ms for 32k calls).
                gc.freeze()

    def _standby_floor(self) -> int | None:
        """The first record a connected standby still needs (retention keeps it while it is young)."""
        if self.replicator is None or not self.replicator.has_standby():
            return None
        try:
            acked = self.replicator.sender.min_acked()
        except RuntimeError:          # the replication thread changed its peers meanwhile
            return None
        return None if acked is None else acked + 1

    def start(self, *, role: str | None = None) -> None:
        """Start the writer and the HA transport. Without a replicator (a lone
        node, pcap mode) the node is active at once, or as ``role`` says."""
        self._started = True
        self.writer.start()
        if self.snapshots is not None:
            self.snapshots.start()
        if self.timer_thread_wanted():
            self.timers.start()
        if self.replicator is not None:
            self.replicator.start()
        elif role != "standby":
            self.on_trigger("heartbeat_lost", time.monotonic())   # a lone node takes the active role

    def timer_thread_wanted(self) -> bool:
        # pcap mode drives timers from the capture's clock with fire_due().
        return self._timer_thread

    def stop(self) -> None:
        was_active = self.role.role == "active"
        self.on_trigger("stop")
        if was_active and self.addresses is not None:
            # Given up before the HA connection closes (replicator.stop
            # below): the standby takes over as soon as it sees that close
            # (actors/replication.py), not after this process has exited and
            # its supervisor removed them. On the role thread, after any
            # takeover still under way.
            try:
                self.role_work.run(self.addresses.release, "stop", wait=True)
            except Exception as exc:       # the supervisor removes them at exit
                log.error("node %s: could not give up the addresses at stop: %s", self.node_id, exc)
        if self._started:
            if self.replicator is not None:
                self.replicator.stop()
            self.writer.stop()
            if self.snapshots is not None:
                self.snapshots.stop()
            if self._timer_thread:
                self.timers.stop()
        self.role_work.stop()
        self.pool.shutdown()
        self.journal.close()

    # ------------------------------------------------------------------ HA
    # The role and the work of its changes are the role controller's
    # (actors/node_roles.py); the node keeps its entries for the transport,
    # the control channel and its own callers.
    # Read per packet: the controller's property through a C attrgetter, so
    # the node adds no Python call of its own to the check.
    forwarding = property(attrgetter("roles.forwarding"), doc="Forwarding, and within the lease.")

    def on_trigger(self, trigger: str, *args) -> None:
        """Step the role machine and return once the role change's work (a
        takeover, a stand-down) is done: for the node's own callers."""
        self.roles.on_trigger(trigger, *args)

    def on_transport_trigger(self, trigger: str, *args) -> None:
        """The HA transport's entry: the role change's work runs on the role
        thread, while the transport goes back to its heartbeats."""
        self.roles.on_transport_trigger(trigger, *args)

    def install_snapshot(self, path, frame: bytes) -> None:
        """Standby: the active's snapshot and its record replace this node's
        journal and state."""
        self.roles.install_snapshot(path, frame)

    def quiesce(self, timeout: float = 10.0) -> bool:
        """Wait until no actor has work and every submitted event is complete
        (offline drivers: pcap mode steps time only when the node is still)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pool.wait_idle(max(0.0, deadline - time.monotonic())):
                return False
            self.writer.flush(max(0.1, deadline - time.monotonic()))
            if self.pool.idle():
                return True
        return False

    # --------------------------------------------------------------- folding
    @property
    def sip(self):
        return self.state.sip

    @sip.setter
    def sip(self, value) -> None:
        self.state = replace(self.state, sip=value)
        self._state_is_fold = False

    def _fold(self, e) -> None:
        self.state = domain.apply(self.state, e)
        self.counters["events"] += 1  # folded from the journal or the active

    @staticmethod
    def _streams(st) -> list[str]:
        """Timer keys of every live entity of every ALG (``st``: a DomainState)."""
        return all_streams(st)

    @staticmethod
    def _open_pinholes(st) -> list:
        """Every ALG's open pinholes, as the datapath's table takes them."""
        return all_pinholes(st)

    def _start_entity_actor(self, stream: str):
        return (EntityActor.start(self, stream) if EntityActor.pool is self.pool else
                _start_on(self.pool, EntityActor, self, stream))

    def failover(self, timeout: float = 3.0) -> dict:
        """Graceful switch-over from the active (``gwctl failover``)."""
        return self.roles.failover(timeout)


