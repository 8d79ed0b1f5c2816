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
"""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.policy import Engine, Flow

_PROTO = {17: "udp", 6: "tcp", 1: "icmp"}
SIP_PORT = 5060

# The services the ALGs' signalling is decided under when found by their tables.
_ALG_SERVICE = {"h323": "h.323"}


def session_denied(engine: Engine, sess) -> str | None:
    """The reason the new configuration would not permit the policy session
    ``sess`` (a ``gateway.datapath.sessions.Session``), or None. Sessions a
    pinhole opened (kind "media"/"signalling") are the call's: not judged here."""
    if sess.kind != "policy":
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


def sip_calls_denied(engine: Engine, sip_state) -> list[tuple[str, str]]:
    """(call key, reason) of each SIP call the new configuration would not
    permit; in call-key order, so both nodes and a replay list them alike."""
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
