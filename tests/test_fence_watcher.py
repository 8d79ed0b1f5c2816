"""The lab's address watcher (ops/lab/fence_trials.py) reports both nodes
holding the addresses only where its readings prove an overlap: a node seen
holding, its peer seen holding, the node seen holding again."""

from __future__ import annotations

from types import SimpleNamespace

from ops.lab.fence_trials import AddressWatcher

A = frozenset({"1.1.1.1"})
NONE = frozenset()


def watcher(readings):
    plan = SimpleNamespace(gateways=[SimpleNamespace(role="gw-a", netns="a"),
                                     SimpleNamespace(role="gw-b", netns="b")],
                           owned=[SimpleNamespace(address=SimpleNamespace(ip="1.1.1.1"))])
    w = AddressWatcher(plan, "c", "d")
    w.readings = [(float(i), role, held) for i, (role, held) in enumerate(readings)]
    return w


def test_a_handover_read_across_two_samples_is_not_an_overlap():
    # a held, then (a let go) b held, then a seen without: a clean handover.
    w = watcher([("gw-a", A), ("gw-b", NONE), ("gw-a", A), ("gw-b", A), ("gw-a", NONE), ("gw-b", A)])
    assert w.both_held() == []


def test_a_peer_seen_holding_between_two_readings_of_a_holding_node_is_an_overlap():
    w = watcher([("gw-a", A), ("gw-b", NONE), ("gw-a", A), ("gw-b", A), ("gw-a", A), ("gw-b", NONE)])
    got = w.both_held()
    assert len(got) == 1 and got[0][0] == 3.0
    # Either order of the pair.
    w = watcher([("gw-a", NONE), ("gw-b", A), ("gw-a", A), ("gw-b", A)])
    assert [t for t, _ in w.both_held()] == [2.0]
