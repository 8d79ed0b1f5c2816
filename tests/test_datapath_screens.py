"""Screens of manual ch. 2: UDP flood per zone and destination (alarm once,
drop the rest of the second), source-IP-based session limit."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.config import parse_text
from gateway.datapath.screens import Screens

CFG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set zone untrust screen udp-flood dst-ip 1.1.1.5 threshold 3
set zone untrust screen limit-session source-ip-based 2
"""

D = int(IPv4Address("1.1.1.5"))
S = int(IPv4Address("6.6.6.6"))


def screens():
    return Screens(parse_text(CFG))


def test_flood_threshold_per_second_alarm_once():
    s = screens()
    got = [s.udp_flood("untrust", D, 100.0 + i * 0.01) for i in range(6)]
    assert got[:3] == [None, None, None]
    assert all(r and "udp-flood" in r and "1.1.1.5" in r for r in got[3:])
    alarms = s.drain_alarms()
    assert len(alarms) == 1 and "1.1.1.5" in alarms[0] and "untrust" in alarms[0]
    assert s.drain_alarms() == []
    # A new second starts a new count.
    assert s.udp_flood("untrust", D, 101.0) is None
    assert s.stats() == {"udp_flood_dropped": 3, "udp_flood_alarms": 1, "limit_session_dropped": 0}
    # A second flooded second raises its own alarm.
    for i in range(4):
        s.udp_flood("untrust", D, 101.5)
    assert len(s.drain_alarms()) == 1


def test_flood_only_for_the_configured_zone_and_address():
    s = screens()
    for _ in range(10):
        assert s.udp_flood("trust", D, 5.0) is None
        assert s.udp_flood("untrust", D + 1, 5.0) is None


def test_limit_session_until_it_falls_below():
    s = screens()
    assert s.session_limit("untrust", S) is None
    s.opened("untrust", S)
    s.opened("untrust", S)
    why = s.session_limit("untrust", S)
    assert why and "6.6.6.6" in why and "limit-session" in why
    # Another source, and another zone, are not limited by it.
    assert s.session_limit("untrust", S + 1) is None
    assert s.session_limit("trust", S) is None
    s.closed("untrust", S)
    assert s.session_limit("untrust", S) is None
    assert s.sessions_of("untrust", S) == 1
    assert s.stats()["limit_session_dropped"] == 1


def test_unlimited_zone_counts_nothing():
    s = screens()
    s.opened("trust", S)
    assert s.sessions_of("trust", S) == 0
    s.closed("trust", S)        # harmless
