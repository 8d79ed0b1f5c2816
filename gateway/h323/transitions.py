"""Every transition of the H.323 ALG, in one table.

Keyed by (channel, message): channel "ras" (H.225.0 RAS), "q931" (call
signalling), "h245". A rule names the call phases it is valid in (``None``:
needs no call; "*": any call), the phase it leads to, and its actions:

  request     RAS request: a transaction on (requester, requestSeqNum)
  answer      RAS confirm/reject: ends the transaction of its seq
  register    RCF: the RRQ's callSignalAddress binding (incoming DIP table)
  unregister  UCF: the binding ends
  admit       ACF: a TCP pinhole to destCallSignalAddress (the Q.931
              connection, direct or gatekeeper routed)
  disengage   DCF: the call its DRQ named ends (H.225.0 7.10)
  start       Setup: the call begins
  progress    the call moves to the rule's phase
  h245        h245Address: a TCP pinhole to the H.245 listener
  faststart   fastStart OpenLogicalChannel media addresses: RTP/RTCP pinholes
  media       OLC / OLCAck media addresses: RTP/RTCP pinholes of the
              logical channel (forwardLogicalChannelNumber, H.245 7.3.1)
  close       CloseLogicalChannel: that channel's pinholes close
  release     ReleaseComplete: the call ends (its pinholes close)

H.245 tunnelled in a Q.931 message (h245Control, H.225.0 7.3.1) runs the
"h245" rules of each message it carries, as on a separate H.245 connection.

A message not in the table passes untouched apart from NAT of its addresses
when it is RAS or H.245 (H.225.0 and H.245 are extensible; unknown messages
are not attacks), and is dropped when it is call signalling that names no
call ("stateful inspection": Q.931 of an unknown call reference is not
forwarded), except the ReleaseComplete of a call its DCF already ended
(H.225.0 7.10): its call reference is kept until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ANY = "*"


class Phase(StrEnum):
    """A call's phase (Q.931): the Setup starts a call in SETUP; a rule's
    ``to`` is the phase its message leads to (the ALG's "progress" action
    records it). A ``str`` equal to its value: views, logs and the journal
    carry the text, and the fold turns the journal's text back into the member."""
    SETUP = "setup"
    PROCEEDING = "proceeding"
    ALERTING = "alerting"
    CONNECTED = "connected"


SETUP, PROCEEDING, ALERTING, CONNECTED = Phase.SETUP, Phase.PROCEEDING, Phase.ALERTING, Phase.CONNECTED
EARLY = (SETUP, PROCEEDING, ALERTING)
PHASES = EARLY + (CONNECTED,)


@dataclass(frozen=True, slots=True)
class Rule:
    phases: tuple[str, ...] | None     # Phase members, or (ANY,)
    to: Phase | None
    actions: tuple[str, ...]


_RAS_REQUESTS = ("gatekeeperRequest", "registrationRequest", "unregistrationRequest",
                 "admissionRequest", "bandwidthRequest", "disengageRequest", "locationRequest",
                 "infoRequest", "nonStandardMessage", "serviceControlIndication",
                 "resourcesAvailableIndicate")
_RAS_ANSWERS = ("gatekeeperConfirm", "gatekeeperReject", "registrationReject",
                "unregistrationReject", "admissionReject", "bandwidthConfirm", "bandwidthReject",
                "disengageReject", "locationConfirm", "locationReject",
                "infoRequestResponse", "infoRequestAck", "infoRequestNak", "requestInProgress",
                "serviceControlResponse", "resourcesAvailableConfirm", "unknownMessageResponse")

TRANSITIONS: dict[tuple[str, str], Rule] = {
    **{("ras", k): Rule(None, None, ("request",)) for k in _RAS_REQUESTS},
    **{("ras", k): Rule(None, None, ("answer",)) for k in _RAS_ANSWERS},
    ("ras", "registrationConfirm"): Rule(None, None, ("answer", "register")),
    ("ras", "unregistrationConfirm"): Rule(None, None, ("answer", "unregister")),
    ("ras", "admissionConfirm"): Rule(None, None, ("answer", "admit")),
    ("ras", "disengageConfirm"): Rule(None, None, ("answer", "disengage")),
    ("q931", "setup"): Rule(None, SETUP, ("start", "h245", "faststart")),
    ("q931", "callProceeding"): Rule(EARLY, PROCEEDING, ("progress", "h245", "faststart")),
    ("q931", "alerting"): Rule(EARLY, ALERTING, ("progress", "h245", "faststart")),
    ("q931", "progress"): Rule(EARLY, None, ("h245", "faststart")),
    ("q931", "connect"): Rule(EARLY + (CONNECTED,), CONNECTED, ("progress", "h245", "faststart")),
    ("q931", "facility"): Rule((ANY,), None, ("h245",)),
    ("q931", "setupAcknowledge"): Rule((ANY,), None, ()),
    ("q931", "information"): Rule((ANY,), None, ("h245", "faststart")),
    ("q931", "notify"): Rule((ANY,), None, ()),
    ("q931", "status"): Rule((ANY,), None, ()),
    ("q931", "statusEnquiry"): Rule((ANY,), None, ()),
    ("q931", "releaseComplete"): Rule((ANY,), None, ("release",)),
    ("h245", "openLogicalChannel"): Rule((ANY,), None, ("media",)),
    ("h245", "openLogicalChannelAck"): Rule((ANY,), None, ("media",)),
    ("h245", "closeLogicalChannel"): Rule((ANY,), None, ("close",)),
}


def lookup(channel: str, message: str) -> Rule | None:
    return TRANSITIONS.get((channel, message))
