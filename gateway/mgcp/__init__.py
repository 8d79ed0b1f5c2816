"""MGCP (RFC 3435) for the MGCP ALG: a strict, offset-preserving parser.

``parse_datagram(data)`` returns the piggy-backed messages of one datagram, each
with the spans of every address and port NAT may rewrite (manual chapter 3)."""

from gateway.mgcp.message import (
    PARAMETER_CODES, RESTART_METHODS, VERBS, AddressSpan, Endpoint, MgcpMessage, NotifiedEntity, Param,
    parse_datagram, response_class,
)

__all__ = [
    "PARAMETER_CODES", "RESTART_METHODS", "VERBS", "AddressSpan", "Endpoint", "MgcpMessage",
    "NotifiedEntity", "Param", "parse_datagram", "response_class",
]
