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

import struct
from ipaddress import IPv4Address
from typing import NamedTuple

from gateway.errors import RemoteProtocolError

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
_FFFF = 0xFFFF


# ---------------------------------------------------------------- checksums

def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """One's complement sum of ``data`` as 16-bit big-endian words (RFC 1071),
    an odd last byte padded with zero. Returns 0..0xFFFF (0 only for all-zero data)."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    if not n:
        return 0
    r = n % _FFFF
    return r or _FFFF


def _fold(s: int) -> int:
    """Reduce a non-negative sum of 16-bit terms to its one's complement value."""
    if not s:
        return 0
    r = s % _FFFF
    return r or _FFFF


fold = _fold


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The Internet checksum of ``data`` (RFC 1071): the complement of the one's
    complement sum, with ``initial`` (e.g. a pseudo-header sum) added in."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return ~_fold(n + initial) & _FFFF


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header of UDP/TCP (RFC 768, RFC 9293 3.1), reduced
    modulo 0xFFFF; 32-bit addresses count as their two 16-bit halves do."""
    return (src + dst + proto + length) % _FFFF


def checksum_update(checksum: int, old: bytes, new: bytes, *, odd: bool = False) -> int:
    """RFC 1624 eqn. 3: the checksum after the bytes ``old`` became ``new``
    (same length). ``odd`` says the field starts at an odd offset of the
    checksummed data, where its bytes fall in the low halves of the words."""
    if len(old) != len(new):
        raise ValueError("an incremental checksum update needs fields of equal length")
    w = 256 if (odd ^ (len(old) & 1)) else 1
    return _apply_delta(checksum, _delta(int.from_bytes(old, "big") * w, int.from_bytes(new, "big") * w))


def _delta(old: int, new: int) -> int:
    # ~m + m' of RFC 1624, kept non-negative: ~m == 0xFFFF - m (mod 0xFFFF).
    return _FFFF - old % _FFFF + new % _FFFF


def _apply_delta(checksum: int, delta: int) -> int:
    # ~HC is at least 1 unless HC == 0xFFFF, and delta is at least 1, so the sum is
    # never zero: the result is the complement of a value in 1..0xFFFF, exactly
    # what a full recomputation gives (which is why incremental == full).
    r = ((~checksum & _FFFF) + delta) % _FFFF
    return ~(r or _FFFF) & _FFFF


# ---------------------------------------------------------------- parsed form

class TcpOption(NamedTuple):
    """One TCP option: its kind, offset of the kind byte in the packet, and data
    (the bytes after kind and length; empty for NOP)."""

    kind: int
    offset: int
    data: bytes


class Packet(NamedTuple):
    """One parsed IPv4 packet. Immutable and slotted (a ``NamedTuple``: building
    one costs ~0.1 us where a frozen slotted dataclass of this size costs ~1.7 us).

    Offsets are absolute into ``buf``. ``sport``/``dport`` and the ``tcp_*`` and
    ``udp_length`` fields are None when the protocol is not TCP/UDP or the packet
    is a non-first fragment (whose bytes carry no L4 header). ``payload_offset``
    is where the L4 payload starts (``l4_offset`` when there is no L4 header);
    ``payload_end`` is where it stops (UDP length, else IP total length)."""

    buf: bytes
    ihl: int
    tos: int
    total_length: int
    ident: int
    dont_fragment: bool
    more_fragments: bool
    frag_offset: int
    ttl: int
    proto: int
    ip_checksum: int
    src_int: int
    dst_int: int
    l4_offset: int
    sport: int | None
    dport: int | None
    l4_checksum: int | None
    udp_length: int | None
    tcp_seq: int | None
    tcp_ack: int | None
    tcp_data_offset: int | None
    tcp_flags: int | None
    tcp_window: int | None
    tcp_urgent: int | None
    payload_offset: int
    payload_end: int

    # Addresses in their other forms: computed on access, not on every parse.
    @property
    def src(self) -> IPv4Address:
        return IPv4Address(self.src_int)

    @property
    def dst(self) -> IPv4Address:
        return IPv4Address(self.dst_int)

    @property
    def src_bytes(self) -> bytes:
        return self.buf[12:16]

    @property
    def dst_bytes(self) -> bytes:
        return self.buf[16:20]

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.frag_offset != 0

    @property
    def offset(self) -> int:
        """Fragment offset in bytes (the header's field times 8)."""
        return self.frag_offset

    @property
    def is_tcp(self) -> bool:
        return self.tcp_seq is not None

    @property
    def is_udp(self) -> bool:
        return self.udp_length is not None

    @property
    def ip_options(self) -> bytes:
        return self.buf[20:self.l4_offset]

    @property
    def payload(self) -> memoryview:
        return memoryview(self.buf)[self.payload_offset:self.payload_end]

    @property
    def payload_bytes(self) -> bytes:
        return self.buf[self.payload_offset:self.payload_end]

    @property
    def tcp_options_raw(self) -> bytes:
        if self.tcp_seq is None:
            return b""
        return self.buf[self.l4_offset + 20:self.payload_offset]

    @property
    def tcp_options(self) -> tuple[TcpOption, ...]:
        """The TCP options (RFC 9293 3.1); EOL ends the list. Raises
        RemoteProtocolError when an option's length is below 2 or runs past the header."""
        if self.tcp_seq is None:
            return ()
        buf = self.buf
        i, end = self.l4_offset + 20, self.payload_offset
        out = []
        while i < end:
            kind = buf[i]
            if kind == TCPOPT_EOL:
                break
            if kind == TCPOPT_NOP:
                out.append(TcpOption(kind, i, b""))
                i += 1
                continue
            if i + 1 >= end:
                raise RemoteProtocolError(f"TCP option {kind} has no length byte", offset=i)
            ln = buf[i + 1]
            if ln < 2 or i + ln > end:
                raise RemoteProtocolError(f"TCP option {kind} has bad length {ln}", offset=i)
            out.append(TcpOption(kind, i, buf[i + 2:i + ln]))
            i += ln
        return tuple(out)

    @property
    def sack_blocks(self) -> tuple[tuple[int, int], ...]:
        """(left edge, right edge) pairs of the SACK option (RFC 2018), or ()."""
        for opt in self.tcp_options:
            if opt.kind == TCPOPT_SACK:
                return _sack_pairs(opt)
        return ()

    @property
    def ip_checksum_ok(self) -> bool:
        return ones_sum(memoryview(self.buf)[:self.l4_offset]) == _FFFF

    @property
    def l4_checksum_ok(self) -> bool | None:
        """Whether the UDP/TCP checksum is right; None when it cannot be known
        (not TCP/UDP, or a fragment). An absent UDP checksum (0) counts as right."""
        if self.sport is None or self.is_fragment:
            return None
        if self.udp_length is not None:
            if self.l4_checksum == 0:
                return True
            length = self.udp_length
        else:
            length = self.total_length - self.l4_offset
        seg = memoryview(self.buf)[self.l4_offset:self.l4_offset + length]
        return internet_checksum(seg, pseudo_header_sum(self.src_int, self.dst_int, self.proto, length)) == 0


def _sack_pairs(opt: TcpOption) -> tuple[tuple[int, int], ...]:
    d = opt.data
    if len(d) % 8 or not d:
        raise RemoteProtocolError(f"SACK option has bad length {len(d) + 2}", offset=opt.offset)
    return tuple(struct.unpack_from("!II", d, k) for k in range(0, len(d), 8))


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


# ---------------------------------------------------------------- rewrite

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


# ---------------------------------------------------------------- build

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
