"""The media offload's "bpf" layout: a tc ingress program that forwards an
established media flow itself (sans-I/O: the program's instructions and
the map's key and value; actors/kernel_media.py loads and fills them).

Why: the nftables rule of the "maps" layout costs ~2.5 us of CPU per packet
(BENCHMARKS.md, "Where an offloaded packet's time goes"), and this kernel
has no flowtable. A `cls_bpf` program in direct-action mode on the ingress
of each queued interface, measured in the same runs, forwards as fast as
plain forwarding (BENCHMARKS.md, "The next layout measured";
docs/decisions/media-offload-bpf.md has the design).

Per packet: Ethernet, IPv4 without options, UDP, not a fragment, TTL > 1
(anything else goes on to the stack untouched, ``TC_ACT_OK``). One hash
lookup by ``saddr . daddr . sport . dport`` as the packet arrives (the fast
path's key, ``buf[12:24]``). For a flow found there, the next hop is asked
of the kernel's routing table and neighbours at that instant
(``bpf_fib_lookup`` on the translated addresses); when it has no answer (no
neighbour yet, a smaller MTU on the way out: a redirect does not fragment,
an unreachable or blackhole route, forwarding off on the interface) the
packet goes on to the stack as it arrived, to the userspace path, which
answers as before. Otherwise, before the redirect: the packet and byte
counters of the flow (atomic adds), TTL - 1, the policy's DSCP (a redirect
skips postrouting, where actors/shaping.py writes it for other packets),
the four translated fields with the kernel's incremental checksum helpers
(RFC 1624; a zero UDP checksum stays zero, RFC 768), the MAC addresses of
the lookup, and the policy's firewall mark and its traffic class (the
packet's priority: the HTB class that actors/shaping.py's postrouting rule
would have chosen by the mark) so the egress qdisc shapes it; then ``bpf_redirect`` to the
egress interface: the IP stack, netfilter and conntrack are skipped (no
conntrack entry per media flow, as the nftables layouts' ``notrack``).
"""

from __future__ import annotations

import struct

from gateway.datapath.bpf_asm import (
    F_MARK_MANGLED_0, F_PSEUDO_HDR, FIB_LOOKUP, FP, L3_CSUM_REPLACE, L4_CSUM_REPLACE, MAP_LOOKUP_ELEM, R0, R1,
    R2, R3, R4, R5, R6, R7, R8, R9, REDIRECT, SKB_STORE_BYTES, add_imm, and_imm, assemble, atomic_add_dw, call,
    exit_, ld_map_fd, ldx_b, ldx_h, ldx_w, lsh_imm, mov, mov_imm, or_reg, st_dw, stx_b, stx_h, stx_w,
)

PIN_PREFIX = "voipgw_media_q"          # /sys/fs/bpf/<prefix><queue>: the program
FILTER_PREF = 7                        # the tc filter's preference on each ingress
TC_ACT_OK, TC_ACT_REDIRECT = 0, 7

# As the packet arrives, network order: saddr daddr sport dport.
KEY = struct.Struct("=4s4s2s2s")
# What the flow becomes: the new saddr daddr sport dport (network order),
# the policy's mark and traffic class (0: none), whether a DSCP is written
# and its value shifted into the TOS octet, then the kernel's packet and
# byte counters (aligned for the atomic adds).
VALUE = struct.Struct("=12sIIBB2xQQ")
_MARK, _PRIORITY, _DSCP_ON, _DSCP, _PACKETS, _BYTES = 12, 16, 20, 21, 24, 32
assert VALUE.size == 40 and struct.calcsize("=12sIIBB2x") == _PACKETS

# struct __sk_buff offsets (include/uapi/linux/bpf.h).
_SKB_LEN, _SKB_MARK, _SKB_PRIORITY, _SKB_INGRESS_IFINDEX, _SKB_DATA, _SKB_DATA_END = 0, 8, 32, 36, 76, 80
# struct bpf_fib_lookup on the stack (64 octets) and its fields.
_FIB = -96
_FIB_FAMILY, _FIB_PROTO, _FIB_SPORT, _FIB_DPORT, _FIB_IFINDEX, _FIB_TOS = 0, 1, 2, 4, 8, 12
_FIB_SRC, _FIB_DST, _FIB_SMAC, _FIB_DMAC = 16, 32, 52, 58
AF_INET = 2
# The frame: Ethernet (14), then IPv4 without options (20), then UDP.
_ETH_TYPE, _IP_VER_TOS, _IP_FRAG, _IP_TTL, _IP_PROTO, _IP_CSUM, _IP_SRC = 12, 14, 20, 22, 23, 24, 26
_UDP_CSUM = 40


def flow_value(head: bytes, mark: int, dscp: int | None, priority: int = 0) -> bytes:
    """The value of a flow whose packets become ``head`` (the fast path's
    rewritten ``buf[12:24]``), with the policy's mark, DSCP and traffic
    class (``priority``: the qdisc class id, major << 16 | minor)."""
    if len(head) != 12:
        raise ValueError("a flow's head is 12 octets: saddr daddr sport dport")
    return VALUE.pack(head, mark & 0xFFFFFFFF, priority & 0xFFFFFFFF, 0 if dscp is None else 1,
                      0 if dscp is None else (dscp & 0x3F) << 2, 0, 0)


def counters(value: bytes) -> tuple[int, int]:
    """(packets, bytes) the kernel counted for the flow."""
    return struct.unpack_from("=QQ", value, _PACKETS)


def program(map_fd: int) -> bytes:
    """The classifier. r6: the packet's ``__sk_buff``; r7: the flow's value."""
    body: list = [
        mov(R6, R1),
        ldx_w(R2, R6, _SKB_DATA), ldx_w(R3, R6, _SKB_DATA_END),
        mov(R4, R2), add_imm(R4, 42),                       # Ethernet + IPv4 (no options) + UDP
        ("jreg", ">", R4, R3, "pass"),
        ldx_h(R5, R2, _ETH_TYPE), ("jmp", "!=", R5, 0x0008, "pass"),          # IPv4
        ldx_b(R5, R2, _IP_VER_TOS), ("jmp", "!=", R5, 0x45, "pass"),         # no options
        ldx_b(R5, R2, _IP_PROTO), ("jmp", "!=", R5, 17, "pass"),             # UDP
        ldx_h(R5, R2, _IP_FRAG), and_imm(R5, 0xff3f), ("jmp", "!=", R5, 0, "pass"),   # not a fragment
        ldx_b(R5, R2, _IP_TTL), ("jmp", "<=", R5, 1, "pass"),               # the stack answers TTL 1
        ldx_w(R5, R2, _IP_SRC), stx_w(FP, R5, -16),          # key: saddr
        ldx_w(R5, R2, _IP_SRC + 4), stx_w(FP, R5, -12),      #      daddr
        ldx_w(R5, R2, _IP_SRC + 8), stx_w(FP, R5, -8),       #      ports
        ldx_h(R5, R2, _IP_TTL), stx_w(FP, R5, -20),          # TTL and protocol, as they are
        ldx_h(R5, R2, _IP_VER_TOS), stx_w(FP, R5, -28),      # version/IHL and TOS, as they are
        *ld_map_fd(R1, map_fd),
        mov(R2, FP), add_imm(R2, -16), call(MAP_LOOKUP_ELEM),
        ("jmp", "==", R0, 0, "pass"),
        mov(R7, R0),
    ]
    # The next hop for the translated packet, asked before anything is
    # written: without an answer the packet goes on as it arrived.
    body += [st_dw(FP, _FIB + 8 * i, 0) for i in range(8)]
    body += [
        mov_imm(R1, AF_INET), stx_b(FP, R1, _FIB + _FIB_FAMILY),
        mov_imm(R1, 17), stx_b(FP, R1, _FIB + _FIB_PROTO),
        ldx_h(R1, R7, 8), stx_h(FP, R1, _FIB + _FIB_SPORT),
        ldx_h(R1, R7, 10), stx_h(FP, R1, _FIB + _FIB_DPORT),
        ldx_w(R1, R6, _SKB_INGRESS_IFINDEX), stx_w(FP, R1, _FIB + _FIB_IFINDEX),
        ldx_b(R1, FP, -27), stx_b(FP, R1, _FIB + _FIB_TOS),
        ldx_w(R1, R7, 0), stx_w(FP, R1, _FIB + _FIB_SRC),
        ldx_w(R1, R7, 4), stx_w(FP, R1, _FIB + _FIB_DST),
        mov(R1, R6), mov(R2, FP), add_imm(R2, _FIB), mov_imm(R3, 64), mov_imm(R4, 0), call(FIB_LOOKUP),
        ("jmp", "!=", R0, 0, "pass"),
        mov_imm(R1, 1), atomic_add_dw(R7, R1, _PACKETS),
        ldx_w(R1, R6, _SKB_LEN), atomic_add_dw(R7, R1, _BYTES),
        # TTL - 1 (the low octet of the little-endian load) and the IP checksum.
        ldx_w(R8, FP, -20), mov(R9, R8), add_imm(R9, -1), stx_w(FP, R9, -24),
        mov(R1, R6), mov_imm(R2, _IP_CSUM), mov(R3, R8), mov(R4, R9), mov_imm(R5, 2), call(L3_CSUM_REPLACE),
        mov(R1, R6), mov_imm(R2, _IP_TTL), mov(R3, FP), add_imm(R3, -24), mov_imm(R4, 2), mov_imm(R5, 0),
        call(SKB_STORE_BYTES),
        # The policy's DSCP in the TOS octet (the ECN bits kept).
        ldx_b(R1, R7, _DSCP_ON), ("jmp", "==", R1, 0, "dscp_done"),
        ldx_w(R8, FP, -28), mov(R9, R8), and_imm(R9, 0x03ff),
        ldx_b(R1, R7, _DSCP), lsh_imm(R1, 8), or_reg(R9, R1),
        ("jreg", "==", R8, R9, "dscp_done"),
        stx_w(FP, R9, -32),
        mov(R1, R6), mov_imm(R2, _IP_CSUM), mov(R3, R8), mov(R4, R9), mov_imm(R5, 2), call(L3_CSUM_REPLACE),
        mov(R1, R6), mov_imm(R2, _IP_VER_TOS), mov(R3, FP), add_imm(R3, -32), mov_imm(R4, 2), mov_imm(R5, 0),
        call(SKB_STORE_BYTES),
        ("label", "dscp_done"),
    ]
    for old, new, at in ((-16, 0, _IP_SRC), (-12, 4, _IP_SRC + 4)):       # addresses
        body += [
            ldx_w(R8, FP, old), ldx_w(R9, R7, new), ("jreg", "==", R8, R9, f"same{at}"),
            mov(R1, R6), mov_imm(R2, _UDP_CSUM), mov(R3, R8), mov(R4, R9),
            mov_imm(R5, F_PSEUDO_HDR | F_MARK_MANGLED_0 | 4), call(L4_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, _IP_CSUM), mov(R3, R8), mov(R4, R9), mov_imm(R5, 4), call(L3_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, at), mov(R3, R7), add_imm(R3, new), mov_imm(R4, 4), mov_imm(R5, 0),
            call(SKB_STORE_BYTES),
            ("label", f"same{at}"),
        ]
    for old, new, at in ((-8, 8, _IP_SRC + 8), (-6, 10, _IP_SRC + 10)):     # ports
        body += [
            ldx_h(R8, FP, old), ldx_h(R9, R7, new), ("jreg", "==", R8, R9, f"same{at}"),
            mov(R1, R6), mov_imm(R2, _UDP_CSUM), mov(R3, R8), mov(R4, R9),
            mov_imm(R5, F_MARK_MANGLED_0 | 2), call(L4_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, at), mov(R3, R7), add_imm(R3, new), mov_imm(R4, 2), mov_imm(R5, 0),
            call(SKB_STORE_BYTES),
            ("label", f"same{at}"),
        ]
    body += [
        # The next hop's MAC, then the egress interface's own.
        mov(R1, R6), mov_imm(R2, 0), mov(R3, FP), add_imm(R3, _FIB + _FIB_DMAC), mov_imm(R4, 6),
        mov_imm(R5, 0), call(SKB_STORE_BYTES),
        mov(R1, R6), mov_imm(R2, 6), mov(R3, FP), add_imm(R3, _FIB + _FIB_SMAC), mov_imm(R4, 6),
        mov_imm(R5, 0), call(SKB_STORE_BYTES),
        ldx_w(R1, R7, _MARK), ("jmp", "==", R1, 0, "marked"), stx_w(R6, R1, _SKB_MARK),
        ("label", "marked"),
        ldx_w(R1, R7, _PRIORITY), ("jmp", "==", R1, 0, "classed"), stx_w(R6, R1, _SKB_PRIORITY),
        ("label", "classed"),
        ldx_w(R1, FP, _FIB + _FIB_IFINDEX), mov_imm(R2, 0), call(REDIRECT), exit_(),
        ("label", "pass"), mov_imm(R0, TC_ACT_OK), exit_(),
    ]
    return assemble(body)
