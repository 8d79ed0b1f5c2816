from ipaddress import IPv4Address

import pytest
from hypothesis import given, strategies as st

from gateway.ports import allocate_pair, allocate_port
from gateway.span import Edit, OverlappingEdits, Span, apply_edits

IP = IPv4Address("1.1.1.1")


def test_pair_is_even_and_free():
    p = allocate_pair(set(), IP, hint=52003)
    assert p == 52002
    assert allocate_pair({(IP, 52002)}, IP, hint=52002) == 52004
    assert allocate_pair({(IP, 52003)}, IP, hint=52002) == 52004


def test_exhaustion_is_a_result():
    used = {(IP, p) for p in range(20000, 20010)}
    assert allocate_pair(used, IP, low=20000, high=20009) is None
    # one pair left, wrapping from the hint
    used.discard((IP, 20002)); used.discard((IP, 20003))
    assert allocate_pair(used, IP, hint=20008, low=20000, high=20009) == 20002


@given(st.sets(st.integers(20000, 20063)), st.integers(19990, 20070))
def test_pair_property(used_ports, hint):
    used = {(IP, p) for p in used_ports}
    p = allocate_pair(used, IP, hint=hint, low=20000, high=20063)
    free_pairs = [q for q in range(20000, 20063, 2) if q not in used_ports and q + 1 not in used_ports]
    if p is None:
        assert not free_pairs
    else:
        assert p % 2 == 0 and p in free_pairs


def test_single_port_prefers_hint():
    assert allocate_port(set(), IP, hint=5060) == 5060
    assert allocate_port({(IP, 5060)}, IP, hint=5060, low=5060, high=5062) == 5061


def test_edits():
    data = b"c=IN IP4 10.1.1.5\r\nm=audio 4000 RTP/AVP 0\r\n"
    a = Edit.replace(Span(9, 17, "10.1.1.5"), "1.1.1.5")
    b = Edit.replace(Span(27, 31, "4000"), "52002")
    assert apply_edits(data, [b, a]) == b"c=IN IP4 1.1.1.5\r\nm=audio 52002 RTP/AVP 0\r\n"
    assert apply_edits(data, []) is data
    with pytest.raises(OverlappingEdits):
        apply_edits(data, [Edit(0, 5, b"x"), Edit(3, 6, b"y")])
