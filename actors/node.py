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
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any, Callable

from actors.directory import Directory
from actors.journal_writer import JournalWriter
from actors.node_entities import EntityMirror
from actors.node_media import MediaReport, MediaReports
from actors.node_roles import RoleController
from actors.node_views import NodeViews
from actors.runtime import DispatcherPool, PooledActor
from actors.timers import TimerFired, TimerService
from gateway import domain, ha
from gateway.events import StepEvents, decode as decode_event
from gateway.config.model import Config
from gateway.drops import code_of, count, count_reason
from actors.algs import (ADAPTERS, MgcpAdapter, SipAdapter, adapter_for_stream, all_pinholes,
                         all_streams)
from gateway.sip import is_keepalive
from journal.fold import BatchFold
from journal.checkpoint import SnapshotTaker, open_at_snapshot

log = logging.getLogger("gateway.node")

@dataclass(frozen=True, slots=True)
class _Unchanged:
    """An ALG answer that forwards the message as it is and changes nothing."""

    verdict: str = "forward"
    data: bytes | None = None
    route_to: None = None
    pinholes_open: tuple = ()
    pinholes_close: tuple = ()


_KEEPALIVE = _Unchanged()
JOURNAL_FAILED_DROP = "journal: the message's events could not be written"


@dataclass(frozen=True, slots=True)
class SipWork:
    """A SIP message for a dialog actor: what the datapath decided, and how to
    release the held packet once the step's events are durable."""

    outcome: Any                   # gateway.datapath Alg outcome
    ctx: Any                       # the ALG's context (SipContext, MgcpContext)
    data: bytes
    now: float
    done: Callable[[Any], None]


class DialogActor(PooledActor):
    """The messages of one SIP dialog (Call-ID), one at a time, in order."""

    def __init__(self, node: "Node", call_id: str) -> None:
        super().__init__()
        self.node = node
        self.call_id = call_id

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SipWork):
            self.node._alg_message(message)
        return None


class EntityActor(PooledActor):
    """A call, registration, protect-deny entry or pinhole: owns its timer and
    its summary; media reports for a pinhole come here."""

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
        elif message == "summary":
            return self.node.entity_summary(self.stream)
        return None


def _kept_by_roles(name: str, doc: str) -> property:
    """A node attribute its role controller keeps (actors/node_roles.py),
    read and set on the node as before."""
    return property(attrgetter(f"roles.{name}"), lambda node, value: setattr(node.roles, name, value),
                    doc=doc)


class Node(EntityMirror, NodeViews, MediaReports):
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
        self._mirror_all()

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

    # ------------------------------------------------------------ replication
    def on_records(self, records: list) -> None:
        """Standby: records received from the active, already in our journal.

        The batch is folded in runs (journal/fold.py: one SIP draft open
        over a run of SIP events, frozen once) and the entities follow its
        net effect (:meth:`_mirror_batch`): the state, entities and
        timers are those of folding and mirroring event by event. An
        event the batch fold cannot take leaves no trace of the batch:
        the batch is folded again event by event, which stops at that
        event with the state before it, exactly as the per-event fold
        always did (the replicator logs the failure)."""
        decode = decode_event       # Record.events() without its call per record
        events = []
        for r in records:
            ev = decode(r.type, r.schema, r.payload, r.stream)
            if type(ev) is StepEvents:      # one record per step (gateway/events.py)
                events += ev.events
            else:
                events.append(ev)
        with self.state_lock:
            fold = BatchFold(self.state)
            try:
                for e in events:
                    fold.add(e)
                state = fold.freeze()
            except Exception:  # noqa: BLE001 - reported by the event-by-event fold below
                for e in events:
                    self._fold(e)
            else:
                self.state = state
                self.counters["events"] += len(events)  # folded from the active
            self.applied = records[-1].seq if records else self.applied
        self._mirror_batch(events)
        self._datapath_follow(events)
        if self.live_config is not None:
            self.live_config.follow(events)   # a journaled configuration change

    def _folded_state(self):
        """``(state, applied)`` while the state is the fold of this node's
        journal up to ``applied`` (a standby, which writes only what it
        folds, that has not stepped since its state was recovered or
        rebuilt from the journal), else None: the
        snapshot thread then writes this state instead of folding the
        journal a second time (journal/checkpoint.py, SnapshotTaker)."""
        with self.state_lock:
            if self._state_is_fold and self.role.role == "standby":
                return self.state, self.applied
        return None

    def _datapath_follow(self, events) -> None:
        """Media sessions go with the voice channel or call that owned them."""
        if self.datapath is None:
            return
        ended, released = [], []
        for a in ADAPTERS.values():
            e, r = a.released(events)
            ended += e
            released += r
        if ended or released:
            with self.dp_lock:
                for key in ended:
                    self.datapath.release_call(key)
                if released:
                    self.datapath.release_groups(released)

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

    # ------------------------------------------------ the packet loop's turns
    # NfqueueWorker(turns=node): the worker's thread drives the node's actor
    # pool (actors/runtime.py, DispatcherPool.drive). A held message's dialog
    # turn runs after the drain that held it, on that thread, and the steps of
    # a drain reach the journal writer together: one unit of work per drain,
    # no hand-off between the packet and its ALG step. One thread runs every
    # step, so the journal's order is the order the state changed in. In
    # sync replication the same thread completes the batches the standby
    # acknowledged (JournalWriter.drive_completions), so the packets are
    # released and their verdicts given where they were held.
    def drive(self, wake: Callable[[], None]) -> None:
        self.pool.drive(wake)
        self.writer.drive_completions(wake)

    def has_turns(self) -> bool:
        return self.pool.has_ready()

    def run_turns(self) -> None:
        if self.pool.has_ready():
            self.writer.gather()
            try:
                self.pool.run_ready()
            finally:
                self.writer.hand_over()
        if self.writer.has_pending():
            self.writer.complete_ready()

    def undrive(self) -> None:
        self.writer.undrive_completions()
        self.pool.release()

    # ------------------------------------------------------------------ ALGs
    def handle_alg(self, outcome, done: Callable[[Any], None], ctx: Any = None,
                   data: bytes | None = None, now: float | None = None) -> None:
        """Called by an ingest worker for a signalling message it holds: the
        dialog's actor (SIP: per Call-ID; MGCP: per endpoint or transaction)
        processes it; ``done(final_outcome)`` releases the packet. ``ctx`` and
        ``data`` default to what the datapath's outcome carries."""
        retained = getattr(getattr(outcome, "segment", None), "retained", None)
        if retained is not None:
            # A SIP message longer than a segment (tcp_stream.Retained): its
            # segments wait, without a verdict, for the one that completes it,
            # and are released with it, each with its share of the rewrite.
            if outcome.segment.part:
                retained.wait(outcome.segment, done)
                return
            done = _releasing(retained, outcome.segment, done)
        alg = getattr(outcome, "alg", "sip")
        adapter = ADAPTERS.get(alg)
        if adapter is None:
            self._other_alg(outcome, done)
            return
        if ctx is None:
            ctx = adapter.context(outcome, getattr(self.datapath, "engine", None))
        if data is None:
            data = bytes(outcome.payload)
        if not self.forwarding:
            done(self._drop(outcome, "standby: not forwarding"))
            return
        key = (alg, getattr(outcome, "key", "") or "")
        ref = self.directory.get_or_start(key, lambda: _start_on(self.pool, DialogActor, self, key[1]))
        ref.tell(SipWork(outcome, ctx, data, self.clock() if now is None else now, done))

    def _other_alg(self, outcome, done) -> None:
        """Signalling of an ALG this node does not run: policy and header NAT
        only, counted and logged once, never silently."""
        name = f"{outcome.alg}_not_inspected"
        if not self.counters.get(name):
            log.warning("node %s: %s signalling passes by policy only: its ALG is not enabled",
                        self.node_id, outcome.alg)
        self.counters[name] = self.counters.get(name, 0) + 1
        with self.dp_lock:
            final = self.datapath.finish_alg(outcome, "forward", outcome.payload, None, (), (),
                                             self.clock()) if self.datapath is not None else outcome
        done(final)

    def _settings(self, adapter=SipAdapter):
        return adapter.settings(self.config)

    def _get(self, adapter):
        return getattr(self.state, adapter.name)

    @staticmethod
    def _get_from(st, adapter):
        return getattr(st, adapter.name)

    def _put(self, adapter, st) -> None:
        self.state = replace(self.state, **{adapter.name: st})
        self._state_is_fold = False             # a step of this node: ahead of its journal

    def _alg_message(self, w: SipWork) -> None:
        adapter = ADAPTERS[getattr(w.outcome, "alg", "sip")]
        if adapter is SipAdapter and is_keepalive(w.data):
            # CRLF keep-alives (RFC 5626 §4.4.1) belong to the flow, not to a dialog.
            self._release(w, _KEEPALIVE, adapter)
            return
        with self.state_lock:
            r = adapter.step(self._get(adapter), w.ctx, w.data, w.now, self._settings(adapter))
            if r.verdict == "forward" or adapter is MgcpAdapter:
                # MGCP keeps soft state (flood counters) even for what it drops;
                # a drop emits no events, so the durable state is unchanged.
                self._put(adapter, r.state)
                for e in r.events:
                    if e.TYPE.startswith("tcp."):
                        # Sequence adjustments of a SIP connection: their own slot.
                        self.state = domain.apply(self.state, e)
        for line in r.logs:
            log.info("%s: %s", adapter.name, line)
        if r.verdict != "forward":
            self.counters[f"{adapter.name}_dropped"] = self.counters.get(f"{adapter.name}_dropped", 0) + 1
            w.done(self._drop(w.outcome, r.reason))
            return
        # A TCP segment is released behind the connection's earlier segments
        # even without events of its own (an acknowledgement queued behind
        # a message at the ALG): released at once it would overtake that
        # message while its events are still being written.
        self._commit(r, lambda recs: self._release(w, r, adapter) if recs is not None
                     else w.done(self._drop(w.outcome, self._unwritten_reason())),
                     ordered=getattr(w.outcome, "segment", None) is not None)

    def _unwritten_reason(self) -> str:
        # The writer refused the step: computed before a demotion (written
        # only in its own epoch: actors/journal_writer.py), or a failed journal.
        return JOURNAL_FAILED_DROP if self.role.role == "active" else "standby: not forwarding"

    def _journal_failed(self, exc: BaseException) -> None:
        """The journal refused a batch (a failed write or fsync marks it
        failed for good: journal.store). The messages of that batch were
        dropped, not forwarded: forwarding what the journal does not hold
        would give the standby, and a restart, a state the calls never had.
        An active node with a standby hands the calls over to it, once (the
        standby holds every acknowledged record); without one it stays, and
        every signalling message it cannot journal is dropped with this
        reason, while established media keeps flowing."""
        self.counters["journal_failures"] = self.counters.get("journal_failures", 0) + 1
        if (self.replicator is None or self.role.role != "active"
                or self._journal_handover_asked):
            return
        self._journal_handover_asked = True
        log.error("node %s: journal failed (%s); handing over to the standby", self.node_id, exc)
        threading.Thread(target=self.on_trigger, args=("failover_requested",), daemon=True,
                         name="journal-failover").start()

    def _release(self, w: SipWork, r, adapter=SipAdapter) -> None:
        name = f"{adapter.name}_forwarded"
        self.counters[name] = self.counters.get(name, 0) + 1
        if self.datapath is None:
            w.done(w.outcome)
            return
        with self.dp_lock:
            final = self.datapath.finish_alg(w.outcome, r.verdict,
                                             w.data if r.data is None else r.data, r.route_to,
                                             adapter.for_datapath(r.pinholes_open),
                                             r.pinholes_close, w.now)
            # Released under the datapath's lock: once the datapath knows the
            # answer, the ingest worker (which takes this lock per packet)
            # sees the verdict queued before any later packet of the flow.
            w.done(final)

    def _commit(self, r, then: Callable[[list], None], ordered: bool = False) -> None:
        """Journal the step's events, mirror the entities, arm timers, then ``then``."""
        if r.events:
            self.counters["events"] += len(r.events)
            self._mirror(r.events)
            self._datapath_follow(r.events)
        self._arm(r.timers)
        if r.events or ordered:
            self.writer.submit(list(r.events), then)
        else:
            then([])

    def _arm(self, timers) -> None:
        if not self.role.role == "active":
            return
        for t in timers:
            if t.deadline is None:
                self.timers.cancel(t.key)
            else:
                ref = self.directory.get(("entity", t.key))
                if ref is None:
                    ref = self._entity(t.key)
                self.timers.schedule(t.key, t.deadline, ref)

    def _timer(self, stream: str) -> None:
        if self.role.role != "active":
            return
        adapter = adapter_for_stream(stream)
        with self.state_lock:
            r = adapter.on_timer(self._get(adapter), stream, self.clock(), self._settings(adapter))
            self._put(adapter, r.state)
        for line in r.logs:
            log.info("%s: %s", adapter.name, line)
        self._commit(r, lambda _recs: self._close_pinholes(r, adapter))

    def _media(self, m: MediaReport) -> None:
        if self.role.role != "active":
            return
        adapter = ADAPTERS[m.alg]
        with self.state_lock:
            r = adapter.media_activity(self._get(adapter), m.group, m.at, self._settings(adapter),
                                       pinhole=m.pinhole)
            self._put(adapter, r.state)
        self._commit(r, lambda _recs: self._close_pinholes(r, adapter))

    def _close_pinholes(self, r, adapter=SipAdapter) -> None:
        if self.datapath is not None and (r.pinholes_close or r.pinholes_open):
            with self.dp_lock:
                if r.pinholes_close:
                    self.datapath.remove_pinholes(r.pinholes_close)
                if r.pinholes_open:
                    self.datapath.install_pinholes(adapter.for_datapath(r.pinholes_open))

    def _drop(self, outcome, reason: str):
        alg = getattr(outcome, "alg", None)
        count(self.drop_codes, code_of("alg", reason, alg))
        count_reason(self.drop_reasons, reason)
        if self.datapath is not None and hasattr(self.datapath, "drop"):
            return self.datapath.drop(reason, alg=alg)
        from gateway.datapath import Drop
        return Drop(reason)

    def failover(self, timeout: float = 3.0) -> dict:
        """Graceful switch-over from the active (``gwctl failover``)."""
        return self.roles.failover(timeout)


def _start_on(pool: DispatcherPool, cls, *args):
    """Start a pooled actor class on this node's pool (each node has its own)."""
    sub = _POOLED.get((cls, id(pool)))
    if sub is None:
        sub = type(cls.__name__, (cls,), {"pool": pool})
        _POOLED[(cls, id(pool))] = sub
    return sub.start(*args)


_POOLED: dict = {}


def _releasing(retained, work, done: Callable[[Any], None]) -> Callable[[Any], None]:
    """``done`` for a segment that completed retained ones: gives every
    verdict of the set, in sequence order (a drop drops them all)."""
    def release(final) -> None:
        for give, verdict in retained.release(final, work, done):
            give(verdict)
    return release
