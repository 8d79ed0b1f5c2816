"""Bandwidth management for VoIP (manual ch. 2, "Bandwidth Management for VoIP
Services", Figure 20): the settings in the configuration language, the
planner of HTB trees, marks and DSCP (gateway/shaping.py), and the marks the
datapath gives a call's signalling and media."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, check_text, load_file, parse_text, render
from gateway.config.model import PolicyTraffic, TrafficShaping
from gateway.datapath import Datapath, Forward
from gateway.datapath.fastpath import FastPath
from gateway.packet import build_udp
from gateway.shaping import (
    DEFAULT_MINOR, MARK_TAG, MIN_RATE_KBIT, class_report, is_policy_mark, nft_ruleset,
    parse_class_stats, plan, policy_mark, priorities, tc_install,
)
from gateway.sip.state import Pinhole

FIGURE20 = Path(__file__).resolve().parent / "data" / "bandwidth" / "figure20.cfg"

BASE = """\
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 bandwidth egress mbw 2000
set address trust phone1 10.1.1.3/24
set address untrust phone2 1.1.1.3/24
"""
POLICY = "set policy from trust to untrust any any any permit "


def diagnostics(text: str):
    _cfg, found = check_text(text, "t.cfg")
    return [(d.severity, d.line, d.column, d.token, d.message, d.hint) for d in found]


def only_error(text: str):
    with pytest.raises(ConfigError) as info:
        parse_text(text, "t.cfg")
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert len(errors) == 1, errors
    return errors[0]


# -- the configuration language ------------------------------------------------------

def test_figure20_parses_with_the_manuals_numbers():
    cfg = load_file(FIGURE20)
    assert cfg.interfaces["ethernet3"].bandwidth_egress == 2000
    voip, office = cfg.policies
    assert voip.traffic == PolicyTraffic(512, 0, 1024, True, 46, True)
    assert office.traffic == PolicyTraffic(1024, 7, 1536, False, None, True)
    assert parse_text(render(cfg)) == cfg


def test_forms_screenos_accepts_for_the_interface_bandwidth():
    old = parse_text(BASE.replace("bandwidth egress mbw 2000", "bandwidth 2000"))
    assert old.interfaces["ethernet3"].bandwidth_egress == 2000
    both = parse_text(BASE.replace("bandwidth egress mbw 2000",
                                   "bandwidth ingress mbw 0 egress mbw 2000"))
    assert both == old
    unset = parse_text(BASE + "unset interface ethernet3 bandwidth\n")
    assert unset.interfaces["ethernet3"].bandwidth_egress is None
    zero = parse_text(BASE.replace("egress mbw 2000", "egress mbw 0"))
    assert zero.interfaces["ethernet3"].bandwidth_egress is None


def test_traffic_options_in_any_order_and_abbreviated():
    a = parse_text(BASE + POLICY + "traffic gbw 100 priority 2 mbw 300 dscp enable\n")
    b = parse_text(BASE + POLICY + "TRAF dscp en mbw 300 pri 2 gbw 100\n")
    assert a == b
    assert a.policies[0].traffic == PolicyTraffic(100, 2, 300, True, None, True)
    only_dscp = parse_text(BASE + POLICY + "traffic dscp enable value 34\n").policies[0].traffic
    assert only_dscp == PolicyTraffic(0, 7, 0, True, 34, False)
    for cfg in (a, parse_text(BASE + POLICY + "traffic dscp enable value 34\n"),
                parse_text(BASE + POLICY + "traffic dscp disable\n")):
        assert parse_text(render(cfg)) == cfg


def test_traffic_shaping_mode_and_ip_precedence():
    cfg = parse_text(BASE + "set traffic-shaping mode on\n"
                     "set traffic-shaping ip_precedence 7 7 5 4 3 2 1 0\n")
    assert cfg.traffic_shaping == TrafficShaping("on", (7, 7, 5, 4, 3, 2, 1, 0))
    assert parse_text(render(cfg)) == cfg
    back = parse_text(BASE + "set traffic-shaping mode off\nunset traffic-shaping mode\n")
    assert back.traffic_shaping == TrafficShaping()


def test_gbw_sum_over_the_interface_bandwidth_is_refused_at_the_policy_that_exceeds_it():
    text = (BASE + "set policy from trust to untrust phone1 phone2 sip permit traffic gbw 512\n"
            + POLICY + "traffic gbw 1600 priority 7\n")
    e = only_error(text)
    assert (e.line, e.column, e.token) == (9, 65, "1600")
    assert e.message == ("the guaranteed bandwidth of the policies through ethernet3 (policy 1 "
                         "gbw 512 + policy 2 gbw 1600 = 2112 Kbps) exceeds its egress bandwidth "
                         "of 2000 Kbps")
    assert e.hint == ("lower a gbw, or raise 'set interface ethernet3 bandwidth egress mbw "
                      "2000'")
    # Exactly the bandwidth is fine.
    parse_text(text.replace("gbw 1600", "gbw 1488"))


def test_errors_name_file_line_token_and_hint():
    cases = {
        POLICY + "traffic gbw 600 mbw 500": (
            8, 73, "500", "the maximum bandwidth (mbw 500) is below the guaranteed bandwidth "
            "(gbw 600)", "mbw must be at least gbw: e.g. mbw 600, or mbw 0 for no maximum"),
        "set policy from trust to untrust any any any deny traffic gbw 10": (
            8, 51, "traffic", "a deny policy shapes no traffic",
            "traffic shaping and DSCP marking apply to permitted traffic; remove 'traffic ...' "
            "or make the policy permit"),
        POLICY + "traffic priority 8": (
            8, 70, "8", "the priority (0 highest, 7 lowest) out of range",
            "a whole number from 0 to 7"),
        POLICY + "traffic gbw 5 gbw 6": (8, 67, "gbw", "gbw given twice", "give 'gbw' once per policy"),
        POLICY + "traffic dscp enable value 64": (
            8, 79, "64", "the DSCP value out of range", "a whole number from 0 to 63"),
        POLICY + "traffic gbv 10": (
            8, 61, "gbv", "unknown keyword",
            "did you mean 'gbw'? expected one of 'gbw', 'priority', 'mbw', 'dscp'"),
        "set traffic-shaping mode fast": (
            8, 26, "fast", "unknown keyword", "expected one of 'auto', 'on', 'off'"),
        "set interface ethernet3 bandwidth egress mbw 20000000": (
            8, 46, "20000000", "the egress bandwidth (Kbps) out of range",
            "a whole number from 0 to 10000000"),
        "set interface tunnel.1 bandwidth 100": (
            8, 15, "tunnel.1", "tunnel.1 has no bandwidth of its own",
            "set the bandwidth of the physical interface the traffic leaves by"),
    }
    for line, (ln, col, tok, msg, hint) in cases.items():
        e = only_error(BASE + line + "\n")
        assert (e.file, e.line, e.column, e.token, e.message, e.hint) == \
            ("t.cfg", ln, col, tok, msg, hint), line
    # Missing values: the cut-short hint of the language.
    e = only_error(BASE + POLICY + "traffic\n")
    assert e.message == "incomplete command: expected one of 'gbw', 'priority', 'mbw', 'dscp' after"
    e = only_error(BASE + "set traffic-shaping ip_precedence 7 6 5\n")
    assert e.message.startswith("incomplete command: expected the IP precedence of priority 3")


def test_warnings_for_what_is_not_enforced():
    found = diagnostics(BASE.replace("set interface ethernet3 bandwidth egress mbw 2000\n", "")
                        + POLICY + "traffic gbw 100\n")
    assert found == [("warning", 7, 65, "100",
                      "no interface of zone untrust or trust has an egress bandwidth: the "
                      "guarantee is not enforced",
                      "set the link's bandwidth, e.g. 'set interface ethernet1 bandwidth egress "
                      "mbw 2000'")]
    found = diagnostics(BASE + "set interface ethernet1 bandwidth ingress mbw 500\n")
    assert [f[4] for f in found] == ["ingress policing on ethernet1 is not enforced"]


traffic = st.builds(
    lambda gbw, extra, prio, dscp, value, shaping: PolicyTraffic(
        gbw if shaping else 0, prio if shaping else 7, (gbw + extra) if shaping and extra else 0,
        dscp or not shaping, value if (dscp or not shaping) else None, shaping),
    st.integers(0, 400), st.integers(0, 3000), st.integers(0, 7), st.booleans(),
    st.one_of(st.none(), st.integers(0, 63)), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(traffic, min_size=1, max_size=4), st.integers(1600, 10_000),
       st.sampled_from(["auto", "on", "off"]), st.permutations(range(8)))
def test_render_round_trips_traffic_settings(traffics, bandwidth, mode, precedence):
    lines = [BASE.replace("2000", str(bandwidth)), f"set traffic-shaping mode {mode}",
             "set traffic-shaping ip_precedence " + " ".join(map(str, precedence))]
    for t in traffics:
        words = ["traffic"]
        if t.shaping:
            words += [f"gbw {t.gbw}", f"priority {t.priority}", f"mbw {t.mbw}"]
        if t.dscp:
            words.append("dscp enable" + ("" if t.dscp_value is None else f" value {t.dscp_value}"))
        elif not t.shaping:
            words.append("dscp disable")
        lines.append(POLICY + " ".join(words))
    cfg = parse_text("\n".join(lines) + "\n")
    assert [p.traffic for p in cfg.policies] == traffics
    assert parse_text(render(cfg)) == cfg


# -- the planner ------------------------------------------------------------------------

def test_figure20_plan_one_htb_tree_on_the_2mbps_interface():
    cfg = load_file(FIGURE20)
    p = plan(cfg)
    assert [t.interface for t in p.interfaces] == ["ethernet3"]
    tree = p.interfaces[0]
    default, voip, office = tree.classes
    assert (default.minor, default.policy_id, default.rate_kbit, default.ceil_kbit, default.prio) \
        == (DEFAULT_MINOR, None, 2000 - 512 - 1024, 2000, 7)
    assert (voip.policy_id, voip.rate_kbit, voip.ceil_kbit, voip.prio) == (1, 512, 1024, 0)
    assert (office.policy_id, office.rate_kbit, office.ceil_kbit, office.prio) == (2, 1024, 1536, 7)
    assert dict(p.marks) == {1: policy_mark(1), 2: policy_mark(2)}
    assert dict(p.dscp) == {policy_mark(1): 46}
    cmds = [" ".join(c) for c in tc_install(tree, "ethernet3")]
    assert cmds[0] == "qdisc replace dev ethernet3 root handle 1: htb default 2"
    assert "class replace dev ethernet3 parent 1:1 classid 1:100 estimator 1sec 8sec htb rate " \
           "512kbit ceil 1024kbit prio 0 quantum 6400" in cmds
    assert not any(c.startswith("filter") for c in cmds)
    script = nft_ruleset(p)
    assert f"meta mark 0x{policy_mark(1):08x} meta priority set 1:100" in script
    assert f"meta mark 0x{policy_mark(2):08x} meta priority set 1:101" in script
    assert f"meta mark 0x{policy_mark(1):08x} ip dscp set 46" in script
    assert "ct mark set meta mark" in script and "meta mark set ct mark" in script
    # What the media offload's program writes for a redirected packet: the
    # same class ids as the postrouting rule's (1:100 is 0x10100).
    assert priorities(p) == {policy_mark(1): 0x1_0100, policy_mark(2): 0x1_0101}


def test_modes_and_dscp_from_ip_precedence():
    text = BASE + POLICY + "traffic dscp enable\n"
    p = plan(parse_text(text))
    # DSCP only: marks, no tree (auto shapes only when a policy shapes);
    # the lowest priority's precedence, 0.
    assert p.interfaces == () and dict(p.dscp) == {policy_mark(1): 0}
    high = plan(parse_text(BASE + POLICY + "traffic priority 0 dscp enable\n"))
    assert dict(high.dscp) == {policy_mark(1): 7 << 3}
    on = plan(parse_text(text + "set traffic-shaping mode on\n"))
    assert [c.policy_id for c in on.interfaces[0].classes] == [None]
    assert on.interfaces[0].classes[0].rate_kbit == 2000
    off = plan(parse_text(BASE + POLICY + "traffic gbw 10 priority 2 dscp enable\n"
                          "set traffic-shaping mode off\n"
                          "set traffic-shaping ip_precedence 0 0 3 0 0 0 0 0\n"))
    assert off.interfaces == () and dict(off.dscp) == {policy_mark(1): 3 << 3}


@settings(max_examples=200, deadline=None)
@given(st.integers(16, 100_000), st.lists(
    st.tuples(st.integers(0, 5000), st.integers(0, 20_000), st.integers(0, 7)),
    min_size=0, max_size=6))
def test_plan_keeps_htb_invariants(bandwidth, policies):
    """Whatever a valid configuration says: every class between the minimum
    rate and the interface's bandwidth, ceil >= rate, the guarantees and the
    default class never above the interface's bandwidth (HTB would then
    promise what the link cannot carry), one class per shaping policy, one
    mark per policy, distinct minors."""
    lines = [BASE.replace("2000", str(bandwidth))]
    for gbw, mbw, prio in policies:
        lines.append(POLICY + f"traffic gbw {gbw} priority {prio} mbw {mbw}")
    cfg, diags = check_text("\n".join(lines) + "\n")
    if cfg is None:
        # Refused only for the reasons the language gives.
        assert all(d.message.startswith(("the guaranteed bandwidth", "the maximum bandwidth"))
                   for d in diags if d.severity == "error")
        return
    p = plan(cfg)
    assert len(p.marks) == len(policies) and all(is_policy_mark(m) for m in p.marks.values())
    if not policies:
        assert p.interfaces == ()
        return
    (tree,) = p.interfaces
    assert len(tree.classes) == len(policies) + 1
    assert len({c.minor for c in tree.classes}) == len(tree.classes)
    for c in tree.classes:
        assert MIN_RATE_KBIT <= c.rate_kbit <= c.ceil_kbit <= max(bandwidth, MIN_RATE_KBIT)
    guaranteed = sum(g for g, _m, _p in policies)
    assert guaranteed <= bandwidth
    if guaranteed + MIN_RATE_KBIT * len(policies) + MIN_RATE_KBIT <= bandwidth:
        assert sum(c.rate_kbit for c in tree.classes) <= bandwidth


TC_OUTPUT = """\
class htb 1:1 root rate 2Mbit ceil 2Mbit burst 1600b cburst 1600b
 Sent 5523720 bytes 9872 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
class htb 1:100 parent 1:1 leaf 100: prio 0 rate 512Kbit ceil 1024Kbit burst 1600b cburst 1600b
 Sent 1727000 bytes 8635 pkt (dropped 3, overlimits 120 requeues 0)
 rate 856000bit 535pps backlog 0b 0p requeues 0
class htb 1:2 parent 1:1 leaf 2: prio 7 rate 464Kbit ceil 2Mbit burst 1600b cburst 1600b
 Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0)
"""


def test_class_statistics_from_tc():
    stats = parse_class_stats(TC_OUTPUT)
    assert [s["classid"] for s in stats] == ["1:1", "1:100", "1:2"]
    voip = stats[1]
    assert (voip["prio"], voip["rate"], voip["ceil"], voip["bytes"], voip["packets"],
            voip["dropped"], voip["overlimits"], voip["rate_bps"], voip["rate_pps"]) == \
        (0, 512_000, 1_024_000, 1727000, 8635, 3, 120, 856000, 535)
    tree = plan(load_file(FIGURE20)).interfaces[0]
    report = class_report(tree, stats)
    assert [(r["class"], r["policy"], r["dropped"]) for r in report] == \
        [("1:2", None, 0), ("1:100", 1, 3), ("1:101", 2, 0)]


@given(st.text(max_size=400))
def test_class_statistics_parser_takes_any_text(text):
    for s in parse_class_stats(text):
        assert isinstance(s["classid"], str)


# -- the datapath's marks ---------------------------------------------------------------

def _voip_datapath() -> Datapath:
    return Datapath(load_file(FIGURE20))


def _invite(dp: Datapath, now: float = 0.0):
    buf = build_udp("10.1.1.3", "1.1.1.3", 5060, 5060,
                    b"INVITE sip:b@1.1.1.3 SIP/2.0\r\nCall-ID: c1\r\n\r\n")
    return dp.process(buf, "ethernet1", now)


def _media_hole(pid="c1#p1", dst=("1.1.1.3", 40000)):
    return Pinhole(pid, "c1", "c1#g1", "media", "udp", "outbound", dst, None, None, 120.0)


def test_signalling_and_its_media_carry_the_voip_policys_mark():
    dp = _voip_datapath()
    out = _invite(dp)
    assert out.alg == "sip"
    fwd = dp.finish_alg(out, "forward", out.payload, pinholes_open=[_media_hole()], now=0.0)
    assert isinstance(fwd, Forward) and fwd.mark == policy_mark(1)
    # RTP to the pinhole the INVITE's SDP opened: the VoIP policy's class,
    # although no policy matches RTP itself (the office policy does not
    # cover phone1 -> phone2 at all).
    rtp = build_udp("10.1.1.3", "1.1.1.3", 30000, 40000, b"\x80" * 172)
    first = dp.process(rtp, "ethernet1", 0.1)
    assert first.path == "fast-pinhole" and first.mark == policy_mark(1)
    fast = FastPath.of(dp)
    assert fast.process(rtp, 0.2) is not None and fast.mark == policy_mark(1)
    reply = build_udp("1.1.1.3", "10.1.1.3", 40000, 30000, b"\x80" * 172)
    back = dp.process(reply, "ethernet3", 0.3)
    assert isinstance(back, Forward) and back.mark == policy_mark(1)
    # In-dialog signalling on the session keeps the mark.
    again = _invite(dp, 1.0)
    assert dp.finish_alg(again, "forward", again.payload, now=1.0).mark == policy_mark(1)


def test_other_traffic_gets_its_own_policys_mark_and_unshaped_traffic_none():
    dp = _voip_datapath()
    bulk = build_udp("10.1.1.4", "1.1.1.4", 9000, 9001, b"x" * 1000)
    assert dp.process(bulk, "ethernet1", 0.0).mark == policy_mark(2)
    fast = FastPath.of(dp)
    assert fast.process(bulk, 0.1) is not None and fast.mark == policy_mark(2)
    plain = Datapath(parse_text(BASE + POLICY + "\n"))
    assert plain.process(bulk, "ethernet1", 0.0).mark == 0


def test_a_pinhole_rebuilt_after_takeover_finds_the_policy_of_its_call():
    dp = _voip_datapath()
    dp.rebuild([_media_hole()])          # no message opened it on this node
    rtp = build_udp("10.1.1.3", "1.1.1.3", 30000, 40000, b"\x80" * 172)
    assert dp.process(rtp, "ethernet1", 0.0).mark == policy_mark(1)


def test_a_rebuilt_pinhole_first_used_by_the_callee_finds_the_callers_policy():
    """After a takeover the echo from phone2 may be the first packet: no
    policy permits untrust -> trust, but the call's signalling policy
    (phone1 -> phone2) covers the session both ways."""
    dp = _voip_datapath()
    dp.rebuild([Pinhole("c1#p2", "c1", "c1#g1", "media", "udp", "inbound", ("10.1.1.3", 30000),
                        None, None, 120.0)])
    echo = build_udp("1.1.1.3", "10.1.1.3", 40000, 30000, b"\x80" * 172)
    first = dp.process(echo, "ethernet3", 0.0)
    assert first.path == "fast-pinhole" and first.mark == policy_mark(1)
    rtp = build_udp("10.1.1.3", "1.1.1.3", 30000, 40000, b"\x80" * 172)
    assert dp.process(rtp, "ethernet1", 0.1).mark == policy_mark(1)


def test_marks_are_tagged():
    assert policy_mark(1) == MARK_TAG | 1 and is_policy_mark(policy_mark(65535))
    assert not is_policy_mark(0) and not is_policy_mark(MARK_TAG)
