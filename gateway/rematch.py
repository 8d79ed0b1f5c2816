"""What a new configuration no longer permits, among the flows and calls a
node already carries (sans-I/O: the node applies the answer).

ScreenOS keeps an existing session through a policy change when the session
would still be permitted, and removes the ones that would not be: Juniper's
NSM 2010.4 Administration Guide, "Updating Existing Security Policies", on
session rematch for devices running ScreenOS 5.1 and later: "At the end of
the update, NSM restores all valid sessions on the managed device and
deletes all invalid sessions (a session is considered valid when the From
Zone, Source, To Zone, Destination, and Service of the traffic is the same
before and after the new policy installation)". Junos (the successor of
ScreenOS) does the same with ``policy-rematch``: "For every session
associated with the policy, the device reevaluates the policy lookup ... If
the policy matches, the session continues" and otherwise drops it. So each
session, and each call, is looked up again in the new configuration's
:class:`~gateway.policy.Engine` as its first packet was: permitted, it
carries on untouched (its translation and timers as they were); denied, it
is removed, and a call is ended with its media sessions and pinholes (as the
SIP ALG does for BYE, manual ch. 2 "Call teardown"), on both nodes through
the journal. The flows the ALG opened for a call (pinholes, media sessions)
belong to the call: they go with it, or stay with it.

A SIP call is judged by the flow of its caller's INVITE. An MGCP or H.323
call is judged by the session that carries its signalling, as ScreenOS ties
an ALG's call to its control session: an H.323 call whose Q.931 connection's
policy session is denied ends with it, and so do the calls of a media
gateway whose MGCP policy session with its call agent is denied (manual ch. 3:
the gateway's endpoints are controlled only over that exchange). A call
whose signalling session has already aged out is not judged here: its next
message is decided by the new policy, and the call ends by its timers.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.datapath.alg_handoff import session_connection, session_ends
from gateway.policy import Engine, Flow

_PROTO = {17: "udp", 6: "tcp", 1: "icmp"}
SIP_PORT = 5060

# The services the ALGs' signalling is decided under when found by their tables.
_ALG_SERVICE = {"h323": "h.323"}


def session_denied(engine: Engine, sess) -> str | None:
    """The reason the new configuration would not permit the session ``sess``
    (a ``gateway.datapath.sessions.Session``) whose first packet a policy
    decided (kind "policy", and an ALG's "signalling" session opened by
    policy), or None. Sessions a pinhole opened (media, and signalling with
    a ``pinhole``) are their call's: not judged here."""
    if sess.kind == "media" or sess.pinhole is not None:
        return None
    proto, src, sport, dst, dport = sess.fwd_key
    flow = Flow(sess.ingress, IPv4Address(src), IPv4Address(dst), _PROTO.get(proto, f"ip-{proto}"),
                sport, dport)
    incoming = None
    rw = sess.fwd_rewrite
    if rw is not None and engine.is_incoming_dip(flow.dst):
        # Decided with the internal host the ALG's registration table gave.
        incoming = (IPv4Address(rw[2]), rw[3])
    d = engine.decide(flow, incoming_dip=incoming, service=_ALG_SERVICE.get(sess.alg or ""))
    return None if d.permitted else d.reason


def sip_call_flow(call) -> tuple[Flow, tuple[IPv4Address, int] | None] | None:
    """The flow the caller's INVITE was decided as: the caller's request as it
    arrived (addresses, ingress), to the SIP service. None when the call
    remembers no request of its caller (then it is not judged)."""
    txn = next((t for t in call.txns if t.sender == "a"), None)
    src = txn.src_ip if txn is not None else call.setup_src
    if txn is None or src is None:
        return None
    flow = Flow(call.ingress, IPv4Address(src), IPv4Address(txn.dst_ip), "udp", SIP_PORT, SIP_PORT)
    incoming = None
    if call.mode == "inbound" and call.private_ip:
        incoming = (IPv4Address(call.private_ip), SIP_PORT)
    return flow, incoming


def sip_calls_denied(sip_state, engine: Engine, denied=()) -> list[tuple[str, str]]:
    """(call key, reason) of each SIP call the new configuration would not
    permit (judged by its caller's INVITE, whatever ``denied`` holds); in
    call-key order, so both nodes and a replay list them alike."""
    out = []
    for key in sorted(sip_state.calls):
        call = sip_state.calls[key]
        found = sip_call_flow(call)
        if found is None:
            continue
        flow, incoming = found
        d = engine.decide(flow, incoming_dip=incoming if engine.is_incoming_dip(flow.dst) else None,
                          service="sip")
        if not d.permitted:
            out.append((key, d.reason))
    return out


def sessions_denied(engine: Engine, sessions) -> list[tuple[object, str]]:
    """(session, reason) of each policy session of ``sessions`` the new
    configuration would not permit (:func:`session_denied`), in table order."""
    out = []
    for sess in sessions:
        why = session_denied(engine, sess)
        if why is not None:
            out.append((sess, why))
    return out


def h323_calls_denied(h323_state, engine: Engine, denied) -> list[tuple[str, str]]:
    """(call key, reason) of each H.323 call whose Q.931 connection is one of
    the ``denied`` sessions (:func:`sessions_denied`); in key order."""
    conns = {}
    for sess, why in denied:
        if sess.alg == "h323" and sess.fwd_key[0] == 6:
            conns[session_connection(sess)] = why
    if not conns:
        return []
    out = []
    for key in sorted(h323_state.calls):
        call = h323_state.calls[key]
        why = conns.get(call.conn)
        if why is not None:
            out.append((key, f"its Q.931 connection {call.conn}: {why}"))
    return out


def mgcp_calls_denied(mgcp_state, engine: Engine, denied) -> list[tuple[str, str]]:
    """(``<gateway>/<call id>``, reason) of each MGCP call of a media gateway
    at either real end of one of the ``denied`` MGCP sessions (the gateway
    sends from, or is sent to, its own address); in key order."""
    gateways = {}
    for sess, why in denied:
        if sess.alg == "mgcp":
            src, dst = session_ends(sess)
            for end in (src, dst):
                gateways.setdefault(end[0], f"its MGCP {src[0]}:{src[1]} -> {dst[0]}:{dst[1]}: {why}")
    if not gateways:
        return []
    return [(f"{gw}/{cid}", gateways[gw]) for gw, cid in sorted(mgcp_state.calls) if gw in gateways]
