"""End to end: the metrics endpoint of each gatewayd of the lab pair, scraped
while a SIPp call with RTP goes through the pair: the active node shows the
call (SIP, confirmed) and its role, the standby the same call mirrored from
the journal and its own role.

Each node serves 127.0.0.1:9478 in its own namespace (GATEWAYD_METRICS, the
environment form of gatewayd --metrics, which the lab's nodes inherit).
Needs root, ip netns, nft, SIPp; skipped with the reason otherwise."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.lab import gateway_starter as gs
from ops.lab import sipp
from ops.lab.plan import suggest_call

from test_e2e_calls import lab_of, EXAMPLES

pytestmark = pytest.mark.netns

LISTEN = "127.0.0.1:9478"


def scrape(netns_name: str) -> dict[tuple[str, tuple], float]:
    code = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
            f"'http://{LISTEN}/metrics', timeout=5).read().decode())")
    r = subprocess.run(["ip", "netns", "exec", netns_name, sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = {}
    for fam in text_string_to_metric_families(r.stdout):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


CONFIRMED = ("voipgw_calls", (("alg", "sip"), ("phase", "confirmed")))


def test_metrics_show_the_call_and_the_roles_during_a_lab_call(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAYD_METRICS", LISTEN)
    with lab_of(tmp_path, "m") as make:
        cfg, plan, state = make(EXAMPLES / "ch2-incoming-call-with-mip.cfg")
        paths = gs.node_paths(state, plan)
        active = gs.active_role(state)
        standby = next(r for r in paths if r != active)
        before = scrape(paths[active].netns)
        assert before[("voipgw_role", (("role", "active"),))] == 1
        assert before.get(CONFIRMED, 0) == 0

        call = suggest_call(plan, cfg)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=sipp.run_calls(
            call.caller, call.callee, dial=call.dial, calls=1, rate=1, duration_ms=8000,
            per_call_media_port=True)), daemon=True)
        t.start()
        seen = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not seen:
            a = scrape(paths[active].netns)
            if a.get(CONFIRMED, 0) >= 1:
                seen = {"active": a}
            time.sleep(0.2)
        # The standby holds the same call, folded from the replicated journal.
        while seen and time.monotonic() < deadline + 5 and "standby" not in seen:
            b = scrape(paths[standby].netns)
            if b.get(CONFIRMED, 0) >= 1:
                seen["standby"] = b
            time.sleep(0.2)
        t.join(60)
        r = result.get("r")
        assert r is not None and r.calls_completed == 1 and r.calls_failed == 0, r
        assert seen, "the call never showed as confirmed on the active node's endpoint"

        assert "standby" in seen, "the standby's endpoint never showed the call"
        a, s = seen["active"], seen["standby"]
        assert a[("voipgw_role", (("role", "active"),))] == 1
        assert a[("voipgw_forwarding", ())] == 1
        assert a[("voipgw_pinholes", (("alg", "sip"),))] >= 1
        assert a[("voipgw_replication_mode", (("mode", "sync"),))] == 1
        assert a[("voipgw_standby_connected", ())] == 1
        assert a[("voipgw_node_info", (("node", active),))] == 1
        assert a[("voipgw_epoch", ())] >= 1
        assert s[("voipgw_role", (("role", "standby"),))] == 1
        assert s[("voipgw_forwarding", ())] == 0
        assert s[("voipgw_epoch", ())] == a[("voipgw_epoch", ())]
        # The call's packets went through the active node's queue.
        assert a[("voipgw_packets_total", (("outcome", "accepted"),))] > 0
        assert ("voipgw_gc_pause_seconds_count", (("generation", "2"),)) in a
