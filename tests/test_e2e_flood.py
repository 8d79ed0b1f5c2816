"""End to end: legitimate calls keep completing through the gatewayd pair
while a second host floods INVITEs at more than four times the pair's
capacity (overload control, gateway/overload.py; bench/bench_flood.py has
the full comparison).

Needs root, ip netns, nft and SIPp; skipped with the reason otherwise. Run
under the lab lock: flock /tmp/voip-lab.lock ... -m netns."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from ops.lab import gateway_starter as gs
from ops.lab import sipp

import lab_requirements as lab

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]


WHY = lab.missing(lab.tools("nft", sipp.SIPP, "iptables"), lab.file(sipp.G711A_PCAP, "sip-tester"),
                  lab.netfilterqueue)


@pytest.fixture(scope="module")
def bench_flood():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_flood as bf
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return bf


# Timer C and the media inactivity timeout for this test (RFC 3261 16.6
# asks more than 3 minutes of Timer C in a real node, the manual's media
# default is 120 s; both settings are the operator's): short, so that what
# the flood left must be gone within the test's time: calls in setup (Timer
# C), and answered flood calls that never sent media nor BYE (the flooder
# stops mid-call; the manual's "Media Inactivity Timeout" ends them).
TIMER_C = 15
MEDIA_INACTIVITY = 15
BENCH_CAPACITY = 320
FLOODS = 3
STATE_COUNTS = ("calls", "registrations", "endpoints", "pinholes")


def _counts(state) -> dict:
    st = next(v for v in gs.node_status(state).values() if v.get("role") == "active")
    return {k: st.get(k) for k in STATE_COUNTS} | {"pid": st.get("pid")}


def _wait_counts(state, want: dict, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    got = _counts(state)
    while time.monotonic() < deadline:
        got = _counts(state)
        if all(got[k] == want[k] for k in STATE_COUNTS):
            break
        time.sleep(0.5)
    return got


@pytest.fixture
def short_timer_c_config(tmp_path):
    cfg = tmp_path / "ch2-incoming-call-with-mip.cfg"
    text = (ROOT / "examples" / "ch2-incoming-call-with-mip.cfg").read_text()
    cfg.write_text(text.replace("\nsave", f"\nset sip timer-c {TIMER_C}\n"
                                         f"set sip media-inactivity-timeout {MEDIA_INACTIVITY}\nsave"))
    assert f"set sip timer-c {TIMER_C}" in cfg.read_text()
    return cfg


@pytest.mark.skipif(WHY is not None, reason=WHY or "")
def test_legitimate_calls_complete_during_repeated_4x_invite_floods(bench_flood, short_timer_c_config):
    """Issue-free operation under attack, three floods in a row: each at 4x
    the pair's capacity for 10 s from one untrust host while another places
    20 calls at 2/s with RTP. Each time: >= 95% of the legitimate calls
    complete with their RTP, the flood is shed at the active (per code, not
    carried to the ALG), no role changes, a watcher sampling both gateway
    namespaces every 50 ms never sees the owned addresses on both nodes,
    and every state count is back at its pre-flood value within Timer C
    (and the media inactivity timeout, for flood calls left answered).
    Across the three floods the active's RSS does not grow."""
    from ops.lab.fence_trials import AddressWatcher
    bf = bench_flood
    with bf.bench_calls.gateway_lab(short_timer_c_config, gs.NAME, lab=bf.LAB) as (state, call, dial):
        plan = state.get_plan()
        flooder = next(h for h in plan.hosts if h.label == bf.FLOOD_HOST)
        # The counts of the fresh pair: what the capacity ladder and each
        # flood leave must be gone again (the ladder's last, failing step may
        # leave calls in setup: Timer C ends them like the flood's).
        before = _counts(state)
        # 4x the capacity the pair shows here and now (a machine shared with
        # other work carries fewer calls, and the flood scales with it), at
        # most 4x the 320/s bench_flood.py measured on a quiet machine:
        # BENCHMARKS.md has the ladder beyond it (10x: 14/20).
        capacity = min(bf.measure_capacity(state, call, dial, lambda *_: None), BENCH_CAPACITY)
        assert capacity > 0, "the pair passed no step of the capacity ladder"
        flood_rate = 4 * capacity
        bf.settle(state)
        rss = []
        with AddressWatcher(plan, call.caller.netns, call.callee.netns) as watcher:
            for i in range(FLOODS):
                row = bf.flood_step(state, call, flooder, dial, flood_rate=flood_rate,
                                    flood_seconds=10.0, legit_calls=20, legit_rate=2.0,
                                    hold_ms=1000)
                assert row["legit_completed"] >= 19, (i, row)    # >= 95% of the legitimate calls
                # RTP of the legitimate calls flowed both ways. How much of
                # it arrives is the media path's speed on a CPU shared with
                # the flood (all of it on a quiet machine, BENCHMARKS.md; 43%
                # with two CPU-bound processes beside the lab): a property of
                # the userspace fast path measured by bench_flood.py, not of
                # overload control, which this test is about.
                assert row["rtp_sent"] > 0 and row["rtp_at_callee"] > 0, (i, row)
                assert row["rtp_echoed"] > 0 and row["rtp_back"] > 0, (i, row)
                # The flood was shed at the active, per code, not carried to the ALG.
                assert row["shed"] and row["shed"] > 0, (i, row)
                active = next(v for v in row["nodes_after"].values() if v.get("role") == "active")
                # (by the node's budget, or before the queue by the kernel's
                # per-source screen: one flooding host is cut to its rate there)
                assert active["drop_codes"].get("overload-shed", 0) \
                    + active["drop_codes"].get("overload-source-rate", 0) > 0, (i, row)
                assert row["role_changes"] == 0, (i, row)
                # State back to its level before the flood: calls torn down
                # (BYE + the ALG's 5 s), anything left in setup by Timer C,
                # answered calls without media or BYE by media inactivity.
                after = _wait_counts(state, before, max(TIMER_C, MEDIA_INACTIVITY) + 20.0)
                assert {k: after[k] for k in STATE_COUNTS} == {k: before[k] for k in STATE_COUNTS}, \
                    (i, before, after)
                assert after["pid"] == before["pid"], "the active node changed"
                rss.append(bf.rss_kb(after["pid"]))
        assert watcher.samples and not watcher.both_held(), watcher.both_held()[:5]
    # The first flood grows the process to its working size (allocator
    # arenas, caches); later ones must not add to it.
    assert all(r is not None for r in rss), rss
    assert rss[-1] <= rss[0] + 24 * 1024, rss


# A third untrust host for the floods from two hosts: an address book entry
# is what the lab makes a host namespace of (ops/lab/plan.py), on the untrust
# segment beside phone2 and proxy; the policy admits any untrust source to
# the MIP.
SECOND_FLOOD_HOST = "flood2"
SECOND_FLOOD_IP = "1.1.1.6"


@pytest.fixture(scope="module")
def three_host_lab(bench_flood, tmp_path_factory):
    """The chapter 2 MIP pair with Timer C and media inactivity short, and
    three untrust hosts (phone2, proxy, flood2), measured once for the tests
    below: (state, call, dial, plan, capacity, RSS readings after each flood)."""
    bf = bench_flood
    cfg = tmp_path_factory.mktemp("flood3") / "ch2-incoming-call-with-mip.cfg"
    text = (ROOT / "examples" / "ch2-incoming-call-with-mip.cfg").read_text()
    cfg.write_text(text.replace(
        "\nsave", f"\nset address untrust {SECOND_FLOOD_HOST} {SECOND_FLOOD_IP}/24\n"
                  f"set sip timer-c {TIMER_C}\nset sip media-inactivity-timeout {MEDIA_INACTIVITY}\nsave"))
    with bf.bench_calls.gateway_lab(cfg, gs.NAME, lab=bf.LAB) as (state, call, dial):
        plan = state.get_plan()
        assert {h.label for h in plan.hosts} >= {"phone2", bf.FLOOD_HOST, SECOND_FLOOD_HOST}, \
            plan.describe()
        before = _counts(state)
        capacity = min(bf.measure_capacity(state, call, dial, lambda *_: None), BENCH_CAPACITY)
        assert capacity > 0, "the pair passed no step of the capacity ladder"
        bf.settle(state)
        yield {"state": state, "call": call, "dial": dial, "plan": plan, "before": before,
               "capacity": capacity, "rss": []}


def _host(plan, label):
    return next(h for h in plan.hosts if h.label == label)


def _flood_and_check(bf, lab: dict, call, flooders, more_legit=()) -> dict:
    """One 10 s flood at 4x the measured capacity shared by ``flooders``,
    20 legitimate calls at 2/s with RTP from ``call.caller`` (and from each
    of ``more_legit``), a watcher on both gateway namespaces every 50 ms.
    Checks what holds whoever floods: no role change, never the addresses
    on both nodes, the flood shed at the active, every state count back at
    its pre-flood value within Timer C, the active node unchanged."""
    from ops.lab.fence_trials import AddressWatcher
    state = lab["state"]
    with AddressWatcher(lab["plan"], call.caller.netns, call.callee.netns) as watcher:
        row = bf.flood_step(state, call, flooders, lab["dial"], flood_rate=4 * lab["capacity"],
                            flood_seconds=10.0, legit_calls=20, legit_rate=2.0, hold_ms=1000,
                            more_legit=more_legit)
    assert watcher.samples and not watcher.both_held(), watcher.both_held()[:5]
    assert row["role_changes"] == 0, row
    assert row["flood_attempted"] >= 0.9 * 40 * lab["capacity"], row     # the flood was sent
    active = next(v for v in row["nodes_after"].values() if v.get("role") == "active")
    assert active["drop_codes"].get("overload-shed", 0) \
        + active["drop_codes"].get("overload-source-rate", 0) > 0, row
    after = _wait_counts(state, lab["before"], max(TIMER_C, MEDIA_INACTIVITY) + 20.0)
    assert {k: after[k] for k in STATE_COUNTS} == {k: lab["before"][k] for k in STATE_COUNTS}, \
        (lab["before"], after)
    assert after["pid"] == lab["before"]["pid"], "the active node changed"
    lab["rss"].append(bf.rss_kb(after["pid"]))
    return row


@pytest.mark.skipif(WHY is not None, reason=WHY or "")
def test_legitimate_calls_complete_while_two_other_hosts_flood(bench_flood, three_host_lab):
    """Two untrust hosts flood INVITEs together at 4x the pair's measured
    capacity for 10 s while a third places 20 calls at 2/s with RTP: >= 95%
    of them complete with RTP both ways (each flooding source is held to
    its share, the caller keeps its own), no role change, never the
    addresses on both nodes, state back within Timer C."""
    bf, lab = bench_flood, three_host_lab
    plan = lab["plan"]
    flooders = [_host(plan, bf.FLOOD_HOST), _host(plan, SECOND_FLOOD_HOST)]
    assert lab["call"].caller.netns not in {h.netns for h in flooders}
    row = _flood_and_check(bf, lab, lab["call"], flooders)
    assert row["legit_completed"] >= 19, row
    assert row["rtp_sent"] > 0 and row["rtp_at_callee"] > 0, row
    assert row["rtp_echoed"] > 0 and row["rtp_back"] > 0, row


@pytest.mark.skipif(WHY is not None, reason=WHY or "")
def test_a_flood_from_a_callers_own_host_spares_another_hosts_calls(bench_flood, three_host_lab):
    """The flood (4x capacity, 10 s) comes from phone2, which places
    legitimate calls too: those may be shed with the flood (one source, one
    share), but the 20 calls another host (flood2, quiet here) places at the
    same time complete, >= 95%, with RTP; no role change, never the addresses
    on both nodes, state back within Timer C; the active's RSS after this
    flood is not above what it was after the previous one in this lab."""
    from dataclasses import replace
    bf, lab = bench_flood, three_host_lab
    plan = lab["plan"]
    own = lab["call"].caller                         # phone2, the example's caller
    other = _host(plan, SECOND_FLOOD_HOST)
    row = _flood_and_check(bf, lab, replace(lab["call"], caller=other), [own], more_legit=[own])
    assert row["legit_by_host"][other.netns][1] >= 19, row
    assert row["rtp_sent"] > 0 and row["rtp_at_callee"] > 0, row
    assert row["rtp_echoed"] > 0 and row["rtp_back"] > 0, row
    rss = lab["rss"]
    assert all(r is not None for r in rss), rss
    if len(rss) >= 2:       # the two-host flood ran before in this lab
        assert rss[-1] <= rss[-2] + 24 * 1024, rss
