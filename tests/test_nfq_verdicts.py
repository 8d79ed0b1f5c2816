"""NFQUEUE verdict messages written by the worker itself, batched per drain.
The layout is checked field by field against linux/netfilter/nfnetlink_queue.h;
the namespace tests (tests/test_ingest_netns.py) check the kernel takes them."""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from actors import nfq_verdicts as nv


def test_accept_message_layout():
    msg = nv.encode_verdict(3, 0x01020304, nv.NF_ACCEPT)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, len(msg)) == (32, 32)
    assert mtype == (3 << 8) | 1 and flags == 1 and (seq, pid) == (0, 0)   # QUEUE subsys, VERDICT, REQUEST
    assert msg[16] == socket.AF_UNSPEC and msg[17] == 0 and msg[18:20] == b"\x00\x03"  # queue, big-endian
    assert struct.unpack_from("=HH", msg, 20) == (12, 2)                   # NFQA_VERDICT_HDR
    assert msg[24:32] == b"\x00\x00\x00\x01\x01\x02\x03\x04"              # verdict, id: big-endian


def test_rewritten_payload_goes_in_an_aligned_payload_attribute():
    msg = nv.encode_verdict(0, 7, nv.NF_ACCEPT, b"abcde")
    assert len(msg) % 4 == 0 and struct.unpack_from("=I", msg)[0] == len(msg) == 32 + 12
    assert struct.unpack_from("=HH", msg, 32) == (9, 10) and msg[36:41] == b"abcde"  # NFQA_PAYLOAD


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 2**32 - 1), st.sampled_from([0, 1]),
                          st.none() | st.binary(max_size=300)), max_size=20))
def test_a_datagram_of_messages_decodes_to_what_was_encoded(items):
    data = b"".join(nv.encode_verdict(q, i, v, p) for q, i, v, p in items)
    assert nv.decode_verdicts(data) == [(q, i, v, p) for q, i, v, p in items]


def pkt(i: int):
    return SimpleNamespace(id=i)


def test_batched_verdicts_wait_for_flush_and_go_in_one_datagram():
    sent: list[bytes] = []
    b = nv.BatchedVerdicts(-1, 5, sender=sent.append)
    b.accept(pkt(1))
    b.drop(pkt(2))
    b.accept(pkt(3), b"new")
    assert sent == []
    b.flush()
    assert len(sent) == 1 and b.datagrams == 1 and b.verdicts == 3
    assert nv.decode_verdicts(sent[0]) == [(5, 1, 1, None), (5, 2, 0, None), (5, 3, 1, b"new")]
    b.flush()
    assert len(sent) == 1                      # nothing pending: nothing sent


def test_a_large_batch_is_sent_before_it_outgrows_the_socket_buffer():
    sent: list[bytes] = []
    b = nv.BatchedVerdicts(-1, 0, sender=sent.append)
    for i in range(400):
        b.accept(pkt(i), b"x" * 400)
    b.flush()
    assert all(len(d) <= nv.FLUSH_BYTES + 500 for d in sent) and len(sent) > 1
    ids = [i for d in sent for _q, i, _v, _p in nv.decode_verdicts(d)]
    assert ids == list(range(400))             # in the order given


def test_a_send_error_is_counted_and_logged_not_raised(caplog):
    def fail(_data):
        raise OSError(105, "No buffer space available")
    b = nv.BatchedVerdicts(-1, 0, sender=fail)
    b.accept(pkt(1))
    b.flush()
    assert b.send_errors == 1 and "not sent" in caplog.text
