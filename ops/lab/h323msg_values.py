"""Values common to the lab's H.323 messages: protocol identifiers, transport
addresses (H.225.0 and H.245), aliases, the terminal and vendor fields."""

from __future__ import annotations

from ipaddress import IPv4Address

# H.225.0 v4 (0.0.8.2250.0.4) and H.245 v7 (0.0.8.245.0.7) protocol identifiers.
H225_PROTOCOL = (0, 0, 8, 2250, 0, 4)
H245_PROTOCOL = (0, 0, 8, 245, 0, 7)


def transport(ip: str, port: int):
    """H.225.0 TransportAddress ipAddress."""
    return ("ipAddress", {"ip": IPv4Address(ip).packed, "port": port})


def from_transport(ta) -> tuple[str, int] | None:
    if not ta or ta[0] != "ipAddress":
        return None
    return str(IPv4Address(ta[1]["ip"])), int(ta[1]["port"])


def unicast(ip: str, port: int):
    """H.245 TransportAddress unicastAddress iPAddress."""
    return ("unicastAddress", ("iPAddress", {"network": IPv4Address(ip).packed, "tsapIdentifier": port}))


def from_unicast(ta) -> tuple[str, int] | None:
    if not ta or ta[0] != "unicastAddress" or ta[1][0] != "iPAddress":
        return None
    a = ta[1][1]
    return str(IPv4Address(a["network"])), int(a["tsapIdentifier"])


def alias(name: str):
    return ("h323-ID", name)


TERMINAL = {"terminal": {}, "mc": False, "undefinedNode": False}
VENDOR = {"vendor": {"t35CountryCode": 0, "t35Extension": 0, "manufacturerCode": 0}}
