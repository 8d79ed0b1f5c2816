"""A parsed IPv4 packet: :class:`Packet`, with its TCP options
(:class:`TcpOption`) and SACK blocks read on access."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import NamedTuple

from gateway.errors import RemoteProtocolError
from gateway.packet_checksum import _FFFF, internet_checksum, ones_sum, pseudo_header_sum
from gateway.packet_layout import TCPOPT_EOL, TCPOPT_NOP, TCPOPT_SACK


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
