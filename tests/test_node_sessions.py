"""Sessions an operator can see and clear (`gwctl get session`, `gwctl clear
session`): filters, and a stale session that blocks a flow."""

from __future__ import annotations

import pytest

from actors.control import ControlError
from actors.node import Node
from gateway.config import load_file
from gateway.datapath import Alg, Datapath, Drop, Forward
from gateway.datapath.session_filter import FilterError, SessionFilter, parse_filter
from gateway.datapath.sessions import PROTO_UDP
from gateway.packet import build_udp
from ops.gwctl import build_parser
from tests.test_datapath_pipeline import EX, INVITE_HDRS, sip_msg

CFG = load_file(EX / "ch2-incoming-call-with-mip.cfg")


def ip(a: str) -> int:
    from ipaddress import IPv4Address
    return int(IPv4Address(a))


@pytest.fixture
def node(tmp_path):
    n = Node("gw-a", CFG, str(tmp_path / "j"), datapath=Datapath(CFG), clock=lambda: 50.0,
             fsync=False, timer_thread=False)
    n.start()
    yield n
    n.stop()


def stale_session(dp: Datapath):
    """A session phone1 -> the caller's 5060 that left through interface NAT
    (e.g. from the other node's earlier term, or a flow the configuration
    once permitted): its forward key is the reply tuple of the caller's
    INVITE to phone1's MIP."""
    return dp.sessions.create((PROTO_UDP, ip("10.1.1.3"), 5060, ip("1.1.1.4"), 5060),
                              (ip("1.1.1.1"), 5060, ip("1.1.1.4"), 5060), 10.0,
                              ingress="ethernet1", egress="ethernet3", from_zone="trust",
                              to_zone="untrust")


def caller_invite(dp: Datapath, n: int):
    inv = sip_msg("INVITE sip:ph1@1.1.1.5 SIP/2.0",
                  [h.replace("Call-42", f"Call-{n}") for h in INVITE_HDRS])
    out = dp.process(build_udp("1.1.1.4", "1.1.1.5", 5060, 5060, inv), "ethernet3", 50.0)
    assert isinstance(out, Alg)
    return dp.finish_alg(out, "forward", out.payload, now=50.0)


def test_a_stale_session_blocking_a_flow_is_shown_then_cleared_and_the_flow_passes(node):
    dp = node.datapath
    stale = stale_session(dp)
    blocked = caller_invite(dp, 1)
    assert blocked == Drop("the reply tuple of this flow belongs to another session", "session")
    assert dp.stats()["drop_codes"] == {"session-reply-tuple-taken": 1}

    rows = node.control("get-session", {"filter": ["src-ip", "10.1.1.3", "dst-port", "5060"]})
    assert [r["id"] for r in rows] == [stale.id]
    assert rows[0]["src"] == "10.1.1.3:5060" and rows[0]["nat_src"] == "1.1.1.1:5060"
    # The caller's address finds it too (the session's destination).
    assert [r["id"] for r in node.control("get-session", {"filter": ["dst-ip", "1.1.1.4"]})] == [stale.id]

    res = node.control("clear-session", {"filter": ["id", str(stale.id)]})
    assert res["cleared"] == 1 and res["sessions"][0]["id"] == stale.id
    assert node.control("get-session", {"filter": ["id", str(stale.id)]}) == []

    passed = caller_invite(dp, 2)
    assert isinstance(passed, Forward)
    rows = node.control("get-session", {"filter": ["src-ip", "1.1.1.4", "protocol", "udp"]})
    assert len(rows) == 1 and rows[0]["alg"] == "sip" and rows[0]["nat_dst"] == "10.1.1.3:5060"


def test_clear_needs_a_filter_or_all(node):
    stale_session(node.datapath)
    with pytest.raises(ControlError, match="needs a filter"):
        node.control("clear-session", {"filter": []})
    assert len(node.datapath.sessions) == 1
    assert node.control("clear-session", {"filter": [], "all": True})["cleared"] == 1
    assert len(node.datapath.sessions) == 0


def test_bad_filters_say_which_word(node):
    with pytest.raises(ControlError, match="src-ip '1.1.1'"):
        node.control("get-session", {"filter": ["src-ip", "1.1.1"]})
    with pytest.raises(ControlError, match="unknown session filter 'port'"):
        node.control("get-session", {"filter": ["port", "5"]})
    with pytest.raises(ControlError, match="dst-port needs a value"):
        node.control("get-session", {"filter": ["dst-port"]})
    with pytest.raises(ControlError, match="want a list"):
        node.control("get-session", {"filter": "src-ip 1.1.1.1"})


def test_standby_shows_and_clears_its_own(tmp_path):
    standby = Node("gw-b", CFG, str(tmp_path / "s"), datapath=Datapath(CFG), clock=lambda: 50.0,
                   fsync=False, timer_thread=False)
    standby.start(role="standby")
    try:
        assert not standby.forwarding
        s = stale_session(standby.datapath)
        assert [r["id"] for r in standby.control("get-session", {})] == [s.id]
        assert standby.control("clear-session", {"filter": ["protocol", "udp"]})["cleared"] == 1
    finally:
        standby.stop()


def test_filter_parse():
    assert parse_filter([]) == SessionFilter()
    f = parse_filter(["SRC-IP", "1.1.1.9", "protocol", "TCP", "id", "7", "src-port", "0"])
    assert f == SessionFilter(src_ip=ip("1.1.1.9"), proto=6, id=7, src_port=0)
    assert parse_filter(["protocol", "47"]).proto == 47
    for bad in (["protocol", "sctpx"], ["dst-port", "70000"], ["id", "-1"], ["id", "1", "id", "2"]):
        with pytest.raises(FilterError):
            parse_filter(bad)


def test_gwctl_parses_get_and_clear_session():
    p = build_parser()
    a = p.parse_args(["get", "session", "src-ip", "1.1.1.4", "dst-port", "5060"])
    assert a.words == ["src-ip", "1.1.1.4", "dst-port", "5060"] and a.func.__name__ == "run_get"
    a = p.parse_args(["clear", "session", "all", "--node", "gw-b"])
    assert a.words == ["all"] and a.node == "gw-b" and a.func.__name__ == "run_clear"


from hypothesis import given, settings, strategies as st  # noqa: E402

_WORD = st.one_of(st.sampled_from(["src-ip", "dst-ip", "src-port", "dst-port", "protocol", "id",
                                   "udp", "tcp", "1.1.1.9", "5060", "99999", "-1", ""]),
                  st.text(max_size=12))


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_WORD, max_size=8))
def test_any_words_give_a_filter_or_a_filter_error(words):
    try:
        f = parse_filter(words)
    except FilterError as e:
        assert str(e)
    else:
        assert isinstance(f, SessionFilter)
