"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624),
computed with integer arithmetic (see :mod:`gateway.packet`)."""

from __future__ import annotations

_FFFF = 0xFFFF


def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """One's complement sum of ``data`` as 16-bit big-endian words (RFC 1071),
    an odd last byte padded with zero. Returns 0..0xFFFF (0 only for all-zero data)."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    if not n:
        return 0
    r = n % _FFFF
    return r or _FFFF


def _fold(s: int) -> int:
    """Reduce a non-negative sum of 16-bit terms to its one's complement value."""
    if not s:
        return 0
    r = s % _FFFF
    return r or _FFFF


fold = _fold


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The Internet checksum of ``data`` (RFC 1071): the complement of the one's
    complement sum, with ``initial`` (e.g. a pseudo-header sum) added in."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return ~_fold(n + initial) & _FFFF


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header of UDP/TCP (RFC 768, RFC 9293 3.1), reduced
    modulo 0xFFFF; 32-bit addresses count as their two 16-bit halves do."""
    return (src + dst + proto + length) % _FFFF


def checksum_update(checksum: int, old: bytes, new: bytes, *, odd: bool = False) -> int:
    """RFC 1624 eqn. 3: the checksum after the bytes ``old`` became ``new``
    (same length). ``odd`` says the field starts at an odd offset of the
    checksummed data, where its bytes fall in the low halves of the words."""
    if len(old) != len(new):
        raise ValueError("an incremental checksum update needs fields of equal length")
    w = 256 if (odd ^ (len(old) & 1)) else 1
    return _apply_delta(checksum, _delta(int.from_bytes(old, "big") * w, int.from_bytes(new, "big") * w))


def _delta(old: int, new: int) -> int:
    # ~m + m' of RFC 1624, kept non-negative: ~m == 0xFFFF - m (mod 0xFFFF).
    return _FFFF - old % _FFFF + new % _FFFF


def _apply_delta(checksum: int, delta: int) -> int:
    # ~HC is at least 1 unless HC == 0xFFFF, and delta is at least 1, so the sum is
    # never zero: the result is the complement of a value in 1..0xFFFF, exactly
    # what a full recomputation gives (which is why incremental == full).
    r = ((~checksum & _FFFF) + delta) % _FFFF
    return ~(r or _FFFF) & _FFFF
