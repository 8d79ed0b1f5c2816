"""The ALG host: a held message's dialog turn, the ALG's pure step under the
node's state lock, its events to the journal writer, the packet released once
they are durable (and, in sync mode, acknowledged by the standby); timers and
media reports stepped the same way; the packet loop driving these turns.

``AlgHost`` is a part of :class:`actors.node.Node` (a base class): the ALG
states are the node's (``state`` under ``state_lock``), and each ALG is
reached through its adapter (``gateway/algs.py``: SIP, MGCP, H.323), so no
ALG is named here beyond SIP's keep-alives (RFC 5626 section 4.4.1) and MGCP's soft state."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from actors.algs import ADAPTERS, MgcpAdapter, SipAdapter, adapter_for_stream
from actors.node_media import MediaReport
from actors.runtime import DispatcherPool, PooledActor
from gateway import domain
from gateway.drops import code_of, count, count_reason
from gateway.sip import is_keepalive

if TYPE_CHECKING:
    from actors.node import Node

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


class AlgHost:
    # ------------------------------------------------ the packet loop's turns
    # NfqueueWorker(turns=node): the worker's thread drives the node's actor
    # pool (actors/runtime_pool.py, DispatcherPool.drive). A held message's dialog
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

    def _media(self, *reports: MediaReport) -> None:
        """One entity's media reports of a drain (one ALG), as ONE step: each
        report's ``media_activity`` on the state the one before left, their
        events journaled together (one record), the datapath's pinholes
        changed after, report by report."""
        if self.role.role != "active":
            return
        adapter = ADAPTERS[reports[0].alg]
        settings = self._settings(adapter)
        done = []
        with self.state_lock:
            for m in reports:
                r = adapter.media_activity(self._get(adapter), m.group, m.at, settings, pinhole=m.pinhole)
                self._put(adapter, r.state)
                done.append(r)
        if len(done) > 1:
            r = replace(r, events=tuple(e for x in done for e in x.events),
                        timers=tuple(t for x in done for t in x.timers))
        self._commit(r, lambda _recs: [self._close_pinholes(x, adapter) for x in done])

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
