"""The node's Prometheus endpoint: what ``gwctl status`` shows, as metrics.

Nothing on the packet path counts for this module. A scrape calls
:class:`NodeCollector`, which reads the node's own views at that moment:
the control channel's ``status`` answer (the same dict ``gwctl status``
prints: role, epoch, replication, journal, snapshots, counters, the ingest
worker's drops by code and overload control) and, for the per-ALG
breakdowns that ``status`` only totals, the node's current state value
(immutable: taken under the state lock, read after it is released).

Two things cannot be read back at a scrape and are counted as they happen,
off the packet path: takeovers (a hook the node runs at the end of each,
``Node.on_takeover``) and garbage-collector pauses (a ``gc.callbacks``
hook, :class:`GcPauseHistogram`).

Metric names start with ``voipgw_``; ops/grafana/voip-gateway.json uses them."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, InfoMetricFamily)
from prometheus_client.exposition import start_http_server

from ops.node_gc import TimedCollections

log = logging.getLogger("gatewayd.metrics")

ROLES = ("active", "standby", "stopped")
REPLICATION_MODES = ("sync", "async")
# Pause buckets (seconds): a young collection takes well under a millisecond;
# the HA heartbeat loss time is 3 x 200 ms (manual ch. 3 NSRP defaults), so
# the buckets are finest below it.
GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 1.0, 2.5)


class GcPauseHistogram(TimedCollections):
    """Every collection's pause, per generation, into fixed buckets. It
    takes no lock: the callback runs with the interpreter lock held, a
    collection never starts inside another, and a lock here could be held
    by the very thread whose allocation started the collection (a scrape in
    progress), which would then wait for itself."""

    def __init__(self, buckets: tuple[float, ...] = GC_BUCKETS, clock=time.perf_counter) -> None:
        super().__init__(clock)
        self.buckets = tuple(buckets)
        # per generation: counts per bucket (+Inf last), sum of seconds
        self.counts = [[0] * (len(self.buckets) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]

    def record(self, took: float, info: dict) -> None:
        gen = info.get("generation", 2)
        gen = gen if 0 <= gen <= 2 else 2
        self.counts[gen][bisect.bisect_left(self.buckets, took)] += 1
        self.sums[gen] += took

    def family(self) -> HistogramMetricFamily:
        h = HistogramMetricFamily("voipgw_gc_pause_seconds",
                                  "Garbage collections: how long each held every thread of the node",
                                  labels=["generation"])
        for gen in range(3):
            counts = list(self.counts[gen])
            cumulative, running = [], 0
            for bound, n in zip(self.buckets + (float("inf"),), counts):
                running += n
                cumulative.append((_bound(bound), running))
            h.add_metric([str(gen)], cumulative, self.sums[gen])
        return h


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


class TakeoverCounter:
    """Takeovers by this node since it started (``Node.on_takeover`` hook)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def calls_by_alg_phase(st) -> dict[tuple[str, str], int]:
    """(alg, phase) -> number of calls in the node's state. MGCP calls have
    no signalling phase: "connected" once a connection exists, else "setup"."""
    out: dict[tuple[str, str], int] = {}
    for c in st.sip.calls.values():
        k = ("sip", c.phase)
        out[k] = out.get(k, 0) + 1
    for c in st.mgcp.calls.values():
        k = ("mgcp", "connected" if len(c.connections) else "setup")
        out[k] = out.get(k, 0) + 1
    for c in st.h323.calls.values():
        k = ("h323", c.phase)
        out[k] = out.get(k, 0) + 1
    return out


def pinholes_by_alg(st) -> dict[str, int]:
    from actors.algs import ADAPTERS
    return {name: len(adapter.pinholes(getattr(st, name))) for name, adapter in ADAPTERS.items()}


def endpoints_by_state(st, now: float) -> dict[str, int]:
    up = sum(1 for e in st.mgcp.endpoints.values() if e.in_service(now))
    return {"in_service": up, "out_of_service": len(st.mgcp.endpoints) - up}


class NodeCollector:
    """A ``prometheus_client`` custom collector over a running node.

    ``status()``: the control channel's status answer (gatewayd passes its
    handler's, which adds the ingest worker's view); ``state()``: the node's
    current state value. ``clock``: wall time, as the node's (snapshot ages,
    MGCP endpoints' service)."""

    def __init__(self, node, *, status: Callable[[], dict] | None = None,
                 state: Callable[[], Any] | None = None, takeovers: TakeoverCounter | None = None,
                 gc_pauses: GcPauseHistogram | None = None, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.status = status or node.status
        self.state = state or self._node_state
        self.takeovers = takeovers
        self.gc_pauses = gc_pauses
        self.clock = clock

    def _node_state(self):
        with self.node.state_lock:
            return self.node.state

    def describe(self) -> Iterable:
        # Without describe(), register() would run a full collect to learn the names.
        return []

    def collect(self) -> Iterable:
        s = self.status()
        st = self.state()
        now = self.clock()
        yield from self._role(s)
        yield from self._alg(s, st, now)
        yield from self._datapath(s)
        yield from self._replication(s)
        yield from self._journal(s, now)
        if self.takeovers is not None:
            c = CounterMetricFamily("voipgw_takeovers", "Times this node took the active role since it started")
            c.add_metric([], self.takeovers.count)
            yield c
        lf = s.get("last_failover")
        g = GaugeMetricFamily("voipgw_last_takeover_duration_seconds",
                              "How long this node's last takeover took (addresses, timers, pinholes)")
        if lf:
            g.add_metric([], lf["takeover_ms"] / 1000.0)
        yield g
        if self.gc_pauses is not None:
            yield self.gc_pauses.family()

    def _role(self, s: dict):
        i = InfoMetricFamily("voipgw_node", "The node's name")
        i.add_metric([], {"node": str(s["node"])})
        yield i
        g = GaugeMetricFamily("voipgw_role", "1 for the node's HA role now", labels=["role"])
        for r in ROLES:
            g.add_metric([r], 1.0 if s["role"] == r else 0.0)
        yield g
        yield _gauge("voipgw_epoch", "HA epoch (one more at every takeover of the pair)", s["epoch"])
        yield _gauge("voipgw_forwarding", "1 while this node forwards packets", 1 if s["forwarding"] else 0)
        left = s.get("lease_left_ms")
        g = GaugeMetricFamily("voipgw_lease_remaining_seconds",
                              "What is left of the active node's fencing lease")
        if left is not None:
            g.add_metric([], left / 1000.0)
        yield g

    def _alg(self, s: dict, st, now: float):
        g = GaugeMetricFamily("voipgw_calls", "Calls the ALGs hold, by ALG and phase",
                              labels=["alg", "phase"])
        for (alg, phase), n in sorted(calls_by_alg_phase(st).items()):
            g.add_metric([alg, phase], n)
        yield g
        g = GaugeMetricFamily("voipgw_registrations", "Registrations the ALGs hold", labels=["alg"])
        g.add_metric(["sip"], len(st.sip.registrations))
        g.add_metric(["h323"], len(st.h323.registrations))
        yield g
        g = GaugeMetricFamily("voipgw_mgcp_endpoints", "MGCP endpoints, by service state", labels=["state"])
        for k, n in endpoints_by_state(st, now).items():
            g.add_metric([k], n)
        yield g
        g = GaugeMetricFamily("voipgw_pinholes", "Open pinholes, by ALG", labels=["alg"])
        for alg, n in sorted(pinholes_by_alg(st).items()):
            g.add_metric([alg], n)
        yield g
        yield _gauge("voipgw_actors", "Live entity and dialog actors", s.get("actors", 0))
        c = CounterMetricFamily("voipgw_journaled_events", "ALG events folded into the node's state")
        c.add_metric([], (s.get("counters") or {}).get("events", 0))
        yield c

    def _datapath(self, s: dict):
        dp = s.get("datapath") or {}
        ingest = s.get("ingest") or {}
        sess = dp.get("sessions") or {}
        yield _gauge("voipgw_sessions", "Sessions in this node's datapath", sess.get("sessions", 0))
        yield _counter("voipgw_sessions_created", "Sessions created", sess.get("created", 0))
        yield _counter("voipgw_port_exhausted", "Source translations that found no free port",
                       sess.get("port_exhausted", 0))
        # Every dropped packet once, by code (gateway/drops.py): the
        # worker's count when it runs, else the datapath's, as gwctl status.
        codes = ingest.get("drop_codes")
        if codes is None:
            codes = dp.get("drop_codes") or {}
        c = CounterMetricFamily("voipgw_drops", "Packets dropped, by code (gateway/drops.py)",
                                labels=["code"])
        for code, n in sorted(codes.items()):
            c.add_metric([code], n)
        yield c
        c = CounterMetricFamily("voipgw_packets", "Packets through the NFQUEUE worker, by outcome",
                                labels=["outcome"])
        for k in ("packets", "accepted", "dropped", "held", "held_timeout", "errors", "shed"):
            if k in ingest:
                c.add_metric([k], ingest[k])
        yield c
        yield _gauge("voipgw_held_packets", "Packets held for an ALG's verdict now", ingest.get("held_now", 0))
        ov = ingest.get("overload") or {}
        yield _gauge("voipgw_overloaded", "1 while overload control sheds new dialogs",
                     1 if ov.get("overloaded") else 0)
        yield _gauge("voipgw_new_dialog_budget_per_second", "New dialogs/s admitted now",
                     ov.get("budget", 0.0))
        yield _gauge("voipgw_new_dialog_rate_per_second", "Configured new-dialog rate (set flow overload)",
                     ov.get("rate", 0.0))
        yield _counter("voipgw_new_dialogs_admitted", "New dialogs admitted by overload control",
                       ov.get("admitted", 0))
        yield _counter("voipgw_new_dialogs_shed", "New dialogs shed by overload control", ov.get("shed", 0))

    def _replication(self, s: dict):
        g = GaugeMetricFamily("voipgw_replication_mode", "1 for the journal's replication mode",
                              labels=["mode"])
        for m in sorted(set(REPLICATION_MODES) | {s["replication"]}):
            g.add_metric([m], 1.0 if s["replication"] == m else 0.0)
        yield g
        peer = s.get("peer")
        yield _gauge("voipgw_peer_configured", "1 when the node has an HA peer", 1 if peer else 0)
        lag = GaugeMetricFamily("voipgw_replication_lag_events",
                                "Journal records the standby has not applied (on the active)")
        heard = GaugeMetricFamily("voipgw_peer_last_heard_seconds", "Since the peer was last heard")
        pe = GaugeMetricFamily("voipgw_peer_epoch", "The peer's epoch as last heard")
        sc = GaugeMetricFamily("voipgw_standby_connected", "1 while a standby takes the journal")
        if peer:
            if peer.get("lag_events") is not None:
                lag.add_metric([], peer["lag_events"])
            if peer.get("seen_ago_ms") is not None:
                heard.add_metric([], peer["seen_ago_ms"] / 1000.0)
            if peer.get("epoch") is not None:
                pe.add_metric([], peer["epoch"])
            sc.add_metric([], 1 if peer.get("standby_connected") else 0)
        yield from (lag, heard, pe, sc)
        j = s.get("journal") or {}
        yield _counter("voipgw_replication_ack_lapses", "Sync-mode batches the standby did not "
                       "acknowledge in time", j.get("ack_lapses", 0))
        yield _gauge("voipgw_unreplicated_batches", "Journal batches not yet sent to a standby",
                     j.get("unreplicated_batches", 0))

    def _journal(self, s: dict, now: float):
        yield _gauge("voipgw_journal_head", "Last journal record", s.get("journal_head", 0))
        yield _gauge("voipgw_journal_applied", "Last record applied to the state", s.get("applied", 0))
        j = s.get("journal") or {}
        yield _counter("voipgw_journal_written_events", "Events written by this node's journal writer",
                       j.get("events", 0))
        yield _counter("voipgw_journal_written_records", "Records written by this node's journal writer "
                       "(a step's events on one entity are one record)", j.get("records", 0))
        snaps = s.get("snapshots")
        size = GaugeMetricFamily("voipgw_journal_disk_bytes", "Journal and snapshots on disk")
        first = GaugeMetricFamily("voipgw_journal_first_record", "Oldest record retention kept")
        age = GaugeMetricFamily("voipgw_snapshot_age_seconds", "Since the last snapshot was taken")
        sbytes = GaugeMetricFamily("voipgw_snapshot_bytes", "Size of the last snapshot")
        taken = CounterMetricFamily("voipgw_snapshots_taken", "Snapshots taken since start")
        failed = GaugeMetricFamily("voipgw_snapshots_failed", "1 once a snapshot failed (none until restart)")
        if snaps:
            size.add_metric([], snaps["disk_bytes"])
            first.add_metric([], snaps["journal_first"])
            last = snaps.get("last") or {}
            if last:
                age.add_metric([], max(0.0, now - last["at"]))
                sbytes.add_metric([], last["bytes"])
            taken.add_metric([], snaps["taken"])
            failed.add_metric([], 1 if snaps.get("failed") else 0)
        yield from (size, first, age, sbytes, taken, failed)


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], float(value))
    return g


def _counter(name: str, doc: str, value) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc)
    c.add_metric([], float(value))
    return c


class MetricsServer:
    """The HTTP endpoint (``/metrics``) on its own registry: this node's
    collector and the process's CPU, memory and file descriptors."""

    def __init__(self, collector: NodeCollector, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        self.host = host
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = self._server.server_port
        log.info("metrics: serving http://%s:%d/metrics", _url_host(self.host), self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
