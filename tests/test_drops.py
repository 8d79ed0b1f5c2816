"""Drop codes (gateway/drops.py): a closed set, counted without a cap; the
reason text goes to the log only, throttled per code."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from gateway.config import parse_text
from gateway.datapath import Datapath
from gateway.drops import CODES, LogThrottle, code_of
from gateway.packet import build_udp

CFG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set policy from untrust to trust any any any deny
set policy from trust to untrust any any any permit
"""


@settings(max_examples=300)
@given(category=st.one_of(st.sampled_from(["malformed", "fragment", "screen-udp-flood",
                                            "screen-limit-session", "policy", "session", "alg",
                                            "held", "held-timeout", "worker", "overload",
                                            "standby", "error", "other"]), st.text(max_size=20)),
       reason=st.text(max_size=80), alg=st.one_of(st.none(), st.sampled_from(["sip", "mgcp", "h323"]),
                                                   st.text(max_size=8)))
def test_every_code_is_in_the_closed_set(category, reason, alg):
    assert code_of(category, reason, alg) in CODES


def test_codes_of_known_drops():
    assert code_of("policy", "denied by policy 1 (untrust->trust)") == "policy-deny"
    assert code_of("screen-limit-session", "x") == "screen-src-session-limit"
    assert code_of("session", "the reply tuple of this flow belongs to another session") == \
        "session-reply-tuple-taken"
    assert code_of("session", "no free port on 1.1.1.1 for udp or ...") == "session-no-port"
    assert code_of("alg", "sip protect deny: test", "sip") == "alg-sip"
    assert code_of("alg", "standby: not forwarding", "sip") == "standby"
    assert code_of("alg", "journal: the message's events could not be written", "mgcp") == "journal"
    assert code_of("alg", "whatever") == "alg"


def test_a_port_sweep_is_counted_under_one_code_without_a_cap():
    """Before: reasons were counted by text, at most 256 of them, the rest as
    '(other reasons)'. Now one code counts every one."""
    dp = Datapath(parse_text(CFG))
    n = 1000
    for port in range(1, n + 1):
        out = dp.process(build_udp("1.1.1.9", "10.1.1.3", 40000, port, b"x"), "ethernet3", 0.0)
        assert out.category == "policy"
    assert dp.stats()["drop_codes"] == {"policy-deny": n}


def test_alg_drops_are_coded_by_their_alg():
    dp = Datapath(parse_text(CFG))
    dp.drop("sip protect deny: test", alg="sip")
    dp.drop("standby: not forwarding")
    dp.drop("whatever", alg="mgcp")
    assert dp.stats()["drop_codes"] == {"alg-sip": 1, "standby": 1, "alg-mgcp": 1}


def test_log_throttle_once_per_interval_with_the_suppressed_count():
    t = LogThrottle(1.0)
    assert t.check("a", 0.0) == 0
    assert t.check("a", 0.3) is None and t.check("a", 0.6) is None
    assert t.check("b", 0.6) == 0                 # each key has its own second
    assert t.check("a", 1.0) == 2
    assert t.check("a", 1.5) is None


def test_log_throttle_memory_is_bounded():
    t = LogThrottle(1.0, max_keys=100)
    for i in range(10_000):
        t.check(("overload-shed", i), 0.0)
    assert len(t) <= 100


def test_gwctl_status_shows_drops_by_code_and_overload(monkeypatch, capsys):
    from ops.commands import node as node_cmd
    from ops.gwctl import build_parser
    st = {"node": "gw-a", "role": "active", "epoch": 3, "forwarding": True, "replication": "sync",
          "journal_head": 9, "applied": 9, "calls": 0, "registrations": 0, "pinholes": 0,
          "actors": 1, "datapath": {"drop_codes": {"policy-deny": 1}, "paths": {}},
          "drops": {"sip protect deny: x": 2},
          "ingest": {"drop_codes": {"overload-shed": 950, "policy-deny": 1},
                     "overload": {"overloaded": True, "budget": 120.0, "rate": 400.0,
                                  "active_sources": 2, "admitted": 300, "shed": 950}}}
    monkeypatch.setattr(node_cmd, "_call", lambda args, cmd, payload=None: st)
    args = build_parser().parse_args(["status"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "overload: OVERLOADED, new dialogs 120/s of 400/s among 2 source(s)" in out
    assert "drop      950  overload-shed" in out and "drop        1  policy-deny" in out
    assert "alg drop        2  sip protect deny: x" in out
    assert "drop_codes" not in out
