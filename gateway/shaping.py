"""Traffic shaping and DSCP marking, planned from the configuration (sans-I/O).

Manual ch. 2, "Bandwidth Management for VoIP Services": guarantee VoIP the
bandwidth its calls need, cap other traffic, give VoIP the highest priority
and mark DSCP so the next hop keeps the priority. Figure 20: a 2 Mbps
interface, VoIP gbw 512 / mbw 1024 Kbps, office traffic gbw 1024 / mbw 1536;
with equal priorities VoIP cannot take the overlap, with VoIP at the higher
priority it can.

How that maps onto Linux (what :func:`plan` computes, the actors install):

* one HTB tree (``tc``) per egress interface that has ``bandwidth egress``:
  the root class at the interface's bandwidth; per shaping policy a class with
  rate = gbw (HTB's guaranteed rate), ceil = mbw (or the interface's
  bandwidth for mbw 0) and HTB ``prio`` = the policy's priority (lower is
  served first when classes borrow spare bandwidth: ScreenOS's "each policy
  gets its guaranteed bandwidth and shares whatever is left over, on a
  priority basis, up to the limit of its maximum bandwidth"); a default
  class (lowest priority) with what no policy guarantees, for everything
  else. A policy has its class on the interfaces of its to-zone (its
  traffic) and of its from-zone (the replies), as ScreenOS reserves a
  policy's bandwidth both ways (Juniper KB23597).
* packets reach their class by the firewall mark: the datapath gives every
  packet of a policy's sessions that policy's mark in its NFQUEUE verdict
  (:func:`policy_mark`), media sessions the mark of the policy that
  permitted the signalling that opened their pinhole. nftables turns the
  mark into the packet's priority in postrouting (``meta priority set
  1:MINOR``): HTB sends a packet whose priority names one of its classes
  straight to that class, without a tc filter (the ``fw`` classifier is a
  module a host may not have; the lab's kernel has none). A policy's class
  has the same minor on every interface; on an interface without it the
  packet falls to the default class.
* nftables also sets the DSCP per mark in postrouting (after the datapath's
  rewrite), and copies the mark to the connection's conntrack mark and back
  for packets that were not queued (``set flow queue-bypass`` with no worker
  listening), so those keep their class too.

Everything here returns data or command lines; nothing runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from gateway.config.model import Config, Policy

# Firewall marks of policies: this tag in the upper 16 bits, the policy id
# (1..65535) in the lower. The tag keeps the gateway's marks apart from any
# the host uses for its own routing.
MARK_TAG = 0x5641_0000
MARK_MASK = 0xFFFF_0000
# The smallest rate HTB gets for a class with no guarantee (gbw 0): HTB
# needs a positive rate; 8 Kbit/s is one 1,000-byte packet a second.
MIN_RATE_KBIT = 8
HTB_HANDLE = "1:"
ROOT_MINOR = 0x1
DEFAULT_MINOR = 0x2
FIRST_POLICY_MINOR = 0x100
# Per-class FIFO length, packets. At 64 Kbit/s of G.711 (50 packets/s) 64
# packets are 1.3 s: a VoIP class within its guarantee never fills it.
LEAF_LIMIT = 64
NFT_TABLE = "voip_alg_qos"
# Cap of HTB's DRR quantum (bytes): the kernel warns above 200,000.
_MAX_QUANTUM = 200_000
_MTU_FRAME = 1514


def policy_mark(policy_id: int) -> int:
    return MARK_TAG | (policy_id & 0xFFFF)


def is_policy_mark(mark: int) -> bool:
    return mark & MARK_MASK == MARK_TAG and mark & 0xFFFF != 0


@dataclass(frozen=True, slots=True)
class ShapingClass:
    """One HTB class: ``policy_id`` None is the interface's default class."""

    minor: int
    policy_id: int | None
    rate_kbit: int
    ceil_kbit: int
    prio: int

    @property
    def classid(self) -> str:
        return f"1:{self.minor:x}"


@dataclass(frozen=True, slots=True)
class InterfaceShaping:
    """The HTB tree of one egress interface (configuration name)."""

    interface: str
    bandwidth_kbit: int
    classes: tuple[ShapingClass, ...]        # the default class first

    def class_of_policy(self, policy_id: int) -> ShapingClass | None:
        for c in self.classes:
            if c.policy_id == policy_id:
                return c
        return None


@dataclass(frozen=True, slots=True)
class ShapingPlan:
    interfaces: tuple[InterfaceShaping, ...]
    # policy id -> firewall mark, for every policy with ``traffic`` settings
    marks: Mapping[int, int]
    # firewall mark -> DSCP value (0..63), for the policies that mark DSCP
    dscp: Mapping[int, int]
    # firewall mark -> HTB class minor, for the policies that shape (the
    # same class on every interface shaped)
    classes: Mapping[int, int]

    @property
    def empty(self) -> bool:
        return not self.interfaces and not self.dscp and not self.marks


def dscp_of(policy: Policy, ip_precedence: tuple[int, ...]) -> int | None:
    """The DSCP a policy marks: its own value, or the class selector
    codepoint of its priority's IP precedence (RFC 2474 4.2.2.2: CSx is
    precedence x in the upper three bits)."""
    t = policy.traffic
    if t is None or not t.dscp:
        return None
    if t.dscp_value is not None:
        return t.dscp_value
    return ip_precedence[t.priority] << 3


def _quantum(rate_kbit: int) -> int:
    # HTB's own choice is rate / r2q (r2q 10) in bytes; below one full
    # frame it warns and a class could not send a frame per round.
    return max(_MTU_FRAME, min(_MAX_QUANTUM, rate_kbit * 1000 // 8 // 10))


def plan(config: Config) -> ShapingPlan:
    """What the configuration asks for: HTB trees and marks (see the module
    docstring). ``set traffic-shaping mode off``: no tree, marks and DSCP
    only; ``auto``: trees only when some policy shapes; ``on``: a tree on
    every interface with an egress bandwidth."""
    policies = [p for p in config.policies if p.action == "permit" and p.traffic is not None]
    marks = {p.id: policy_mark(p.id) for p in policies}
    dscp = {}
    for p in policies:
        value = dscp_of(p, config.traffic_shaping.ip_precedence)
        if value is not None:
            dscp[policy_mark(p.id)] = value
    shaping = [p for p in policies if p.traffic.shaping]  # type: ignore[union-attr]
    minors = {p.id: FIRST_POLICY_MINOR + i for i, p in enumerate(shaping)}
    mode = config.traffic_shaping.mode
    trees: list[InterfaceShaping] = []
    if mode == "on" or (mode == "auto" and shaping):
        for iface in config.interfaces.values():
            bw = iface.bandwidth_egress
            if bw is None or iface.zone is None or iface.kind != "ethernet":
                continue
            trees.append(_tree(iface.name, iface.zone, bw, shaping, minors))
    classes = {policy_mark(pid): minor for pid, minor in minors.items()} if trees else {}
    return ShapingPlan(tuple(trees), MappingProxyType(marks), MappingProxyType(dscp),
                       MappingProxyType(classes))


def _tree(name: str, zone: str, bw: int, shaping: list[Policy],
          minors: Mapping[int, int]) -> InterfaceShaping:
    classes = []
    guaranteed = 0
    for p in shaping:
        if zone not in (p.from_zone, p.to_zone):
            continue
        t = p.traffic
        rate = max(t.gbw, MIN_RATE_KBIT)  # type: ignore[union-attr]
        ceil = min(t.mbw, bw) if t.mbw else bw  # type: ignore[union-attr]
        ceil = max(ceil, rate)
        guaranteed += rate
        classes.append(ShapingClass(minors[p.id], p.id, rate, ceil,
                                    t.priority))  # type: ignore[union-attr]
    default = ShapingClass(DEFAULT_MINOR, None, max(bw - guaranteed, MIN_RATE_KBIT), bw, 7)
    return InterfaceShaping(name, bw, (default, *classes))


# -- command lines ------------------------------------------------------------------

def tc_install(tree: InterfaceShaping, dev: str) -> list[list[str]]:
    """``tc`` argument lists (without the ``tc`` itself) that build ``tree``
    on Linux device ``dev``. The first makes the HTB root: the caller
    removes another root qdisc first, and leaves it out when the device
    has this HTB root already (HTB refuses a change of its root); the
    classes and their queues are replaced in place."""
    bw = tree.bandwidth_kbit
    cmds = [["qdisc", "replace", "dev", dev, "root", "handle", HTB_HANDLE, "htb",
             "default", f"{DEFAULT_MINOR:x}"],
            ["class", "replace", "dev", dev, "parent", HTB_HANDLE, "classid",
             f"1:{ROOT_MINOR:x}", "htb", "rate", f"{bw}kbit", "ceil", f"{bw}kbit",
             "quantum", str(_quantum(bw))]]
    for c in tree.classes:
        # A rate estimator per class (1 s samples, 8 s average): the current
        # rate ``gwctl status`` shows.
        cmds.append(["class", "replace", "dev", dev, "parent", f"1:{ROOT_MINOR:x}", "classid",
                     c.classid, "estimator", "1sec", "8sec", "htb", "rate", f"{c.rate_kbit}kbit",
                     "ceil", f"{c.ceil_kbit}kbit",
                     "prio", str(c.prio), "quantum", str(_quantum(c.rate_kbit))])
        cmds.append(["qdisc", "replace", "dev", dev, "parent", c.classid, "handle",
                     f"{c.minor:x}:", "pfifo", "limit", str(LEAF_LIMIT)])
    return cmds


def tc_remove(dev: str) -> list[str]:
    """The ``tc`` arguments that remove the tree (the device falls back to
    its default qdisc)."""
    return ["qdisc", "del", "dev", dev, "root"]


def priorities(p: ShapingPlan) -> dict[int, int]:
    """Firewall mark -> the packet priority (HTB class id, major << 16 |
    minor) that ``nft_ruleset``'s ``meta priority set`` gives: what the
    media offload's tc program writes for a packet that skips postrouting
    (gateway/datapath/offload_bpf.py)."""
    major = int(HTB_HANDLE.rstrip(":"), 16)
    return {mark: (major << 16) | minor for mark, minor in p.classes.items()}


def nft_ruleset(p: ShapingPlan) -> str:
    """The ``nft -f`` script of the marks' HTB class (packet priority),
    DSCP and conntrack copy: one table the gateway owns, replaced whole in
    one transaction (declared, so that the delete never fails, deleted,
    made again: ``nft -f`` applies a file atomically, so no packet passes
    between the old table and the new, as at a takeover under traffic)."""
    lines = [f"table ip {NFT_TABLE}",
             f"delete table ip {NFT_TABLE}",
             f"table ip {NFT_TABLE} {{",
             "  chain postrouting {",
             "    type filter hook postrouting priority mangle; policy accept;"]
    for mark, minor in sorted(p.classes.items()):
        lines.append(f"    meta mark 0x{mark:08x} meta priority set 1:{minor:x}")
    for mark, value in sorted(p.dscp.items()):
        lines.append(f"    meta mark 0x{mark:08x} ip dscp set {value}")
    lines += [f"    meta mark & 0x{MARK_MASK:08x} == 0x{MARK_TAG:08x} ct mark set meta mark",
              "  }",
              "  chain prerouting {",
              "    type filter hook prerouting priority mangle; policy accept;",
              f"    meta mark 0 ct mark & 0x{MARK_MASK:08x} == 0x{MARK_TAG:08x} "
              "meta mark set ct mark",
              "  }",
              "}"]
    return "\n".join(lines) + "\n"


# -- statistics ------------------------------------------------------------------------

_CLASS_RE = re.compile(r"^class htb (\S+) (?:parent (\S+) )?(?:leaf \S+ )?(?:root )?"
                       r"(?:prio (\d+) )?rate (\S+) ceil (\S+)")
_SENT_RE = re.compile(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+) "
                      r"requeues (\d+)\)")
_RATE_RE = re.compile(r"^\s*rate (\S+) (\d+)pps")
_UNITS = {"bit": 1, "Kbit": 1_000, "Mbit": 1_000_000, "Gbit": 1_000_000_000}


def _bits(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?bit)", text)
    if m is None:
        return 0
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_class_stats(text: str) -> list[dict]:
    """The HTB classes of ``tc -s class show dev D``: classid, parent, prio,
    rate and ceil (bit/s), bytes, packets, drops, overlimits and the
    kernel's rate estimate (bit/s, packets/s; 0 without an estimator)."""
    out: list[dict] = []
    for line in text.splitlines():
        m = _CLASS_RE.match(line)
        if m is not None:
            out.append({"classid": m.group(1), "parent": m.group(2), "prio": int(m.group(3) or 0),
                        "rate": _bits(m.group(4)), "ceil": _bits(m.group(5)), "bytes": 0,
                        "packets": 0, "dropped": 0, "overlimits": 0, "rate_bps": 0,
                        "rate_pps": 0})
            continue
        if not out:
            continue
        s = _SENT_RE.search(line)
        if s is not None:
            out[-1].update(bytes=int(s.group(1)), packets=int(s.group(2)),
                           dropped=int(s.group(3)), overlimits=int(s.group(4)))
            continue
        r = _RATE_RE.match(line)
        if r is not None:
            out[-1].update(rate_bps=_bits(r.group(1)), rate_pps=int(r.group(2)))
    return out


def class_report(tree: InterfaceShaping, stats: list[dict]) -> list[dict]:
    """Per class of ``tree``: what it is (policy, rates) and its counters
    from :func:`parse_class_stats` (leaf drops: a class's own qdisc drops
    show on the class as ``dropped``)."""
    by_id = {s["classid"]: s for s in stats}
    out = []
    for c in tree.classes:
        s = by_id.get(c.classid, {})
        out.append({"class": c.classid, "policy": c.policy_id, "gbw_kbit": c.rate_kbit,
                    "mbw_kbit": c.ceil_kbit, "priority": c.prio,
                    "bytes": s.get("bytes", 0), "packets": s.get("packets", 0),
                    "dropped": s.get("dropped", 0), "overlimits": s.get("overlimits", 0),
                    "rate_bps": s.get("rate_bps", 0), "rate_pps": s.get("rate_pps", 0)})
    return out
