"""The nftables text of the media offload table (see
:mod:`gateway.datapath.offload`): the table in its two layouts ("maps",
"chains"), and the commands that install, remove and flush flows."""

from __future__ import annotations

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


def flush_script(table: str) -> list[str]:
    return [f"flush map inet {table} {name}" for name in ("flows",) + AUX_MAPS]
