"""Reading a segment whose newest tail is damaged costs time linear in the
segment, whatever the bytes after the damage.

To tell a torn tail (cut, then nothing) from damage in the middle of the
journal, the reader looks for any frame with a good CRC after the damage.
Every candidate start (a format byte) whose length field fits in the file
had its CRC computed over that length: bytes that announce long frames
one after another made this quadratic (128 KiB: 155 ms, 64 MiB segments:
hours). Found with the journal segment fuzz campaign."""

from __future__ import annotations

import cProfile
import pstats
import struct
import time

import pytest

from journal.record import Record, encode_record
from journal.segment import JournalCorrupt, iter_records, scan_segment, segment_name
from test_replication_harness import call_events

FRAME = encode_record(Record.of(call_events(1)[0], seq=1, epoch=1, timestamp=1000.0, version=1))


def _long_claims(size: int) -> bytes:
    """One good frame, a damaged octet, then frame headers each claiming
    half the segment (with a wrong CRC): no valid frame follows."""
    claim = b"\xa1" + struct.pack(">I", size // 2) + b"\x00" * 4
    return FRAME + b"\xff" + claim * (size // len(claim))


def _scan_cpu(path) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(2):
        t0 = time.thread_time()
        try:
            out = scan_segment(path, 1, is_last=True)
        except JournalCorrupt as exc:
            out = exc
        best = min(best, time.thread_time() - t0)
    return best, out


def test_damaged_tail_check_is_linear(tmp_path):
    path = tmp_path / segment_name(1)
    path.write_bytes(_long_claims(32 * 1024))
    small, _ = _scan_cpu(path)
    path.write_bytes(_long_claims(256 * 1024))
    large, out = _scan_cpu(path)
    # 8 times the bytes: linear 8, the quadratic check gave over 40.
    assert large / max(small, 1e-3) < 20, f"{small * 1000:.1f} ms -> {large * 1000:.1f} ms"
    assert large < 0.5


def test_tail_not_checked_within_the_bound_is_not_truncated(tmp_path):
    """Past its bound the check cannot say that nothing valid follows, so
    the damage is not taken for a torn tail (which would be cut off): the
    segment is reported corrupt, with the reason, for the operator."""
    path = tmp_path / segment_name(1)
    path.write_bytes(_long_claims(256 * 1024))
    with pytest.raises(JournalCorrupt, match="could not be told within"):
        scan_segment(path, 1, is_last=True)
    with pytest.raises(JournalCorrupt, match="could not be told within"):
        list(iter_records(tmp_path))


def test_short_torn_tail_still_a_torn_tail(tmp_path):
    """A few claims, within the bound: checked, nothing valid, a torn tail."""
    path = tmp_path / segment_name(1)
    path.write_bytes(FRAME + b"\xff" + (b"\xa1" + struct.pack(">I", 64) + b"\x00" * 4) * 20)
    scan = scan_segment(path, 1, is_last=True)
    assert scan.count == 1 and scan.damage is not None and scan.valid_end == len(FRAME)


def test_run_of_format_octets_after_damage_is_read_quickly(tmp_path):
    """Every octet of a run of format bytes was a candidate frame start,
    refused by frame_end raising (64 KiB took 100 ms; the campaign's 53 KB
    input 180 ms through both readers). A frame's length is at most
    MAX_BODY, so its first octet is 0 or 1: only such places are tried."""
    path = tmp_path / segment_name(1)
    path.write_bytes(FRAME + b"\xff" + b"\xa1" * 65536)
    t, out = _scan_cpu(path)
    assert t < 0.050, f"{t * 1000:.1f} ms"
    assert out.count == 1 and out.damage is not None


def test_short_frames_claimed_after_damage_are_checked_quickly(tmp_path):
    """Headers claiming an 8-octet body every 5 octets (the segment
    campaign's slowest input, 53 KB: 43 ms through both readers): each
    one's CRC is computed and compared, none raises an exception.

    That is asserted by counting calls, which load on the machine cannot
    change: a refusal through frame_end and its FrameError costs Python
    calls per candidate, the check itself only C calls (the match's start,
    the header's unpack, two CRCs). The CPU time is held to a linear
    scaling (an eighth of the input) and to a bound with room for a
    loaded machine (25 ms quiet here; a quadratic check takes seconds)."""
    claims = 13000
    path = tmp_path / segment_name(1)
    path.write_bytes(FRAME + b"\xff" + b"\xa1\x00\x00\x00\x08" * (claims // 8))
    small, _ = _scan_cpu(path)
    path.write_bytes(FRAME + b"\xff" + b"\xa1\x00\x00\x00\x08" * claims)
    t, out = _scan_cpu(path)
    assert out.count == 1 and out.damage is not None
    assert t < 0.100, f"{t * 1000:.1f} ms"
    assert t / max(small, 1e-3) < 20, f"{small * 1000:.1f} ms -> {t * 1000:.1f} ms"

    profile = cProfile.Profile()
    profile.runcall(scan_segment, path, 1, is_last=True)
    per_function = {key: row[1] for key, row in pstats.Stats(profile).stats.items()}
    assert sum(per_function.values()) < 5 * claims, sum(per_function.values())
    python_level = {key: n for key, n in per_function.items()
                    if key[0] != "~" and n >= claims // 2}
    assert not python_level, python_level
