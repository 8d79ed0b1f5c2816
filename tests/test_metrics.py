"""The metrics endpoint's collector (ops/metrics.py) over a node built as the
node tests build one: the values are the node's own views at scrape time."""

from __future__ import annotations

import gc
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actors.node import Node
from ops.metrics import GcPauseHistogram, MetricsServer, NodeCollector, TakeoverCounter
from tests.test_node import CFG, Clock, send
from tests.test_sip_alg import IN, OUT, PH2, invite, request_out, response, sdp


def samples(registry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def node(tmp_path):
    clock = Clock()
    n = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False)
    n.start()
    yield n, clock
    n.stop()


def registry_of(collector) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(collector)
    return r


def test_a_call_and_the_role_are_read_from_the_node(node):
    n, clock = node
    takeovers = TakeoverCounter()
    reg = registry_of(NodeCollector(n, takeovers=takeovers, clock=clock))
    before = samples(reg)
    assert before[("voipgw_role", (("role", "active"),))] == 1
    assert before[("voipgw_role", (("role", "standby"),))] == 0
    assert before[("voipgw_epoch", ())] == n.status()["epoch"] >= 1
    assert before[("voipgw_node_info", (("node", "gw-a"),))] == 1
    assert not any(k[0] == "voipgw_calls" for k in before)

    send(n, OUT, invite())
    mid = samples(reg)
    assert mid[("voipgw_calls", (("alg", "sip"), ("phase", "calling")))] == 1
    send(n, IN, response(200, "OK", body=sdp(PH2, 62002)))
    send(n, OUT, request_out("ACK", 1, "z9hG4bK2"))
    after = samples(reg)
    assert after[("voipgw_calls", (("alg", "sip"), ("phase", "confirmed")))] == 1
    assert ("voipgw_calls", (("alg", "sip"), ("phase", "calling"))) not in after
    assert after[("voipgw_pinholes", (("alg", "sip"),))] == len(n.show("pinholes")) > 0
    assert after[("voipgw_journal_head", ())] == n.journal.head > 0
    assert after[("voipgw_replication_mode", (("mode", "sync"),))] == 1
    assert after[("voipgw_peer_configured", ())] == 0      # a lone node
    assert after[("voipgw_takeovers_total", ())] == 0
    takeovers()
    assert samples(reg)[("voipgw_takeovers_total", ())] == 1


def test_drops_by_code_and_overload_come_from_the_status_answer(node):
    n, clock = node

    def status():
        s = n.status()
        s["ingest"] = {"packets": 10, "accepted": 6, "dropped": 4, "held": 2, "held_timeout": 0,
                       "errors": 0, "shed": 3, "held_now": 1,
                       "drop_codes": {"policy-deny": 1, "overload-shed": 3},
                       "overload": {"enabled": True, "rate": 400, "budget": 120.5, "overloaded": True,
                                    "active_sources": 2, "admitted": 50, "shed": 3, "budget_cuts": 1}}
        return s

    got = samples(registry_of(NodeCollector(n, status=status, clock=clock)))
    assert got[("voipgw_drops_total", (("code", "policy-deny"),))] == 1
    assert got[("voipgw_drops_total", (("code", "overload-shed"),))] == 3
    assert got[("voipgw_packets_total", (("outcome", "shed"),))] == 3
    assert got[("voipgw_overloaded", ())] == 1
    assert got[("voipgw_new_dialog_budget_per_second", ())] == 120.5
    assert got[("voipgw_new_dialogs_shed_total", ())] == 3
    assert got[("voipgw_held_packets", ())] == 1


def test_snapshot_age_and_journal_size(tmp_path):
    from gateway.nodefile import RetentionSettings
    clock = Clock()
    n = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False,
             retention=RetentionSettings(snapshot_every=1000))
    n.start()
    try:
        send(n, OUT, invite())
        reg = registry_of(NodeCollector(n, clock=clock))
        assert ("voipgw_snapshot_age_seconds", ()) not in samples(reg)    # none taken yet
        n.snapshots.take()
        clock.t += 42.0
        got = samples(reg)
        assert got[("voipgw_snapshot_age_seconds", ())] == pytest.approx(42.0)
        assert got[("voipgw_snapshots_taken_total", ())] == 1
        assert got[("voipgw_journal_disk_bytes", ())] == n.snapshots.status()["disk_bytes"] > 0
    finally:
        n.stop()


def test_gc_pauses_are_counted_by_generation():
    ticks = iter([0.0, 0.003, 1.0, 1.3])
    h = GcPauseHistogram(clock=lambda: next(ticks))
    h("start", {"generation": 0})
    h("stop", {"generation": 0})
    h("start", {"generation": 2})
    h("stop", {"generation": 2})
    fam = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in h.family().samples}
    assert fam[("voipgw_gc_pause_seconds_bucket", (("generation", "0"), ("le", "0.001")))] == 0
    assert fam[("voipgw_gc_pause_seconds_bucket", (("generation", "0"), ("le", "0.005")))] == 1
    assert fam[("voipgw_gc_pause_seconds_count", (("generation", "0"),))] == 1
    assert fam[("voipgw_gc_pause_seconds_bucket", (("generation", "2"), ("le", "0.2")))] == 0
    assert fam[("voipgw_gc_pause_seconds_bucket", (("generation", "2"), ("le", "0.4")))] == 1
    assert fam[("voipgw_gc_pause_seconds_sum", (("generation", "2"),))] == pytest.approx(0.3)


def test_the_histogram_hooks_the_real_collector():
    h = GcPauseHistogram().install()
    try:
        gc.collect()
        assert h.counts[2][-1] + sum(h.counts[2][:-1]) >= 1
    finally:
        gc.callbacks.remove(h)


def test_the_endpoint_serves_the_node_over_http(node):
    n, clock = node
    server = MetricsServer(NodeCollector(n, clock=clock), "127.0.0.1", 0)
    server.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10).read().decode()
    finally:
        server.stop()
    assert 'voipgw_role{role="active"} 1.0' in body
    assert "process_cpu_seconds_total" in body


def test_every_metric_the_dashboard_queries_is_served(tmp_path):
    from gateway.nodefile import RetentionSettings
    clock = Clock()
    n = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False,
             retention=RetentionSettings(snapshot_every=1000))
    n.start()
    try:
        send(n, OUT, invite())
        n.snapshots.take()
        _dashboard_names_served(n, clock)
    finally:
        n.stop()


def _dashboard_names_served(n, clock):
    import json
    import re
    from pathlib import Path

    def status():
        s = n.status()
        s["ingest"] = {"packets": 1, "accepted": 1, "dropped": 0, "held": 0, "held_timeout": 0,
                       "errors": 0, "shed": 0, "held_now": 0, "drop_codes": {"policy-deny": 1},
                       "overload": None}
        s["peer"] = {"role": "standby", "epoch": 1, "seen_ago_ms": 12.0, "head": 1, "applied": 1,
                     "lag_events": 0, "standby_connected": True}
        return s

    server = MetricsServer(NodeCollector(n, status=status, takeovers=TakeoverCounter(),
                                         gc_pauses=GcPauseHistogram(), clock=clock), "127.0.0.1", 0)
    served = {name for name, _ in samples(server.registry)}
    dash = json.loads((Path(__file__).resolve().parents[1] / "ops/grafana/voip-gateway.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash["annotations"]["list"]]
    exprs.append(dash["templating"]["list"][1]["definition"])
    wanted = {m for e in exprs for m in re.findall(r"\b((?:voipgw|process)_[a-z0-9_]+)", e)}
    assert len(wanted) > 30
    assert wanted - served == set()
