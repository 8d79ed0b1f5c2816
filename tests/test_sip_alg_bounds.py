"""What unanswered or hostile SIP traffic can make the ALG hold, and for how long.

RFC 3261 §16.6 bullet 11 / §16.8: an INVITE without a final answer is given
up when Timer C (> 3 minutes) fires; a provisional answer 101-199 restarts
it (§16.7 step 2). Every call in setup, with the ports, pinholes and timer it
holds, is gone by then; and one source may hold only so many calls in setup.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.config.model import SipSettings
from gateway.sip import events as ev
from gateway.sip.alg import EMPTY, SipContext, on_timer, step
from tests.test_sip_alg import (ALG, IN, OUT, PH1, PH2, assert_replays, established, invite,
                                response, sdp, sip, the_call)

# A scanner outside sends INVITEs to the MIP of ph1 naming loopback in its
# Via and Contact (as seen in captures of SIP scanners).
MIP = SipContext("inbound", ("203.0.113.7", 5060), (ALG, 5060), nat_dst=(PH1, 5060))


def scan_invite(i: int, src: str = "203.0.113.7", body: bool = True) -> bytes:
    return sip(f"INVITE sip:100@{ALG} SIP/2.0", f"""
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKs{i}
From: <sip:scan@{src}>;tag=s{i}
To: <sip:100@{ALG}>
Call-ID: scan{i}@127.0.0.1
CSeq: 1 INVITE
Contact: <sip:scan@127.0.0.1:5070>
""", sdp(src, 4000 + 2 * (i % 1000)) if body else "")


def ctx_from(src: str) -> SipContext:
    return replace(MIP, src=(src, 5060))


def end_due(state, now: float, settings: SipSettings = SipSettings()):
    """Run every call's timer at ``now`` (what the node's timer service does)."""
    results = []
    for call in list(state.calls.values()):
        r = on_timer(state, call.stream, now, settings)
        state = r.state
        results.append(r)
    return state, results


# --- Timer C ------------------------------------------------------------------------

def test_unanswered_invite_ends_by_timer_c():
    # Before: the call stayed in "calling" with a 43,200 s deadline.
    r = step(EMPTY, OUT, invite(), 100.0)
    call = the_call(r.state)
    assert call.phase == "calling"
    assert call.signalling_deadline == 100.0 + 181
    assert r.timers[0].deadline <= 100.0 + 181
    assert on_timer(r.state, call.stream, 100.0 + 180.9).state.calls
    ended = on_timer(r.state, call.stream, 100.0 + 181)
    assert len(ended.state.calls) == 0
    (end,) = [e for e in ended.events if isinstance(e, ev.CallEnded)]
    assert "Timer C" in end.reason
    # Its ports and pinholes go with it.
    assert len(ended.state.ports) == 0
    assert sorted(ended.pinholes_close) == sorted(p.id for p in call.pinholes)
    assert_replays(r, ended)


def test_timer_c_is_a_setting():
    settings = SipSettings(timer_c=200)
    r = step(EMPTY, OUT, invite(), 100.0, settings)
    assert the_call(r.state).signalling_deadline == 300.0


def test_provisional_answer_restarts_timer_c_but_100_trying_does_not():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    trying = step(r1.state, IN, response(100, "Trying", to_tag=""), 110.0)
    assert the_call(trying.state).signalling_deadline == 100.0 + 181
    ringing = step(trying.state, IN, response(180, "Ringing"), 150.0)
    assert the_call(ringing.state).signalling_deadline == 150.0 + 181
    # The answer puts the call under the signalling inactivity timeout.
    ok = step(ringing.state, IN, response(200, "OK", body=sdp(PH2, 62002)), 300.0)
    assert the_call(ok.state).signalling_deadline == 300.0 + 43200
    assert_replays(r1, trying, ringing, ok)


def test_other_requests_in_setup_do_not_extend_timer_c():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    info = sip(f"INFO sip:ph2@{PH2} SIP/2.0", f"""
Via: SIP/2.0/UDP {PH1}:5060;branch=z9hG4bKinfo
From: <sip:ph1@{PH1}>;tag=a
To: <sip:ph2@{PH2}>
Call-ID: a1234@{PH1}
CSeq: 2 INFO
""")
    r2 = step(r1.state, OUT, info, 200.0)
    assert r2.verdict == "forward"
    assert the_call(r2.state).signalling_deadline == 100.0 + 181


def test_retransmitted_invite_restarts_timer_c():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, OUT, invite(), 130.0)
    assert the_call(r2.state).signalling_deadline == 130.0 + 181


def test_signalling_pinhole_toward_a_scanners_contact_ends_with_the_call():
    # The scanner's Contact (127.0.0.1) got an outbound signalling pinhole
    # without lifetime that outlived nothing: it now goes with the call.
    r = step(EMPTY, MIP, scan_invite(1), 100.0)
    assert r.verdict == "forward"
    toward = [p for p in the_call(r.state).pinholes
              if p.kind == "signalling" and p.direction == "outbound"]
    assert [p.dst for p in toward] == [("127.0.0.1", 5070)]
    state, results = end_due(r.state, 100.0 + 181)
    assert len(state.calls) == 0
    assert toward[0].id in results[0].pinholes_close


# --- calls in setup per source ----------------------------------------------------------

def test_calls_in_setup_are_limited_per_source():
    settings = SipSettings(max_setup_calls_per_source=3)
    s = EMPTY
    for i in range(3):
        r = step(s, MIP, scan_invite(i), 100.0, settings)
        assert r.verdict == "forward"
        s = r.state
    assert dict(s.setup_by_src) == {"203.0.113.7": 3}
    fourth = step(s, MIP, scan_invite(3), 100.0, settings)
    assert fourth.verdict == "drop" and fourth.state is s
    assert "sip setup limit" in fourth.reason and "203.0.113.7" in fourth.reason
    assert "max-setup-calls-per-source" in fourth.reason
    # Another source is not affected.
    other = step(s, ctx_from("198.51.100.9"), scan_invite(4, "198.51.100.9"), 100.0, settings)
    assert other.verdict == "forward"
    # Retransmissions of a call already held pass.
    again = step(s, MIP, scan_invite(0), 101.0, settings)
    assert again.verdict == "forward"
    # When the calls end, the source may call again.
    s, _ = end_due(s, 100.0 + 181, settings)
    assert len(s.setup_by_src) == 0
    assert step(s, MIP, scan_invite(5), 300.0, settings).verdict == "forward"


def test_an_answered_call_leaves_setup():
    settings = SipSettings(max_setup_calls_per_source=1)
    r1 = step(EMPTY, OUT, invite(), 100.0, settings)
    assert dict(r1.state.setup_by_src) == {PH1: 1}
    refused = step(r1.state, OUT, invite(call="b5678", branch="z9hG4bK9"), 100.5, settings)
    assert refused.verdict == "drop"
    r2 = step(r1.state, IN, response(200, "OK", body=sdp(PH2, 62002)), 101.0, settings)
    assert len(r2.state.setup_by_src) == 0
    r3 = step(r2.state, OUT, invite(call="b5678", branch="z9hG4bK9"), 102.0, settings)
    assert r3.verdict == "forward"
    assert_replays(r1, r2, r3)


def test_rejected_then_retried_call_counts_again():
    r1 = step(EMPTY, OUT, invite(), 100.0)
    r2 = step(r1.state, IN, response(407, "Proxy Authentication Required"), 100.2)
    assert len(r2.state.setup_by_src) == 0
    r3 = step(r2.state, OUT, invite(cseq=2, branch="z9hG4bK7"), 101.0)
    assert dict(r3.state.setup_by_src) == {PH1: 1}
    assert the_call(r3.state).signalling_deadline == 101.0 + 181
    assert_replays(r1, r2, r3)


# --- a flood returns to where it started ----------------------------------------------------

def _counts(state, timers: dict):
    calls = list(state.calls.values())
    return {
        "calls": len(state.calls),
        "call_index": len(state.call_index),
        "group_index": len(state.group_index),
        "pinholes": sum(len(c.pinholes) for c in calls),
        "ports": len(state.ports_in_use),
        "setup": dict(state.setup_by_src),
        "timers": {k: v for k, v in timers.items() if v is not None},
    }


def _arm(timers: dict, result) -> None:
    for t in result.timers:
        if t.deadline is None:
            timers.pop(t.key, None)
        else:
            timers[t.key] = t.deadline


@pytest.mark.parametrize("n", [3000])
def test_flood_of_unanswered_invites_leaves_nothing_after_timer_c(n):
    # One established call before the flood; N unanswered INVITEs from many
    # Call-IDs and 40 sources (a distributed scan). Before, every one stayed
    # for 12 hours with its ports and pinholes.
    # (media inactivity beyond the test's span: the established call stays)
    settings = SipSettings(media_inactivity_timeout=3600)
    before = established(settings=settings)
    timers: dict = {}
    _arm(timers, before)
    pre_state = before.state
    pre = _counts(pre_state, timers)
    s = pre_state
    t0 = 200.0
    for i in range(n):
        src = f"203.0.113.{i % 40}"
        r = step(s, ctx_from(src), scan_invite(i, src), t0 + i * 0.001, settings)
        assert r.verdict == "forward", r.reason
        _arm(timers, r)
        s = r.state
    assert len(s.calls) == n + 1
    assert sum(len(c.pinholes) for c in s.calls.values()) > n
    # The timer service fires what is due once Timer C has passed.
    now = t0 + n * 0.001 + settings.timer_c
    for key, deadline in sorted(timers.items(), key=lambda kv: kv[1]):
        if deadline <= now:
            r = on_timer(s, key, now, settings)
            _arm(timers, r)
            s = r.state
    assert _counts(s, timers) == pre
    assert s == pre_state


# --- the settings -------------------------------------------------------------------

def test_timer_c_and_setup_limit_settings_parse_render_and_unset():
    from gateway.config import ConfigError, parse_text, render
    cfg = parse_text("set sip timer-c 240\nset sip max-setup-calls-per-source 50\n")
    assert (cfg.sip.timer_c, cfg.sip.max_setup_calls_per_source) == (240, 50)
    assert parse_text(render(cfg)) == cfg
    back = parse_text(render(cfg) + "unset sip timer-c\nunset sip max-setup-calls-per-source\n")
    assert back.sip == SipSettings()
    assert render(parse_text("")) == render(back)
    with pytest.raises(ConfigError):
        parse_text("set sip timer-c 0\n")


# --- host names are not addresses ------------------------------------------------------------

def test_contact_host_name_gets_no_pinhole_and_no_event():
    # Before: an outbound signalling pinhole toward "pbx.example.com" was
    # emitted; installing it raised AddressValueError inside the journal
    # completion, after 4 events were journaled for a packet never forwarded.
    from gateway.datapath.pinholes import PinholeTable
    data = scan_invite(1).replace(b"<sip:scan@127.0.0.1:5070>", b"<sip:scan@pbx.example.com:5070>")
    r = step(EMPTY, MIP, data, 100.0)
    assert r.verdict == "forward"
    assert not [p for p in r.pinholes_open if p.kind == "signalling"]
    assert not [e for e in r.events if isinstance(e, ev.PinholeOpened)
                and not e.dst_ip[0].isdigit()]
    assert any("pbx.example.com" in line and "not an IPv4 address" in line for line in r.logs)
    table = PinholeTable()
    for p in r.pinholes_open:
        table.install(p)
    assert_replays(r)


def test_remote_target_moving_to_a_host_name_opens_nothing():
    r1 = step(EMPTY, MIP, scan_invite(1), 100.0)
    (old,) = [p for p in the_call(r1.state).pinholes if p.kind == "signalling"
              and p.direction == "outbound"]
    again = scan_invite(1).replace(b"<sip:scan@127.0.0.1:5070>", b"<sip:scan@pbx.example.com>")
    r2 = step(r1.state, MIP, again, 101.0)
    assert r2.verdict == "forward" and not r2.pinholes_open
    assert not [p for p in the_call(r2.state).pinholes if p.kind == "signalling"
                and p.direction == "outbound" and p.dst[0] == "pbx.example.com"]
