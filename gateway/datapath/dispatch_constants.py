"""The datapath's fixed numbers (DESIGN.md, "A packet's way through"): the
ports that send signalling to each ALG, the idle lifetimes of the ALGs' flows,
the limits on fragments of a session, and the TCP flags and ICMP types the
per-packet path reads."""

from __future__ import annotations

from gateway.datapath.sessions import PROTO_ICMP, PROTO_TCP, PROTO_UDP


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
_SYN = 0x02
TCP_SIGNALLING_NOTE = "TCP signalling not inspected"
FRAGMENT_DROP = "fragment: reassembly not supported"
# Fragments of a session wait at most this long for their siblings.
FRAGMENT_LIFETIME = 30.0
MAX_FRAGMENT_FLOWS = 4096
MGCP_SESSION_TIMEOUT = 3600.0      # a call agent's commands to a gateway behind NAT come rarely

_PROTO_NAMES = {PROTO_UDP: "udp", PROTO_TCP: "tcp", PROTO_ICMP: "icmp"}
_ICMP_ECHO = (0, 8)
_FIN_RST = 0x01 | 0x04
# After FIN or RST a TCP session lives this long idle (instead of 30 minutes).
TCP_CLOSING_TIMEOUT = 10.0
