"""The whole ALG state of a node, folded from every domain's events.

Each ALG keeps its own immutable state and pure ``apply``; this module
dispatches an event to its domain by the event type's prefix (``sip.``,
``mgcp.``, ``h323.``, ``tcp.``: the sequence adjustments of TCP connections
whose signalling a rewrite lengthened or shortened; ``config.``: the pair's
running configuration, gateway/running_config.py). The node's live path, the standby, ``gwctl replay`` and the
tests all fold through :func:`apply`, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.datapath import seqadj as tcp_state
from gateway.events import Event
from gateway.h323 import state as h323_state
from gateway.mgcp import state as mgcp_state
from gateway.sip import state as sip_state
from gateway.sip import state_fold as sip_fold
from gateway import running_config


@dataclass(frozen=True, slots=True)
class DomainState:
    sip: sip_state.SipState = sip_state.EMPTY
    mgcp: mgcp_state.MgcpState = mgcp_state.EMPTY
    h323: h323_state.H323State = h323_state.EMPTY
    tcp: tcp_state.TcpState = tcp_state.EMPTY
    config: running_config.RunningConfig | None = None


EMPTY = DomainState()


# Event type prefix -> (its slot of DomainState, that domain's apply).
FOLDS = {
    "sip": ("sip", sip_fold.apply),
    "mgcp": ("mgcp", mgcp_state.apply),
    "h323": ("h323", h323_state.apply),
    "tcp": ("tcp", tcp_state.apply),
    "config": ("config", running_config.apply),
}


def apply(state: DomainState, event: Event) -> DomainState:
    fold = FOLDS.get(event.TYPE.partition(".")[0])
    if fold is None:
        raise TypeError(f"no domain folds events of type {event.TYPE!r}")
    slot, apply_one = fold
    return replace(state, **{slot: apply_one(getattr(state, slot), event)})
