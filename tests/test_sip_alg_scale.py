"""The SIP ALG with thousands of calls: the state is still the fold of its
events, an event's cost does not grow with the number of calls, and the
per-address port bitmaps allocate exactly as gateway.ports does."""

from __future__ import annotations

import timeit
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings, strategies as st
from immutables import Map

from gateway import ports as reference
from gateway.sip import events as ev
from gateway.sip import portmap
from gateway.sip.alg import EMPTY, on_timer, step
from gateway.sip.state_fold import apply, fold

from test_sip_alg import ALG, IN, OUT, PH1, PH2, invite, request_out, response, sdp

N_CALLS = 2000


def _cid(data: bytes, i: int) -> bytes:
    return data.replace(b"a1234@", f"c{i:05d}@".encode())


@pytest.fixture(scope="module")
def many_calls():
    """2,000 calls through step: every one answered and acknowledged, every
    tenth hung up (and torn down by its timer 5 s later), every seventh
    re-INVITEd to a second stream."""
    state, events = EMPTY, []

    def run(ctx, data, now):
        nonlocal state
        r = step(state, ctx, data, now)
        assert r.verdict == "forward", r.reason
        events.extend(r.events)
        state = r.state

    for i in range(N_CALLS):
        now = 100.0 + i
        run(OUT, _cid(invite(), i), now)
        run(IN, _cid(response(200, "OK", body=sdp(PH2, 62002)), i), now + 0.1)
        run(OUT, _cid(request_out("ACK", 1, "z9hG4bKack"), i), now + 0.2)
        if i % 7 == 0:
            run(OUT, _cid(request_out("INVITE", 2, "z9hG4bKre", body=sdp(PH1, 52002, 52010)), i),
                now + 0.3)
        if i % 10 == 0:
            run(OUT, _cid(request_out("BYE", 3, "z9hG4bKbye"), i), now + 0.4)
            r = on_timer(state, ev.call_stream(f"c{i:05d}@{PH1};a"), now + 6.0)
            assert r.events and isinstance(r.events[-1], ev.CallEnded)
            events.extend(r.events)
            state = r.state
    return state, events


def test_state_after_2000_calls_is_the_fold_of_their_events(many_calls):
    state, events = many_calls
    assert len(state.calls) == N_CALLS - N_CALLS // 10
    assert fold(events) == state
    # Ports held are exactly those of the live calls' groups (the
    # signalling bindings reuse the NAT's own translation here).
    held = {(g.public_ip, p) for c in state.calls.values() for g in c.groups
            if g.public_port is not None for p in (g.public_port, g.public_port + 1)}
    assert set(portmap.held(state.ports)) == held
    assert len(held) == 2 * sum(len([g for g in c.groups if g.public_port is not None])
                                for c in state.calls.values())
    # Every index entry points at a live call, and every live call is found.
    assert all(k in state.calls for k in state.call_index.values())
    assert all(k in state.calls for k in state.group_index.values())
    for c in state.calls.values():
        assert state.find_call(c.call_id, c.from_tag) is c
        assert state.find_call(c.public_call_id, c.from_tag) is c


def test_state_mappings_are_persistent_maps(many_calls):
    # A persistent map shares all but O(log n) of itself with the map it was
    # made from: an event on one call copies nothing of the others.
    state, _ = many_calls
    for name in ("calls", "call_index", "group_index", "registrations", "reg_by_private",
                 "reg_by_call", "reg_since", "protect", "ports"):
        assert isinstance(getattr(state, name), Map), name
    key = next(iter(state.calls))
    after = apply(state, ev.CallActivity(key, 1.0, 2.0, None))
    assert after.calls is not state.calls and len(after.calls) == len(state.calls)
    assert all(after.calls[k] is state.calls[k] for k in state.calls if k != key)
    assert after.call_index is state.call_index and after.ports is state.ports


def _synthetic(n: int):
    """``n`` calls, each with a media pair on the ALG address: the pairs
    20000.. are taken one after the other, as phones that all announce the
    same RTP port leave them."""
    events = []
    for i in range(n):
        key = f"s{i};a"
        events.append(ev.CallStarted(key, f"s{i}", f"s{i}", "a", "outbound", PH1, ALG,
                                     "trust", "untrust", 0.0, 1e9))
        events.append(ev.MediaBound(key, f"{key}#g0", "a", 0, PH1, 16384, 16385, ALG,
                                    20000 + 2 * i, None))
    return fold(events)


def _best(fn, number=200):
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def test_event_and_step_cost_do_not_grow_with_the_number_of_calls():
    small, large = _synthetic(100), _synthetic(20000)
    key_s, key_l = "s50;a", "s19950;a"
    activity = _best(lambda: apply(large, ev.CallActivity(key_l, 1.0, 2.0, None))) / \
        _best(lambda: apply(small, ev.CallActivity(key_s, 1.0, 2.0, None)))
    # An INVITE whose pair search meets every pair already held.
    data = invite(body=sdp(PH1, 16384), call="new")
    steps = _best(lambda: step(large, OUT, data, 5.0), 50) / _best(lambda: step(small, OUT, data, 5.0), 50)
    # O(log n) in a trie of 20,000 against 100: a little more; a copy of
    # the call table or a port-by-port search would be well over 10x.
    assert activity < 4 and steps < 4, (activity, steps)
    got = step(large, OUT, data, 5.0)
    assert got.verdict == "forward"
    (bound,) = [e for e in got.events if isinstance(e, ev.MediaBound)]
    assert bound.public_port == 20000 + 2 * 20000


# --- the bitmaps against gateway.ports ---------------------------------------

LOW, HIGH = 20, 60
taken = st.sets(st.tuples(st.sampled_from(["6.6.6.1", "6.6.6.2"]), st.integers(LOW - 4, HIGH + 2)),
                max_size=50)
hints = st.none() | st.integers(0, HIGH + 5)


def _both(used):
    pm = portmap.EMPTY_PORTS
    for ip, p in used:
        pm = portmap.hold(pm, ip, p)
    return pm, frozenset((IPv4Address(ip), p) for ip, p in used)


@settings(max_examples=300, deadline=None)
@given(taken, hints, st.integers(LOW - 3, LOW + 3), st.integers(HIGH - 3, HIGH + 1))
def test_bitmap_allocation_matches_gateway_ports(used, hint, low, high):
    pm, ref = _both(used)
    ip = IPv4Address("6.6.6.1")
    assert portmap.allocate_pair(pm, "6.6.6.1", hint=hint, low=low, high=high) == \
        reference.allocate_pair(ref, ip, hint=hint, low=low, high=high)
    assert portmap.allocate_port(pm, "6.6.6.1", hint=hint, low=low, high=high) == \
        reference.allocate_port(ref, ip, hint=hint, low=low, high=high)
    assert portmap.as_set(pm) == ref


@settings(max_examples=200, deadline=None)
@given(taken, taken)
def test_bitmap_hold_and_release_are_set_union_and_difference(a, b):
    pm, _ = _both(a)
    for ip, p in b:
        pm = portmap.release(pm, ip, p)
    assert set(portmap.held(pm)) == a - b
    assert all(portmap.is_held(pm, ip, p) == ((ip, p) in a - b) for ip, p in a | b)
    # An address with nothing held leaves the map (states compare equal).
    assert all(bits for bits in pm.values())


def test_full_range_has_no_pair():
    pm = portmap.hold(portmap.EMPTY_PORTS, ALG, *range(20000, 65536))
    pm = portmap.release(pm, ALG, 30001)
    assert portmap.allocate_pair(pm, ALG, hint=30000) is None
    assert portmap.allocate_port(pm, ALG, hint=30000, low=20000) == 30001


# --- registration indexes ----------------------------------------------------

def _reg(pub_port, priv_port, call_id="r1@5.5.5.1", priv_ip=PH1, expires=None, owned=True):
    return ev.RegistrationBound(ALG, pub_port, priv_ip, priv_port, call_id, expires, owned)


def test_registration_for_private_is_the_oldest_binding_of_the_contact():
    s = fold([_reg(5555, 5060), _reg(5556, 5060), _reg(5557, 5070)])
    assert s.registration_for_private(PH1, 5060).public_port == 5555
    assert s.registration_for_private(PH1, 5070).public_port == 5557
    assert s.registration_for_private(PH1, 5080) is None
    # A refresh keeps its age; removal and a new binding make it the newest.
    s = apply(s, _reg(5555, 5060, expires=99.0))
    assert s.registration_for_private(PH1, 5060).public_port == 5555
    s = apply(s, ev.RegistrationRemoved(ALG, 5555, "expired"))
    assert s.registration_for_private(PH1, 5060).public_port == 5556
    s = apply(s, _reg(5555, 5060))
    assert s.registration_for_private(PH1, 5060).public_port == 5556
    # A public address re-bound to another contact leaves the old one's index.
    s = apply(s, _reg(5556, 5090))
    assert s.registration_for_private(PH1, 5060).public_port == 5555
    assert s.registration_for_private(PH1, 5090).public_port == 5556
    assert portmap.is_held(s.ports, ALG, 5556)


def test_registrations_of_a_register_oldest_first_without_the_call_id_host():
    s = fold([_reg(5557, 5070, call_id="r2@5.5.5.1"), _reg(5555, 5060), _reg(5556, 5062)])
    assert [r.public_port for r in s.registrations_of(ALG, f"r1@{ALG}")] == [5555, 5556]
    assert [r.public_port for r in s.registrations_of(ALG, "r2")] == [5557]
    assert s.registrations_of("6.6.6.9", "r1@x") == []
    s = fold([ev.RegistrationRemoved(ALG, 5555, "x"), ev.RegistrationRemoved(ALG, 5556, "x"),
              ev.RegistrationRemoved(ALG, 5557, "x")], s)
    # Nothing is left behind in the indexes; only the creation counter moved.
    assert s == replace(EMPTY, reg_seq=3)
