"""The HA role state machine of one node of an active/standby pair (pure).

ScreenOS calls its HA protocol NSRP; the configuration borrows its words
(``set nsrp vsd-group ...``). This module decides roles only; the sockets,
heartbeats and address takeover live in ``actors/``.

Rules (ARCHITECTURE.md, "High availability"):
- Each promotion raises the epoch by one. Epochs totally order terms: a node
  that sees a higher epoch than its own demotes at once and stops forwarding, so
  two nodes that both claim to be active resolve to the higher epoch (no split
  brain persists past the first message that crosses).
- A standby promotes when it has heard no heartbeat from the active for
  ``hb_threshold`` intervals, or when the active hands over (``gwctl failover``),
  or when the active's process exited (``active_exited``: the kernel closed
  its HA connection, and its supervisor removed its addresses; see
  ``actors/replication.py``), without waiting for the detection time. The
  detection time can then be long enough to ride out a loaded box's stalls
  (a node that stands still 2 s is slow, not dead) while a crash still fails
  over in a fraction of a second.
- A node that starts joins as standby; if no active answers within the
  detection time it promotes (the first node of a pair to come up).
- Ties on equal epochs (both active in the same epoch: only possible when both
  promoted from the same term at once) are broken by priority (lower wins, as in
  NSRP), then by node id.

Fencing by lease (no two actives, whatever stalls a node):
- An active node may forward and hold the gateway's addresses only while its
  lease is valid (``now < lease_until``, one monotonic-time compare:
  :func:`may_forward`). It renews the lease only when it sends a heartbeat:
  ``lease_until = send time + L`` with ``L = D - margin`` (:func:`lease_length`,
  ``D = hb_interval * hb_threshold`` the standby's detection time). A standby
  promotes no sooner than D after the last heartbeat it *received*, which is
  no earlier than it was sent, so the active's lease always ends (by at least
  the margin) before the standby may promote.
- A lease is never renewed after it expired: an active that finds it expired
  (it was stalled: a GC pause, a hung thread) stops forwarding and demotes
  at once (``lease_expired``), keeping its epoch, and rejoins as standby.
- Two standbys (a node that just gave up its lease and a peer that has not
  yet noticed): the one that ranks later (priority, then node id) does not
  promote while it hears the other, so they do not both promote in the same
  term and both hold the addresses until their heartbeats cross.
- What a lease cannot do: heartbeats lost on the HA link (a partition) leave
  both sides believing the other gone; with two nodes and no witness nothing
  can tell a dead peer from an unreachable one.

All transitions are in ``TRANSITIONS``; anything else is ignored by design
(e.g. a heartbeat loss seen by an active node)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Role = Literal["standby", "active", "stopped"]


@dataclass(frozen=True, slots=True)
class RoleState:
    node_id: str
    role: Role = "standby"
    epoch: int = 0
    priority: int = 100
    # Set while an active node hands over: it stops taking packets at once.
    forwarding: bool = False
    # Lease length L in seconds (None: no lease, e.g. a lone node or pcap
    # mode) and the monotonic time the current lease ends.
    lease: float | None = None
    lease_until: float = 0.0


# The part of the detection time the lease gives up. A heartbeat renews the
# lease when it is sent, but restarts the peer's detection time only when it
# arrives: the margin covers that heartbeat's transit (a heartbeat longer in
# transit is treated as a partition), the time to remove the addresses once
# the lease ends (the supervisor, actors/fence.py) and clock-rate differences
# between the nodes.
LEASE_MARGIN = 0.15


def lease_length(hb_interval: float, hb_threshold: int, margin: float | None = None) -> float:
    """L = D - margin, D = hb_interval * hb_threshold. The margin defaults to
    ``LEASE_MARGIN`` but at most a quarter of D (short test intervals)."""
    d = hb_interval * hb_threshold
    m = min(LEASE_MARGIN, d / 4) if margin is None else margin
    if not 0 < m < d:
        raise ValueError(f"lease margin {m:.3f} s must be within the detection time {d:.3f} s")
    return d - m


def lease_valid(s: RoleState, now: float) -> bool:
    """Active and within its lease (always, for a node without a lease)."""
    return s.role == "active" and (s.lease is None or now < s.lease_until)


def may_forward(s: RoleState, now: float) -> bool:
    """The per-packet check: forwarding and within the lease."""
    return s.forwarding and (s.lease is None or now < s.lease_until)


@dataclass(frozen=True, slots=True)
class Action:
    """What the runtime must do after a transition."""

    kind: Literal["promote", "demote", "start_forwarding", "stop_forwarding", "handover"]
    epoch: int
    reason: str


def _promote(s: RoleState, reason: str, now: float | None) -> tuple[RoleState, tuple[Action, ...]]:
    until = s.lease_until
    if s.lease is not None:
        if now is None:
            raise ValueError("a node with a lease promotes only at a known time")
        # The first lease runs from the promotion: the heartbeat that announces
        # the new role is sent after it.
        until = now + s.lease
    n = replace(s, role="active", epoch=s.epoch + 1, forwarding=True, lease_until=until)
    return n, (Action("promote", n.epoch, reason), Action("start_forwarding", n.epoch, reason))


def _demote(s: RoleState, epoch: int, reason: str) -> tuple[RoleState, tuple[Action, ...]]:
    n = replace(s, role="standby", epoch=max(s.epoch, epoch), forwarding=False)
    acts = (Action("stop_forwarding", n.epoch, reason), Action("demote", n.epoch, reason))
    return n, acts if s.role == "active" else acts[1:]


def on_heartbeat_lost(s: RoleState, now: float | None = None,
                      standby_peer: tuple[int, str] | None = None) -> tuple[RoleState, tuple[Action, ...]]:
    """No active heard for the detection time. ``standby_peer`` is the
    (priority, node id) of a peer heard as standby within that time: when it
    ranks first, it is the one to promote."""
    if s.role != "standby":
        return s, ()
    if standby_peer is not None and tuple(standby_peer) < (s.priority, s.node_id):
        return s, ()
    return _promote(s, "no heartbeat from the active node", now)


def on_active_exited(s: RoleState, now: float | None = None) -> tuple[RoleState, tuple[Action, ...]]:
    """The active's process is gone: its end of the HA connection was closed
    by its kernel (a process that merely stands still keeps its TCP
    connections) and it has not come back as active since. Its supervisor
    removes its addresses when it exits (actors/fence.py); the transport
    waits a grace time for that before it reports this trigger."""
    if s.role != "standby":
        return s, ()
    return _promote(s, "the active node's process exited (its HA connection closed)", now)


def on_lease_renewed(s: RoleState, now: float) -> tuple[RoleState, tuple[Action, ...]]:
    """A heartbeat was sent at ``now``: the lease runs L from it, unless it
    had already ended (never renewed after expiry)."""
    if s.role != "active" or s.lease is None:
        return s, ()
    if now >= s.lease_until:
        return _demote(s, s.epoch, f"lease expired {now - s.lease_until:.3f} s before renewal")
    return replace(s, lease_until=max(s.lease_until, now + s.lease)), ()


def on_lease_check(s: RoleState, now: float) -> tuple[RoleState, tuple[Action, ...]]:
    """An active whose lease ended (found by the forwarding check or a timer)
    stops forwarding and demotes at once."""
    if s.role != "active" or s.lease is None or now < s.lease_until:
        return s, ()
    return _demote(s, s.epoch, f"lease expired {now - s.lease_until:.3f} s ago")


def on_peer_epoch(s: RoleState, peer_role: Role, peer_epoch: int, peer_priority: int,
                  peer_id: str) -> tuple[RoleState, tuple[Action, ...]]:
    """A message from the peer carried its role and epoch."""
    if peer_epoch > s.epoch:
        if s.role == "active":
            return _demote(s, peer_epoch, f"peer {peer_id} is active in higher epoch {peer_epoch}")
        return replace(s, epoch=peer_epoch), ()
    if peer_epoch == s.epoch and s.role == "active" and peer_role == "active":
        # Same term, both active: the lower priority value (then node id) keeps it.
        if (peer_priority, peer_id) < (s.priority, s.node_id):
            return _demote(s, peer_epoch, f"peer {peer_id} wins the tie in epoch {peer_epoch}")
    return s, ()


def on_failover_requested(s: RoleState) -> tuple[RoleState, tuple[Action, ...]]:
    """``gwctl failover`` / ``exec nsrp vsd-group 0 mode backup`` on the active:
    stop taking packets now; the runtime flushes the journal to the standby and
    sends the handover, after which the standby promotes."""
    if s.role != "active":
        return s, ()
    n = replace(s, forwarding=False)
    return n, (Action("stop_forwarding", s.epoch, "forced failover"),
               Action("handover", s.epoch, "forced failover"))


def on_handover_received(s: RoleState, peer_epoch: int,
                         now: float | None = None) -> tuple[RoleState, tuple[Action, ...]]:
    """The active handed over after the standby had every event: take over."""
    if s.role != "standby":
        return s, ()
    s = replace(s, epoch=max(s.epoch, peer_epoch))
    return _promote(s, "handover from the active node", now)


def on_handover_done(s: RoleState, new_epoch: int) -> tuple[RoleState, tuple[Action, ...]]:
    """The peer confirmed it promoted: the old active is now the standby.

    The peer's new epoch must be newer than ours: a confirmation naming an
    epoch we already reached or passed belongs to a term that is over."""
    if new_epoch <= s.epoch:
        return s, ()
    return _demote(s, new_epoch, f"handed over to the peer (epoch {new_epoch})")


def on_handover_aborted(s: RoleState, now: float | None = None,
                        sent: bool = False) -> tuple[RoleState, tuple[Action, ...]]:
    """No standby took over. When the HANDOVER was never sent (no standby
    connected) keep the active role and forward again, within the lease.
    When it was sent but not confirmed, the peer may still act on it (it may
    have been stalled with the message queued): resuming could make two
    actives, so give up the role instead; the pair elects one after the
    detection time."""
    if s.role != "active" or s.forwarding:
        return s, ()
    if sent:
        return _demote(s, s.epoch, "handover sent but not confirmed")
    if s.lease is not None and now is not None and now >= s.lease_until:
        return _demote(s, s.epoch, "lease expired during the handover")
    return replace(s, forwarding=True), (Action("start_forwarding", s.epoch, "no standby to take over"),)


def on_stop(s: RoleState) -> tuple[RoleState, tuple[Action, ...]]:
    acts = (Action("stop_forwarding", s.epoch, "node stopping"),) if s.forwarding else ()
    return replace(s, role="stopped", forwarding=False), acts


TRANSITIONS = {
    "heartbeat_lost": on_heartbeat_lost,
    "active_exited": on_active_exited,
    "lease_renewed": on_lease_renewed,
    "lease_check": on_lease_check,
    "peer_epoch": on_peer_epoch,
    "failover_requested": on_failover_requested,
    "handover_received": on_handover_received,
    "handover_done": on_handover_done,
    "handover_aborted": on_handover_aborted,
    "stop": on_stop,
}


def step(s: RoleState, trigger: str, *args) -> tuple[RoleState, tuple[Action, ...]]:
    fn = TRANSITIONS.get(trigger)
    if fn is None:
        raise ValueError(f"unknown HA trigger {trigger!r}")
    return fn(s, *args)
