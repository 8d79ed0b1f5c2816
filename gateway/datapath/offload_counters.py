"""Reading the media offload table's counters from ``nft -j`` listings:
per flow key ("maps") or per flow id ("chains")."""

from __future__ import annotations

import json
import struct
from ipaddress import IPv4Address

from gateway.datapath.offload_nft import _ADDRS


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
