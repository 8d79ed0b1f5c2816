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
  ``hb_threshold`` intervals, or when the active hands over (``gwctl failover``).
- A node that starts joins as standby; if no active answers within the
  detection time it promotes (the first node of a pair to come up).
- Ties on equal epochs (both active in the same epoch: only possible when both
  promoted from the same term at once) are broken by priority (lower wins, as in
  NSRP), then by node id.

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


@dataclass(frozen=True, slots=True)
class Action:
    """What the runtime must do after a transition."""

    kind: Literal["promote", "demote", "start_forwarding", "stop_forwarding", "handover"]
    epoch: int
    reason: str


def _promote(s: RoleState, reason: str) -> tuple[RoleState, tuple[Action, ...]]:
    n = replace(s, role="active", epoch=s.epoch + 1, forwarding=True)
    return n, (Action("promote", n.epoch, reason), Action("start_forwarding", n.epoch, reason))


def _demote(s: RoleState, epoch: int, reason: str) -> tuple[RoleState, tuple[Action, ...]]:
    n = replace(s, role="standby", epoch=max(s.epoch, epoch), forwarding=False)
    acts = (Action("stop_forwarding", n.epoch, reason), Action("demote", n.epoch, reason))
    return n, acts if s.role == "active" else acts[1:]


def on_heartbeat_lost(s: RoleState) -> tuple[RoleState, tuple[Action, ...]]:
    if s.role != "standby":
        return s, ()
    return _promote(s, "no heartbeat from the active node")


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


def on_handover_received(s: RoleState, peer_epoch: int) -> tuple[RoleState, tuple[Action, ...]]:
    """The active handed over after the standby had every event: take over."""
    if s.role != "standby":
        return s, ()
    s = replace(s, epoch=max(s.epoch, peer_epoch))
    return _promote(s, "handover from the active node")


def on_handover_done(s: RoleState, new_epoch: int) -> tuple[RoleState, tuple[Action, ...]]:
    """The peer confirmed it promoted: the old active is now the standby.

    The peer's new epoch must be newer than ours: a confirmation naming an
    epoch we already reached or passed belongs to a term that is over."""
    if new_epoch <= s.epoch:
        return s, ()
    return _demote(s, new_epoch, f"handed over to the peer (epoch {new_epoch})")


def on_handover_aborted(s: RoleState) -> tuple[RoleState, tuple[Action, ...]]:
    """No standby to hand over to: keep the active role and forward again."""
    if s.role != "active" or s.forwarding:
        return s, ()
    return replace(s, forwarding=True), (Action("start_forwarding", s.epoch, "no standby to take over"),)


def on_stop(s: RoleState) -> tuple[RoleState, tuple[Action, ...]]:
    acts = (Action("stop_forwarding", s.epoch, "node stopping"),) if s.forwarding else ()
    return replace(s, role="stopped", forwarding=False), acts


TRANSITIONS = {
    "heartbeat_lost": on_heartbeat_lost,
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
