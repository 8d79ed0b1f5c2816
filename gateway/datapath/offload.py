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
shared 2-core box): "maps" (below) and "chains" (a verdict map to a chain
per flow whose rule writes constants: one lookup instead of seven). Per
packet neither was consistently faster under the box's load (1 flow: chains
97.6k/s against 75.0k/s; 2 flows: maps 106k/s against 90k/s, medians of
two); at 5,000 calls installed at once, maps installed in 0.44 s against
0.89 s, listed its counters in 0.34 s against 1.35 s and took 1.3 KB of
kernel memory per call against 2.9 KB. "maps" is the default; both are
kept (``KernelMedia(mode=)``, ``python -m actors.ingest --media-offload
chains``) for measuring on other machines.

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

import json
import struct
from ipaddress import IPv4Address
from typing import Iterable, NamedTuple

TABLE_PREFIX = "voipgw_media_q"
MAX_FLOWS = 262_144                  # directions: 65,536 calls of two streams
AUX_MAPS = ("nsaddr", "ndaddr", "nsport", "ndport", "marks")
# What an offloaded packet is recognised by in the raw table, ahead of the
# NFQUEUE rule (nftables' notrack, seen by iptables' conntrack match).
UNTRACKED = "UNTRACKED"
# "maps": one rule, the rewrite looked up in maps by flow id (per-element
# timeouts and counters); "chains": a verdict map to a chain per flow whose
# one rule writes constants (one lookup; counters on the rules).
MODES = ("maps", "chains")
_ADDRS = struct.Struct("!4s4sHH")


def _ntoa(raw: bytes) -> str:
    return str(IPv4Address(raw))


def table_name(queue_num: int) -> str:
    return f"{TABLE_PREFIX}{queue_num}"


def table_script(table: str, ifaces: Iterable[str], mode: str = "maps") -> str:
    """The table, created afresh (deleted first if an earlier run left it)."""
    ifaces = list(ifaces)
    if not ifaces:
        raise ValueError("media offload needs at least one interface")
    if mode not in MODES:
        raise ValueError(f"media offload mode is one of {MODES}, not {mode!r}")
    names = ", ".join(f'"{i}"' for i in ifaces)
    key = "ipv4_addr . ipv4_addr . inet_service . inet_service"
    if mode == "chains":
        return "\n".join([
            f"table inet {table} {{}}", f"delete table inet {table}", f"table inet {table} {{",
            f"  map flows {{ type {key} : verdict; size {MAX_FLOWS}; }}",
            "  chain pre {",
            "    type filter hook prerouting priority raw - 10; policy accept;",
            f"    iifname {{ {names} }} ip frag-off & 0x3fff == 0 "
            "ip saddr . ip daddr . udp sport . udp dport vmap @flows",
            "  }", "}"]) + "\n"
    lines = [f"table inet {table} {{}}", f"delete table inet {table}", f"table inet {table} {{",
             # The set's own timeout bounds an element re-made by the update
             # statement in the instant after its deletion.
             f"  map flows {{ type {key} : mark; flags dynamic,timeout; timeout 60s; counter; "
             f"size {MAX_FLOWS}; }}",
             "  map nsaddr { type mark : ipv4_addr; }",
             "  map ndaddr { type mark : ipv4_addr; }",
             "  map nsport { type mark : inet_service; }",
             "  map ndport { type mark : inet_service; }",
             "  map marks { type mark : mark; }",
             "  chain pre {",
             # Before the raw table's NFQUEUE rules (priority raw = -300)
             # and, as notrack must be, before conntrack (-200).
             "    type filter hook prerouting priority raw - 10; policy accept;",
             f"    iifname {{ {names} }} ip frag-off & 0x3fff == 0 "
             "meta mark set ip saddr . ip daddr . udp sport . udp dport map @flows "
             "update @flows { ip saddr . ip daddr . udp sport . udp dport : meta mark } "
             "ip saddr set meta mark map @nsaddr ip daddr set meta mark map @ndaddr "
             "udp sport set meta mark map @nsport udp dport set meta mark map @ndport "
             "meta mark set meta mark map @marks notrack",
             "  }",
             "}"]
    return "\n".join(lines) + "\n"


def _key_text(key: bytes) -> str:
    s, d, sp, dp = _ADDRS.unpack(key)
    return f"{_ntoa(s)} . {_ntoa(d)} . {sp} . {dp}"


class Flow(NamedTuple):
    """One direction in the kernel: its key (``buf[12:24]``), id and what it
    installs (``head``: the new ``buf[12:24]``; ``mark``; ``timeout`` s)."""

    key: bytes
    fid: int
    entry: object                    # the fast path's FastEntry it was made from
    head: bytes
    mark: int
    timeout: int


def _flow_of(key: bytes, fid: int, entry) -> Flow:
    sess = entry.session
    head = entry.head if entry.head is not None else key
    return Flow(key, fid, entry, head, entry.mark & 0xFFFFFFFF, max(1, int(sess.timeout + 0.999)))


def add_script(table: str, flows: list[Flow]) -> list[str]:
    """The commands that install ``flows`` (the auxiliary maps first: the
    flow's element is the one that makes packets match)."""
    if not flows:
        return []
    t = f"inet {table}"
    out = []
    parts = {"nsaddr": [], "ndaddr": [], "nsport": [], "ndport": [], "marks": []}
    for f in flows:
        s, d, sp, dp = _ADDRS.unpack(f.head)
        parts["nsaddr"].append(f"{f.fid} : {_ntoa(s)}")
        parts["ndaddr"].append(f"{f.fid} : {_ntoa(d)}")
        parts["nsport"].append(f"{f.fid} : {sp}")
        parts["ndport"].append(f"{f.fid} : {dp}")
        parts["marks"].append(f"{f.fid} : {f.mark}")
    for name in AUX_MAPS:
        out.append(f"add element {t} {name} {{ {', '.join(parts[name])} }}")
    out.append(f"add element {t} flows {{ "
               + ", ".join(f"{_key_text(f.key)} timeout {f.timeout}s : {f.fid}" for f in flows)
               + " }")
    return out


def delete_script(table: str, flows: list[Flow]) -> list[str]:
    """The commands that remove ``flows``. A flow's element may have timed
    out in the kernel meanwhile, and deleting an absent element fails the
    whole batch: each is added first (a no-op when present, same data)."""
    if not flows:
        return []
    t = f"inet {table}"
    keys = [f"{_key_text(f.key)} : {f.fid}" for f in flows]
    out = [f"add element {t} flows {{ {', '.join(keys)} }}",
           f"delete element {t} flows {{ {', '.join(_key_text(f.key) for f in flows)} }}"]
    ids = ", ".join(str(f.fid) for f in flows)
    for name in AUX_MAPS:
        out.append(f"delete element {t} {name} {{ {ids} }}")
    return out


def _chain_rule(f: "Flow") -> str:
    s, d, sp, dp = _ADDRS.unpack(f.key)
    ns, nd, nsp, ndp = _ADDRS.unpack(f.head)
    parts = []
    if ns != s:
        parts.append(f"ip saddr set {_ntoa(ns)}")
    if nd != d:
        parts.append(f"ip daddr set {_ntoa(nd)}")
    if nsp != sp:
        parts.append(f"udp sport set {nsp}")
    if ndp != dp:
        parts.append(f"udp dport set {ndp}")
    return " ".join(parts + [f"meta mark set {f.mark}", "counter", "notrack", "accept"])


def add_chains_script(table: str, flows: list["Flow"]) -> list[str]:
    """"chains" mode: a chain per flow with its rewrite as constants, then
    the verdict map's elements that send the flow's packets there."""
    if not flows:
        return []
    t = f"inet {table}"
    out = []
    for f in flows:
        out.append(f"add chain {t} f{f.fid}")
        out.append(f"add rule {t} f{f.fid} {_chain_rule(f)}")
    out.append(f"add element {t} flows {{ "
               + ", ".join(f"{_key_text(f.key)} : goto f{f.fid}" for f in flows) + " }")
    return out


def delete_chains_script(table: str, flows: list["Flow"]) -> list[str]:
    if not flows:
        return []
    t = f"inet {table}"
    out = [f"delete element {t} flows {{ {', '.join(_key_text(f.key) for f in flows)} }}"]
    for f in flows:
        out.append(f"flush chain {t} f{f.fid}")
        out.append(f"delete chain {t} f{f.fid}")
    return out


def parse_chain_counters(listing: str) -> dict[int, tuple[int, int]]:
    """``nft -j list table inet T`` in "chains" mode: flow id -> (packets, bytes)."""
    out: dict[int, tuple[int, int]] = {}
    for item in json.loads(listing).get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict):
            continue
        chain = str(rule.get("chain", ""))
        if not (chain.startswith("f") and chain[1:].isdigit()):
            continue
        for e in rule.get("expr", []):
            c = e.get("counter") if isinstance(e, dict) else None
            if isinstance(c, dict):
                out[int(chain[1:])] = (int(c.get("packets", 0)), int(c.get("bytes", 0)))
    return out


def flush_script(table: str) -> list[str]:
    return [f"flush map inet {table} {name}" for name in ("flows",) + AUX_MAPS]


# -- reading the counters ------------------------------------------------------

def _key_of(val) -> bytes | None:
    concat = val.get("concat") if isinstance(val, dict) else None
    if not isinstance(concat, list) or len(concat) != 4:
        return None
    s, d, sp, dp = concat
    try:
        return _ADDRS.pack(IPv4Address(str(s)).packed, IPv4Address(str(d)).packed, int(sp), int(dp))
    except (ValueError, struct.error):
        return None


def parse_counters(listing: str) -> dict[bytes, tuple[int, int]]:
    """``nft -j list map inet T flows``: key bytes -> (packets, bytes)."""
    out: dict[bytes, tuple[int, int]] = {}
    doc = json.loads(listing)
    for item in doc.get("nftables", []):
        m = item.get("map") if isinstance(item, dict) else None
        if not isinstance(m, dict) or m.get("name") != "flows":
            continue
        for el in m.get("elem", []):
            # A map's element: [key, value]; the key is {"elem": {"val":
            # {"concat": [...]}, "timeout": ..., "counter": {...}}}.
            k = el[0] if isinstance(el, list) and el else el
            inner = k.get("elem") if isinstance(k, dict) else None
            if not isinstance(inner, dict):
                continue
            key = _key_of(inner.get("val"))
            c = inner.get("counter") or {}
            if key is not None:
                out[key] = (int(c.get("packets", 0)), int(c.get("bytes", 0)))
    return out


# -- which flows the kernel should have ----------------------------------------

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
