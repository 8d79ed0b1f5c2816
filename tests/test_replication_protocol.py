"""The replication protocol's pure parts (journal/replication.py): the codec
(wire input raises RemoteProtocolError and nothing else), the HELLO journal
check, and the active's and the standby's bookkeeping."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.sip import events as sip_ev
from journal.record import Record, encode_record
from journal.replication import (Ack, Batch, Handover, Heartbeat, Hello, ProtocolViolation, Receiver, Refused,
                                 Sender, Taken, decode, encode, frame_mark, hello_verdict)

u32 = st.integers(0, 2**32 - 1)
seqs = st.integers(0, 2**40)
names = st.text(max_size=20)

messages = st.one_of(
    st.builds(Hello, names, seqs, seqs, u32, seqs),
    st.builds(Batch, st.integers(1, 2**40), st.lists(st.binary(max_size=64), max_size=20), seqs, seqs),
    st.builds(Ack, seqs, seqs),
    st.builds(Heartbeat, names, st.sampled_from(["active", "standby", "stopped"]), seqs, seqs, seqs, seqs,
              st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(Handover, seqs, seqs),
    st.builds(Taken, seqs),
    st.builds(Refused, st.sampled_from(["diverged", "not active", "hello again"]), seqs),
)


@given(messages)
@settings(max_examples=300)
def test_every_message_round_trips(msg):
    assert decode(encode(msg)) == msg


@given(st.lists(st.binary(max_size=80), max_size=4))
@settings(max_examples=300)
def test_arbitrary_frames_raise_only_protocol_errors(frames):
    try:
        decode(frames)
    except RemoteProtocolError:
        pass


plain = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8)
                     | st.binary(max_size=8), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                     max_leaves=8)


@given(messages, st.data())
@settings(max_examples=300)
def test_right_keys_with_wrong_values_raise_only_protocol_errors(msg, data):
    kind, raw = encode(msg)
    body = msgpack.unpackb(raw, raw=False)
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(plain)
    if data.draw(st.booleans()):
        del body[key]
    try:
        out = decode([kind, msgpack.packb(body, use_bin_type=True)])
    except RemoteProtocolError:
        return
    assert type(out) is type(msg)


@given(messages, st.integers(0, 200), st.integers(0, 255))
@settings(max_examples=300)
def test_flipped_bytes_raise_only_protocol_errors(msg, pos, value):
    kind, raw = encode(msg)
    if raw:
        raw = raw[:pos % len(raw)] + bytes([value]) + raw[pos % len(raw) + 1:]
    try:
        decode([kind, raw])
    except RemoteProtocolError:
        pass


@pytest.mark.parametrize("frames,reason", [
    ([b"HB"], "expected 2 frames"),
    ([b"NOPE", b"\x80"], "unknown message type"),
    ([b"ACK", b"\xc1"], "undecodable ACK body"),
    ([b"ACK", msgpack.packb([1, 2])], "not a map"),
    ([b"ACK", msgpack.packb({"seq": 1})], "ACK without epoch"),
    ([b"ACK", msgpack.packb({"seq": -1, "epoch": 0})], "seq is not a non-negative integer"),
    ([b"ACK", msgpack.packb({"seq": True, "epoch": 0})], "seq is not a non-negative integer"),
    ([b"BATCH", msgpack.packb({"first": 1, "frames": ["text"], "head": 1, "epoch": 1})], "not a list of byte"),
    ([b"BATCH", msgpack.packb({"first": 0, "frames": [], "head": 1, "epoch": 1})], "first sequence 0"),
    ([b"HB", msgpack.packb({"node": "a", "role": "boss", "epoch": 1, "head": 0, "prio": 1, "applied": 0,
                            "ts": 1.0})], "is not a role"),
])
def test_malformed_messages_name_the_problem(frames, reason):
    with pytest.raises(ProtocolViolation, match=reason):
        decode(frames)


def test_refused_head_is_optional_and_unknown_fields_are_ignored():
    assert decode([b"REFUSED", msgpack.packb({"reason": "not active"})]) == Refused("not active", 0)
    assert decode([b"TAKEN", msgpack.packb({"epoch": 4, "later": [1]})]) == Taken(4)


def test_frame_mark_is_the_records_epoch_and_crc():
    ev = sip_ev.CallActivity(key="k", at=1.0, signalling_deadline=2.0, session_expires=None)
    frame = encode_record(Record.of(ev, seq=3, epoch=7, timestamp=1.0, version=1))
    epoch, crc = frame_mark(frame)
    assert epoch == 7 and crc == int.from_bytes(frame[5:9], "big")
    with pytest.raises(ValueError):
        frame_mark(frame[:-1])


# ------------------------------------------------------------- hello_verdict

def marks(log):
    """mark_at over a log of (epoch, record id) pairs, seq from 1."""
    return lambda seq: (log[seq - 1][0], hash(log[seq - 1][1]) & 0xFFFFFFFF)


def verdict(standby, active):
    last = len(standby)
    ep, crc = marks(standby)(last) if last else (0, 0)
    return hello_verdict(last, ep, crc, len(active), marks(active))


def test_verdict_accepts_a_prefix_and_an_empty_journal():
    active = [(1, "a1"), (1, "a2"), (2, "b3")]
    assert verdict([], active) is None
    assert verdict(active[:2], active) is None
    assert verdict(active, active) is None


def test_verdict_cuts_records_the_active_never_had_then_the_older_term():
    # a was active in epoch 1, b acknowledged up to 2, then b took over in epoch 2.
    old_a = [(1, "1"), (1, "2"), (1, "3"), (1, "4"), (1, "5")]
    b = old_a[:2] + [(2, "b3"), (2, "b4")]
    assert verdict(old_a, b) == 4                         # beyond b's head
    assert verdict(old_a[:4], b) == 2                     # b's term 2 starts after seq 2
    assert verdict(old_a[:2], b) is None


@st.composite
def histories(draw):
    """A shared prefix, then each node's own records in its own terms."""
    prefix_epochs = sorted(draw(st.lists(st.integers(1, 5), max_size=12)))
    top = prefix_epochs[-1] if prefix_epochs else 1
    prefix = [(e, f"p{i}") for i, e in enumerate(prefix_epochs)]
    s_tail = sorted(draw(st.lists(st.integers(top, top + 4), max_size=8)))
    a_tail = sorted(draw(st.lists(st.integers(top, top + 4), max_size=8)))
    return prefix, [(e, f"s{i}") for i, e in enumerate(s_tail)], [(e, f"a{i}") for i, e in enumerate(a_tail)]


@given(histories())
@settings(max_examples=300)
def test_verdict_rounds_end_with_the_standby_a_prefix_of_the_active(h):
    prefix, s_tail, a_tail = h
    standby, active = prefix + s_tail, prefix + a_tail
    rounds = 0
    while (cut := verdict(standby, active)) is not None:
        assert cut < len(standby)                         # every round makes progress
        standby = standby[:cut]
        rounds += 1
    assert active[:len(standby)] == standby
    keep = len(prefix) if not a_tail else sum(1 for e, _ in prefix if e < a_tail[0][0])
    assert len(standby) >= keep                           # never cuts below the shared older terms
    assert rounds <= 2 + len({e for e, _ in active})


# --------------------------------------------------------------- Sender

def journal_of(n):
    frames = [f"f{i}".encode() for i in range(1, n + 1)]
    return frames, (lambda first, count: frames[first - 1:first - 1 + count])


def test_sender_streams_in_batches_within_the_window():
    frames, read = journal_of(1000)
    s = Sender(read, window=250, batch=100)
    s.hello(b"b", "b", 0, 1000, now=0.0)
    out = s.batches(1000, epoch=3)
    assert [(m.first, len(m.frames)) for _, m in out] == [(1, 100), (101, 100), (201, 50)]
    assert all(ident == b"b" and m.epoch == 3 and m.head == 1000 for ident, m in out)
    assert s.batches(1000, 3) == []                       # window full
    s.ack(b"b", 120, now=1.0)
    assert [(m.first, len(m.frames)) for _, m in s.batches(1000, 3)] == [(251, 100), (351, 20)]
    s.ack(b"b", 10_000, now=1.0)                          # never beyond what was sent
    assert s.min_acked() == 370


def test_sender_hello_restarts_from_the_peers_position_and_forgets_silent_peers():
    frames, read = journal_of(50)
    s = Sender(read, window=1000, batch=1000)
    s.hello(b"b", "b", 0, 50, now=0.0)
    s.batches(50, 1)
    s.hello(b"b", "b", 20, 50, now=1.0)                   # restarted: what was in flight is gone
    [(_, m)] = s.batches(50, 1)
    assert (m.first, m.frames) == (21, frames[20:])
    s.seen(b"b", 5.0)
    assert s.expire(older_than=4.0) == [] and s.min_acked() == 20
    assert [p.node for p in s.expire(older_than=6.0)] == ["b"]
    assert s.min_acked() is None and s.batches(50, 1) == []


def test_receiver_skips_duplicates_and_resyncs_once_per_interval_after_a_gap():
    r = Receiver(resync_after=1.0)
    assert r.admit(Batch(1, [b"1", b"2", b"3"], 3, 1), head=0, now=0.0) == ([b"1", b"2", b"3"], False)
    assert r.admit(Batch(2, [b"2", b"3", b"4"], 4, 1), head=3, now=0.0) == ([b"4"], False)
    assert r.admit(Batch(9, [b"9"], 9, 1), head=4, now=0.0) == ([], True)
    assert r.admit(Batch(10, [b"10"], 10, 1), head=4, now=0.5) == ([], False)
    assert r.admit(Batch(11, [b"11"], 11, 1), head=4, now=1.5) == ([], True)
    assert r.admit(Batch(5, [b"5"], 11, 1), head=4, now=1.6) == ([b"5"], False)


def test_body_claiming_more_than_it_holds_is_refused_in_bounded_memory():
    """The replication fuzz campaign's input: a TAKEN whose body is maps
    holding arrays that claim 19,968 items each, nested, never filled
    (33 KB: 45 ms, a 41 MB peak of allocations). Refused, as undecodable,
    before any of the claims is allocated."""
    import tracemalloc
    body = b"\x81\xdc\x4e\x00" * 8300
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolViolation, match="undecodable TAKEN body"):
            decode([b"TAKEN", body])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak
