"""Decoding a journal record's payload into its event (gateway/events.py):
a payload of plain fields is passed to the class as it is; the result is the
one of decoding field by field (the decoder as it was, kept here as the
reference), for real events of every ALG, payloads with a key no field has,
and payloads missing a field."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway import events as gev
from test_standby_batch_apply import histories


def field_by_field(cls, payload):
    plan = gev._PLANS.get(cls) or gev._plan(cls)
    kwargs = {}
    for name, kind in plan.decoders:
        if name in payload:
            v = payload[name]
            kwargs[name] = v if kind is None or v is None else kind(v)
    return cls(**kwargs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), extra=st.booleans())
def test_decode_equals_the_field_by_field_decode(history, extra):
    for e in history:
        payload = e.to_payload()
        if extra:
            payload["a_field_of_a_newer_build"] = 1   # ignored, as it always was
        got = gev.decode(e.TYPE, e.SCHEMA, payload)
        assert got == field_by_field(type(e), payload)
        assert got == e and type(got) is type(e)


def test_a_plain_payload_missing_a_field_is_undecodable():
    from gateway.sip import events as sip_ev
    e = sip_ev.CallActivity(key="k", at=1.0, signalling_deadline=2.0, session_expires=None)
    payload = e.to_payload()
    del payload["at"]
    with pytest.raises(gev.UndecodableEvent, match="CallActivity|call_activity"):
        gev.decode(e.TYPE, e.SCHEMA, payload)
    payload = dict(e.to_payload(), **{"at": 1.0})
    payload[1] = "a key that is not a name"
    assert gev.decode(e.TYPE, e.SCHEMA, payload) == e


def test_every_registered_class_has_its_plan_plain_only_when_no_field_needs_a_decoder():
    for cls in gev.registered().values():
        plan = gev._PLANS.get(cls) or gev._plan(cls)
        assert (plan.plain is None) == any(dec for _, dec in plan.decoders)
        if plan.plain is not None:
            assert plan.plain == frozenset(plan.names)
