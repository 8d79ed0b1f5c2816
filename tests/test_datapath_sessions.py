"""Session table: both directions keyed as they arrive, NAT rewrite per
direction, source port translation, idle expiry."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, strategies as st

from gateway.datapath.sessions import PROTO_TCP, PROTO_UDP, SessionTable, reverse


def ip(s: str) -> int:
    return int(IPv4Address(s))


PRIV, PRIV2, PUB, REMOTE = ip("10.1.1.3"), ip("10.1.1.4"), ip("1.1.1.1"), ip("2.2.2.5")


def test_forward_and_reply_keys_with_source_nat():
    t = SessionTable()
    key = (PROTO_UDP, PRIV, 4000, REMOTE, 5060)
    s = t.create(key, (PUB, 4000, REMOTE, 5060), 10.0)
    assert s is not None
    fwd = t.lookup(key)
    assert fwd == (s, (PUB, 4000, REMOTE, 5060), True)
    # The reply comes from the remote to the public address...
    back = t.lookup((PROTO_UDP, REMOTE, 5060, PUB, 4000))
    # ... and goes back to the private host, from the remote unchanged.
    assert back == (s, (REMOTE, 5060, PRIV, 4000), False)
    assert s.rev_key == reverse(key, s.fwd_rewrite)
    assert t.lookup((PROTO_UDP, REMOTE, 5060, PRIV, 4000)) is None


def test_destination_nat_reply_leaves_from_the_public_address():
    t = SessionTable()
    mip, host = ip("1.1.1.5"), ip("10.1.1.5")
    s = t.create((PROTO_TCP, REMOTE, 33000, mip, 1720), (REMOTE, 33000, host, 1720), 0.0)
    sess, rw, fwd = t.lookup((PROTO_TCP, host, 1720, REMOTE, 33000))
    assert sess is s and not fwd and rw == (mip, 1720, REMOTE, 33000)


def test_no_translation_is_stored_as_none():
    t = SessionTable()
    s = t.create((PROTO_UDP, PRIV, 1, REMOTE, 2), (PRIV, 1, REMOTE, 2), 0.0)
    assert s.fwd_rewrite is None and s.rev_rewrite is None
    assert t.lookup((PROTO_UDP, REMOTE, 2, PRIV, 1))[1] is None


def test_source_port_translated_when_the_public_pair_is_taken():
    t = SessionTable()
    a = t.create((PROTO_UDP, PRIV, 5060, REMOTE, 5060), (PUB, 5060, REMOTE, 5060), 0.0)
    b = t.create((PROTO_UDP, PRIV2, 5060, ip("3.3.3.3"), 5060), (PUB, 5060, ip("3.3.3.3"), 5060), 0.0)
    assert a.fwd_rewrite[1] == 5060
    assert b.fwd_rewrite[0] == PUB and b.fwd_rewrite[1] != 5060
    assert t.stats()["port_translations"] == 1
    # Replies to the translated port reach the second host.
    sess, rw, _ = t.lookup((PROTO_UDP, ip("3.3.3.3"), 5060, PUB, b.fwd_rewrite[1]))
    assert sess is b and rw == (ip("3.3.3.3"), 5060, PRIV2, 5060)
    # Another protocol has its own ports.
    c = t.create((PROTO_TCP, PRIV2, 5060, REMOTE, 5060), (PUB, 5060, REMOTE, 5060), 0.0)
    assert c.fwd_rewrite[1] == 5060


def test_removed_session_frees_its_public_port():
    t = SessionTable()
    a = t.create((PROTO_UDP, PRIV, 7000, REMOTE, 9), (PUB, 7000, REMOTE, 9), 0.0)
    assert t.remove(a) and not t.remove(a)
    b = t.create((PROTO_UDP, PRIV2, 7000, REMOTE, 10), (PUB, 7000, REMOTE, 10), 0.0)
    assert b.fwd_rewrite[1] == 7000
    assert t.lookup(a.fwd_key) is None and t.lookup(a.rev_key) is None


def test_same_forward_key_returns_the_existing_session():
    t = SessionTable()
    key = (PROTO_UDP, PRIV, 1, REMOTE, 2)
    a = t.create(key, (PUB, 1, REMOTE, 2), 0.0)
    assert t.create(key, (PUB, 1, REMOTE, 2), 1.0) is a
    assert len(t) == 1


def test_reply_tuple_taken_is_refused():
    t = SessionTable()
    # Without port translation two hosts wanting the same public pair to the
    # same remote would share one reply tuple: refused, not stolen.
    t.create((PROTO_UDP, PRIV, 1, REMOTE, 2), (PUB, 1, REMOTE, 2), 0.0, translate_port=False)
    assert t.create((PROTO_UDP, PRIV2, 1, REMOTE, 2), (PUB, 1, REMOTE, 2), 0.0,
                    translate_port=False) is None


def test_idle_expiry_uses_protocol_defaults_and_refresh():
    t = SessionTable()
    u = t.create((PROTO_UDP, PRIV, 1, REMOTE, 2), None, 0.0)
    tc = t.create((PROTO_TCP, PRIV, 1, REMOTE, 2), None, 0.0)
    assert u.deadline == 60.0 and tc.deadline == 1800.0
    u.deadline = 50.0 + u.timeout          # a packet at t=50 refreshed it
    assert t.expire(60.0) == []
    assert t.expire(110.0) == [u]
    assert t.lookup(u.fwd_key) is None
    assert t.expire(1799.0) == []
    assert t.expire(1800.0) == [tc]
    assert len(t) == 0 and t.stats()["expired"] == 2


def test_expire_after_many_removals_keeps_working():
    t = SessionTable({PROTO_UDP: 5.0})
    sessions = [t.create((PROTO_UDP, PRIV, p, REMOTE, 9), None, 0.0) for p in range(1, 300)]
    for s in sessions[:-1]:
        t.remove(s)
    assert t.expire(4.9) == []
    assert t.expire(5.0) == [sessions[-1]]


# -- owner indexes (a call's or voice channel's sessions without a scan) ------

_OWNED = st.tuples(st.sampled_from(["media", "policy", "signalling"]),
                   st.sampled_from([None, "c1", "c2"]),
                   st.sampled_from([None, "g1", "g2", "g3"]),
                   st.sampled_from([None, "g1", "g2", "g3"]))
_OPS = st.lists(st.one_of(st.tuples(st.just("create"), _OWNED, st.integers(1, 200)),
                          st.tuples(st.just("remove"), st.integers(0, 30)),
                          st.tuples(st.just("expire"), st.floats(0, 100)),
                          st.tuples(st.just("release_call"), st.sampled_from(["c1", "c2"])),
                          st.tuples(st.just("release_groups"),
                                    st.sets(st.sampled_from(["g1", "g2", "g3"])))),
                max_size=40)


def _call_scan(t, call):
    return [s for s in t if s.kind == "media" and s.call == call]


def _groups_scan(t, gs):
    return [s for s in t if s.group in gs or (s.rev_group in gs and s.kind == "media")]


@given(_OPS)
def test_owner_indexes_find_what_a_scan_finds(ops):
    t = SessionTable()
    made = []
    port = 1000
    for op in ops:
        if op[0] == "create":
            (kind, call, group, rev_group), timeout = op[1], op[2]
            port += 1
            s = t.create((PROTO_UDP, PRIV, port, REMOTE, 7000), (PUB, port, REMOTE, 7000), 0.0,
                         kind=kind, call=call, group=group, rev_group=rev_group,
                         timeout=float(timeout))
            if s is not None:
                made.append(s)
        elif op[0] == "remove" and made:
            t.remove(made[op[1] % len(made)])
        elif op[0] == "expire":
            t.expire(op[1])
        elif op[0] == "release_call":
            want = _call_scan(t, op[1])
            assert t.media_of_call(op[1]) == want
            assert t.remove_all(want) == want
        elif op[0] == "release_groups":
            want = _groups_scan(t, op[1])
            assert t.of_groups(op[1]) == want
            assert t.remove_all(want) == want
    for c in ("c1", "c2"):
        assert t.media_of_call(c) == _call_scan(t, c)
    for gs in ({"g1"}, {"g2", "g3"}, {"g1", "g2", "g3"}):
        assert t.of_groups(gs) == _groups_scan(t, gs)
    for s in list(t):
        t.remove(s)
    assert t._owned == {}
