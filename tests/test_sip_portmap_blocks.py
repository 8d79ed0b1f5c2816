"""Pair allocation on the port bitmap (gateway.sip.portmap) in the shape
phones give it: held ports in blocks from a common hint, with stray single
ports (an odd port held alone, a released pair in the middle). The answer
is the reference allocator's (gateway.ports) in every case, including the
fast path for a block of whole pairs."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings, strategies as st

from gateway import ports as reference
from gateway.sip import portmap

IP = "6.6.6.1"
LOW, HIGH = 20, 80

blocks = st.lists(st.tuples(st.integers(LOW - 4, HIGH + 2), st.integers(0, 30)), max_size=4)
singles = st.sets(st.integers(LOW - 4, HIGH + 2), max_size=6)
holes = st.sets(st.integers(LOW - 4, HIGH + 2), max_size=4)


@settings(max_examples=300, deadline=None)
@given(blocks, singles, holes, st.none() | st.integers(0, HIGH + 5),
       st.integers(LOW - 3, LOW + 3), st.integers(HIGH - 3, HIGH + 1))
def test_pair_allocation_on_blocks_matches_the_reference(bs, ones, gaps, hint, low, high):
    used = {p for start, n in bs for p in range(start, start + n)} | ones
    used -= gaps
    pm = portmap.hold(portmap.EMPTY_PORTS, IP, *used) if used else portmap.EMPTY_PORTS
    ref = frozenset((IPv4Address(IP), p) for p in used)
    assert portmap.allocate_pair(pm, IP, hint=hint, low=low, high=high) == \
        reference.allocate_pair(ref, IPv4Address(IP), hint=hint, low=low, high=high)


def test_a_block_of_pairs_from_the_hint_gives_the_pair_after_it():
    pm = portmap.hold(portmap.EMPTY_PORTS, IP, *range(16384, 16384 + 2 * 10000))
    assert portmap.allocate_pair(pm, IP, hint=16384) == 16384 + 2 * 10000
    # The block ends on an even port: the odd one after it is not a pair.
    pm = portmap.hold(pm, IP, 16384 + 2 * 10000)
    assert portmap.allocate_pair(pm, IP, hint=16384) == 16384 + 2 * 10001
    # Odd port after the block held alone: that pair is not free either.
    pm2 = portmap.hold(portmap.EMPTY_PORTS, IP, *range(100, 110), 111)
    assert portmap.allocate_pair(pm2, IP, hint=100, low=100, high=200) == 112
