"""Rewriting a parsed packet (:func:`rewrite`): addresses, ports, sequence
numbers, SACK blocks or payload, with lengths and checksums kept right as
:mod:`gateway.packet` describes."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from gateway.packet_checksum import _FFFF, _apply_delta, _delta, _fold, internet_checksum, ones_sum, pseudo_header_sum
from gateway.packet_layout import _IP, _U16, _U32, TCPOPT_SACK
from gateway.packet_types import Packet, _sack_pairs


def _addr(a: IPv4Address | int | bytes | str) -> int:
    if type(a) is int:
        if not 0 <= a <= 0xFFFFFFFF:
            raise ValueError(f"not an IPv4 address: {a}")
        return a
    if isinstance(a, (bytes, bytearray)):
        if len(a) != 4:
            raise ValueError(f"an IPv4 address has 4 bytes, not {len(a)}")
        return int.from_bytes(a, "big")
    return int(IPv4Address(a))


def _port(p: int) -> int:
    if not 0 <= p <= 0xFFFF:
        raise ValueError(f"not a port: {p}")
    return p


def rewrite(pkt: Packet, *, src=None, dst=None, sport: int | None = None, dport: int | None = None,
            payload: bytes | None = None, tcp_seq: int | None = None, tcp_ack: int | None = None,
            sack_blocks=None) -> bytes:
    """The packet with the given fields replaced, IP total length, UDP length
    and IP/UDP/TCP checksums right (module docstring: incremental unless the
    payload changes). ``src``/``dst`` take an IPv4Address, int, 4 bytes or text.
    ``sack_blocks`` replaces the SACK option's blocks in place: the same number
    of (left, right) pairs as the packet carries.

    Asking for something the packet cannot take (ports of a non-TCP/UDP packet or
    of a non-first fragment, a new payload for a fragment) is the caller's bug:
    ValueError."""
    if payload is not None:
        return _rebuild(pkt, src, dst, sport, dport, payload, tcp_seq, tcp_ack, sack_blocks)
    buf = pkt.buf
    out = bytearray(buf[:pkt.total_length]) if len(buf) != pkt.total_length else bytearray(buf)
    l4 = pkt.l4_offset
    has_l4 = pkt.sport is not None
    # L4 checksum position; None when there is none to keep right.
    if not has_l4 or (pkt.udp_length is not None and pkt.l4_checksum == 0):
        cpos = None
    else:
        cpos = l4 + (6 if pkt.udp_length is not None else 16)
    ip_d = 0
    l4_d = 0
    if src is not None:
        new = _addr(src)
        if new != pkt.src_int:
            _U32.pack_into(out, 12, new)
            d = _delta(pkt.src_int, new)
            ip_d += d
            l4_d += d
    if dst is not None:
        new = _addr(dst)
        if new != pkt.dst_int:
            _U32.pack_into(out, 16, new)
            d = _delta(pkt.dst_int, new)
            ip_d += d
            l4_d += d
    if sport is not None or dport is not None:
        if not has_l4:
            raise ValueError("ports can only be rewritten in a TCP/UDP packet carrying its L4 header")
        if sport is not None and sport != pkt.sport:
            _U16.pack_into(out, l4, _port(sport))
            l4_d += _delta(pkt.sport, sport)
        if dport is not None and dport != pkt.dport:
            _U16.pack_into(out, l4 + 2, _port(dport))
            l4_d += _delta(pkt.dport, dport)
    if tcp_seq is not None or tcp_ack is not None or sack_blocks is not None:
        if pkt.tcp_seq is None:
            raise ValueError("sequence numbers can only be rewritten in a TCP segment")
        if tcp_seq is not None:
            tcp_seq &= 0xFFFFFFFF
            _U32.pack_into(out, l4 + 4, tcp_seq)
            l4_d += _delta(pkt.tcp_seq, tcp_seq)
        if tcp_ack is not None:
            tcp_ack &= 0xFFFFFFFF
            _U32.pack_into(out, l4 + 8, tcp_ack)
            l4_d += _delta(pkt.tcp_ack, tcp_ack)
        if sack_blocks is not None:
            l4_d += _put_sack(pkt, out, sack_blocks)
    if ip_d:
        _U16.pack_into(out, 10, _apply_delta(pkt.ip_checksum, ip_d))
    if l4_d and cpos is not None:
        c = _apply_delta(pkt.l4_checksum, l4_d)
        if c == 0 and pkt.udp_length is not None:
            c = _FFFF  # RFC 768: a computed zero is sent as all ones
        _U16.pack_into(out, cpos, c)
    return bytes(out)


def _put_sack(pkt: Packet, out: bytearray, blocks) -> int:
    """Write SACK blocks over the packet's own; return the checksum delta."""
    opt = next((o for o in pkt.tcp_options if o.kind == TCPOPT_SACK), None)
    if opt is None:
        raise ValueError("the segment carries no SACK option")
    old = _sack_pairs(opt)
    blocks = tuple(blocks)
    if len(blocks) != len(old):
        raise ValueError(f"the SACK option has {len(old)} blocks, not {len(blocks)}")
    start = opt.offset + 2
    new = b"".join(struct.pack("!II", le & 0xFFFFFFFF, re & 0xFFFFFFFF) for le, re in blocks)
    out[start:start + len(new)] = new
    # A field at an odd offset of the TCP header lands in the low bytes of the
    # 16-bit words: it counts 256 times its value (mod 0xFFFF).
    w = 256 if (start - pkt.l4_offset) & 1 else 1
    return _delta(int.from_bytes(opt.data, "big") * w, int.from_bytes(new, "big") * w)


def _rebuild(pkt: Packet, src, dst, sport, dport, payload, tcp_seq, tcp_ack, sack_blocks) -> bytes:
    if pkt.is_fragment:
        raise ValueError("the payload of a fragment cannot be rewritten (the checksum covers the whole datagram)")
    if pkt.sport is None:
        raise ValueError("only TCP and UDP payloads can be rewritten")
    head = bytearray(pkt.buf[:pkt.payload_offset])
    if src is not None:
        _U32.pack_into(head, 12, _addr(src))
    if dst is not None:
        _U32.pack_into(head, 16, _addr(dst))
    l4 = pkt.l4_offset
    if sport is not None:
        _U16.pack_into(head, l4, _port(sport))
    if dport is not None:
        _U16.pack_into(head, l4 + 2, _port(dport))
    if tcp_seq is not None or tcp_ack is not None or sack_blocks is not None:
        if pkt.tcp_seq is None:
            raise ValueError("sequence numbers can only be rewritten in a TCP segment")
        if tcp_seq is not None:
            _U32.pack_into(head, l4 + 4, tcp_seq & 0xFFFFFFFF)
        if tcp_ack is not None:
            _U32.pack_into(head, l4 + 8, tcp_ack & 0xFFFFFFFF)
        if sack_blocks is not None:
            _put_sack(pkt, head, sack_blocks)
    payload = bytes(payload)
    total = len(head) + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"the rewritten packet would be {total} bytes, over the IPv4 maximum")
    return _finish(head, payload, l4, pkt.proto, udp=pkt.udp_length is not None)


def _finish(head: bytearray, payload: bytes, l4: int, proto: int, *, udp: bool) -> bytes:
    """Set lengths and both checksums of ``head + payload`` from scratch."""
    total = len(head) + len(payload)
    seglen = total - l4
    _U16.pack_into(head, 2, total)
    _U16.pack_into(head, 10, 0)
    _U16.pack_into(head, 10, internet_checksum(memoryview(head)[:l4]))
    cpos = l4 + (6 if udp else 16)
    if udp:
        _U16.pack_into(head, l4 + 4, seglen)
    _U16.pack_into(head, cpos, 0)
    src, dst = _IP.unpack_from(head)[8:10]
    # Header and payload are summed separately; the payload starts at an even
    # offset (headers are whole 32-bit words), so the two sums simply add.
    s = pseudo_header_sum(src, dst, proto, seglen) + ones_sum(memoryview(head)[l4:]) + ones_sum(payload)
    c = ~_fold(s) & _FFFF
    if udp and c == 0:
        c = _FFFF  # RFC 768
    _U16.pack_into(head, cpos, c)
    head += payload
    return bytes(head)
