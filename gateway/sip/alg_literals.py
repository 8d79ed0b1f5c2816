"""Addresses and ports as the SIP ALG reads them from the wire text (latin-1):
an IPv4 literal and a port of ASCII digits, and a port from the datapath."""

from __future__ import annotations

from functools import lru_cache


def _port(p) -> int:
    return int(p)


@lru_cache(maxsize=1024)
def _is_ipv4(text: str) -> bool:
    # ASCII digits only: str.isdigit() is true of "²" and other Unicode
    # digits, which int() then refuses (the text is the wire's, read as
    # latin-1).
    if len(text) > 15 or not text.isascii():
        return False
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def _is_port(text: str) -> bool:
    """1-5 ASCII digits, at most 65535."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535
