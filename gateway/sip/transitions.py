"""Every transition of the SIP ALG's call state machine, in one table.

A message is reduced to a *trigger* (its method, or for a response its class
and the CSeq method) and looked up with the phase of the call it belongs to
(NONE when it belongs to no call). The table gives the next phase and the
actions the ALG runs; :mod:`gateway.sip.alg_actions` implements the actions and looks
nothing up anywhere else. The table is total over PHASES x TRIGGERS
(tests/test_sip_alg_replay.py::test_transition_table_is_total), so no message
falls through unhandled, and the phase a forwarded message leaves its call in
is the row's ``next`` (tests/test_sip_alg_phases.py, over random message
sequences).

Phases: NONE (no call), CALLING (INVITE sent, no final answer: a provisional
answer does not change the phase, since Timer C and the per-source setup
limit hold until the final answer, RFC 3261 §16.6), CONFIRMED (2xx seen),
REJECTED (final non-2xx to the initial INVITE: ends in 5 s unless the caller
retries, e.g. with credentials), TERMINATING (BYE or CANCEL seen: ends 5 s
later, manual ch. 2 "Call Termination", "Call Cancellation"); ``forwarded``
is a flag, not a phase. The fold (gateway.sip.state_fold) enters a phase by the
event the row's actions emit: CallStarted and CallRetried (start, retry)
CALLING, CallAnswered (answer) CONFIRMED, CallRejected (reject) REJECTED,
CallTerminating (teardown) TERMINATING.

Actions:
  start      create the call (new INVITE)
  activity   restart the signalling inactivity timer
  headers    NAT the header fields (Table 2) with the call's bindings
  stateless  NAT the header fields with the packet's own translation only
  media      read the SDP: bind ports, rewrite, open/close pinholes
  answer     first 2xx to INVITE: record the dialog (first one wins: forking)
  reject     final non-2xx to the initial INVITE: end in 5 s
  protect    feed ``sip protect deny`` (3xx/4xx/5xx answer to an INVITE)
  retry      a new INVITE after a rejection: the call goes on
  forward    the INVITE leaves by the caller's interface: no pinholes
  teardown   BYE / CANCEL: end the call 5 s later
  session    reset the session timer to the default (a new INVITE, ch. 2
             "Call Session Timers")
  refer      bind the referred party (REFER)
  register   outbound REGISTER: bind the contact (Incoming DIP table)
  registered 2xx to REGISTER: the binding's lifetime from the answer
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """A call's phase: the rows of the table. A ``str`` (equal to its value):
    views, logs and the journal carry the text; snapshots name the member."""
    NONE = "none"
    CALLING = "calling"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    TERMINATING = "terminating"


NONE, CALLING, CONFIRMED, REJECTED, TERMINATING = (Phase.NONE, Phase.CALLING, Phase.CONFIRMED,
                                                   Phase.REJECTED, Phase.TERMINATING)
PHASES = tuple(Phase)

METHODS = ("INVITE", "ACK", "OPTIONS", "BYE", "CANCEL", "REGISTER", "INFO",
           "SUBSCRIBE", "NOTIFY", "REFER", "UPDATE", "PRACK", "MESSAGE", "PUBLISH")

# Requests: the method (unknown methods are OTHER and pass untouched, as the
# kernel's nf_conntrack_sip does). FORWARD is an INVITE of a live call that
# leaves by the interface its caller is on (manual ch. 2 "Forwarded Calls").
# Responses: "<class>/<CSeq method>" with class 1xx, 2xx or 3-6xx ("fail");
# responses to methods other than INVITE and REGISTER are "<class>/OTHER".
REQUEST_TRIGGERS = METHODS + ("FORWARD", "OTHER")
RESPONSE_TRIGGERS = tuple(f"{c}/{m}" for m in ("INVITE", "REGISTER", "OTHER")
                          for c in ("1xx", "2xx", "fail"))
TRIGGERS = REQUEST_TRIGGERS + RESPONSE_TRIGGERS


@dataclass(frozen=True, slots=True)
class Transition:
    next: Phase
    actions: tuple[str, ...]
    why: str = ""


LIVE = (CALLING, CONFIRMED)
ENDING = (REJECTED, TERMINATING)

# In-dialog requests that may carry SDP and otherwise only refresh the call.
_MIDCALL = ("ACK", "UPDATE", "PRACK", "INFO", "OPTIONS", "NOTIFY", "SUBSCRIBE",
            "MESSAGE", "PUBLISH", "OTHER")


def _build() -> dict[tuple[Phase, str], Transition]:
    t: dict[tuple[Phase, str], Transition] = {}
    S = Transition

    # --- no call -------------------------------------------------------
    t[NONE, "INVITE"] = S(CALLING, ("start", "activity", "headers", "media"))
    t[NONE, "REGISTER"] = S(NONE, ("register",), "Incoming DIP table")
    t[NONE, "REFER"] = S(NONE, ("stateless", "refer"))
    for m in ("ACK", "OPTIONS", "BYE", "CANCEL", "INFO", "SUBSCRIBE", "NOTIFY",
              "UPDATE", "PRACK", "MESSAGE", "PUBLISH", "OTHER", "FORWARD"):
        # Out-of-dialog or of a call this node never saw: translated with the
        # packet's own NAT, no pinhole (no SDP context to trust).
        t[NONE, m] = S(NONE, ("stateless",), "no call")
    for r in RESPONSE_TRIGGERS:
        t[NONE, r] = S(NONE, ("stateless",), "no call")
    t[NONE, "2xx/REGISTER"] = S(NONE, ("registered",), "Incoming DIP table")
    t[NONE, "fail/INVITE"] = S(NONE, ("stateless", "protect"))

    for p in PHASES[1:]:
        # REGISTER shares nothing with calls, even with a reused Call-ID
        # (the ALG looks it up in phase "none"; these rows say the same).
        t[p, "REGISTER"] = S(p, ("register",))
        for c in ("1xx", "2xx", "fail"):
            t[p, f"{c}/REGISTER"] = S(p, ("stateless",))
        t[p, "2xx/REGISTER"] = S(p, ("registered",))
        t[p, "REFER"] = S(p, ("activity", "headers", "refer"))

    # --- live calls ----------------------------------------------------
    for p in LIVE:
        for m in _MIDCALL:
            t[p, m] = S(p, ("activity", "headers", "media"))
        t[p, "BYE"] = S(TERMINATING, ("activity", "headers", "teardown"))
        t[p, "1xx/OTHER"] = S(p, ("activity", "headers", "media"))
        t[p, "2xx/OTHER"] = S(p, ("activity", "headers", "media"))
        t[p, "fail/OTHER"] = S(p, ("activity", "headers"))
        t[p, "FORWARD"] = S(p, ("activity", "headers", "forward"))

    # An INVITE without a final answer yet: a retransmission with a new
    # branch, or the same request proxied on: refresh the offer.
    t[CALLING, "INVITE"] = S(CALLING, ("activity", "headers", "media"))
    t[CALLING, "CANCEL"] = S(TERMINATING, ("activity", "headers", "teardown"))
    t[CALLING, "1xx/INVITE"] = S(CALLING, ("activity", "headers", "media"))
    t[CALLING, "2xx/INVITE"] = S(CONFIRMED, ("activity", "headers", "answer", "media"))
    t[CALLING, "fail/INVITE"] = S(REJECTED, ("activity", "headers", "reject", "protect"))

    # A re-INVITE resets the session timer and renegotiates the media.
    t[CONFIRMED, "INVITE"] = S(CONFIRMED, ("activity", "session", "headers", "media"))
    # CANCEL after the 2xx has no effect (RFC 3261 §9.2; manual ch. 2 "CANCEL").
    t[CONFIRMED, "CANCEL"] = S(CONFIRMED, ("activity", "headers"))
    t[CONFIRMED, "1xx/INVITE"] = S(CONFIRMED, ("activity", "headers", "media"))
    # A 2xx to a re-INVITE, or a second 2xx from another fork: "answer"
    # reads Session-Expires; only the winning dialog's SDP is used.
    t[CONFIRMED, "2xx/INVITE"] = S(CONFIRMED, ("activity", "headers", "answer", "media"))
    # A rejected re-INVITE leaves the call as it was (RFC 3261 §14.1).
    t[CONFIRMED, "fail/INVITE"] = S(CONFIRMED, ("activity", "headers", "protect"))

    # --- calls on their way out -----------------------------------------
    for p in ENDING:
        for m in _MIDCALL + ("BYE", "CANCEL", "FORWARD"):
            t[p, m] = S(p, ("headers",), "call ending: translate only")
        for r in RESPONSE_TRIGGERS:
            if not r.endswith("REGISTER"):
                t[p, r] = S(p, ("headers",), "call ending: translate only")
        t[p, "fail/INVITE"] = S(p, ("headers", "protect"))
    # After a 401/407/3xx the caller may send a new INVITE (new CSeq) on the
    # same Call-ID and From tag (RFC 3261 §22.2, §8.1.3.4).
    t[REJECTED, "INVITE"] = S(CALLING, ("retry", "activity", "headers", "media"))
    # A BYE on a rejected call (e.g. a late 2xx was acknowledged) ends it too.
    t[REJECTED, "BYE"] = S(TERMINATING, ("headers", "teardown"))
    # The 5 s teardown holds, "regardless of whether a 487 or non-200
    # response arrives" (ch. 2 "Call Cancellation"); a new INVITE is refused.
    t[TERMINATING, "INVITE"] = S(TERMINATING, ("headers",), "call ending")
    return t


TABLE: dict[tuple[Phase, str], Transition] = _build()


def lookup(phase: Phase, trigger: str) -> Transition:
    """The transition for ``trigger`` in ``phase``; KeyError is a bug (the
    table is total, see tests/test_sip_alg_replay.py::test_transition_table_is_total)."""
    return TABLE[phase, trigger]


def response_trigger(status: int, cseq_method: str) -> str:
    cls = "1xx" if status < 200 else "2xx" if status < 300 else "fail"
    m = cseq_method if cseq_method in ("INVITE", "REGISTER") else "OTHER"
    return f"{cls}/{m}"


def request_trigger(method: str) -> str:
    return method if method in METHODS else "OTHER"
