"""A policy compiled for lookup (:class:`_Rule`): its source and destination
as integer address ranges, its service as ports, and the tests of a flow
against them."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import Policy


# A compiled address: None matches anything; otherwise a tuple of inclusive
# (low, high) integer ranges (empty: never matches, e.g. an unknown name).
_Ranges = tuple[tuple[int, int], ...] | None
_Ports = tuple[tuple[str, int, int], ...] | None


@dataclass(frozen=True, slots=True)
class _Rule:
    policy: Policy
    src: _Ranges
    dst: _Ranges
    ports: _Ports
    service: str
    global_dst_only: bool           # ``from Z to global``: only global-zone destinations


def _in(ranges: _Ranges, v: int) -> bool:
    if ranges is None:
        return True
    for lo, hi in ranges:
        if lo <= v <= hi:
            return True
    return False


def _port_ok(ports: _Ports, proto: str, dport: int) -> bool:
    if ports is None:
        return True
    for p, lo, hi in ports:
        if (p == "any" or p == proto) and lo <= dport <= hi:
            return True
    return False
