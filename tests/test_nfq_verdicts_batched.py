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
