"""The wire layout of IPv4, UDP and TCP headers: protocol numbers, TCP flag
bits and option kinds, and the header structs."""

from __future__ import annotations

import struct

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# TCP flag bits (RFC 9293 section 3.1, RFC 3168 for ECE/CWR).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_SACK = 5  # RFC 2018

_IP = struct.Struct("!BBHHHBBHII")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
