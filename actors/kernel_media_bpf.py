"""The kernel side of the media offload's "bpf" layout
(gateway/datapath/offload_bpf.py says what the program does and why): the
flow map and the program loaded through bpf(2), the program pinned on the
BPF filesystem and attached by ``tc`` to the ingress of each queued
interface, flows added and removed one map operation each, counters read
in batches.

A tc filter and a pinned program outlive the process that made them, as an
nftables table does: the node reports them to its fence supervisor
(actors/fence.py, ``tc`` and ``pins``), which detaches and unpins them when
the node dies, and ``gatewayd --cleanup`` removes them by name.
"""

from __future__ import annotations

import os
import subprocess

from actors import bpf_sys
from actors.fence import remove_tc_filters
from gateway.datapath.offload_bpf import FILTER_PREF, KEY, PIN_PREFIX, VALUE, counters, flow_value, program

BPF_FS = "/sys/fs/bpf"
_READ_ROOM = 4096                      # elements per batch read


def pin_path(queue_num: int, fs: str | None = None) -> str:
    return f"{fs or BPF_FS}/{PIN_PREFIX}{queue_num}"


def filter_specs(ifaces) -> list[list[str]]:
    """What identifies the node's filters (``tc filter del dev DEV ingress
    pref N``): also what the fence and the cleanup remove."""
    return [["dev", dev, "ingress", "pref", str(FILTER_PREF)] for dev in ifaces]


def read_counts(map_fd: int) -> dict[bytes, tuple[int, int]]:
    """(packets, bytes) of every flow in a flow map, by key."""
    return {k: counters(v) for k, v in bpf_sys.dump(map_fd, KEY.size, VALUE.size, _READ_ROOM).items()}


def flows_of_map(map_id: int) -> dict[bytes, tuple[int, int]]:
    """The flows of a node's map, by the id ``gwctl status`` shows (another
    process, any namespace)."""
    fd = bpf_sys.map_by_id(map_id)
    try:
        return read_counts(fd)
    finally:
        os.close(fd)


class BpfFlows:
    """One node's program and flow map. ``dscp``, ``priority``: policy mark
    -> the DSCP and the packet priority (HTB class id) that traffic
    shaping's postrouting rule gives (gateway.shaping's plan), written by
    the program since a redirected packet skips postrouting."""

    def __init__(self, queue_num: int, ifaces, run, dscp=None, priority=None,
                 max_flows: int = 262_144) -> None:
        self.ifaces = list(ifaces)
        self.run = run
        self.dscp = dict(dscp or {})
        self.priority = dict(priority or {})
        self.max_flows = max_flows
        self.pin = pin_path(queue_num)
        self.map_fd = -1
        self.prog_fd = -1
        self.map_id = 0                  # the kernel's id: how tools and tests read the map
        self._attached: list[list[str]] = []

    def install(self) -> str:
        """Load, pin, attach; "" when done, else why not (nothing is left
        half-installed)."""
        if not self.ifaces:
            return "media offload needs at least one interface"
        try:
            self._mount()
            self.map_fd = bpf_sys.create_hash_map(KEY.size, VALUE.size, self.max_flows, b"voipgw_flows")
            self.map_id = bpf_sys.object_id(self.map_fd)
            self.prog_fd = bpf_sys.load_program(program(self.map_fd), b"voipgw_media")
            remove_tc_filters([], [self.pin])      # an earlier run's
            bpf_sys.pin(self.prog_fd, self.pin)
        except OSError as exc:
            self.remove()
            return f"the BPF program could not be loaded: {exc}"
        for spec in filter_specs(self.ifaces):
            dev = spec[1]
            for cmd in (["tc", "qdisc", "replace", "dev", dev, "clsact"],
                        ["tc", "filter", "replace", *spec, "bpf", "direct-action", "object-pinned", self.pin]):
                try:
                    r = self.run(cmd, capture_output=True, text=True, timeout=10)
                except (OSError, subprocess.SubprocessError) as exc:
                    r = subprocess.CompletedProcess(cmd, 1, "", str(exc))
                if r.returncode != 0:
                    self.remove()
                    return f"{' '.join(cmd)}: {(r.stderr or '').strip()[:300]}"
            self._attached.append(spec)
        return ""

    def _mount(self) -> None:
        if os.path.ismount(BPF_FS):
            return
        r = self.run(["mount", "-t", "bpf", "bpf", BPF_FS], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise OSError(r.returncode, f"mount -t bpf {BPF_FS}: {(r.stderr or '').strip()}")

    def remove(self) -> None:
        remove_tc_filters(self._attached, [self.pin], self.run)
        self._attached.clear()
        for fd in (self.prog_fd, self.map_fd):
            if fd >= 0:
                os.close(fd)
        self.prog_fd = self.map_fd = -1

    @property
    def attached(self) -> list[list[str]]:
        return list(self._attached)

    def apply(self, adds, deletes) -> None:
        """Deletions first (a key whose session changed is deleted and added
        again); an error raises OSError with the map as far as it got."""
        for f in deletes:
            bpf_sys.delete(self.map_fd, f.key)
        for f in adds:
            bpf_sys.update(self.map_fd, f.key, flow_value(f.head, f.mark, self.dscp.get(f.mark),
                                                          self.priority.get(f.mark, 0)))

    def counts(self) -> dict[bytes, tuple[int, int]]:
        """(packets, bytes) of every flow in the map, by key."""
        return read_counts(self.map_fd)

    def flush(self) -> None:
        for key in bpf_sys.dump(self.map_fd, KEY.size, VALUE.size, _READ_ROOM):
            bpf_sys.delete(self.map_fd, key)
