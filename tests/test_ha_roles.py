"""The HA role state machine (gateway/ha.py): promotion raises the epoch, a
higher epoch demotes at once, ties resolve by priority, forced failover stops
forwarding before the handover."""

from hypothesis import given, strategies as st

from gateway.ha import RoleState, step


def kinds(actions):
    return [a.kind for a in actions]


def test_standby_promotes_on_heartbeat_loss_and_raises_epoch():
    s, acts = step(RoleState("a"), "heartbeat_lost")
    assert (s.role, s.epoch, s.forwarding) == ("active", 1, True)
    assert kinds(acts) == ["promote", "start_forwarding"]
    # an active node ignores heartbeat loss (its peer is the one gone)
    s2, acts2 = step(s, "heartbeat_lost")
    assert s2 == s and acts2 == ()


def test_higher_epoch_demotes_active_at_once():
    s = RoleState("a", role="active", epoch=3, forwarding=True)
    s, acts = step(s, "peer_epoch", "active", 4, 100, "b")
    assert (s.role, s.epoch, s.forwarding) == ("standby", 4, False)
    assert kinds(acts) == ["stop_forwarding", "demote"]


def test_lower_epoch_peer_does_not_demote():
    s = RoleState("a", role="active", epoch=5, forwarding=True)
    assert step(s, "peer_epoch", "active", 4, 1, "b") == (s, ())


def test_same_epoch_tie_broken_by_priority_then_id():
    a = RoleState("a", role="active", epoch=2, priority=100, forwarding=True)
    b = RoleState("b", role="active", epoch=2, priority=50, forwarding=True)
    a2, _ = step(a, "peer_epoch", "active", b.epoch, b.priority, b.node_id)
    b2, _ = step(b, "peer_epoch", "active", a.epoch, a.priority, a.node_id)
    assert a2.role == "standby" and b2.role == "active"


def test_forced_failover_sequence():
    act = RoleState("a", role="active", epoch=1, forwarding=True)
    sb = RoleState("b", role="standby", epoch=1)
    act, acts = step(act, "failover_requested")
    assert not act.forwarding and kinds(acts) == ["stop_forwarding", "handover"]
    sb, acts = step(sb, "handover_received", act.epoch)
    assert (sb.role, sb.epoch) == ("active", 2) and "promote" in kinds(acts)
    act, acts = step(act, "handover_done", sb.epoch)
    assert (act.role, act.epoch) == ("standby", 2)


def test_handover_aborted_resumes_forwarding():
    act, _ = step(RoleState("a", role="active", epoch=1, forwarding=True), "failover_requested")
    act, acts = step(act, "handover_aborted")
    assert act.forwarding and kinds(acts) == ["start_forwarding"]


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]),
                          st.sampled_from(["heartbeat_lost", "failover_requested", "gossip"])),
                max_size=30))
def test_two_nodes_never_stay_active_in_the_same_epoch(script):
    """Whatever order triggers arrive in, once the nodes exchange one heartbeat
    each way at most one is active (the higher epoch or the tie winner)."""
    nodes = {"a": RoleState("a", priority=100), "b": RoleState("b", priority=100)}
    for who, trig in script:
        other = "b" if who == "a" else "a"
        if trig == "gossip":
            o = nodes[other]
            nodes[who], _ = step(nodes[who], "peer_epoch", o.role, o.epoch, o.priority, o.node_id)
        else:
            nodes[who], _ = step(nodes[who], trig)
    for who, other in (("a", "b"), ("b", "a")):
        o = nodes[other]
        nodes[who], _ = step(nodes[who], "peer_epoch", o.role, o.epoch, o.priority, o.node_id)
    a, b = nodes["a"], nodes["b"]
    assert not (a.role == "active" and b.role == "active")


def test_handover_done_of_an_older_term_does_not_demote_the_active():
    # A TAKEN names the epoch the peer promoted to; one not newer than ours is
    # from a term already over (epochs order terms) and must not stop forwarding.
    act = RoleState("a", role="active", epoch=7, forwarding=True)
    for stale in (4, 7):
        s, acts = step(act, "handover_done", stale)
        assert s == act and acts == ()
    s, acts = step(act, "handover_done", 8)
    assert (s.role, s.epoch, s.forwarding) == ("standby", 8, False)
    assert kinds(acts) == ["stop_forwarding", "demote"]
