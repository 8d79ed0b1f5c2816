"""An eBPF assembler, small enough to read: instructions as bytes, jumps to
labels resolved at the end (sans-I/O).

The media offload's program (gateway/datapath/offload_bpf.py) is written
with it instead of compiled from C: the machines this runs on have no
compiler for BPF, and the program is short. The encoding is the kernel's
(Documentation/bpf/instruction-set.rst): 8 octets, opcode, the destination
and source registers in one octet, a signed 16-bit offset, a signed 32-bit
immediate.
"""

from __future__ import annotations

import struct

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, FP = range(11)

# Helper numbers (include/uapi/linux/bpf.h, enum bpf_func_id).
MAP_LOOKUP_ELEM, SKB_STORE_BYTES, L3_CSUM_REPLACE, L4_CSUM_REPLACE, REDIRECT = 1, 9, 10, 11, 23
FIB_LOOKUP = 69
# Flags of the checksum helpers: the field is part of the UDP pseudo-header
# (addresses); a zero UDP checksum means none and stays zero (RFC 768).
F_PSEUDO_HDR, F_MARK_MANGLED_0 = 0x10, 0x20


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov_imm(d, imm): return insn(0xb7, d, imm=imm)
def mov(d, s): return insn(0xbf, d, s)
def add_imm(d, imm): return insn(0x07, d, imm=imm)
def and_imm(d, imm): return insn(0x57, d, imm=imm)
def or_reg(d, s): return insn(0x4f, d, s)
def lsh_imm(d, imm): return insn(0x67, d, imm=imm)
def ldx_w(d, s, off): return insn(0x61, d, s, off)
def ldx_h(d, s, off): return insn(0x69, d, s, off)
def ldx_b(d, s, off): return insn(0x71, d, s, off)
def stx_w(d, s, off): return insn(0x63, d, s, off)
def stx_h(d, s, off): return insn(0x6b, d, s, off)
def stx_b(d, s, off): return insn(0x73, d, s, off)
def st_dw(d, off, imm): return insn(0x7a, d, 0, off, imm)
def atomic_add_dw(d, s, off): return insn(0xdb, d, s, off, 0)
def call(n): return insn(0x85, imm=n)
def exit_(): return insn(0x95)


def ld_map_fd(d: int, fd: int) -> list[bytes]:
    """The map's fd into ``d``: one instruction in two slots (BPF_PSEUDO_MAP_FD)."""
    return [insn(0x18, d, 1, 0, fd), insn(0, 0, 0, 0, 0)]


# Conditional jumps by label, resolved by ``assemble``:
#   ("jmp", op, reg, imm, label)   against an immediate
#   ("jreg", op, dst, src, label)  against a register
#   ("label", name)
_JMP_IMM = {"==": 0x15, "!=": 0x55, "<=": 0xb5, ">": 0x25}
_JMP_REG = {"==": 0x1d, "!=": 0x5d, ">": 0x2d}


def assemble(body: list) -> bytes:
    where, n = {}, 0
    for item in body:
        if isinstance(item, tuple) and item[0] == "label":
            if item[1] in where:
                raise ValueError(f"label {item[1]!r} defined twice")
            where[item[1]] = n
        else:
            n += 1
    out, n = [], 0
    for item in body:
        if isinstance(item, tuple):
            kind = item[0]
            if kind == "label":
                continue
            _k, op, dst, arg, label = item
            off = where[label] - n - 1
            if kind == "jmp":
                out.append(insn(_JMP_IMM[op], dst, off=off, imm=arg))
            elif kind == "jreg":
                out.append(insn(_JMP_REG[op], dst, arg, off))
            else:
                raise ValueError(f"unknown pseudo-instruction {kind!r}")
        else:
            out.append(item)
        n += 1
    return b"".join(out)
