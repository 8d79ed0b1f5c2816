"""The bpf(2) system call through ctypes: maps, loading a program, pinning
it on the BPF filesystem, running it on a frame (BPF_PROG_TEST_RUN).

No library for it is installed here (no libbpf Python binding, no
pyroute2), and the handful of commands the media offload needs are plain
structures (include/uapi/linux/bpf.h, ``union bpf_attr``). The system
call's number is the architecture's: x86_64 and aarch64 are known; on
another, every call raises OSError (ENOSYS) and the offload falls back to
the nftables table.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from typing import NamedTuple

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())

MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM = 0, 1, 2, 3
PROG_LOAD, OBJ_PIN, PROG_TEST_RUN = 5, 6, 10
MAP_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 14, 15
MAP_LOOKUP_BATCH = 24
MAP_TYPE_HASH = 1
F_NO_PREALLOC = 1
PROG_TYPE_SCHED_CLS = 3
_ATTR = 128                                  # larger than every command's part of the union

_libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: bytes | ctypes.Array, what: str = "") -> int:
    if SYS_BPF is None:
        raise OSError(38, f"bpf: no system call number known for {platform.machine()}")
    buf = attr if isinstance(attr, ctypes.Array) else ctypes.create_string_buffer(attr.ljust(_ATTR, b"\0"),
                                                                                  _ATTR)
    r = _libc.syscall(SYS_BPF, cmd, buf, len(buf))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({what or cmd}): {os.strerror(err)}")
    return r


def create_hash_map(key_size: int, value_size: int, max_entries: int, name: bytes = b"") -> int:
    """A hash map whose elements are allocated as they are added
    (BPF_F_NO_PREALLOC): kernel memory follows the flows installed, not
    ``max_entries`` (only userspace adds elements, never the datapath)."""
    attr = struct.pack("=IIIIIII16s", MAP_TYPE_HASH, key_size, value_size, max_entries, F_NO_PREALLOC, 0, 0,
                       name[:15])
    return bpf(MAP_CREATE, attr, "map create")


def load_program(code: bytes, name: bytes, prog_type: int = PROG_TYPE_SCHED_CLS) -> int:
    """The program's fd; the verifier's log in the error when it refuses."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")      # the helpers used are GPL-only
    log = ctypes.create_string_buffer(1 << 20)
    attr = struct.pack("=IIQQIIQII16s", prog_type, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0, name[:15])
    try:
        return bpf(PROG_LOAD, attr, "prog load")
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}: {log.value.decode(errors='replace')[-2000:]}") from None


def pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(path.encode())
    bpf(OBJ_PIN, struct.pack("=QII", ctypes.addressof(p), fd, 0), f"pin {path}")


def object_id(fd: int) -> int:
    """The kernel's id of a map or program (global, unlike an fd): what
    another process, in any namespace, opens it by (``map_by_id``)."""
    info = ctypes.create_string_buffer(64)
    bpf(OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", fd, len(info), ctypes.addressof(info)), "object info")
    return struct.unpack_from("=I", info.raw, 4)[0]       # both infos: type (or prog type), then id


def map_by_id(map_id: int) -> int:
    """A new fd for the map of that id (the caller closes it)."""
    return bpf(MAP_GET_FD_BY_ID, struct.pack("=II", map_id, 0), "map by id")


def update(map_fd: int, key: bytes, value: bytes) -> None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    bpf(MAP_UPDATE_ELEM, struct.pack("=IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0),
        "map update")


def delete(map_fd: int, key: bytes) -> bool:
    """False when the key was not there."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(MAP_DELETE_ELEM, struct.pack("=IIQ", map_fd, 0, ctypes.addressof(k)), "map delete")
    except FileNotFoundError:
        return False
    return True


def lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_size)
    try:
        bpf(MAP_LOOKUP_ELEM, struct.pack("=IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0),
            "map lookup")
    except FileNotFoundError:
        return None
    return v.raw


def dump(map_fd: int, key_size: int, value_size: int, room: int) -> dict[bytes, bytes]:
    """Every element, read ``room`` at a time (BPF_MAP_LOOKUP_BATCH: one
    system call per ``room`` elements rather than two per element)."""
    keys = ctypes.create_string_buffer(key_size * room)
    values = ctypes.create_string_buffer(value_size * room)
    token_in, token_out = ctypes.create_string_buffer(8), ctypes.create_string_buffer(8)
    out: dict[bytes, bytes] = {}
    first = True
    while True:
        attr = ctypes.create_string_buffer(struct.pack(
            "=QQQQIIQQ", 0 if first else ctypes.addressof(token_in), ctypes.addressof(token_out),
            ctypes.addressof(keys), ctypes.addressof(values), room, map_fd, 0, 0).ljust(_ATTR, b"\0"), _ATTR)
        done = False
        try:
            bpf(MAP_LOOKUP_BATCH, attr, "map lookup batch")
        except FileNotFoundError:
            done = True                              # the last batch (possibly empty)
        count = struct.unpack_from("=I", attr.raw, 32)[0]
        kr, vr = keys.raw, values.raw
        for i in range(count):
            out[kr[i * key_size:(i + 1) * key_size]] = vr[i * value_size:(i + 1) * value_size]
        if done:
            return out
        ctypes.memmove(token_in, token_out, 8)
        first = False


class TestRun(NamedTuple):
    rc: int              # the program's return code
    frame: bytes         # the frame as the program left it
    mark: int            # the packet's mark then
    priority: int        # and its priority (the qdisc class)


def test_run(prog_fd: int, frame: bytes, ingress_ifindex: int = 0) -> TestRun:
    """Run a tc program once on an Ethernet frame in the kernel.
    ``ingress_ifindex``: the interface the frame is to have come in on."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + 256)
    # struct __sk_buff up to its cb[] (the fields a test run accepts), in and out.
    raw = bytearray(184)
    struct.pack_into("=I", raw, 36, ingress_ifindex)          # ingress_ifindex
    struct.pack_into("=I", raw, 40, ingress_ifindex)          # ifindex: the device it runs on
    ctx_in = ctypes.create_string_buffer(bytes(raw), len(raw))
    ctx_out = ctypes.create_string_buffer(256)             # the whole __sk_buff comes back
    attr = ctypes.create_string_buffer(struct.pack(
        "=IIIIQQIIIIQQ", prog_fd, 0, len(frame), len(data_out), ctypes.addressof(data_in),
        ctypes.addressof(data_out), 1, 0, len(raw), len(ctx_out), ctypes.addressof(ctx_in),
        ctypes.addressof(ctx_out)).ljust(_ATTR, b"\0"), _ATTR)
    bpf(PROG_TEST_RUN, attr, "prog test run")
    _fd, retval, _size_in, size_out = struct.unpack_from("=IIII", attr.raw)
    return TestRun(retval, data_out.raw[:size_out], struct.unpack_from("=I", ctx_out.raw, 8)[0],
                   struct.unpack_from("=I", ctx_out.raw, 32)[0])
