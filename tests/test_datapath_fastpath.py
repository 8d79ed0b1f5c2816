"""The established-UDP fast path (gateway/datapath/fastpath.py) against
Datapath.process: the same bytes out and the same accounting, packet by
packet; its table in step with the session table."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from gateway.config import parse_text
from gateway.datapath import Datapath, Forward
from gateway.datapath.fastpath import FastPath, key_bytes, make_entry
from gateway.datapath.sessions import PROTO_UDP
from gateway.packet import build_tcp, build_udp, parse, rewrite
from gateway.sip.state import Pinhole

from test_datapath_pipeline import NAT_CFG

# Interface NAT from trust to untrust (the pipeline tests' configuration).
CFG = NAT_CFG

FLOOD_CFG = CFG + "set zone untrust screen udp-flood dst-ip 1.1.1.5 threshold 1000\n"

# An inbound media opening on the public address (to the private party) and
# the private party's own opening toward its peer, from its public pair: the
# first reply of a media session through the first satisfies the second.
HOLES = (
    Pinhole("c#p1", "c", "c#g1", "media", "udp", "inbound", ("1.1.1.1", 20000), ("10.1.1.3", 4000),
            None, None),
    Pinhole("c#p2", "c", "c#g2", "media", "udp", "outbound", ("2.2.2.2", 6000), None,
            ("1.1.1.1", 20000), None),
)


def ip(s: str) -> int:
    return int(IPv4Address(s))


def datapath(cfg: str = CFG) -> Datapath:
    dp = Datapath(parse_text(cfg))
    dp.install_pinholes(HOLES)
    return dp


# The flows of one example: (ingress, src, sport, dst, dport).
FLOWS = {
    "out0": ("ethernet1", "10.1.1.3", 40000, "1.1.1.9", 30000),     # interface NAT, out
    "back0": ("ethernet3", "1.1.1.9", 30000, "1.1.1.1", 40000),     # its replies
    "out1": ("ethernet1", "10.1.1.4", 40000, "1.1.1.9", 30000),     # same public port: translated
    "back1": ("ethernet3", "1.1.1.9", 30000, "1.1.1.1", 1024),      # a guess at its replies
    "media_in": ("ethernet3", "2.2.2.2", 6000, "1.1.1.1", 20000),   # through pinhole c#p1
    "media_in2": ("ethernet3", "2.2.2.3", 6001, "1.1.1.1", 20000),  # another source, same hole
    "media_rev": ("ethernet1", "10.1.1.3", 4000, "2.2.2.2", 6000),  # reply side (pinhole c#p2)
    "stray": ("ethernet3", "3.3.3.3", 5, "1.1.1.1", 7),             # no session: dropped
}

MANGLES = ("none",) * 8 + ("nocsum",) * 3 + ("mf", "offset", "options", "tcp", "trailing",
           "short_ulen", "bad_total")


def make_packet(flow: str, size: int, mangle: str, ident: int) -> bytes:
    _i, s, sp, d, dp = FLOWS[flow]
    payload = bytes((ident + k) & 0xFF for k in range(size))
    if mangle == "tcp":
        return build_tcp(s, d, sp, dp, 1000 + ident, payload=payload)
    buf = bytearray(build_udp(s, d, sp, dp, payload, ident=ident))
    if mangle == "nocsum":
        buf[26:28] = b"\0\0"                      # RFC 768: no checksum
    elif mangle == "mf":
        buf[6] |= 0x20
    elif mangle == "offset":
        buf[6:8] = b"\x00\x10"
    elif mangle == "options":
        # IHL 6: one word of options (NOPs), lengths and checksum fixed up.
        buf = bytearray(build_udp(s, d, sp, dp, payload, ident=ident))
        buf[0] = 0x46
        buf[20:20] = b"\x01\x01\x01\x01"
        struct.pack_into("!H", buf, 2, len(buf))
        struct.pack_into("!H", buf, 10, 0)
    elif mangle == "trailing":
        buf += b"\xee\xee"                        # Ethernet padding past the IP total length
    elif mangle == "short_ulen" and size >= 2:
        ulen = struct.unpack_from("!H", buf, 24)[0]
        struct.pack_into("!H", buf, 24, ulen - 1)
    elif mangle == "bad_total":
        struct.pack_into("!H", buf, 2, len(buf) + 4)
    return bytes(buf)


def snapshot(dp: Datapath):
    sessions = sorted(
        (s.id, s.fwd_key, s.rev_key, s.fwd_rewrite, s.deadline, s.fwd_packets, s.fwd_bytes,
         s.rev_packets, s.rev_bytes, s.group, s.rev_group, s.rev_pinhole, s.timeout)
        for s in dp.sessions)
    act = dp.activity
    return (sessions, dict(act._last), {g: list(v) for g, v in act._used.items()},
            dict(act.packets), dict(dp.paths), dict(dp.drops), dict(dp.drop_reasons),
            [(h.id, h.uses) for h in dp.pinholes.holes()])


def expected_fast(dp: Datapath) -> dict:
    """The fast table the session table should hold: its UDP keys of sessions
    that are not an ALG's, each with that key's own session and rewrite."""
    out = {}
    for key, (sess, rw, fwd) in dp.sessions._map.items():
        if key[0] == PROTO_UDP and sess.alg is None:
            out[key_bytes(key)] = make_entry(sess, key, rw, fwd)
    return out


packet_op = st.tuples(st.just("pkt"), st.sampled_from(sorted(FLOWS)), st.integers(0, 301),
                      st.sampled_from(MANGLES), st.floats(0, 30))
op = st.one_of(
    packet_op, packet_op, packet_op, packet_op,
    st.tuples(st.just("expire"), st.floats(0, 100)),
    st.tuples(st.just("release"), st.sampled_from(["c#g1", "c#g2"])),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(op, min_size=4, max_size=40))
def test_fast_path_is_datapath_process_packet_for_packet(ops):
    # Open the sessions first (random operations may then expire or release them).
    ops = [("pkt", f, 12, "none", 0.0) for f in ("out0", "out1", "media_in")] + ops
    ref, dut = datapath(), datapath()
    fast = FastPath.of(dut)
    assert fast is not None
    now = 0.0
    hits = 0
    for i, o in enumerate(ops):
        if o[0] == "expire":
            now += o[1]
            assert [type(x).__name__ for x in ref.expire(now)] == [type(x).__name__ for x in dut.expire(now)]
        elif o[0] == "release":
            assert len(ref.release_groups([o[1]])) == len(dut.release_groups([o[1]]))
        else:
            _k, flow, size, mangle, dt = o
            now += dt
            ingress = FLOWS[flow][0]
            buf = make_packet(flow, size, mangle, i)
            want = ref.process(buf, ingress, now)
            got = fast.process(buf, now)
            if got is None:
                got = dut.process(buf, ingress, now)
            else:
                hits += 1
                # The fast path only answers what process forwards on a session hit.
                assert type(want) is Forward and want.path == "fast-session" and not want.note
                got = Forward(got, "fast-session")
            if type(want) is Forward:
                assert type(got) is Forward and bytes(got.data) == bytes(want.data)
                assert (got.path, got.note) == (want.path, want.note)
            else:
                assert type(got) is type(want) and got[:2] == want[:2]
        assert snapshot(dut) == snapshot(ref)
        assert dut.sessions.fast == expected_fast(dut)
    event(f"fast path hits: {min(hits, 5)}{'+' if hits >= 5 else ''}")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64),
       st.booleans(), st.integers(0, 0xFFFF))
# Checksum edge cases: all ones, zero, and port changes whose terms sum to
# 0 mod 0xFFFF (0 -> 0xFFFF), which still count as a change.
@example(1, 2, 0, 5, 1, 2, 0xFFFF, 5, b"", False, 0xFFFF)
@example(1, 2, 0, 5, 1, 2, 0xFFFF, 5, b"", False, 0)
@example(0, 2, 0, 0, 0xFFFF, 2, 0xFFFF, 0xFFFF, b"\xff", False, 0x5A5A)
@example(1, 2, 3, 4, 1, 2, 3, 4, b"a", True, 7)
def test_entry_rewrite_equals_packet_rewrite(s, d, sp, dp, ns, nd, nsp, ndp, payload, nocsum, csum):
    """Any addresses and ports, any checksum values (even wrong ones, which
    stay wrong, and 0 for UDP: none)."""
    buf = bytearray(build_udp(IPv4Address(s), IPv4Address(d), sp, dp, payload))
    struct.pack_into("!H", buf, 26, 0 if nocsum else csum)
    struct.pack_into("!H", buf, 10, csum ^ 0x5A5A)
    buf = bytes(buf)
    want = rewrite(parse(buf), src=ns, sport=nsp, dst=nd, dport=ndp)

    class Sess:
        group = None
        timeout = 60.0
        fwd_packets = fwd_bytes = rev_packets = rev_bytes = 0
        deadline = 0.0

    key = (PROTO_UDP, s, sp, d, dp)
    entry = make_entry(Sess, key, (ns, nsp, nd, ndp), True)

    class Activity:
        def seen(self, group, now):
            raise AssertionError("not media")

    paths = {"fast-session": 0}
    fp = FastPath({key_bytes(key): entry}, Activity(), paths)
    assert fp.process(buf, 1.0) == want
    assert (Sess.fwd_packets, Sess.fwd_bytes, Sess.deadline, paths["fast-session"]) == (1, len(buf), 61.0, 1)


def test_no_fast_path_with_a_udp_flood_screen():
    assert FastPath.of(Datapath(parse_text(FLOOD_CFG))) is None


def test_entries_follow_session_creation_expiry_and_close():
    dp = datapath()
    out = build_udp("10.1.1.3", "1.1.1.9", 40000, 30000, b"x")
    assert dp.process(out, "ethernet1", 0.0).path == "policy"
    (sess,) = list(dp.sessions)
    assert set(dp.sessions.fast) == {key_bytes(sess.fwd_key), key_bytes(sess.rev_key)}
    assert dp.sessions.fast[key_bytes(sess.fwd_key)].forward
    assert not dp.sessions.fast[key_bytes(sess.rev_key)].forward
    dp.expire(sess.deadline)
    assert dp.sessions.fast == {} and len(dp.sessions) == 0

    assert dp.process(out, "ethernet1", 100.0).path == "policy"
    (sess,) = list(dp.sessions)
    assert dp.remove_session(sess)
    assert dp.sessions.fast == {}


def test_media_entries_go_with_the_call_and_the_group():
    dp = datapath()
    media = build_udp("2.2.2.2", "1.1.1.1", 6000, 20000, b"rtp")
    assert dp.process(media, "ethernet3", 0.0).path == "fast-pinhole"
    (sess,) = list(dp.sessions)
    e = dp.sessions.fast[key_bytes(sess.fwd_key)]
    assert (e.group, e.watch) == ("c#g1", False)
    r = dp.sessions.fast[key_bytes(sess.rev_key)]
    assert (r.group, r.watch) == ("c#g2", True)          # the reply side's own channel
    dp.release_groups(["c#g1"])
    assert dp.sessions.fast == {} and len(dp.sessions) == 0
    # The pinhole is still open: the next packet makes the session again.
    assert dp.process(media, "ethernet3", 1.0).path == "fast-pinhole"
    assert len(dp.sessions.fast) == 2
    dp.release_call("c")
    assert dp.sessions.fast == {} and len(dp.sessions) == 0


def test_alg_sessions_have_no_entry():
    dp = datapath()
    invite = (b"INVITE sip:b@1.1.1.9 SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n")
    out = dp.process(build_udp("10.1.1.3", "1.1.1.9", 5060, 5060, invite), "ethernet1", 0.0)
    fwd = dp.finish_alg(out, "forward", out.payload, now=0.0)
    assert type(fwd) is Forward
    (sess,) = list(dp.sessions)
    assert sess.alg == "sip" and dp.sessions.fast == {}


def test_a_session_taking_another_ones_reply_key_takes_its_entry():
    """SessionTable.create may enter a new flow's forward key over another
    session's reply key; the fast table follows, and an ALG's session there
    leaves no entry behind."""
    dp = datapath()
    t = dp.sessions
    a = t.create((PROTO_UDP, ip("10.1.1.3"), 5000, ip("1.1.1.9"), 7000), None, 0.0)
    rkey = a.rev_key
    b = t.create(rkey, (rkey[1], rkey[2], ip("10.1.1.8"), 9000), 0.0, alg="mgcp")
    assert b is not None and t.lookup(rkey)[0] is b
    assert key_bytes(rkey) not in t.fast and key_bytes(a.fwd_key) in t.fast
    t.remove(a)
    assert key_bytes(a.fwd_key) not in t.fast
    assert t.fast == expected_fast(dp)
    t.remove(b)
    assert t.fast == {}


def test_media_session_reopened_at_takeover_has_an_entry():
    """After a takeover the node removes every session and rebuilds the
    pinholes from the journaled calls (actors/node.py); media sessions come
    back through them, and with them their fast entries."""
    dp = datapath()
    media = build_udp("2.2.2.2", "1.1.1.1", 6000, 20000, b"rtp")
    dp.process(media, "ethernet3", 0.0)
    for s in list(dp.sessions):
        dp.remove_session(s)
    assert dp.sessions.fast == {}
    dp.rebuild([Pinhole("c#takeover-1", "c", "c#g1", "media", "udp", "inbound", ("1.1.1.1", 20000),
                        ("10.1.1.3", 4000), None, None)])
    assert dp.process(media, "ethernet3", 5.0).path == "fast-pinhole"
    (sess,) = list(dp.sessions)
    assert dp.sessions.fast == expected_fast(dp) and len(dp.sessions.fast) == 2
    fast = FastPath.of(dp)
    assert fast.process(media, 6.0) == dp.process(media, "ethernet3", 6.0).data
    assert sess.fwd_packets == 3


def test_fast_path_takes_every_established_flow_once_set_up():
    dp = datapath()
    fast = FastPath.of(dp)
    # The packets that open sessions, and the first reply of the media
    # session (it satisfies pinhole c#p2, which is reported once), are not
    # the fast path's.
    firsts = {"out0": "policy", "media_in": "fast-pinhole", "media_rev": "fast-session"}
    for flow, path in firsts.items():
        assert fast.process(make_packet(flow, 11, "none", 1), 1.0) is None
        assert dp.process(make_packet(flow, 11, "none", 1), FLOWS[flow][0], 1.0).path == path
    # media_rev's first packet reported pinhole c#p2; from now on all are fast.
    assert dp.drain_activity().count(("c#g2", "c#p2", 1.0)) == 1
    for flow in ("out0", "back0", "media_in", "media_rev"):
        for size, mangle in ((0, "none"), (171, "none"), (172, "nocsum"), (33, "nocsum")):
            buf = make_packet(flow, size, mangle, 2)
            before = snapshot(dp)
            got = fast.process(buf, 2.0)
            assert got is not None and got == rewrite(parse(buf), **_rw(dp, buf))
            assert snapshot(dp) != before
        for mangle in ("mf", "offset", "options", "tcp", "trailing", "short_ulen", "bad_total"):
            assert fast.process(make_packet(flow, 11, mangle, 3), 2.0) is None
    assert dp.activity.packets == {"c#g1": 1 + 4, "c#g2": 1 + 4}


def _rw(dp: Datapath, buf: bytes) -> dict:
    p = parse(buf)
    sess, rw, _fwd = dp.sessions.lookup((PROTO_UDP, p.src_int, p.sport, p.dst_int, p.dport))
    return dict(src=rw[0], sport=rw[1], dst=rw[2], dport=rw[3])
