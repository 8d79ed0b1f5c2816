"""The words and limits of the configuration language: the commands and the
objects they set, the keyword tables, the numeric limits, the system's
interface names, and the small value helpers (bounded integers, IPv4 text,
zone names, quoting) the line parsers share (manual "CLI Conventions",
"Naming Conventions")."""

from __future__ import annotations

import re
from ipaddress import IPv4Address

from gateway.config.model import PREDEFINED_ZONES


COMMANDS = ("set", "unset", "save", "exec")
SET_OBJECTS = ("interface", "zone", "address", "policy", "vrouter", "route", "dip", "sip",
               "admin", "ike", "vpn", "nsrp", "mgcp", "flow", "traffic-shaping")
UNSET_OBJECTS = ("interface", "zone", "address", "policy", "vrouter", "route", "dip", "sip",
                 "nsrp", "mgcp", "flow", "traffic-shaping")
VROUTERS = ("trust-vr", "untrust-vr")
MANAGE_SERVICES = ("ping", "ssh", "telnet", "web", "ssl", "snmp", "ident-reset", "mtrace")
SEC_LEVELS = ("standard", "compatible", "basic")
MAX_INT = 2 ** 31 - 1
# Bandwidths are in Kbps, as ScreenOS writes them; 10 Gbps is the fastest
# interface a ScreenOS device has.
MAX_KBPS = 10_000_000
TRAFFIC_OPTIONS = ("gbw", "priority", "mbw", "dscp")

# System interface names (ScreenOS): ethernetN, ethernetN/M, subinterfaces,
# loopback.N, tunnel.N, and the bridge/aggregate/redundant/vlan families.
_IFACE_RE = re.compile(
    r"(ethernet\d+(/\d+)?(\.\d+)?|loopback\.\d+|tunnel\.\d+|bgroup\d+|redundant\d+(\.\d+)?"
    r"|aggregate\d+(\.\d+)?|vlan\d+)", re.IGNORECASE)
_IFACE_EXAMPLES = ("ethernet1", "ethernet2/1", "loopback.1", "tunnel.1", "bgroup0", "vlan1")

IPSEC_REASON = ("IKE/IPsec tunnels belong to the host's IPsec stack; the gateway "
                "parses and checks the line but does not enforce it")
ADMIN_REASON = "administrator accounts belong to the host; the gateway does not enforce them"


_MAX_DIP_ID = 255


def _bounded_int(digits: str, hi: int) -> int | None:
    """The value of a string of ASCII digits, or None when it has more
    significant digits than ``hi``: int() of a very long string is slow and
    over 4,300 digits raises ValueError (CPython's conversion limit)."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(hi)):
        return None
    return int(significant)


def _is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
        return True
    except ValueError:
        return False


def _canonical_zone(name: str) -> str:
    return name.lower() if name.lower() in PREDEFINED_ZONES else name


def _quote(name: str) -> str:
    if name == "" or any(c.isspace() for c in name) or name.startswith("#"):
        return f'"{name}"'
    return name
