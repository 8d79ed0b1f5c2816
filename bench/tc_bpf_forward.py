"""A media flow forwarded by a tc ingress BPF program (an experiment for
bench/bench_media_offload.py's ``tc-bpf`` gateway; not part of the gateway).

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

import ctypes
import os
import socket
import struct
import subprocess

SYS_BPF = 321                              # x86_64
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_PROG_LOAD, BPF_OBJ_PIN = 0, 1, 2, 5, 6
BPF_MAP_TYPE_HASH = 1
BPF_PROG_TYPE_SCHED_CLS = 3

# Helpers (include/uapi/linux/bpf.h).
MAP_LOOKUP_ELEM, SKB_STORE_BYTES, L3_CSUM_REPLACE, L4_CSUM_REPLACE, REDIRECT = 1, 9, 10, 11, 23
F_PSEUDO_HDR, F_MARK_MANGLED_0 = 0x10, 0x20

# The map's value: what a flow becomes.
VALUE = struct.Struct("=4s4s2s2sI6s6s4xQQ")    # saddr daddr sport dport ifindex dmac smac | packets bytes
KEY = struct.Struct("=4s4s2s2s")                 # as the packet arrives (network order)

_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, len(attr))
    r = _libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return r


# -- the assembler ----------------------------------------------------------------

def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov_imm(d, imm): return _insn(0xb7, d, imm=imm)
def mov(d, s): return _insn(0xbf, d, s)
def add_imm(d, imm): return _insn(0x07, d, imm=imm)
def and_imm(d, imm): return _insn(0x57, d, imm=imm)
def ldx_w(d, s, off): return _insn(0x61, d, s, off)
def ldx_h(d, s, off): return _insn(0x69, d, s, off)
def ldx_b(d, s, off): return _insn(0x71, d, s, off)
def stx_w(d, s, off): return _insn(0x63, d, s, off)
def atomic_add_dw(d, s, off): return _insn(0xdb, d, s, off, 0)
def call(n): return _insn(0x85, imm=n)
def exit_(): return _insn(0x95)


def jmp(op: str, d: int, imm: int, off: int) -> bytes:
    return _insn({"==": 0x15, "!=": 0x55, "<=": 0xb5}[op], d, off=off, imm=imm)


def jgt_reg(d, s, off): return _insn(0x2d, d, s, off)


def ld_map_fd(d: int, fd: int) -> list[bytes]:
    """The map's fd into ``d``: one instruction in two slots (BPF_PSEUDO_MAP_FD)."""
    return [_insn(0x18, d, 1, 0, fd), _insn(0, 0, 0, 0, 0)]


def program(map_fd: int) -> bytes:
    """The classifier; r6 the packet (``__sk_buff``), r7 the flow's value.
    Jumps are resolved by label: ("jmp", op, reg, imm, "label")."""
    R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, FP = range(11)
    body: list = [
        mov(R6, R1),
        ldx_w(R2, R6, 76), ldx_w(R3, R6, 80),              # data, data_end
        mov(R4, R2), add_imm(R4, 42),                       # Ethernet + IPv4 (no options) + UDP
        ("jgt", R4, R3, "pass"),
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
            ldx_w(R8, FP, old), ldx_w(R9, R7, new), ("jmp_reg_eq", R8, R9, f"same{at}"),
            mov(R1, R6), mov_imm(R2, 40), mov(R3, R8), mov(R4, R9),
            mov_imm(R5, F_PSEUDO_HDR | F_MARK_MANGLED_0 | 4), call(L4_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, 24), mov(R3, R8), mov(R4, R9), mov_imm(R5, 4), call(L3_CSUM_REPLACE),
            mov(R1, R6), mov_imm(R2, at), mov(R3, R7), add_imm(R3, new), mov_imm(R4, 4), mov_imm(R5, 0),
            call(SKB_STORE_BYTES),
            ("label", f"same{at}"),
        ]
    for old, new, at in ((-8, 8, 34), (-6, 10, 36)):         # ports
        body += [
            ldx_h(R8, FP, old), ldx_h(R9, R7, new), ("jmp_reg_eq", R8, R9, f"same{at}"),
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
    return _resolve(body)


def _resolve(body: list) -> bytes:
    where, n = {}, 0
    for item in body:
        if isinstance(item, tuple) and item[0] == "label":
            where[item[1]] = n
        else:
            n += 1
    out, n = [], 0
    for item in body:
        if isinstance(item, tuple):
            kind = item[0]
            if kind == "label":
                continue
            if kind == "jmp":
                _k, op, reg, imm, label = item
                out.append(jmp(op, reg, imm, where[label] - n - 1))
            elif kind == "jgt":
                _k, d, s, label = item
                out.append(jgt_reg(d, s, where[label] - n - 1))
            elif kind == "jmp_reg_eq":
                _k, d, s, label = item
                out.append(_insn(0x1d, d, s, where[label] - n - 1))
        else:
            out.append(item)
        n += 1
    return b"".join(out)


# -- loading ------------------------------------------------------------------------

def create_map(max_entries: int = 65536) -> int:
    attr = struct.pack("=IIIII", BPF_MAP_TYPE_HASH, KEY.size, VALUE.size, max_entries, 0)
    return _bpf(BPF_MAP_CREATE, attr.ljust(72, b"\0"))


def load(map_fd: int) -> int:
    code = program(map_fd)
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 20)
    attr = struct.pack("=IIQQIIQII16s", BPF_PROG_TYPE_SCHED_CLS, len(code) // 8,
                       ctypes.addressof(insns), ctypes.addressof(lic), 1, len(log),
                       ctypes.addressof(log), 0, 0, b"media_fwd")
    try:
        return _bpf(BPF_PROG_LOAD, attr.ljust(128, b"\0"))
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}: {log.value.decode(errors='replace')[-3000:]}") from None


def pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(path.encode())
    _bpf(BPF_OBJ_PIN, struct.pack("=QII", ctypes.addressof(p), fd, 0).ljust(16, b"\0"))


def put(map_fd: int, key: bytes, value: bytes) -> None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    _bpf(BPF_MAP_UPDATE_ELEM, struct.pack("=IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))


def get(map_fd: int, key: bytes) -> bytes:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(VALUE.size)
    _bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("=IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))
    return v.raw


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


BPF_PROG_TEST_RUN = 10


def test_run(prog_fd: int, frame: bytes) -> tuple[int, bytes]:
    """Run the program once on an Ethernet frame in the kernel (no device):
    its return code and the frame as it left it."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + 256)
    attr = ctypes.create_string_buffer(struct.pack(
        "=IIIIQQII", prog_fd, 0, len(frame), len(data_out), ctypes.addressof(data_in),
        ctypes.addressof(data_out), 1, 0).ljust(80, b"\0"))
    r = _libc.syscall(SYS_BPF, BPF_PROG_TEST_RUN, attr, 80)
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(BPF_PROG_TEST_RUN): {os.strerror(err)}")
    _fd, retval, _size_in, size_out = struct.unpack_from("=IIII", attr.raw)
    return retval, data_out.raw[:size_out]
