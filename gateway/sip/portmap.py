"""Public ports held by the SIP ALG, one bitmap per public (ALG) address.

The ALG state records every port it holds (media pairs, ALG-allocated
signalling bindings, registrations) so allocation is a pure function of the
state (see :mod:`gateway.ports`). Held as a set of ``(address, port)``, a new
pair is found by testing pairs one by one from the hint upward: with phones
that all announce the same RTP port, the n-th call tests n pairs, and a set
rebuilt per event costs O(ports) as well.

Here the ports of one address are one integer, bit ``p`` set when port ``p``
is held, in an ``immutables.Map`` keyed by the address text. An update or a
search is a handful of operations on a 65,536-bit integer: its cost does not
depend on how many calls hold ports. The answers are exactly those of
:func:`gateway.ports.allocate_pair` and :func:`gateway.ports.allocate_port`
(tests/test_sip_alg_scale.py compares them on random sets).
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address
from typing import Iterator

from immutables import Map

from gateway.ports import MEDIA_PORT_HIGH, MEDIA_PORT_LOW

PortMap = Map  # address text -> int bitmap of the ports held on it

EMPTY_PORTS: PortMap = Map()

# Bit p set for every even p < 65536.
_EVEN = int.from_bytes(b"\x55" * 8192, "little")


@lru_cache(maxsize=64)
def _range(low: int, high: int) -> int:
    """Bits low..high (inclusive) set."""
    return ((1 << (high + 1)) - 1) ^ ((1 << low) - 1)


@lru_cache(maxsize=64)
def _even_range(low: int, high: int) -> int:
    return _range(low, high) & _EVEN


def hold(ports: PortMap, ip: str, *numbers: int) -> PortMap:
    bits = ports.get(ip, 0)
    for p in numbers:
        bits |= 1 << p
    return ports.set(ip, bits)


def release(ports: PortMap, ip: str, *numbers: int) -> PortMap:
    bits = ports.get(ip)
    if bits is None:
        return ports
    for p in numbers:
        bits &= ~(1 << p)
    return ports.set(ip, bits) if bits else ports.delete(ip)


def is_held(ports: PortMap, ip: str, port: int) -> bool:
    return bool((ports.get(ip, 0) >> port) & 1)


def held(ports: PortMap) -> Iterator[tuple[str, int]]:
    """Every (address, port) held (for inspection and tests; O(ports))."""
    for ip, bits in ports.items():
        while bits:
            low = bits & -bits
            yield ip, low.bit_length() - 1
            bits ^= low


def as_set(ports: PortMap) -> frozenset[tuple[IPv4Address, int]]:
    """The held ports in :mod:`gateway.ports`' form."""
    return frozenset((IPv4Address(ip), p) for ip, p in held(ports))


def allocate_pair(ports: PortMap, ip: str, *, hint: int | None = None,
                  low: int = MEDIA_PORT_LOW, high: int = MEDIA_PORT_HIGH) -> int | None:
    """:func:`gateway.ports.allocate_pair` on a bitmap: the first even ``p``
    with ``p`` and ``p + 1`` free, from the hint's pair upward, wrapping to
    ``low``; None when every pair is taken."""
    if low % 2:
        low += 1
    last = high - 1
    if last < low:
        return None
    start = low
    if hint is not None and low <= hint <= last:
        start = hint - (hint % 2)
    bits = ports.get(ip, 0)
    above = bits >> start
    if not above & 3:
        return start            # the hint's pair (or the first) is free
    # Phones of one model announce the same RTP port, so the held ports
    # above a hint are usually one block of whole pairs: the first free
    # port above it, when it starts a free pair, is the answer (no pair
    # starting from the hint up to it is free). Five operations on the
    # bitmap instead of eight.
    k = (~above & (above + 1)).bit_length() - 1     # the lowest clear bit
    if not k % 2 and start + k <= last and not (above >> (k + 1)) & 1:
        return start + k
    # Bit p of ``free``: p even, in range, p and p + 1 both free.
    free = _even_range(low, last) & ~(bits | (bits >> 1))
    above = free >> start
    if above:
        return start + (above & -above).bit_length() - 1
    if free:
        return (free & -free).bit_length() - 1
    return None


def allocate_port(ports: PortMap, ip: str, *, hint: int | None = None, low: int = 1024,
                  high: int = 65535) -> int | None:
    """:func:`gateway.ports.allocate_port` on a bitmap: the hint when free,
    else the lowest free port of the range."""
    bits = ports.get(ip, 0)
    if hint is not None and low <= hint <= high and not (bits >> hint) & 1:
        return hint
    free = _range(low, high) & ~bits
    if free:
        return (free & -free).bit_length() - 1
    return None
