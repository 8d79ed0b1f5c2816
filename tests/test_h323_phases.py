"""The H.323 call phases follow the transition table: after every Q.931
message a call takes, its phase (the fold of the ALG's events) is the
table's ``to`` for that message in that phase, or stays where it was when
the rule names no phase (gateway/h323/transitions.py); a message the table
does not allow in the call's phase changes nothing."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from gateway.h323.alg import H323Context, step
from gateway.h323.q931 import parse_call_signal
from gateway.h323.state import EMPTY, fold
from gateway.h323.transitions import ANY, PHASES, lookup
from test_h323_alg import ALERTING, CONNECT, PROCEEDING, SETUP, _release

CTX = H323Context("q931", "none", ("10.1.3.143", 32803), ("10.1.6.18", 1720))
LATER = [PROCEEDING, ALERTING, CONNECT]


def _allowed(rule, phase: str) -> bool:
    return rule.phases is None or ANY in rule.phases or phase in rule.phases


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from(LATER), max_size=8))
def test_every_q931_message_moves_the_call_to_the_tables_phase(later):
    res = step(EMPTY, CTX, SETUP, 1.0)
    assert res.verdict == "forward", res.reason
    [key] = list(res.state.calls)
    assert res.state.calls[key].phase == lookup("q931", "setup").to
    s, now = res.state, 1.0
    for data in later:
        now += 1.0
        rule = lookup("q931", parse_call_signal(data).name)
        before = s.calls[key].phase
        res = step(s, CTX, data, now)
        assert fold(res.events, s) == res.state
        if not _allowed(rule, before):
            assert res.state == s, (before, rule)
            continue
        assert res.verdict == "forward", res.reason
        after = res.state.calls[key].phase
        assert after == (rule.to or before), (before, parse_call_signal(data).name, after)
        assert after in PHASES
        s = res.state
    ref = s.calls[key].call_reference
    assert lookup("q931", "releaseComplete").to is None
    end = step(s, CTX, _release(ref, True), now + 1.0)
    assert end.verdict == "forward" and key not in end.state.calls
