"""Journal throughput, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/bench_journal.py [--events N] [--dir DIR]

Append (group commit, fsync on): events/s for batches of 1, 10, 100 and 1000,
against a raw ``os.write`` of the same bytes plus one ``fdatasync`` per batch
(the floor any journal pays on this disk). Replay: events/s through
``journal.replay`` (frame check, msgpack, Event rebuild, a pure apply), against
msgpack-decoding the same record bodies alone. Target: replay >= 100,000 events/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.events import Event, event  # noqa: E402
from journal.record import HEADER_SIZE, Record, encode_record  # noqa: E402
from journal.replay import replay  # noqa: E402
from journal.segment import list_segments  # noqa: E402
from journal.store import Journal  # noqa: E402


@event("bench.journal.call_offered")
@dataclasses.dataclass(frozen=True, slots=True)
class CallOffered(Event):
    """Shaped like a SIP call's first event: ids, URIs, addresses, media ports."""

    call_id: str
    from_tag: str
    from_uri: str
    to_uri: str
    src: IPv4Address
    src_port: int
    media: tuple[int, ...]

    @property
    def stream(self) -> str:
        return f"call/{self.call_id}"


def make_events(n: int) -> list[tuple[Event, float]]:
    return [(CallOffered(f"{i:08x}-a84b4c76e66710@pc33.atlanta.example.com", f"{i * 7919:x}",
                         f"sip:alice{i % 500}@atlanta.example.com", "sip:bob@biloxi.example.com",
                         IPv4Address(0x0A000000 + i % 65000), 5060, (49170 + 2 * (i % 1000), 49171)),
             1_700_000_000.0 + i * 1e-3) for i in range(n)]


def bench_append(base: Path, events: list, batch: int, budget_s: float) -> tuple[float, float, int]:
    """(journal events/s, baseline events/s, events) for one batch size."""
    # Bound the work by time: one fsync per batch makes batch=1 slow.
    jdir = base / f"append-{batch}"
    with Journal.open(jdir) as j:
        j.append_batch(events[:1], epoch=1)          # segment creation is not what we measure
        done = 0
        t0 = time.perf_counter()
        while done + batch <= len(events) - 1 and time.perf_counter() - t0 < budget_s:
            j.append_batch(events[1 + done:1 + done + batch], epoch=1)
            done += batch
        journal_rate = done / (time.perf_counter() - t0)
    # Baseline: the very frames, already encoded, one write + one fdatasync per batch.
    frames = [encode_record(Record.of(ev, seq=i + 1, epoch=1, timestamp=ts, version=1))
              for i, (ev, ts) in enumerate(events[1:1 + done])]
    raw = base / f"raw-{batch}.bin"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, frames[0])
    os.fdatasync(fd)
    t0 = time.perf_counter()
    for i in range(0, done, batch):
        os.write(fd, b"".join(frames[i:i + batch]))
        os.fdatasync(fd)
    raw_rate = done / (time.perf_counter() - t0)
    os.close(fd)
    return journal_rate, raw_rate, done


def count_calls(state: int, ev: Event) -> int:
    return state + 1


def bench_replay(base: Path, events: list) -> None:
    jdir = base / "replay"
    with Journal.open(jdir, fsync=False) as j:
        for i in range(0, len(events), 1000):
            j.append_batch(events[i:i + 1000], epoch=1)
    n = len(events)
    t0 = time.perf_counter()
    state, last = replay(jdir, count_calls, 0)
    replay_s = time.perf_counter() - t0
    assert state == n == last
    t0 = time.perf_counter()
    with Journal.open(jdir) as j:
        open_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read = sum(1 for _ in j.read())
        read_s = time.perf_counter() - t0
    assert read == n
    # Baseline: msgpack-decode the same bodies, already in memory.
    bodies = []
    for _, path in list_segments(jdir):
        data = path.read_bytes()
        off = 0
        while off < len(data):
            length = int.from_bytes(data[off + 1:off + 5], "big")
            bodies.append(data[off + HEADER_SIZE:off + HEADER_SIZE + length])
            off += HEADER_SIZE + length
    t0 = time.perf_counter()
    for body in bodies:
        msgpack.unpackb(body)
    unpack_s = time.perf_counter() - t0
    base_rate = n / unpack_s
    print(f"\nreplay of {n} events (baseline: msgpack.unpackb of the same bodies, {base_rate:,.0f}/s)")
    for name, secs in (("replay (decode + Event + apply)", replay_s),
                       ("Journal.read (records, no Event)", read_s),
                       ("Journal.open (full scan)", open_s)):
        rate = n / secs
        print(f"  {name:34s} {rate:12,.0f} ev/s   {rate / base_rate:6.2f}x baseline")
    verdict = "meets" if n / replay_s >= 100_000 else "MISSES"
    print(f"  target replay >= 100,000 ev/s: {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="events for the replay run")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per append run")
    ap.add_argument("--dir", help="where to write (default: a temporary directory)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=args.dir))
    try:
        events = make_events(max(args.events, 100_001))
        size = len(encode_record(Record.of(events[0][0], seq=1, epoch=1, timestamp=0.0, version=1)))
        print(f"append with fsync, {size}-byte frames (baseline: os.write of the same bytes + fdatasync per batch)")
        sample = events[:20_000]
        t0 = time.perf_counter()
        for i, (ev, ts) in enumerate(sample):
            encode_record(Record.of(ev, seq=i + 1, epoch=1, timestamp=ts, version=1))
        print(f"  (Event.to_payload + Record + encode_record alone: {len(sample) / (time.perf_counter() - t0):,.0f} ev/s,"
              f" the ceiling for large batches)")
        for batch in (1, 10, 100, 1000):
            j_rate, raw_rate, n = bench_append(base, events, batch, args.budget)
            print(f"  batch {batch:5d}: {j_rate:12,.0f} ev/s   baseline {raw_rate:12,.0f} ev/s"
                  f"   {j_rate / raw_rate:6.2f}x   ({n} events)")
        bench_replay(base, events[:args.events])
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
