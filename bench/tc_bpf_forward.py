"""A media flow forwarded by a tc ingress BPF program (the experiment behind
bench/bench_media_offload.py's ``tc-bpf`` gateway: MACs stored per flow, no
policy; the gateway's own program, which asks the kernel for the next hop,
is gateway/datapath/offload_bpf.py).

The offload's nftables rule costs ~2.5 us of CPU per packet on this machine
(BENCHMARKS.md, "Where an offloaded packet's time goes"), and the kernel has
no flowtable. This measures the other kernel path: a `cls_bpf` program in
direct-action mode on the ingress of each gateway interface that looks the
packet's (source, destination, ports) up in a BPF hash map and, for a flow
found there, writes the translated addresses and ports (checksums updated
incrementally by the kernel's helpers), decrements the TTL, writes the next
hop's and the egress interface's MAC addresses, counts packets and bytes in
the map's value and redirects the packet to the egress interface: the IP
stack, netfilter and the routing lookup are skipped. Anything else (other
protocols, fragments, IP options, TTL <= 1, unknown flows) goes on to the
stack as before (TC_ACT_OK).

No compiler: the program is assembled here instruction by instruction and
loaded with the bpf(2) system call through ctypes; tc attaches it from the
BPF filesystem where it is pinned.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors import bpf_sys  # noqa: E402
from gateway.datapath.bpf_asm import (  # noqa: E402
    F_MARK_MANGLED_0, F_PSEUDO_HDR, FP, L3_CSUM_REPLACE, L4_CSUM_REPLACE, MAP_LOOKUP_ELEM, R0, R1, R2, R3, R4,
    R5, R6, R7, R8, R9, REDIRECT, SKB_STORE_BYTES, add_imm, and_imm, assemble, atomic_add_dw, call, exit_,
    ld_map_fd, ldx_b, ldx_h, ldx_w, mov, mov_imm, stx_w,
)

# The map's value: what a flow becomes.
VALUE = struct.Struct("=4s4s2s2sI6s6s4xQQ")    # saddr daddr sport dport ifindex dmac smac | packets bytes
KEY = struct.Struct("=4s4s2s2s")                 # as the packet arrives (network order)


def program(map_fd: int) -> bytes:
    """The classifier; r6 the packet (``__sk_buff``), r7 the flow's value.
    (The gateway's own program, gateway/datapath/offload_bpf.py, asks the
    kernel for the next hop instead of storing MACs.)"""
    body: list = [
        mov(R6, R1),
        ldx_w(R2, R6, 76), ldx_w(R3, R6, 80),              # data, data_end
        mov(R4, R2), add_imm(R4, 42),                       # Ethernet + IPv4 (no options) + UDP
        ("jreg", ">", R4, R3, "pass"),
        ldx_h(R5, R2, 12), ("jmp", "!=", R5, 0x0008, "pass"),    # IPv4
        ldx_b(R5, R2, 14), ("jmp", "!=", R5, 0x45, "pass"),      # no options
        ldx_b(R5, R2, 23), ("jmp", "!=", R5, 17, "pass"),        # UDP
        ldx_h(R5, R2, 20), and_imm(R5, 0xff3f), ("jmp", "!=", R5, 0, "pass"),   # not a fragment
        ldx_b(R5, R2, 22), ("jmp", "<=", R5, 1, "pass"),         # the stack answers TTL 1
        ldx_w(R5, R2, 26), stx_w(FP, R5, -16),              # key: saddr
        ldx_w(R5, R2, 30), stx_w(FP, R5, -12),              #      daddr
        ldx_w(R5, R2, 34), stx_w(FP, R5, -8),               #      ports
        ldx_h(R5, R2, 22), stx_w(FP, R5, -20),              # TTL and protocol, as they are
        *ld_map_fd(R1, map_fd),
        mov(R2, FP), add_imm(R2, -16), call(MAP_LOOKUP_ELEM),
        ("jmp", "==", R0, 0, "pass"),
        mov(R7, R0),
        mov_imm(R1, 1), atomic_add_dw(R7, R1, 32),          # packets
        ldx_w(R1, R6, 0), atomic_add_dw(R7, R1, 40),        # bytes (skb->len)
        # TTL - 1 (the low byte of the little-endian load) and the IP checksum.
        ldx_w(R8, FP, -20), mov(R9, R8), add_imm(R9, -1), stx_w(FP, R9, -24),
        mov(R1, R6), mov_imm(R2, 24), mov(R3, R8), mov(R4, R9), mov_imm(R5, 2), call(L3_CSUM_REPLACE),
        mov(R1, R6), mov_imm(R2, 22), mov(R3, FP), add_imm(R3, -24), mov_imm(R4, 2), mov_imm(R5, 0),
        call(SKB_STORE_BYTES),
    ]
    for old, new, at in ((-16, 0, 26), (-12, 4, 30)):       # addresses
        body += [
            ldx_w(R8, FP, old), ldx_w(R9, R7, new), ("jreg", "==", R8, R9, f"same{at}"),
            mov(R1, R6), mov_imm(R2, 40), mov(R3, R8), mov(R4, R9),
            mov_imm(R5, F_PSEUDO_HDR | F_MARK_MANGLED_0 | 4), call(L4_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, 24), mov(R3, R8), mov(R4, R9), mov_imm(R5, 4), call(L3_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, at), mov(R3, R7), add_imm(R3, new), mov_imm(R4, 4), mov_imm(R5, 0),
            call(SKB_STORE_BYTES),
            ("label", f"same{at}"),
        ]
    for old, new, at in ((-8, 8, 34), (-6, 10, 36)):         # ports
        body += [
            ldx_h(R8, FP, old), ldx_h(R9, R7, new), ("jreg", "==", R8, R9, f"same{at}"),
            mov(R1, R6), mov_imm(R2, 40), mov(R3, R8), mov(R4, R9),
            mov_imm(R5, F_MARK_MANGLED_0 | 2), call(L4_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, at), mov(R3, R7), add_imm(R3, new), mov_imm(R4, 2), mov_imm(R5, 0),
            call(SKB_STORE_BYTES),
            ("label", f"same{at}"),
        ]
    body += [
        mov(R1, R6), mov_imm(R2, 0), mov(R3, R7), add_imm(R3, 16), mov_imm(R4, 12), mov_imm(R5, 0),
        call(SKB_STORE_BYTES),                              # next hop's MAC, then our own
        ldx_w(R1, R7, 12), mov_imm(R2, 0), call(REDIRECT), exit_(),
        ("label", "pass"), mov_imm(R0, 0), exit_(),         # TC_ACT_OK
    ]
    return assemble(body)


# -- loading ------------------------------------------------------------------------

def create_map(max_entries: int = 65536) -> int:
    return bpf_sys.create_hash_map(KEY.size, VALUE.size, max_entries)


def load(map_fd: int) -> int:
    return bpf_sys.load_program(program(map_fd), b"media_fwd")


pin = bpf_sys.pin
put = bpf_sys.update


def get(map_fd: int, key: bytes) -> bytes:
    return bpf_sys.lookup(map_fd, key, VALUE.size)


def flow_key(src: str, dst: str, sport: int, dport: int) -> bytes:
    return KEY.pack(socket.inet_aton(src), socket.inet_aton(dst), sport.to_bytes(2, "big"),
                    dport.to_bytes(2, "big"))


def flow_value(src: str, dst: str, sport: int, dport: int, ifindex: int, dmac: str, smac: str) -> bytes:
    return VALUE.pack(socket.inet_aton(src), socket.inet_aton(dst), sport.to_bytes(2, "big"),
                      dport.to_bytes(2, "big"), ifindex, bytes.fromhex(dmac.replace(":", "")),
                      bytes.fromhex(smac.replace(":", "")), 0, 0)


def attach(netns: str, devices, pinned: str) -> None:
    for dev in devices:
        for cmd in (["tc", "qdisc", "replace", "dev", dev, "clsact"],
                    ["tc", "filter", "replace", "dev", dev, "ingress", "pref", "1", "bpf", "direct-action",
                     "object-pinned", pinned]):
            r = subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


def detach(netns: str, devices) -> None:
    for dev in devices:
        subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "del", "dev", dev, "clsact"],
                       capture_output=True)


def test_run(prog_fd: int, frame: bytes) -> tuple[int, bytes]:
    """Run the program once on an Ethernet frame in the kernel (no device):
    its return code and the frame as it left it."""
    run = bpf_sys.test_run(prog_fd, frame)
    return run.rc, run.frame
