"""IPv4, UDP and TCP headers: parse, rewrite and build, with checksums.

This is on the per-packet path (DESIGN.md, "A packet's way through", step 2), so
it is written for CPython's speed: one ``struct`` unpack per header, no objects
made for what the caller does not ask for, and checksums computed with integer
arithmetic instead of a loop over 16-bit words.

The checksum arithmetic rests on one fact: the Internet checksum (RFC 1071) is a
one's complement sum of 16-bit words, and since ``2**16 == 1 (mod 0xFFFF)`` that
sum is congruent to the whole buffer read as one big-endian integer, modulo
0xFFFF. ``int.from_bytes(data, "big") % 0xFFFF`` therefore gives the sum in C,
and an incremental update (RFC 1624, eqn. 3: ``HC' = ~(~HC + ~m + m')``) is a
few additions modulo 0xFFFF.

Decisions (see ARCHITECTURE.md, "Packet codec"):

* ``parse`` checks what the headers must satisfy (version, IHL, lengths, TCP
  data offset) and raises :class:`RemoteProtocolError` otherwise. It does not
  verify checksums (the kernel has done so for IP before NFQUEUE, and a capture
  may carry offloaded, unfinished ones); ``Packet.ip_checksum_ok`` and
  ``Packet.l4_checksum_ok`` are there to ask.
* TCP options are kept raw and only walked when asked for
  (``Packet.tcp_options``, ``Packet.sack_blocks``); a malformed option list
  raises :class:`RemoteProtocolError` from those accessors.
* ``rewrite`` updates checksums incrementally (RFC 1624) when only addresses,
  ports, sequence/acknowledgement numbers or SACK blocks change, so a packet
  that arrived with a wrong checksum still leaves with a wrong one (the error is
  preserved, never laundered). When the payload changes, lengths and checksums
  are recomputed.
* UDP checksum 0 means "none was computed" (RFC 768). An address or port change
  leaves it 0 (an incremental update of an absent checksum would invent a wrong
  one, and nf_nat does the same). A payload change computes a real checksum:
  the gateway is then the sender of those bytes, and RFC 768 says a computed
  zero is sent as 0xFFFF.
"""

from __future__ import annotations

from gateway.errors import RemoteProtocolError
from gateway.packet_build import build_tcp, build_udp, sack_option
from gateway.packet_checksum import (_apply_delta, _delta, checksum_update, fold, internet_checksum, ones_sum,
                                     pseudo_header_sum)
from gateway.packet_layout import (ACK, CWR, ECE, FIN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PSH, RST, SYN, TCPOPT_EOL,
                                   TCPOPT_NOP, TCPOPT_SACK, URG, _IP, _TCP, _UDP)
from gateway.packet_rewrite import rewrite
from gateway.packet_types import Packet, TcpOption

# The parsed form, the checksums, the header layout, rewriting and building stay importable from here.
__all__ = ["ACK", "CWR", "ECE", "FIN", "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "PSH", "RST", "SYN",
           "TCPOPT_EOL", "TCPOPT_NOP", "TCPOPT_SACK", "URG", "Packet", "TcpOption", "build_tcp", "build_udp",
           "checksum_update", "fold", "internet_checksum", "ones_sum", "parse", "pseudo_header_sum", "rewrite",
           "sack_option", "_apply_delta", "_delta"]


# ---------------------------------------------------------------- parse

def parse(buf: bytes | bytearray | memoryview) -> Packet:
    """Parse an IPv4 packet (starting at its IP header; bytes past the IP total
    length, such as Ethernet padding, are ignored). Raises RemoteProtocolError
    for a truncated or invalid IPv4, UDP or TCP header."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    n = len(buf)
    if n < 20:
        raise RemoteProtocolError(f"IPv4 header truncated: {n} bytes", offset=0)
    vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = _IP.unpack_from(buf)
    if vihl >> 4 != 4:
        raise RemoteProtocolError(f"IP version {vihl >> 4}, not 4", offset=0)
    ihl = vihl & 15
    hl = ihl << 2
    # RFC 791 3.1: IHL is at least 5 words, the total length covers the header.
    if ihl < 5:
        raise RemoteProtocolError(f"IHL {ihl} below 5", offset=0)
    if total < hl:
        raise RemoteProtocolError(f"IP total length {total} shorter than header {hl}", offset=2)
    if total > n:
        raise RemoteProtocolError(f"IP total length {total} exceeds the {n} bytes received", offset=2)
    mf = frag & 0x2000 != 0
    foff = (frag & 0x1FFF) << 3
    df = frag & 0x4000 != 0
    if foff:
        # A non-first fragment has no L4 header: its first bytes are payload.
        return Packet(buf, ihl, tos, total, ident, df, mf, foff, ttl, proto, csum, src, dst,
                      hl, None, None, None, None, None, None, None, None, None, None, hl, total)
    room = total - hl
    if proto == PROTO_UDP:
        if room < 8:
            raise RemoteProtocolError(f"UDP header truncated: {room} bytes", offset=hl)
        sport, dport, ulen, ucsum = _UDP.unpack_from(buf, hl)
        # RFC 768: the length counts header and data. A shorter length than the IP
        # payload leaves trailing bytes outside the datagram (Linux trims them);
        # a longer one is only possible in the first fragment of a datagram.
        if ulen < 8:
            raise RemoteProtocolError(f"UDP length {ulen} below 8", offset=hl + 4)
        if mf:
            end = total
        else:
            if ulen > room:
                raise RemoteProtocolError(f"UDP length {ulen} exceeds the IP payload {room}", offset=hl + 4)
            end = hl + ulen
        return Packet(buf, ihl, tos, total, ident, df, mf, 0, ttl, proto, csum, src, dst,
                      hl, sport, dport, ucsum, ulen, None, None, None, None, None, None, hl + 8, end)
    if proto == PROTO_TCP:
        # RFC 1858: a first fragment too short for the whole TCP header is refused
        # (the tiny-fragment attack) - the same test as for an unfragmented segment.
        if room < 20:
            raise RemoteProtocolError(f"TCP header truncated: {room} bytes", offset=hl)
        sport, dport, seq, ack, doff, flags, win, tcsum, urg = _TCP.unpack_from(buf, hl)
        doff >>= 4
        if doff < 5:
            raise RemoteProtocolError(f"TCP data offset {doff} below 5", offset=hl + 12)
        po = hl + (doff << 2)
        if po > total:
            raise RemoteProtocolError(f"TCP data offset {doff} runs past the segment", offset=hl + 12)
        return Packet(buf, ihl, tos, total, ident, df, mf, 0, ttl, proto, csum, src, dst,
                      hl, sport, dport, tcsum, None, seq, ack, doff, flags, win, urg, po, total)
    return Packet(buf, ihl, tos, total, ident, df, mf, 0, ttl, proto, csum, src, dst,
                  hl, None, None, None, None, None, None, None, None, None, None, hl, total)
