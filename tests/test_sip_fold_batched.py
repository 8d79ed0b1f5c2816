"""The SIP ALG folds the events of one evaluation through one draft
(gateway.sip.state_draft.SipDraft) and freezes it once; the journal is replayed
event by event (state.apply). Both must give the same state, and a draft
must never change the state it started from (a dropped message returns that
state; the standby and replay share it)."""

from __future__ import annotations

from functools import reduce

from hypothesis import given, settings, strategies as st

from gateway.config.model import SipSettings
from gateway.sip import events as ev
from gateway.sip.alg import EMPTY, step
from gateway.sip.state import Call, SipState
from gateway.sip.state_draft import SipDraft
from gateway.sip.state_fold import apply, apply_to, fold

from test_sip_alg_replay import MESSAGES, PROTECT, evaluations, ops


def _one_by_one(events, state=EMPTY):
    return reduce(apply, events, state)


@settings(max_examples=150, deadline=None)
@given(ops, st.booleans())
def test_each_step_state_is_its_events_applied_one_by_one(sequence, protect):
    events: list[ev.Event] = []
    for before, r in evaluations(sequence, PROTECT if protect else SipSettings()):
        assert type(r.state) is SipState
        assert all(type(c) is Call for c in r.state.calls.values())
        assert _one_by_one(r.events, before) == r.state
        # The state the step started from is untouched by its draft.
        assert _one_by_one(events) == before
        events.extend(r.events)
    assert fold(events) == _one_by_one(events)


@settings(max_examples=100, deadline=None)
@given(ops, st.data())
def test_batched_fold_of_any_split_equals_the_fold_one_by_one(sequence, data):
    events = [e for _, r in evaluations(sequence, PROTECT) for e in r.events]
    cut = data.draw(st.integers(0, len(events)))
    middle = fold(events[:cut])
    assert fold(events[cut:], middle) == _one_by_one(events)
    assert middle == _one_by_one(events[:cut])


def test_a_draft_frozen_midway_is_not_changed_by_what_follows():
    r = step(EMPTY, *MESSAGES[0], 1.0)
    d = SipDraft(EMPTY)
    for e in r.events[:3]:
        apply_to(d, e)
    early = d.freeze()
    for e in r.events[3:]:
        apply_to(d, e)
    assert early == _one_by_one(r.events[:3])
    assert d.freeze() == r.state
    assert early != r.state
    # Nothing changed: the very same state comes back.
    assert SipDraft(r.state).freeze() is r.state


def test_call_events_are_exactly_those_streamed_by_their_call():
    # alg.result takes the stream of these from their key without asking
    # each event: the set must be exactly the events of one call.
    import dataclasses

    from gateway.sip import alg
    from gateway.sip.state_fold import _HANDLERS
    for cls in _HANDLERS:
        names = [f.name for f in dataclasses.fields(cls)]
        e = cls(*[f"v{i}" for i in range(len(names))])
        if cls in alg._CALL_EVENTS:
            assert e.stream == ev.call_stream(e.key)
        else:
            assert not e.stream.startswith("call/")


def test_fast_event_constructors_build_the_same_events():
    import dataclasses

    from gateway.events import decode
    from gateway.sip.state_fold import _HANDLERS
    assert set(vars(ev.new)) == {cls.__name__ for cls in _HANDLERS}
    for cls in _HANDLERS:
        args = [f"v{i}" for i in range(len(dataclasses.fields(cls)))]
        fast, slow = getattr(ev.new, cls.__name__)(*args), cls(*args)
        assert type(fast) is cls and fast == slow and hash(fast) == hash(slow)
        assert fast.to_payload() == slow.to_payload()
        assert decode(cls.TYPE, cls.SCHEMA, fast.to_payload()) == slow
