"""The SIP transition table says what the fold does: after every forwarded
message, its call is in the phase the table's row names as ``next`` (random
message sequences over a dialog, with timers between)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from gateway.config.model import SipSettings
from gateway.sip import parse_message
from gateway.sip.alg import EMPTY, on_timer, step
from gateway.sip.transitions import NONE, PHASES, TABLE, request_trigger, response_trigger

from test_sip_alg import IN, OUT, invite, response
from test_sip_alg_replay import MESSAGES, PROTECT

sequences = st.lists(st.one_of(
    st.tuples(st.just("msg"), st.integers(0, len(MESSAGES) - 1), st.floats(0, 200)),
    st.tuples(st.just("timer"), st.integers(0, 20), st.floats(0, 5000)),
), max_size=25)


def _call_of(state, msg):
    if msg.cseq[1] == "REGISTER":
        return None
    return state.find_call(msg.call_id, msg.from_tag or "", msg.to_tag)


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_a_forwarded_message_leaves_its_call_in_the_rows_next_phase(sequence):
    state, now = EMPTY, 1000.0
    for kind, n, dt in sequence:
        now += dt
        if kind == "timer":
            keys = sorted(c.stream for c in state.calls.values())
            if keys:
                state = on_timer(state, keys[n % len(keys)], now, PROTECT).state
            continue
        ctx, data = MESSAGES[n]
        r = step(state, ctx, data, now, PROTECT)
        if r.verdict == "forward":
            msg = parse_message(data)
            trigger = (request_trigger(msg.method) if msg.is_request
                       else response_trigger(msg.status_code, msg.cseq[1]))
            call = _call_of(state, msg)
            after = r.state.calls.get(call.key) if call is not None else _call_of(r.state, msg)
            if after is not None:
                phase = call.phase if call is not None else NONE
                assert after.phase in PHASES
                assert after.phase == TABLE[phase, trigger].next, (phase, trigger, after.phase)
        state = r.state


def test_a_provisional_answer_leaves_the_call_calling():
    # Timer C and the per-source setup limit hold until the final answer
    # (RFC 3261 §16.6): the fold keeps a call with only a 1xx in "calling",
    # and the table says the same.
    r1 = step(EMPTY, OUT, invite(), 1.0, SipSettings())
    r2 = step(r1.state, IN, response(180, "Ringing"), 2.0, SipSettings())
    (call,) = r2.state.calls.values()
    assert call.phase == TABLE[r1.state.calls[call.key].phase, "1xx/INVITE"].next == "calling"
