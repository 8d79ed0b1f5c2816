"""The lease that fences the active node (gateway/ha.py): it runs L = D - margin
from the last heartbeat sent, is never renewed once expired, and an active
whose lease ended stops forwarding and demotes. A simulated pair (clock, heartbeat
timers, message delays, stalls) checks that at no instant two nodes may forward."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from gateway import ha
from gateway.ha import RoleState, lease_length, may_forward, step


def kinds(actions):
    return [a.kind for a in actions]


def test_lease_length_is_detection_time_less_margin():
    assert lease_length(0.2, 3) == pytest.approx(0.45)
    # short test intervals keep three quarters of D
    assert lease_length(0.05, 3) == pytest.approx(0.1125)
    assert lease_length(0.2, 3, margin=0.1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        lease_length(0.2, 3, margin=0.7)


def test_promotion_grants_a_lease_from_the_promotion_time():
    s, acts = step(RoleState("a", lease=0.45), "heartbeat_lost", 10.0)
    assert (s.role, s.lease_until) == ("active", pytest.approx(10.45))
    assert may_forward(s, 10.44) and not may_forward(s, 10.45)
    with pytest.raises(ValueError):
        step(RoleState("a", lease=0.45), "heartbeat_lost")


def test_heartbeat_sent_within_the_lease_renews_it():
    s, _ = step(RoleState("a", lease=0.45), "heartbeat_lost", 10.0)
    s, acts = step(s, "lease_renewed", 10.2)
    assert acts == () and s.lease_until == pytest.approx(10.65)


def test_lease_is_never_renewed_after_expiry():
    """A stalled active (its next heartbeat is late) gives up the role instead."""
    s, _ = step(RoleState("a", lease=0.45), "heartbeat_lost", 10.0)
    s, acts = step(s, "lease_renewed", 10.45)
    assert (s.role, s.forwarding, s.epoch) == ("standby", False, 1)
    assert kinds(acts) == ["stop_forwarding", "demote"]
    assert not may_forward(s, 10.46)


def test_lease_check_demotes_an_expired_active_only():
    s, _ = step(RoleState("a", lease=0.45), "heartbeat_lost", 10.0)
    assert step(s, "lease_check", 10.3) == (s, ())
    s2, acts = step(s, "lease_check", 10.5)
    assert s2.role == "standby" and kinds(acts) == ["stop_forwarding", "demote"]


def test_node_without_lease_is_not_fenced():
    s, _ = step(RoleState("a"), "heartbeat_lost")
    assert may_forward(s, 1e12) and step(s, "lease_check", 1e12) == (s, ())


def test_a_standby_takes_over_at_once_when_the_active_process_exited():
    """The exit of the active's process (its HA connection closed) promotes
    a standby without the detection time, with a lease from that moment;
    an active (or a stopped node) ignores it."""
    s, acts = step(RoleState("b", epoch=3, lease=2.85), "active_exited", 20.0)
    assert (s.role, s.epoch, s.lease_until) == ("active", 4, pytest.approx(22.85))
    assert kinds(acts) == ["promote", "start_forwarding"]
    assert "process exited" in acts[0].reason
    assert step(s, "active_exited", 21.0) == (s, ())
    stopped, _ = step(RoleState("b"), "stop")
    assert step(stopped, "active_exited", 21.0) == (stopped, ())


def test_later_ranked_standby_defers_to_a_standby_peer():
    b = RoleState("b", lease=0.45)
    assert step(b, "heartbeat_lost", 1.0, (100, "a")) == (b, ())
    a, acts = step(RoleState("a", lease=0.45), "heartbeat_lost", 1.0, (100, "b"))
    assert a.role == "active"


def test_handover_aborted_after_lease_end_demotes():
    s, _ = step(RoleState("a", lease=0.45), "heartbeat_lost", 10.0)
    s, _ = step(s, "failover_requested")
    s2, acts = step(s, "handover_aborted", 11.0)
    assert s2.role == "standby"
    s3, acts = step(s, "handover_aborted", 10.1)
    assert s3.forwarding


# ------------------------------------------------------------ simulated pair

I, K = 200, 3                      # heartbeat interval (ms), threshold
D = I * K
MARGIN = 150
L = lease_length(I, K, margin=MARGIN)
TICK = 10
STALL_GAP = I + I // 2 + 50        # the replication loop wakes at least every I ms
HANDOVER_TIMEOUT = 2000


class SimNode:
    def __init__(self, name: str, prio: int, start: int) -> None:
        self.s = RoleState(name, priority=prio, lease=L)
        self.start = start
        self.next_hb = start
        self.active_seen = start
        self.standby_peer: tuple[int, int, str] | None = None   # (heard at, prio, id)
        self.stalled_until = 0
        self.last_turn = start
        self.inbox: list[tuple[int, tuple]] = []
        self.handover_deadline: int | None = None


class SimPair:
    """The timing rules of actors/replication.py over gateway.ha, on a
    simulated clock: a heartbeat every I ms (each one renews the lease), a
    standby promotes when no active was heard for more than D, a role change
    restarts that timer and sends a heartbeat at once."""

    def __init__(self, rnd: random.Random, b_start: int, max_delay: int, loss: float) -> None:
        self.rnd, self.max_delay, self.loss = rnd, max_delay, loss
        self.nodes = {"a": SimNode("a", 100, 0), "b": SimNode("b", 100, b_start)}
        self.last_delivery = {"a": 0, "b": 0}
        self.promotions = 0

    def peer(self, n: SimNode) -> SimNode:
        return self.nodes["b" if n.s.node_id == "a" else "a"]

    def send(self, n: SimNode, t: int, msg: tuple) -> None:
        to = self.peer(n)
        # Only what a standby says to an active may be lost: losing an
        # active's heartbeats (or heartbeats between standbys) is a partition
        # of the HA link, which no two-node pair can tell from a dead peer.
        if n.s.role != "active" and to.s.role == "active" and self.rnd.random() < self.loss:
            return
        # In order per direction (one TCP connection), after any delay.
        at = max(t + self.rnd.randrange(0, self.max_delay + 1, TICK), self.last_delivery[to.s.node_id])
        self.last_delivery[to.s.node_id] = at
        to.inbox.append((at, msg))

    def hb(self, n: SimNode, t: int) -> None:
        self.send(n, t, ("hb", n.s.role, n.s.epoch, n.s.priority, n.s.node_id))
        self.trig(n, t, "lease_renewed", t)

    def trig(self, n: SimNode, t: int, trigger: str, *args) -> None:
        before = n.s.role
        n.s, acts = step(n.s, trigger, *args)
        for a in acts:
            if a.kind == "promote":
                self.promotions += 1
            if a.kind == "handover":
                n.handover_deadline = t + HANDOVER_TIMEOUT
                self.send(n, t, ("handover", n.s.epoch))
        if n.s.role != before:
            n.active_seen = t
            n.handover_deadline = None
            self.hb(n, t)

    def run_node(self, n: SimNode, t: int) -> None:
        if t < n.start or t < n.stalled_until:
            return
        # A node observes silence only while awake: after standing still it
        # starts the detection time again (actors/replication_loop.py ``stalled``).
        stood_still = t - n.last_turn > STALL_GAP
        if stood_still:
            n.active_seen = max(n.active_seen, t)
        n.last_turn = t
        due = [m for at, m in n.inbox if at <= t]
        n.inbox = [(at, m) for at, m in n.inbox if at > t]
        for m in due:
            if m[0] == "hb":
                _, role, epoch, prio, node = m
                if role == "active":
                    n.active_seen = t
                elif role == "standby":
                    n.standby_peer = (t, prio, node)
                self.trig(n, t, "peer_epoch", role, epoch, prio, node)
            elif m[0] == "handover":
                if stood_still:         # possibly past the sender's timeout: ignored
                    continue
                self.trig(n, t, "handover_received", m[1], t)
                if n.s.role == "active":
                    self.send(n, t, ("taken", n.s.epoch))
            elif m[0] == "taken":
                self.trig(n, t, "handover_done", m[1])
        self.trig(n, t, "lease_check", t)
        if n.s.role == "standby" and t - n.active_seen > D:
            n.active_seen = t
            sp = n.standby_peer
            self.trig(n, t, "heartbeat_lost", t, sp[1:] if sp and t - sp[0] <= D else None)
        if n.handover_deadline is not None and t > n.handover_deadline:
            n.handover_deadline = None
            self.trig(n, t, "handover_aborted", t, True)
        if t >= n.next_hb:
            self.hb(n, t)
            n.next_hb = t + I


@settings(max_examples=150, deadline=None)
@given(rnd=st.randoms(use_true_random=False),
       b_start=st.integers(0, 2000).map(lambda v: v - v % TICK),
       # A heartbeat's transit (sender's queue, link, receiver's queue up to
       # its socket) within the lease margin: the margin is what lets the
       # renewing heartbeat arrive before the peer's detection time runs out.
       # One in transit longer than that is a partition.
       max_delay=st.sampled_from([0, 20, 100, MARGIN - TICK]),
       loss=st.sampled_from([0.0, 0.3, 1.0]),
       stalls=st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 8000), st.integers(0, 3000)),
                       max_size=4),
       failovers=st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 8000)), max_size=3))
def test_no_two_nodes_may_forward_at_any_instant(rnd, b_start, max_delay, loss, stalls, failovers):
    pair = SimPair(rnd, b_start, max_delay, loss)
    for t in range(0, 10_000, TICK):
        for who, at, length in stalls:
            if at - at % TICK == t:
                n = pair.nodes[who]
                n.stalled_until = max(n.stalled_until, t + length)
        for who, at in failovers:
            if at - at % TICK == t and t >= pair.nodes[who].stalled_until:
                pair.trig(pair.nodes[who], t, "failover_requested")
        for n in pair.nodes.values():
            pair.run_node(n, t)
            a, b = pair.nodes["a"].s, pair.nodes["b"].s
            assert not (may_forward(a, t) and may_forward(b, t)), (t, a, b)
    # The pair is not left without an active for long: something forwards at the end
    # unless a stall or a failover was in its last seconds.
    quiet = all(at + length < 7000 for _, at, length in stalls) and all(at < 7000 for _, at in failovers)
    if quiet:
        assert any(may_forward(n.s, 10_000 - TICK) for n in pair.nodes.values())
