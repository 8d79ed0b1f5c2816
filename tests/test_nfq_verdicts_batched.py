"""BatchedVerdicts writes each message with one precomputed struct per
shape; the bytes are those of encode_verdict (whose layout
tests/test_nfq_verdicts.py checks field by field)."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from actors import nfq_verdicts as nv


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.sampled_from(["accept", "drop"]),
                          st.none() | st.binary(max_size=300)), max_size=20),
       st.integers(0, 65535))
def test_batched_messages_are_encode_verdicts_bytes(items, queue):
    sent: list[bytes] = []
    b = nv.BatchedVerdicts(-1, queue, sender=sent.append)
    want = []
    for pid, verdict, payload in items:
        p = SimpleNamespace(id=pid)
        if verdict == "accept":
            b.accept(p, payload)
            want.append(nv.encode_verdict(queue, pid, nv.NF_ACCEPT, payload))
        else:
            b.drop(p)
            want.append(nv.encode_verdict(queue, pid, nv.NF_DROP))
    b.flush()
    assert b"".join(sent) == b"".join(want)
    assert b.verdicts == len(items)


def test_marked_verdicts_carry_nfqa_mark_and_match_encode_verdict():
    """A packet of a shaped policy leaves with its firewall mark
    (gateway/shaping.py): NFQA_MARK in the verdict, with or without a
    rewritten payload, byte-identical to encode_verdict."""
    from actors.nfq_verdicts import BatchedVerdicts, decode_verdicts, encode_verdict

    sent: list[bytes] = []
    bv = BatchedVerdicts(-1, 3, sender=sent.append)

    class P:
        def __init__(self, i):
            self.id = i

    bv.accept(P(1), None, 0x56410001)
    bv.accept(P(2), b"abcde", 0x56410002)
    bv.accept(P(3), b"xy")
    bv.flush()
    (data,) = sent
    assert data == (encode_verdict(3, 1, 1, None, mark=0x56410001)
                    + encode_verdict(3, 2, 1, b"abcde", mark=0x56410002)
                    + encode_verdict(3, 3, 1, b"xy"))
    assert decode_verdicts(data, marks=True) == [(3, 1, 1, None, 0x56410001),
                                                 (3, 2, 1, b"abcde", 0x56410002),
                                                 (3, 3, 1, b"xy", 0)]
