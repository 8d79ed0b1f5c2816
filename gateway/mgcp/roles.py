"""Who sent an MGCP datagram: a media gateway or a call agent.

The roles decide everything else (which entity keys the state, which
transition table row applies), so they cannot come from the destination port
alone: RFC 3435 3.5.3 gives the call agent 2727 and the gateway 2427 only as
defaults, and PacketCable/NCS call agents commonly listen on 2427 too, where
every message travels between two 2427 ports.

The datapath gives a hint (:data:`EITHER` when the ports and the policy's
service do not settle it; see ``actors.algs.MgcpAdapter``); this module reads
the rest from the messages themselves:

- a command's verb (RFC 3435 2.3): CRCX, MDCX, RQNT, AUEP, AUCX and EPCF are
  the call agent's, RSIP and NTFY the gateway's; DLCX is both (2.3.7 / 2.3.8:
  a gateway deletes connections itself), decided by which side holds the
  connection, call or endpoints it names;
- a response (3.3) belongs to the transaction the ALG saw: a response from
  the gateway answers a call agent's command keyed by the sender's address,
  a response from the call agent answers a gateway's command keyed by the
  receiver's; a response acknowledgement (000, 3.5.6) comes from the
  command's sender.

Every message of a datagram comes from its one sender, so the candidates of
all of them are intersected. What is still open falls back to the default
ports (a datagram from 2427 to elsewhere comes from a gateway), then to the
state (a sender already known as a media gateway), then to "to a gateway".
A role given as a hint other than :data:`EITHER` is kept: the transition
tables then refuse what does not fit it, as before."""

from __future__ import annotations

from gateway.mgcp.message import MgcpMessage
from gateway.mgcp.transitions import CA, GW

EITHER = "either"

# RFC 3435 2.3: commands only a call agent sends, only a gateway sends.
CALL_AGENT_VERBS = frozenset({"CRCX", "MDCX", "RQNT", "AUEP", "AUCX", "EPCF"})
GATEWAY_VERBS = frozenset({"NTFY", "RSIP"})
GW_PORT = 2427
_BOTH = frozenset({GW, CA})


def sender_role(state, ctx, msgs: tuple[MgcpMessage, ...]) -> str:
    """The role of the sender of ``msgs`` (one datagram) as the ALG is to
    treat it: ``ctx.role`` when the datapath knows it, else from the
    messages, the state and the ports (module docstring)."""
    if ctx.role != EITHER:
        return ctx.role
    as_gw = str(ctx.src[0])                                    # its key if the sender is a gateway
    as_ca = str(ctx.nat_dst[0] if ctx.nat_dst is not None else ctx.dst[0])  # ... if the receiver is
    possible = _BOTH
    for m in msgs:
        roles = _roles_of(state, m, as_gw, as_ca)
        if roles and possible & roles:
            possible = possible & roles
    if len(possible) == 1:
        return next(iter(possible))
    sport, dport = int(ctx.src[1]), int(ctx.dst[1])
    if sport == GW_PORT and dport != GW_PORT:
        return GW
    if dport == GW_PORT and sport != GW_PORT:
        return CA
    if _known_gateway(state, as_gw) and not _known_gateway(state, as_ca):
        return GW
    return CA


def _roles_of(state, m: MgcpMessage, as_gw: str, as_ca: str) -> frozenset[str]:
    """The roles the sender of ``m`` can have; empty when ``m`` says nothing."""
    if m.is_command:
        if m.verb in CALL_AGENT_VERBS:
            return frozenset({CA})
        if m.verb in GATEWAY_VERBS:
            return frozenset({GW})
        out = set()
        for role, gw in ((GW, as_gw), (CA, as_ca)):
            if (gw, role, m.transaction_id) in state.txns or _holds(state, gw, m):
                out.add(role)
        return frozenset(out)
    tid = m.transaction_id
    if m.code is not None and m.code < 100:
        # 000: the command's sender acknowledges the final response.
        cands = ((GW, (as_gw, GW, tid)), (CA, (as_ca, CA, tid)))
    else:
        cands = ((GW, (as_gw, CA, tid)), (CA, (as_ca, GW, tid)))
    return frozenset(role for role, key in cands if key in state.txns)


def _holds(state, gw: str, m: MgcpMessage) -> bool:
    """Whether gateway ``gw`` has the connection (I:) or call (C:) that a DLCX
    names, or, naming neither, any call."""
    conn, call = m.connection_id, m.call_id
    if conn is not None:
        return (gw, conn) in state.conn_index
    if call is not None:
        return (gw, call) in state.calls
    return _known_gateway(state, gw)


def _known_gateway(state, gw: str) -> bool:
    return state.endpoint_counts.get(gw, 0) > 0 or state.call_counts.get(gw, 0) > 0
