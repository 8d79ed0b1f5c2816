"""The IPv4 packet inside a captured frame, by the capture's link type.

Link types (tcpdump.org "Link-layer header types"): Ethernet (1) with any
number of 802.1Q / 802.1ad (QinQ) tags and PPPoE session frames (RFC 2516,
PPP protocol 0x0021 = IPv4, RFC 1332); Linux cooked capture SLL (113) and SLL2
(276), what ``tcpdump -i any`` writes; BSD null/loopback (0), whose 4-byte
address family is in the capturing host's byte order, so AF_INET (2) is read
in both; OpenBSD loopback (108, network byte order); raw IP (101, and 12/14
as some systems wrote DLT_RAW) and IPv4 (228).

``ipv4(linktype, frame)`` returns the bytes from the IPv4 header to the end
of the frame, or None when the frame carries something else (ARP, IPv6, LLC)
or the link type is not one of :data:`SUPPORTED` (the caller checks that).
"""

from __future__ import annotations

ETHERNET = 1
NULL = 0
RAW = 101
RAW_ALIASES = (12, 14)
LOOP = 108
LINUX_SLL = 113
LINUX_SLL2 = 276
IPV4 = 228

_ETH_IPV4 = 0x0800
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)     # 802.1Q, 802.1ad, the older QinQ tag
_PPPOE_SESSION = 0x8864
_PPP_IPV4 = 0x0021
_AF_INET = 2
# Tags and PPPoE headers nested deeper than this are not a real frame.
_MAX_NESTING = 8

SUPPORTED = {
    ETHERNET: "Ethernet (802.1Q/QinQ, PPPoE)", NULL: "BSD null/loopback", LOOP: "OpenBSD loopback",
    RAW: "raw IP", 12: "raw IP", 14: "raw IP", LINUX_SLL: "Linux cooked (SLL)",
    LINUX_SLL2: "Linux cooked v2 (SLL2)", IPV4: "raw IPv4",
}


def _by_ethertype(ethertype: int, frame: bytes, i: int) -> bytes | None:
    """The IPv4 packet after an EtherType at offset ``i``, through VLAN tags and PPPoE."""
    for _ in range(_MAX_NESTING):
        if ethertype == _ETH_IPV4:
            return frame[i:]
        if ethertype in _VLAN_TAGS:
            if len(frame) < i + 4:
                return None
            ethertype = int.from_bytes(frame[i + 2:i + 4], "big")
            i += 4
            continue
        if ethertype == _PPPOE_SESSION:
            # ver/type, code, session id, length (6 bytes), then the PPP protocol:
            # two bytes, or one when protocol-field compression left an odd first byte.
            i += 6
            if len(frame) < i + 1:
                return None
            if frame[i] & 1:
                proto, i = frame[i], i + 1
            else:
                if len(frame) < i + 2:
                    return None
                proto, i = int.from_bytes(frame[i:i + 2], "big"), i + 2
            return frame[i:] if proto == _PPP_IPV4 else None
        return None
    return None


def _if_v4(data: bytes) -> bytes | None:
    return data if data and data[0] >> 4 == 4 else None


def ipv4(linktype: int, frame: bytes) -> bytes | None:
    """The IPv4 packet in ``frame`` (module docstring), or None."""
    if linktype == ETHERNET:
        if len(frame) < 14:
            return None
        return _by_ethertype(int.from_bytes(frame[12:14], "big"), frame, 14)
    if linktype == LINUX_SLL:
        if len(frame) < 16:
            return None
        return _by_ethertype(int.from_bytes(frame[14:16], "big"), frame, 16)
    if linktype == LINUX_SLL2:
        if len(frame) < 20:
            return None
        return _by_ethertype(int.from_bytes(frame[0:2], "big"), frame, 20)
    if linktype in (NULL, LOOP):
        if len(frame) < 4:
            return None
        family = frame[:4]
        if int.from_bytes(family, "little") == _AF_INET or int.from_bytes(family, "big") == _AF_INET:
            return frame[4:]
        return None
    if linktype == RAW or linktype in RAW_ALIASES or linktype == IPV4:
        return _if_v4(frame)
    return None                     # a link type not in SUPPORTED


def supported_list() -> str:
    names = dict.fromkeys(f"{n} ({k})" for k, n in sorted(SUPPORTED.items()))
    return ", ".join(names)
