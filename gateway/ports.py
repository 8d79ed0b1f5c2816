"""Public port allocation for media (RTP/RTCP) and translated flows.

SDP requires RTP on an even port and RTCP on the next odd one, so the ALG hands
out consecutive even/odd pairs (manual ch. 2, "SIP with Network Address
Translation": "the ALG provides consecutive even-odd ports. If it is unable to
find a pair of ports it discards the SIP message").

Allocation is a pure function of what is in use: the in-use set is part of the
event-sourced state, so the live node, replay and the standby agree on it, and
every allocation is recorded by the event that made it."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import AbstractSet

MEDIA_PORT_LOW = 20000      # even; below are left to the host's ephemeral use
MEDIA_PORT_HIGH = 65535


def allocate_pair(in_use: AbstractSet[tuple[IPv4Address, int]], ip: IPv4Address,
                  *, hint: int | None = None,
                  low: int = MEDIA_PORT_LOW, high: int = MEDIA_PORT_HIGH) -> int | None:
    """Return an even port ``p`` with ``(ip, p)`` and ``(ip, p + 1)`` free, or None.

    ``hint`` (e.g. the private RTP port, to keep the same number when possible)
    is tried first; then the search runs upward from it, wrapping to ``low``.
    Exhaustion is a result, not an exception: the caller discards the message
    and logs why."""
    if low % 2:
        low += 1
    last = high - 1                       # the pair must fit: p + 1 <= high
    if last < low:
        return None
    start = low
    if hint is not None and low <= hint <= last:
        start = hint - (hint % 2)
    span = (last - low) // 2 + 1
    p = start
    for _ in range(span):
        if (ip, p) not in in_use and (ip, p + 1) not in in_use:
            return p
        p += 2
        if p > last:
            p = low
    return None


def allocate_port(in_use: AbstractSet[tuple[IPv4Address, int]], ip: IPv4Address,
                  *, hint: int | None = None, low: int = 1024, high: int = 65535) -> int | None:
    """Return a single free port (signalling NAT), preferring ``hint``."""
    if hint is not None and low <= hint <= high and (ip, hint) not in in_use:
        return hint
    for p in range(low, high + 1):
        if (ip, p) not in in_use:
            return p
    return None
