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
from gateway import running_config


@dataclass(frozen=True, slots=True)
class DomainState:
    sip: sip_state.SipState = sip_state.EMPTY
    mgcp: mgcp_state.MgcpState = mgcp_state.EMPTY
    h323: h323_state.H323State = h323_state.EMPTY
    tcp: tcp_state.TcpState = tcp_state.EMPTY
    config: running_config.RunningConfig | None = None


EMPTY = DomainState()


def apply(state: DomainState, event: Event) -> DomainState:
    domain = event.TYPE.partition(".")[0]
    if domain == "sip":
        return replace(state, sip=sip_state.apply(state.sip, event))
    if domain == "mgcp":
        return replace(state, mgcp=mgcp_state.apply(state.mgcp, event))
    if domain == "h323":
        return replace(state, h323=h323_state.apply(state.h323, event))
    if domain == "tcp":
        return replace(state, tcp=tcp_state.apply(state.tcp, event))
    if domain == "config":
        return replace(state, config=running_config.apply(state.config, event))
    raise TypeError(f"no domain folds events of type {event.TYPE!r}")
