"""Event sourcing of the SIP ALG: replaying the events gives the live state;
the transition table is total; events survive their journal encoding; wire
input never makes the ALG raise."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from gateway.config.model import SipSettings
from gateway.events import decode
from gateway.sip import transitions
from gateway.sip.alg import EMPTY, media_activity, on_timer, step
from gateway.sip.state_fold import fold

from test_sip_alg import (IN, OUT, PH1, PH2, REG_IN, REG_OUT, invite, register, register_ok,
                          request_out, response, sdp)

PROTECT = SipSettings(protect_deny=True)

MESSAGES = [
    (OUT, invite()),
    (OUT, invite(cseq=2, branch="z9hG4bKr2")),
    (OUT, invite(body=sdp(PH1, 52002, 52010), cseq=3, branch="z9hG4bKr3", to_tag="b")),
    (OUT, invite(body=sdp("0.0.0.0", 52002), cseq=4, branch="z9hG4bKr4", to_tag="b")),
    (OUT, invite(body=sdp(PH1, *range(40000, 40016, 2)), cseq=5, branch="z9hG4bKr5", to_tag="b")),
    (OUT, invite(call="second")),
    (IN, response(100, "Trying")),
    (IN, response(180, "Ringing", body=sdp(PH2, 62000))),
    (IN, response(200, "OK", body=sdp(PH2, 62002))),
    (IN, response(200, "OK", to_tag="fork", body=sdp("6.6.6.9", 1000))),
    (IN, response(200, "OK", cseq=3, body=sdp(PH2, 62002, 62004), branch="z9hG4bKr3")),
    (IN, response(200, "OK", extra="Session-Expires: 90\n", body=sdp(PH2, 62002))),
    (IN, response(486, "Busy Here")),
    (IN, response(487, "Request Terminated")),
    (IN, response(200, "OK", method="BYE", cseq=9, branch="z9hG4bKbye")),
    (OUT, request_out("ACK", 1, "z9hG4bKack")),
    (OUT, request_out("ACK", 1, "z9hG4bKack2", body=sdp(PH1, 52004))),
    (OUT, request_out("BYE", 9, "z9hG4bKbye")),
    (OUT, request_out("CANCEL", 1, "z9hG4bK1").replace(b";tag=b\r\nCall", b"\r\nCall")),
    (OUT, request_out("UPDATE", 7, "z9hG4bKupd", body=sdp(PH1, 52020))),
    (OUT, request_out("INFO", 8, "z9hG4bKinfo")),
    (REG_OUT, register(f"{PH1}:1234", 3600)),
    (REG_IN, register_ok("6.6.6.1:5555", 60)),
    (REG_OUT, register(f"{PH1}:1234", 0, cseq=2)),
    (OUT, b"garbage\r\n\r\n"),
]

ops = st.lists(st.one_of(
    st.tuples(st.just("msg"), st.integers(0, len(MESSAGES) - 1), st.floats(0, 200)),
    st.tuples(st.just("timer"), st.integers(0, 20), st.floats(0, 5000)),
    st.tuples(st.just("media"), st.integers(0, 20), st.floats(0, 100)),
), max_size=25)


def evaluations(sequence, cfg):
    """(state before, result) of every evaluation of ``sequence`` (messages,
    timers of a live call or registration, media reports of a live group,
    half of them naming the group's pinhole), each from the state the
    previous one left."""
    state, now = EMPTY, 1000.0
    for kind, n, dt in sequence:
        now += dt
        if kind == "msg":
            ctx, data = MESSAGES[n]
            r = step(state, ctx, data, now, cfg)
        elif kind == "timer":
            keys = sorted({c.stream for c in state.calls.values()}
                          | {r.stream for r in state.registrations.values()})
            if not keys:
                continue
            r = on_timer(state, keys[n % len(keys)], now, cfg)
        else:
            groups = sorted(state.group_index)
            if not groups:
                continue
            g = groups[n % len(groups)]
            holes = [p.id for c in state.calls.values() for p in c.pinholes if p.group == g]
            r = media_activity(state, g, now, cfg, pinhole=holes[0] if holes and n % 2 else None)
        yield state, r
        state = r.state


@settings(max_examples=200, deadline=None)
@given(ops, st.booleans())
def test_replay_of_events_equals_live_state(sequence, protect):
    cfg = PROTECT if protect else SipSettings()
    events = []
    for before, r in evaluations(sequence, cfg):
        assert r.verdict in ("forward", "drop")
        if r.verdict == "drop":
            assert r.reason and r.state is before and not r.events
        events.extend(r.events)
        state = r.state
        assert fold(events) == state
        # Ports held are exactly those of live groups, bindings, registrations.
        held = set()
        for c in state.calls.values():
            for g in c.groups:
                if g.public_port is not None:
                    held |= {(g.public_ip, g.public_port), (g.public_ip, g.public_port + 1)}
            held |= {(b.public_ip, b.public_port) for b in c.bindings if b.owned}
        held |= {(r.public_ip, r.public_port) for r in state.registrations.values() if r.owned}
        assert {(str(ip), p) for ip, p in state.ports_in_use} == held


def test_events_survive_journal_encoding():
    r1 = step(EMPTY, OUT, invite(), 1.0, PROTECT)
    r2 = step(r1.state, IN, response(486, "Busy Here"), 2.0, PROTECT)
    r3 = step(EMPTY, REG_OUT, register(f"{PH1}:1234", 3600), 1.0)
    events = r1.events + r2.events + r3.events
    assert {type(e).TYPE for e in events} >= {"sip.call_started", "sip.pinhole_opened",
                                              "sip.media_bound", "sip.protect_deny_added",
                                              "sip.registration_bound"}
    for e in events:
        assert decode(e.TYPE, e.SCHEMA, e.to_payload()) == e
    assert fold(decode(e.TYPE, e.SCHEMA, e.to_payload()) for e in r1.events + r2.events) == r2.state


def test_transition_table_is_total():
    missing = [(p, t) for p in transitions.PHASES for t in transitions.TRIGGERS
               if (p, t) not in transitions.TABLE]
    assert missing == []
    for (phase, trigger), tr in transitions.TABLE.items():
        assert tr.next in transitions.PHASES
        assert phase != "none" or tr.next in ("none", "calling")
    # Every response code of Table 1 maps to a trigger.
    for code in (100, 180, 181, 182, 183, 200, 202, 300, 301, 302, 305, 380, 400, 401, 402,
                 403, 404, 405, 406, 407, 408, 409, 410, 411, 413, 414, 415, 420, 480, 481,
                 482, 483, 484, 485, 486, 487, 488, 500, 501, 502, 503, 504, 505, 600, 603,
                 604, 606):
        for method in transitions.METHODS:
            assert transitions.response_trigger(code, method) in transitions.TRIGGERS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_wire_input_never_raises(data):
    r = step(EMPTY, OUT, data, 1.0)
    assert r.verdict in ("forward", "drop")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(MESSAGES) - 1), st.data())
def test_mutated_messages_never_raise(n, data):
    ctx, msg = MESSAGES[n]
    i = data.draw(st.integers(0, max(0, len(msg) - 1)))
    junk = data.draw(st.binary(max_size=8))
    r = step(EMPTY, ctx, msg[:i] + junk + msg[i + len(junk):], 1.0)
    assert r.verdict in ("forward", "drop")
