"""Phases, verdicts and NAT directions are enums (``StrEnum``): a state holds
the member whether it was built live or folded from the journal's text, so a
live state and its replay stay equal to the byte, and the text every view,
log and journal record carries is unchanged."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.alg_contract import Direction
from gateway.config import parse_text
from gateway.events import decode
from gateway.h323 import events as h323_ev
from gateway.h323.state import EMPTY as H323_EMPTY
from gateway.h323.state import fold as h323_fold
from gateway.h323.transitions import Phase as H323Phase
from gateway.policy import Engine, Flow, Verdict
from gateway.sip.alg import EMPTY as SIP_EMPTY
from gateway.sip.alg import step
from gateway.sip.transitions import TABLE, Phase as SipPhase
from journal.state_codec import encode_tree

from test_sip_alg import OUT, invite


def test_sip_phases_are_members_and_their_text():
    assert [str(p) for p in SipPhase] == ["none", "calling", "confirmed", "rejected", "terminating"]
    assert all(isinstance(t.next, SipPhase) for t in TABLE.values())
    assert all(isinstance(phase, SipPhase) for phase, _trigger in TABLE)


def test_a_sip_call_holds_its_phase_as_the_member():
    r = step(SIP_EMPTY, OUT, invite(), 1000.0)
    (call,) = r.state.calls.values()
    assert call.phase is SipPhase.CALLING
    assert f"{call.phase}" == "calling" and call.phase == "calling"


def _h323_started():
    return h323_ev.CallStarted("c1", "1.1.1.1:1720-2.2.2.2:5000", 7, 10.0, 100.0, 1000.0, "1.1.1.1")


def test_h323_phase_folded_from_journal_text_is_the_member_and_byte_equal():
    live = h323_ev.CallProgressed("c1", H323Phase.CONNECTED, 200.0)
    replayed = decode("h323.call_progressed", 1, {"key": "c1", "phase": "connected",
                                                  "signalling_deadline": 200.0})
    assert type(replayed.phase) is str                # the journal carries the text
    a = h323_fold([_h323_started(), live], H323_EMPTY)
    b = h323_fold([_h323_started(), replayed], H323_EMPTY)
    assert a.calls["c1"].phase is H323Phase.CONNECTED
    assert b.calls["c1"].phase is H323Phase.CONNECTED
    assert encode_tree(a, canonical=True) == encode_tree(b, canonical=True)


CONFIG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set policy from trust to untrust any any any nat src permit
"""


def test_policy_verdicts_are_members():
    engine = Engine(parse_text(CONFIG))
    out = engine.decide(Flow("ethernet1", IPv4Address("10.1.1.5"), IPv4Address("1.1.1.9"), "udp", 5060, 5060))
    back = engine.decide(Flow("ethernet3", IPv4Address("1.1.1.9"), IPv4Address("10.1.1.5"), "udp", 5060, 5060))
    assert out.action is Verdict.PERMIT and out.permitted and out.action == "permit"
    assert back.action is Verdict.DENY and not back.permitted and back.action == "deny"


def test_directions_are_members_with_their_text():
    assert {str(d) for d in Direction} == {"outbound", "inbound", "none"}
    assert Direction("inbound") is Direction.INBOUND
