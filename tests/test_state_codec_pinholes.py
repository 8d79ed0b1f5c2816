"""Snapshots written before the SIP pinhole became the one datapath pinhole
type (gateway.pinhole.Pinhole: ten fields then, ``channel`` and ``alg``
since) still load: the record takes the new fields' defaults, under its old
class name too."""

from __future__ import annotations

import pickle

import pytest

from gateway.pinhole import Pinhole
from journal.state_codec import StateDecodeError, _build, decode_tree

TEN = ("c#p1", "c", "c#g1", "media", "udp", "inbound", ("1.1.1.1", 20000), ("10.1.1.3", 4000), None, 120.0)


class _Written:
    """A pinhole as a snapshot of the ten-field layout reduced it."""

    def __init__(self, values: tuple) -> None:
        self.values = values

    def __reduce__(self):
        return _build, (Pinhole, self.values)


def _old_snapshot_chunk(values: tuple) -> bytes:
    # The class as the older build named it: gateway.sip.state.Pinhole.
    data = pickle.dumps([_Written(values)], 2)
    old = data.replace(b"cgateway.pinhole\nPinhole\n", b"cgateway.sip.state\nPinhole\n")
    assert old != data
    return old


def test_a_ten_field_sip_pinhole_loads_with_the_defaults_of_the_new_fields():
    (p,) = decode_tree(["p", _old_snapshot_chunk(TEN)])
    assert p == Pinhole(*TEN)
    assert (p.channel, p.alg) == ("", "")


def test_a_record_short_of_a_field_without_default_is_refused():
    with pytest.raises(StateDecodeError):
        decode_tree(["p", _old_snapshot_chunk(TEN[:7])])


def test_a_current_record_round_trips():
    p = Pinhole(*TEN, channel="q931", alg="h323")
    assert _build(Pinhole, tuple(getattr(p, f) for f in Pinhole.__dataclass_fields__)) == p


def test_an_mgcp_pinhole_of_the_older_six_field_record_is_refused_not_misread():
    # MGCP's state held its own six-field record (gateway.mgcp.state.Pinhole)
    # before it held the datapath's type: that name now resolves to
    # gateway.pinhole.Pinhole, and six values must not fill its first six
    # fields (direction as kind...). The snapshot is refused, and the journal's
    # events, which carry every field, rebuild the state.
    six = ("c#p1", "mgcp-call/gw/c1", "c#g1", "inbound", ("1.1.1.1", 20000), ("10.1.1.3", 4000))
    data = pickle.dumps([_Written(six)], 2).replace(b"cgateway.pinhole\nPinhole\n",
                                                    b"cgateway.mgcp.state\nPinhole\n")
    with pytest.raises(StateDecodeError):
        decode_tree(["p", data])
