"""A call's ladder: the messages between its parties, in order, with times,
the addresses before and after NAT, and the pinholes the ALG opened and
closed, told from the ALG's journaled events (like sngrep's call flow).

Pure: it takes records already read (``(seq, timestamp, event)``) and says
which records belong to a call (:class:`CallFilter`, one pass over raw
``(stream, type, payload)`` so a long journal is not decoded whole), lists
the calls a journal holds (:class:`CallLister`), and builds a
:class:`Ladder` from one call's events (:func:`build`).

A ladder shows what the events carry, no more. The SIP ALG journals each
request it passes (``sip.transaction_seen``: method, CSeq, sender, source and
destination as they arrived), the answers that change the call (2xx:
``call_answered``; a final error: ``call_rejected``) and the teardown
(``call_terminating``); provisional responses and retransmissions are not
events, so they are not on the ladder. MGCP: every command and its response
(RFC 3435 3.5) of the call's transactions (``mgcp.transaction_*`` naming the
call id, and the answers to them). H.323: the Q.931 phases of the call
(Setup, Call Proceeding, Alerting, Connect: ``h323.call_progressed``), the
RAS transactions naming it (ARQ/DRQ and their answers) and the H.245 and
media channels as pinholes.

Translated addresses are derived from the call's NAT bindings (the SIP
call's private and ALG address, its ``binding_added``s; H.323
``port_mapped``): an address the call binds to a public one is shown as it
leaves the gateway on the other side (manual ch. 2 "SIP with Network Address
Translation", ch. 1 "Incoming Calls with NAT")."""

from __future__ import annotations

from typing import Any, Iterable

from gateway.ladder_filter import CallFilter, CallLister, CallSummary
from gateway.ladder_protocols import _h323, _mgcp, _sip
from gateway.ladder_text import WIDTH, render_text
from gateway.ladder_types import GATEWAY, Ladder, Step

# The ladder's parts, the record filters and the text drawing stay importable from here.
__all__ = ["GATEWAY", "WIDTH", "CallFilter", "CallLister", "CallSummary", "Ladder", "Step", "build",
           "render_text"]


def build(records: Iterable[tuple[int, float, Any]]) -> Ladder | None:
    """The ladder of one call from its events (``(seq, timestamp, event)``,
    as :class:`CallFilter` selected them, in journal order). None when they
    hold no call start (the call began before the oldest record kept)."""
    recs = list(records)
    types = {type(ev).TYPE for _s, _t, ev in recs}
    if "sip.call_started" in types:
        return _sip(recs)
    if "mgcp.call_started" in types or any(t.startswith("mgcp.") for t in types):
        return _mgcp(recs)
    if "h323.call_started" in types:
        return _h323(recs)
    return None
