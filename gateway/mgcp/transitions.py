"""Every transition of the MGCP ALG, in two tables.

Commands are looked up by (sender's role, verb); responses by (the phase of
their transaction, the response class). What the tables do not list is
dropped: the manual's "stateful inspection at the UDP packet level, the
transaction level, and at the call level. MGCP packets matching the RFC3435
message format, transaction state, and call state, are processed. All other
messages are dropped" (ch. 3 "MGCP Security").

Command rule fields:
  wildcard  which wildcard endpoint names RFC 3435 allows: "all" (``*``,
            ``$`` and ranges: AUEP, RSIP, DLCX, RQNT, EPCF), "any" (``$``
            only: CRCX asks the gateway to pick one endpoint, 2.3.5), "none"
            (MDCX, AUCX and NTFY name one endpoint)
  service   whether the endpoint must be in service (every command but RSIP
            and AUEP, which are how an endpoint comes back, 2.3.12 / 2.3.10)
  needs     the call-level state the command must match: "call-id" (CRCX
            names its call), "connection" (MDCX, AUCX: the connection must
            exist), "connection-or-call" (DLCX: I: must exist, else C:)
  audit     an audit command (does not set the default notified entity)
  actions   run in order: start_call, media, delete, restart, notified,
            notified_check

Response actions:
  answer            record the response in the transaction
  created           CRCX success: the connection (I:) exists
  media             CRCX/MDCX success: bind the local connection descriptor
  notified_default  success of a non-audit call agent command: its source is
                    the endpoint's notified entity unless N: set one
  failed            CRCX failure: release the media the command bound
  retransmission    the same final response again: pass
  ack               response acknowledgement (000): the transaction ends
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mgcp.message_types import response_class

CA = "call-agent"
GW = "gateway"


@dataclass(frozen=True, slots=True)
class CommandRule:
    wildcard: str
    service: bool
    needs: str
    audit: bool
    actions: tuple[str, ...]


COMMANDS: dict[tuple[str, str], CommandRule] = {
    (CA, "CRCX"): CommandRule("any", True, "call-id", False, ("notified", "start_call", "media")),
    (CA, "MDCX"): CommandRule("none", True, "connection", False, ("notified", "media")),
    (CA, "DLCX"): CommandRule("all", True, "connection-or-call", False, ("notified", "delete")),
    (GW, "DLCX"): CommandRule("all", True, "connection-or-call", False, ("delete",)),
    (CA, "RQNT"): CommandRule("all", True, "", False, ("notified",)),
    (CA, "EPCF"): CommandRule("all", True, "", False, ()),
    (CA, "AUEP"): CommandRule("all", False, "", True, ()),
    (CA, "AUCX"): CommandRule("none", True, "connection", True, ()),
    (GW, "NTFY"): CommandRule("none", True, "", False, ("notified_check",)),
    (GW, "RSIP"): CommandRule("all", False, "", False, ("restart",)),
}


# A transaction's phase when a response comes: OPEN (no final response yet)
# or FINAL (answered: a response now is a retransmission, RFC 3435 3.5.5).
OPEN, FINAL = "open", "final"

RESPONSES: dict[tuple[str, str], tuple[str, ...]] = {
    (OPEN, "provisional"): ("answer",),
    (OPEN, "success"): ("answer", "created", "media", "notified_default"),
    (OPEN, "error"): ("answer", "failed"),
    (FINAL, "provisional"): ("retransmission",),
    (FINAL, "success"): ("retransmission",),
    (FINAL, "error"): ("retransmission",),
    (FINAL, "ack"): ("ack",),
}


def response_kind(code: int) -> str:
    """RFC 3435 2.4: 000-099 acknowledgement, 1xx provisional, 2xx success,
    every other class of :func:`response_class` a final error."""
    cls = response_class(code)
    return cls if cls in _NOT_ERRORS else "error"


_NOT_ERRORS = frozenset({"ack", "provisional", "success"})


def command_rule(role: str, verb: str) -> CommandRule | None:
    return COMMANDS.get((role, verb))


def response_actions(phase: str, kind: str) -> tuple[str, ...] | None:
    return RESPONSES.get((phase, kind))
