"""End to end, fencing: SIPp calls with RTP through the gatewayd pair (ch2
incoming call with MIP), then (a) a SIGKILL of the active, which is NOT
restarted: its addresses must leave its interfaces within 1 s (the fence
supervisor, actors/fence.py), every call completes through the other node;
(b) a 2 s stall of every thread of the active (gwctl debug stall): no
failover or a clean one; (c) a graceful failover, whose old active gives its
addresses up before the new one adds them. Throughout, a watcher samples both gateway
namespaces every 50 ms and must never see an owned address on both.

Before the supervisor, a SIGKILLed node's addresses stayed on its interfaces
(answering ARP) until it was restarted; before the lease, a stalled active
and the promoted standby held the addresses together for 1.5-2.4 s."""

from __future__ import annotations

import pytest

from ops.lab import fence_trials
from ops.lab.plan import suggest_call
from tests.test_e2e_calls import EXAMPLES, lab_of

pytestmark = pytest.mark.netns

EXAMPLE = "ch2-incoming-call-with-mip"
TRIALS = 3


@pytest.fixture
def lab(tmp_path, monkeypatch):
    # The stall is a test-only control command: the nodes inherit this.
    monkeypatch.setenv("GATEWAYD_DEBUG_COMMANDS", "1")
    with lab_of(tmp_path, "f") as make:
        yield lambda: make(EXAMPLES / f"{EXAMPLE}.cfg")


def test_sigkilled_active_loses_its_addresses_and_calls_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAYD_DEBUG_COMMANDS", "1")
    results = []
    for i in range(TRIALS):
        (tmp_path / f"t{i}").mkdir()
        with lab_of(tmp_path / f"t{i}", "f") as make:
            cfg, plan, state = make(EXAMPLES / f"{EXAMPLE}.cfg")
            t = fence_trials.trial(state, suggest_call(plan, cfg), fault="sigkill")
            results.append(t)
            print(f"\ntrial {i}: removal {t.removal_s} s, takeover {t.takeover_s} s, "
                  f"RTP gap {t.rtp_gap_s} s, calls {t.calls_completed}/{t.calls_attempted}")
            assert t.error is None, t
            assert t.both_held == [], t
            assert t.removal_s is not None and t.removal_s <= 1.0, t
            assert t.calls_completed == t.calls_attempted and t.calls_failed == 0, t
            assert "active" in t.roles_after.values(), t


def test_stalled_active_never_shares_its_addresses(lab):
    cfg, plan, state = lab()
    t = fence_trials.trial(state, suggest_call(plan, cfg), fault="stall", stall_s=2.0)
    assert t.error is None, t
    assert t.both_held == [], t
    assert t.calls_completed == t.calls_attempted and t.calls_failed == 0, t
    assert sorted(t.roles_after.values()) == ["active", "standby"], t


def test_graceful_failover_releases_before_the_new_active_adds(lab):
    cfg, plan, state = lab()
    t = fence_trials.trial(state, suggest_call(plan, cfg), fault="handover")
    assert t.error is None, t
    assert t.both_held == [], t
    assert t.calls_completed == t.calls_attempted and t.calls_failed == 0, t
    assert sorted(t.roles_after.values()) == ["active", "standby"], t
