"""What a HELLO says about the standby's last record (its epoch and frame CRC)
and the active's verdict on it: stream on, or where the standby must cut its
journal first."""

from __future__ import annotations

import struct
from typing import Callable

from .record import HEADER_SIZE, FrameError, decode_record

_CRC = struct.Struct(">I")


def frame_mark(frame: bytes) -> tuple[int, int]:
    """(epoch, crc) of one journal frame: what HELLO says about the last record."""
    try:
        rec, _ = decode_record(frame)
    except FrameError as exc:
        raise ValueError(f"not a journal frame: {exc}") from None
    return rec.epoch, _CRC.unpack_from(frame, HEADER_SIZE - 4)[0]


def hello_verdict(last_seq: int, last_epoch: int, last_crc: int, head: int,
                  mark_at: Callable[[int], tuple[int, int]]) -> int | None:
    """Whether the active can stream to a standby whose last record is
    (``last_seq``, ``last_epoch``, ``last_crc``): None when the standby's
    journal is a prefix of ours, else the sequence it must truncate after
    before saying HELLO again. ``mark_at(seq)`` is our (epoch, crc) at seq.

    Epochs never decrease along a journal, and only the active of an epoch
    writes records of that epoch, so when the two records at ``last_seq``
    differ, our whole term at that point is suspect: the cut goes to our last
    record of an older epoch (Raft's log matching, skipping a term per round
    trip; cutting too much only costs a resend). Each answer is strictly below
    ``last_seq``, so the exchange ends, at worst at 0 (an empty journal)."""
    if last_seq == 0:
        return None
    if last_seq > head:
        # Records we never had: cut them; the record at our head is then checked.
        return head
    epoch, crc = mark_at(last_seq)
    if (epoch, crc) == (last_epoch, last_crc):
        return None
    bound = epoch
    lo, hi = 0, last_seq - 1          # find the last seq in [1, hi] with epoch < bound
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mark_at(mid)[0] < bound:
            lo = mid
        else:
            hi = mid - 1
    return lo
