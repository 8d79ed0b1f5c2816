"""Pinhole table: any source to (proto, dst, port), lifetime, activity batches."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, strategies as st

from gateway.datapath.pinholes import MediaActivity, PinholeTable
from gateway.sip.state import Pinhole


def hole(pid="c#p1", dst=("1.1.1.1", 20000), to=("10.1.1.3", 4000), src_to=None,
         expires=120.0, group="c#g1", proto="udp"):
    return Pinhole(pid, "c", group, "media", proto, "inbound", dst, to, src_to, expires)


def ip(s):
    return int(IPv4Address(s))


def test_match_any_source_by_destination_only():
    t = PinholeTable()
    h = t.install(hole())
    assert t.match(17, ip("1.1.1.1"), 20000, 0.0) is h
    assert h.to == (ip("10.1.1.3"), 4000) and h.src_to is None
    assert t.match(17, ip("1.1.1.1"), 20001, 0.0) is None
    assert t.match(6, ip("1.1.1.1"), 20000, 0.0) is None


def test_lifetime_refuses_then_expires():
    t = PinholeTable()
    t.install(hole(expires=30.0))
    assert t.match(17, ip("1.1.1.1"), 20000, 29.9) is not None
    assert t.match(17, ip("1.1.1.1"), 20000, 30.0) is None
    assert [h.id for h in t.expire(30.0)] == ["c#p1"]
    assert len(t) == 0 and t.stats()["expired"] == 1


def test_shared_destination_and_removal_by_id():
    t = PinholeTable()
    t.install(hole("a", expires=10.0))
    b = t.install(hole("b", expires=100.0))
    # The first has expired: the second still answers.
    assert t.match(17, ip("1.1.1.1"), 20000, 50.0) is b
    t.remove("b")
    assert t.match(17, ip("1.1.1.1"), 20000, 5.0).id == "a"
    assert t.remove("nope") is None


def test_reinstall_same_id_replaces():
    t = PinholeTable()
    t.install(hole("a", dst=("1.1.1.1", 20000)))
    t.install(hole("a", dst=("1.1.1.1", 30000)))
    assert len(t) == 1
    assert t.match(17, ip("1.1.1.1"), 20000, 0.0) is None
    assert t.match(17, ip("1.1.1.1"), 30000, 0.0).id == "a"


def test_rebuild_replaces_everything():
    t = PinholeTable()
    t.install(hole("old"))
    t.rebuild([hole("n1", dst=("1.1.1.1", 20002)), hole("n2", dst=("1.1.1.1", 20003))])
    assert "old" not in t and "n1" in t and "n2" in t


def test_bad_protocol_is_our_bug():
    with pytest.raises(ValueError):
        PinholeTable().install(hole(proto="sctp"))


def test_activity_batches():
    a = MediaActivity()
    a.used("g1", "p1", 10.0)
    a.seen("g1", 11.0)
    a.seen("g2", 12.0)
    batch = a.drain()
    assert sorted(batch, key=str) == sorted([("g1", "p1", 11.0), ("g2", None, 12.0)], key=str)
    assert a.drain() == []
    assert a.packets == {"g1": 2, "g2": 1}
    a.seen("g1", 13.0)
    assert a.drain() == [("g1", None, 13.0)]
    a.forget(["g1"])
    assert "g1" not in a.packets


def test_translating_to_finds_the_public_pair_of_a_private_media_address():
    t = PinholeTable()
    h = t.install(hole(expires=30.0))                       # 1.1.1.1:20000 -> 10.1.1.3:4000
    assert t.translating_to(17, ip("10.1.1.3"), 4000, 0.0) is h
    assert t.translating_to(17, ip("10.1.1.3"), 4001, 0.0) is None
    assert t.translating_to(6, ip("10.1.1.3"), 4000, 0.0) is None
    assert t.translating_to(17, ip("10.1.1.3"), 4000, 30.0) is None     # lifetime over
    t.install(hole("c#p2", dst=("1.1.1.1", 20002), to=None))
    t.remove("c#p1")
    assert t.translating_to(17, ip("10.1.1.3"), 4000, 0.0) is None
    t.rebuild([hole(expires=None)])
    assert t.translating_to(17, ip("10.1.1.3"), 4000, 0.0) is not None
    t.rebuild([])
    assert t.translating_to(17, ip("10.1.1.3"), 4000, 0.0) is None


def _of_call(pid, call, port):
    return Pinhole(pid, call, f"{call}#g", "media", "udp", "inbound", ("1.1.1.1", port),
                   ("10.1.1.3", port), None, None)


def test_remove_call_takes_only_that_calls_pinholes():
    t = PinholeTable()
    for i, call in enumerate(("x", "y", "x", "y", "x")):
        t.install(_of_call(f"{call}#p{i}", call, 20000 + i))
    assert sorted(h.id for h in t.remove_call("x")) == ["x#p0", "x#p2", "x#p4"]
    assert sorted(h.id for h in t.holes()) == ["y#p1", "y#p3"]
    assert t.match(17, ip("1.1.1.1"), 20000, 0.0) is None
    assert t.remove_call("x") == [] and t.remove_call("nobody") == []


_ops = st.lists(st.tuples(st.sampled_from(["install", "remove", "remove_call", "rebuild"]),
                          st.integers(0, 7), st.sampled_from(["a", "b", "c"]), st.integers(0, 3)),
                max_size=40)


@given(_ops)
def test_call_index_agrees_with_a_scan(ops):
    """Whatever the order of installs (incl. re-installs of one id under
    another call), removals and rebuilds, remove_call(c) removes exactly the
    pinholes a scan of the table finds for c."""
    t = PinholeTable()
    for op, n, call, port in ops:
        if op == "install":
            t.install(_of_call(f"p{n}", call, 20000 + port))
        elif op == "remove":
            t.remove(f"p{n}")
        elif op == "rebuild":
            t.rebuild([h.pinhole for h in t.holes() if h.call != call])
        else:
            want = sorted(h.id for h in t.holes() if h.call == call)
            assert sorted(h.id for h in t.remove_call(call)) == want
            assert all(h.call != call for h in t.holes())
    for call in "abc":
        want = sorted(h.id for h in t.holes() if h.call == call)
        assert sorted(h.id for h in t.remove_call(call)) == want
    assert len(t) == 0
