"""Crash safety: a writer process is SIGKILLed at random moments; every record
it was told is durable must be there, intact, after reopening, and whatever
damaged tail the kill left is reported and cut off."""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from journal.record import Record, encode_record
from journal.segment import list_segments
from journal.store import Journal

ROOT = Path(__file__).resolve().parents[1]

# The child journals events whose content is a function of their sequence
# number, so the parent can check every record without a copy of its own.
WRITER = textwrap.dedent("""
    import dataclasses, random, sys
    from gateway.events import Event, event
    from journal.store import Journal

    @event("test.journal_crash.tick")
    @dataclasses.dataclass(frozen=True, slots=True)
    class Tick(Event):
        key: str
        n: int
        pad: str
        @property
        def stream(self):
            return "tick/" + self.key

    path, seed, segment_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    j = Journal.open(path, segment_bytes=segment_bytes)
    rng = random.Random(seed)
    seq = j.head
    out = sys.stdout
    out.write(f"ready {seq} {len(j.report.truncated)}\\n")
    out.flush()
    while True:
        # Mostly large batches: a kill lands inside their multi-megabyte
        # writes often enough even where the CPU is shared (the small ones
        # keep single-record writes covered).
        size = rng.choice([1, 10, 100, 1000, 1000, 1000])
        batch = [(Tick(str(s % 7), s, "p" * (s % 4000)), float(s)) for s in range(seq + 1, seq + size + 1)]
        seq = j.append_batch(batch, epoch=1)[-1].seq
        out.write(f"{seq}\\n")
        out.flush()
""")


def expected_payload(seq: int) -> dict:
    return {"key": str(seq % 7), "n": seq, "pad": "p" * (seq % 4000)}


def run_writer_and_kill(path: Path, seed: int, rng: random.Random) -> int:
    """Start a writer, let it run for a random while, SIGKILL it; return the
    highest sequence number it acknowledged."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seed), str(4 * 1024 * 1024)],
                             stdout=subprocess.PIPE, env=env, cwd=ROOT)
    acked = 0
    buf = b""
    try:
        ready = child.stdout.readline()
        assert ready.startswith(b"ready"), ready
        deadline = time.monotonic() + rng.uniform(0.05, 0.3)
        fd = child.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        buf += child.stdout.read()        # acknowledgements written before the kill count too
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    for line in buf.split(b"\n"):
        if line.strip():
            acked = max(acked, int(line))
    return acked


@pytest.mark.slow
def test_acknowledged_records_survive_sigkill(tmp_path, caplog):
    rng = random.Random(4475)
    repairs = 0
    round_no = 0
    # A kill lands inside a multi-megabyte write (leaving a torn frame) in
    # roughly one round of four on a quiet box, far fewer where other work
    # takes the CPU (the writer then spends its time building batches); go
    # on until that was seen at least once, with a bound high enough for a
    # shared machine (a round is ~0.5 s; a tear usually comes within ten). A
    # fresh journal every third round keeps the reopen scans short.
    while round_no < 4 or (repairs == 0 and round_no < 150):
        path = tmp_path / f"journal{round_no // 3}"
        before = 0
        if path.exists():
            with Journal.open(path) as j:
                before = j.head
        acked = run_writer_and_kill(path, seed=round_no, rng=rng)
        assert acked >= before               # the writer resumed from the reopened head
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="journal"):
            with Journal.open(path) as j:
                assert j.head >= acked, f"round {round_no}: acknowledged {acked}, head {j.head}"
                seq = 0
                for rec in j.read():
                    seq += 1
                    assert rec.seq == seq
                    assert rec.payload == expected_payload(seq)
                    assert rec.timestamp == float(seq)
                    assert rec.stream == f"tick/{seq % 7}"
                assert seq == j.head
                for damage in j.report.truncated:
                    repairs += 1
                    assert "cut short" in damage.reason
                    assert any(f"offset {damage.offset}" in m and str(damage.path) in m
                               for m in caplog.messages)
            # The repair is durable: the next open finds nothing to cut.
            with Journal.open(path) as j:
                assert j.report.truncated == () and j.head >= acked
        round_no += 1
    assert repairs > 0, f"no kill tore a write in {round_no} rounds"


def test_torn_write_left_by_a_killed_writer_is_cut(tmp_path, caplog):
    """A kill in the middle of a write leaves a prefix of the batch's bytes.
    Leave exactly that on a journal a real writer produced: the whole frames of
    the prefix are kept, the cut one is reported and removed."""
    path = tmp_path / "journal"
    acked = run_writer_and_kill(path, seed=99, rng=random.Random(1))
    with Journal.open(path) as j:
        head = j.head
    seg = list_segments(path)[-1][1]
    size = seg.stat().st_size
    with Journal.open(path) as j:     # versions must continue the streams
        batch = [encode_record(Record(s, 1, float(s), f"tick/{s % 7}", j.stream_version(f"tick/{s % 7}") + 1,
                                      "test.journal_crash.tick", 1, expected_payload(s)))
                 for s in range(head + 1, head + 4)]
    torn = b"".join(batch)[: len(batch[0]) + len(batch[1]) + len(batch[2]) // 2]
    with open(seg, "ab") as f:
        f.write(torn)
    with caplog.at_level(logging.WARNING, logger="journal"):
        with Journal.open(path) as j:
            assert j.head == head + 2 and head >= acked
            assert [r.payload for r in j.read(head + 1)] == [expected_payload(head + 1),
                                                              expected_payload(head + 2)]
            (damage,) = j.report.truncated
            assert damage.offset == size + len(batch[0]) + len(batch[1])
            assert damage.dropped_bytes == len(batch[2]) // 2
    assert any(f"offset {damage.offset}" in m for m in caplog.messages)
    assert seg.stat().st_size == damage.offset
