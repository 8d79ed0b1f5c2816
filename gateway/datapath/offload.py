"""Established media flows handed to the kernel: which flows, and the
nftables text that installs, removes and reads them (sans-I/O).

Why the kernel: every RTP packet otherwise crosses the NFQUEUE into Python.
The userspace fast path (gateway/datapath/fastpath.py) keeps up with an
accept-only queue callback (~200k packets/s on one core), while the kernel
forwards ~250-340k/s on one core and scales with cores; and RTP takes the
interpreter lock the signalling needs. Once a media session is established,
nothing about its packets needs the ALG: the rewrite of each direction is
constant (the fast path's precomputation says exactly that).

Why nftables and not conntrack entries made over ctnetlink:
- the queue rules sit in ``raw PREROUTING``, *before* conntrack, and the
  userspace datapath rewrites statelessly (the kernel's conntrack sees the
  translated packet). An nftables chain at ``raw - 10`` does the very same
  rewrite, packet for packet, with the same keys as the fast path (the
  packet's addresses and ports), so the two paths are interchangeable at
  any instant: a flow not (or no longer) in the kernel's map simply goes on
  to the queue. A conntrack entry with NAT made over ctnetlink acts only at
  conntrack's nat hook, after the raw table, so every packet would still
  meet the NFQUEUE rule first (the queue cannot test for an entry that its
  hook runs before), and the ALG's media port reservations, which the
  datapath owns, would be mirrored in a second NAT table;
- nftables maps have per-element timeouts (refreshed by traffic with an
  ``update`` of the element) and per-element counters, which is what the
  ALG needs to see activity; ``nft`` is already a dependency (the kernel
  screen, shaping); pyroute2 is not installed, and the ``conntrack`` tool
  cannot create a NAT entry matched before the queue;
- the offloaded packets are marked untracked (``notrack``): no conntrack
  entry per media flow, no conntrack lookup per packet.

Two table layouts were measured (bench/bench_media_offload.py, same run,
2-core box): "maps" (below) and "chains" (a verdict map to a chain per flow
whose rule writes constants: one lookup instead of seven). Per packet
"chains" is faster (quiet box, ratio to plain forwarding, 1 / 2 flows:
0.90 / 0.85 against 0.80 / 0.72); at 5,000 calls installed at once, maps
installed in 0.44 s against 0.89 s, listed its counters in 0.34 s against
1.35 s and took 1.3 KB of kernel memory per call against 2.9 KB, and only
its elements time out in the kernel by themselves. "maps" is the default;
both are kept (``KernelMedia(mode=)``, ``python -m actors.ingest
--media-offload chains``). BENCHMARKS.md ("Media offload") has the profile
and the measured next step (a netdev ingress chain that forwards itself).

The table (one per node, named after its queue):

- ``flows``: the packet's ``saddr . daddr . sport . dport`` (the bytes the
  fast path keys on, ``buf[12:24]``) to a flow id, with the media
  inactivity timeout per element and a counter per element;
- ``nsaddr``, ``ndaddr``, ``nsport``, ``ndport``: flow id to the new
  source/destination address/port (the session's rewrite of that
  direction, or the packet's own when that field does not change);
- ``marks``: flow id to the firewall mark the verdict would have given
  (gateway.shaping's policy mark, 0 for none);
- one rule: look the flow up (the id goes into the packet's mark), refresh
  its element (timeout, counter), rewrite the four fields (the kernel
  updates the IP and UDP checksums, RFC 1624, and leaves a UDP checksum of
  0 alone, RFC 768), set the mark, ``notrack``. A raw-table rule ahead of
  the NFQUEUE rule accepts untracked packets (actors/kernel_media.py), so
  they never reach the queue. Fragments (offset or MF set) never match:
  later fragments carry no ports (the userspace path remembers the first
  fragment's flow for them).

Which flows: the established UDP media directions of the fast path's table
(``SessionTable.fast``, kept in step with the sessions), except a reply
direction whose first packet still has a pinhole to report (the ALG learns
from it that the called party's media flows): that packet goes through
userspace once, then the direction is offloaded too. A flow leaves the
kernel when its session leaves the table: BYE + 5 s, the media inactivity
timeout, the maximum call duration, ``clear session``, a takeover's reset,
all decided in userspace as before. Counters read from the kernel move the
session's idle deadline and packet counts and report the voice channel's
activity, so inactivity is detected, and journaled, as before.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.datapath.fastpath import key_bytes
from gateway.datapath.offload_counters import parse_chain_counters, parse_counters
from gateway.datapath.offload_nft import (AUX_MAPS, MAX_FLOWS, MODES, TABLE_PREFIX, UNTRACKED, Flow, add_chains_script,
                                          add_script, delete_chains_script, delete_script, flush_script, table_name,
                                          table_script)

# The table's text and its counters' parsers stay importable from here.
__all__ = ["AUX_MAPS", "MAX_FLOWS", "MODES", "TABLE_PREFIX", "UNTRACKED", "Flow", "OffloadTable", "Plan",
           "add_chains_script", "add_script", "delete_chains_script", "delete_script", "flush_script", "offloadable",
           "parse_chain_counters", "parse_counters", "table_name", "table_script"]


# -- which flows the kernel should have ----------------------------------------

def _flow_of(key: bytes, fid: int, entry) -> Flow:
    sess = entry.session
    head = entry.head if entry.head is not None else key
    return Flow(key, fid, entry, head, entry.mark & 0xFFFFFFFF, max(1, int(sess.timeout + 0.999)))


def offloadable(entry) -> bool:
    """A fast-path entry the kernel may take: a media session's direction,
    unless it is the reply whose first packet still reports a pinhole."""
    sess = entry.session
    return sess.kind == "media" and not (entry.watch and sess.rev_pinhole is not None)


class Plan(NamedTuple):
    adds: list[Flow]
    deletes: list[Flow]

    def script(self, table: str, mode: str = "maps") -> list[str]:
        # Deletions first: a key whose session changed is deleted and added
        # again in one transaction.
        if mode == "chains":
            return delete_chains_script(table, self.deletes) + add_chains_script(table, self.adds)
        return delete_script(table, self.deletes) + add_script(table, self.adds)


class _Installed:
    __slots__ = ("flow", "packets", "bytes")

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.packets = 0
        self.bytes = 0


class OffloadTable:
    """What this node has put in the kernel, and the differences to make."""

    def __init__(self, max_flows: int = MAX_FLOWS) -> None:
        self.max_flows = max_flows
        self.installed: dict[bytes, _Installed] = {}
        self._free: list[int] = []
        self._next = 1
        self._gone: list[Flow] = []      # vanished from the kernel: auxiliary elements to delete
        self.packets = 0                 # counted by the kernel, all flows so far
        self.bytes = 0
        self.added = 0
        self.removed = 0
        self.expired = 0                 # timed out in the kernel

    def __len__(self) -> int:
        return len(self.installed)

    def _id(self) -> int:
        if self._free:
            return self._free.pop()
        fid = self._next
        self._next += 1
        return fid

    def plan(self, fast: dict) -> Plan:
        """The changes that make the kernel hold exactly the offloadable
        entries of ``fast`` (``SessionTable.fast``); recorded as done."""
        adds: list[Flow] = []
        deletes: list[Flow] = self._gone
        self._gone = []
        inst = self.installed
        for key, have in list(inst.items()):
            e = fast.get(key)
            if e is not have.flow.entry or not offloadable(e):
                deletes.append(have.flow)
                have.flow.entry.session.offloaded -= 1
                del inst[key]
        room = self.max_flows - len(inst)
        for key, e in fast.items():
            if key in inst or not offloadable(e):
                continue
            if room <= 0:
                break                    # the rest stays in userspace
            room -= 1
            f = _flow_of(key, self._id(), e)
            inst[key] = _Installed(f)
            adds.append(f)
        self.added += len(adds)
        self.removed += len(deletes)
        for f in deletes:
            self._free.append(f.fid)
        for f in adds:
            f.entry.session.offloaded += 1
        return Plan(adds, deletes)

    def forget(self, sessions) -> Plan:
        """The deletions of these sessions' flows (sessions ended now, ahead
        of the next plan): by their keys, so that the cost is theirs, not
        that of every flow installed."""
        deletes: list[Flow] = []
        inst = self.installed
        for sess in sessions:
            for k in (sess.fwd_key, sess.rev_key):
                kb = key_bytes(k)
                have = inst.get(kb)
                if have is not None and have.flow.entry.session is sess:
                    deletes.append(have.flow)
                    sess.offloaded -= 1
                    del inst[kb]
        self.removed += len(deletes)
        self._free.extend(f.fid for f in deletes)
        return Plan([], deletes)

    def clear(self) -> Plan:
        """Everything out (a node that stops forwarding)."""
        deletes = self._gone + [i.flow for i in self.installed.values()]
        self._gone = []
        for i in self.installed.values():
            i.flow.entry.session.offloaded = 0
        self.installed.clear()
        self.removed += len(deletes)
        self._free.extend(f.fid for f in deletes)
        return Plan([], deletes)

    def reset(self) -> None:
        """Forget everything (the maps were flushed)."""
        for i in self.installed.values():
            i.flow.entry.session.offloaded = 0
        for f in self._gone:
            f.entry.session.offloaded = 0
        self.installed.clear()
        self._gone = []
        self._free = []
        self._next = 1

    def counted(self, counts: dict[bytes, tuple[int, int]], now: float, activity,
                paths: dict[str, int]) -> int:
        """Apply the kernel's counters (``parse_counters``) read after the
        last plan was applied: each flow's new packets count for its session
        (counters, idle deadline) and its voice channel's activity, as the
        userspace path counts them. A flow missing from the listing timed
        out in the kernel: it is forgotten (offered again if its session is
        still there) and its auxiliary elements deleted with the next plan.
        Returns the new packets."""
        new_total = 0
        for key, have in list(self.installed.items()):
            c = counts.get(key)
            if c is None:
                del self.installed[key]
                have.flow.entry.session.offloaded -= 1
                self._gone.append(have.flow)
                self.expired += 1
                continue
            packets, nbytes = c
            dp = packets - have.packets
            if dp <= 0:
                continue
            db = nbytes - have.bytes
            have.packets, have.bytes = packets, nbytes
            new_total += dp
            self.packets += dp
            self.bytes += db
            e = have.flow.entry
            sess = e.session
            if sess.removed:
                continue
            sess.deadline = now + sess.timeout
            if e.forward:
                sess.fwd_packets += dp
                sess.fwd_bytes += db
            else:
                sess.rev_packets += dp
                sess.rev_bytes += db
            if e.group is not None:
                activity.seen(e.group, now)
                activity.packets[e.group] += dp - 1
        paths["kernel"] = paths.get("kernel", 0) + new_total
        return new_total

    def by_key(self, counts: dict[int, tuple[int, int]]) -> dict[bytes, tuple[int, int]]:
        """Counters by flow id ("chains" mode) as ``counted`` takes them."""
        return {k: counts[i.flow.fid] for k, i in self.installed.items() if i.flow.fid in counts}

    def stats(self) -> dict[str, int]:
        return {"flows": len(self.installed), "packets": self.packets, "bytes": self.bytes,
                "added": self.added, "removed": self.removed, "expired_in_kernel": self.expired}
