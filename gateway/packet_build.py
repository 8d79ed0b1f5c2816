"""Building whole IPv4/UDP and IPv4/TCP packets, and SACK option bytes."""

from __future__ import annotations

import struct

from gateway.packet_layout import _IP, _TCP, _UDP, ACK, PROTO_TCP, PROTO_UDP, TCPOPT_SACK
from gateway.packet_rewrite import _addr, _finish, _port

def _ip_head(src, dst, proto: int, ttl: int, ident: int, tos: int, dont_fragment: bool) -> bytearray:
    return bytearray(_IP.pack(0x45, tos, 0, ident & 0xFFFF, 0x4000 if dont_fragment else 0,
                              ttl, proto, 0, _addr(src), _addr(dst)))


def build_udp(src, dst, sport: int, dport: int, payload: bytes, ttl: int = 64, ident: int = 0,
              *, tos: int = 0, dont_fragment: bool = False) -> bytes:
    """A complete IPv4/UDP packet with lengths and checksums set."""
    head = _ip_head(src, dst, PROTO_UDP, ttl, ident, tos, dont_fragment)
    head += _UDP.pack(_port(sport), _port(dport), 0, 0)
    payload = bytes(payload)
    if len(head) + len(payload) > 0xFFFF:
        raise ValueError("payload too large for one IPv4 packet")
    return _finish(head, payload, 20, PROTO_UDP, udp=True)


def build_tcp(src, dst, sport: int, dport: int, seq: int, ack: int = 0, flags: int = ACK,
              payload: bytes = b"", *, window: int = 65535, options: bytes = b"", urgent: int = 0,
              ttl: int = 64, ident: int = 0, tos: int = 0, dont_fragment: bool = True) -> bytes:
    """A complete IPv4/TCP segment with lengths and checksums set. ``options``
    are raw option bytes, padded with EOL to a whole number of 32-bit words."""
    options = bytes(options)
    if len(options) % 4:
        options += b"\x00" * (4 - len(options) % 4)
    if len(options) > 40:
        raise ValueError("TCP options are at most 40 bytes")
    head = _ip_head(src, dst, PROTO_TCP, ttl, ident, tos, dont_fragment)
    doff = 5 + len(options) // 4
    head += _TCP.pack(_port(sport), _port(dport), seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      doff << 4, flags & 0xFF, window & 0xFFFF, 0, urgent & 0xFFFF)
    head += options
    payload = bytes(payload)
    if len(head) + len(payload) > 0xFFFF:
        raise ValueError("payload too large for one IPv4 packet")
    return _finish(head, payload, 20, PROTO_TCP, udp=False)


def sack_option(blocks) -> bytes:
    """The bytes of a SACK option (RFC 2018) holding ``blocks`` (1 to 4 pairs)."""
    blocks = tuple(blocks)
    if not 1 <= len(blocks) <= 4:
        raise ValueError("a SACK option holds 1 to 4 blocks")
    return bytes((TCPOPT_SACK, 2 + 8 * len(blocks))) + b"".join(
        struct.pack("!II", le & 0xFFFFFFFF, re & 0xFFFFFFFF) for le, re in blocks)
