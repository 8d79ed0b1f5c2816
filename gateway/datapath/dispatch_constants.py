"""The datapath's fixed numbers (DESIGN.md, "A packet's way through"): the
ports that send signalling to each ALG (UDP ALGs as rows of
:data:`UDP_ALGS`), the idle lifetimes of the ALGs' flows, the limits on
fragments of a session, and the TCP flags and ICMP types the per-packet path
reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.config.model import Config
from gateway.datapath.sessions import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from gateway.datapath.signalling_scan import mgcp_key, sip_call_id


SIP_PORT = 5060
MGCP_PORTS = (2427, 2727)          # manual ch. 3: MGCP-UA UDP 2427, MGCP-CA UDP 2727
H323_TCP_PORT = 1720               # H.225.0 call signalling (Q.931)
H323_RAS_PORTS = (1718, 1719)      # H.225.0 RAS: gatekeeper discovery, RAS
H323_SERVICE = "h.323"             # the predefined service's name (gateway/config/model.py)
# Idle lifetimes of H.323 flows: RAS as a registration without timeToLive
# (gateway.h323.alg.H323Settings.registration_ttl), call signalling as the
# ALG's signalling inactivity timeout (a call may be silent for hours).
H323_RAS_TIMEOUT = 3600.0
H323_SIGNALLING_TIMEOUT = 43200.0
MGCP_SESSION_TIMEOUT = 3600.0      # a call agent's commands to a gateway behind NAT come rarely


@dataclass(frozen=True, slots=True)
class UdpAlg:
    """How a permitted UDP datagram to one of ``ports`` reaches its ALG: the
    key of the actor that owns its dialog, read from the payload
    (``dialog_key``; None: the ALG's own ``handoff`` fields say where it goes),
    and the idle lifetime of the signalling session it opens, from the
    configuration. A UDP ALG is one row of :data:`UDP_ALGS`."""

    alg: str
    ports: tuple[int, ...]
    dialog_key: Callable[[bytes], str] | None
    idle_timeout: Callable[[Config], float]
    handoff: dict[str, Any] = field(default_factory=dict)


UDP_ALGS = (
    # manual ch. 2: SIP over UDP; one actor per Call-ID.
    UdpAlg("sip", (SIP_PORT,), sip_call_id, lambda c: float(c.sip.signaling_inactivity_timeout)),
    # manual ch. 3: one actor per endpoint or transaction.
    UdpAlg("mgcp", MGCP_PORTS, mgcp_key, lambda c: MGCP_SESSION_TIMEOUT),
    # manual ch. 1: H.225.0 RAS, the H.323 ALG's "ras" channel.
    UdpAlg("h323", H323_RAS_PORTS, None, lambda c: H323_RAS_TIMEOUT,
           {"channel": "ras", "conn_key": "ras"}),
)
UDP_ALG_BY_PORT: dict[int, UdpAlg] = {p: u for u in UDP_ALGS for p in u.ports}
UDP_ALG_BY_NAME: dict[str, UdpAlg] = {u.alg: u for u in UDP_ALGS}
_SYN = 0x02
TCP_SIGNALLING_NOTE = "TCP signalling not inspected"
FRAGMENT_DROP = "fragment: reassembly not supported"
# Fragments of a session wait at most this long for their siblings.
FRAGMENT_LIFETIME = 30.0
MAX_FRAGMENT_FLOWS = 4096

_PROTO_NAMES = {PROTO_UDP: "udp", PROTO_TCP: "tcp", PROTO_ICMP: "icmp"}
_ICMP_ECHO = (0, 8)
_FIN_RST = 0x01 | 0x04
# After FIN or RST a TCP session lives this long idle (instead of 30 minutes).
TCP_CLOSING_TIMEOUT = 10.0
