"""The transport's slow-turn report (actors/replication_reports.py SlowTurns): a turn
whose poll returned late or whose work took longer than a heartbeat interval
is counted and logged with its parts, at most once per period."""

from __future__ import annotations

import logging

from actors.replication import SlowTurns


def turn(t0, *, work=0.001, late=0.0, asked=0.1, parts=(0.0, 0.0, 0.0, 0.0)):
    """(top, asleep, asked, woke, t_cmds, t_router, t_dealer, end) of a turn
    starting at t0 whose checks take ``work`` and whose poll returns ``late``."""
    asleep = t0 + work
    woke = asleep + asked + late
    c = woke + parts[0]
    r = c + parts[1]
    d = r + parts[2]
    return (t0, asleep, asked, woke, c, r, d, d + parts[3])


def test_quick_turns_are_not_reported(caplog):
    s = SlowTurns(0.2)
    with caplog.at_level(logging.WARNING, "gateway.replication"):
        for i in range(100):
            s.note(*turn(i * 0.2, late=0.15, parts=(0.01, 0.05, 0.05, 0.05)))
    assert s.count == 0 and not caplog.records


def test_a_late_poll_and_a_long_part_are_reported_with_where_the_time_went(caplog):
    s = SlowTurns(0.2, every=5.0)
    with caplog.at_level(logging.WARNING, "gateway.replication"):
        s.note(*turn(0.0, late=0.7))
        s.note(*turn(1.0, parts=(0.0, 0.0, 0.0, 0.45)))      # streaming 450 ms
        s.note(*turn(6.0, parts=(0.0, 0.3, 0.0, 0.0)))       # peer requests 300 ms
    assert s.count == 3
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2                                    # the second within the period
    assert "(1 since the last report)" in msgs[0] and "poll returned 700 ms late" in msgs[0]
    assert "(2 since the last report)" in msgs[1] and "peer requests 300 ms" in msgs[1]


def test_the_last_turns_are_kept_for_a_late_renewals_report():
    from actors.replication import SlowTurns
    t = SlowTurns(1.0)
    for i in range(20):
        top = 10.0 + i
        t.note(top, top + 0.001, 1.0, top + 0.5, top + 0.5, top + 0.5, top + 0.5, top + 0.502,
               active=i % 2 == 0)
    assert len(t.recent) == 12
    h = t.history(30.0)
    first, last = h.split(", ")[0], h.split(", ")[-1]
    assert first == "-12000+1/499/2" and last == "-1000+1/499/2s", h
