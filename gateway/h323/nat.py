"""NAT of the transport addresses an H.323 message carries, by position.

Every address is six octets (IPv4 and port) and is replaced by six octets,
so a message keeps its length: no TPKT length, user-user IE length, PER
length determinant or TCP sequence number changes (the Linux kernel's
nf_nat_h323 does the same, and the manual's "NAT for ... embedded IP
addresses" asks for nothing more)."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.h323.per import Address
from gateway.span import Edit


def address_edit(addr: Address, ip: IPv4Address | str, port: int) -> Edit:
    """Replace ``addr`` (six octets at its span) with ``ip:port``."""
    new = IPv4Address(ip).packed + int(port).to_bytes(2, "big")
    return Edit(addr.span.start, addr.span.end, new)
