"""Snapshots and retention on a generated day of traffic: restart time and
disk, each beside its baseline from the same run.

    .venv/bin/python bench/bench_snapshots.py [--rate 400] [--hold 60] [--hours 24]
        [--snapshot-every 200000] [--keep-for 30m] [--max-disk 8GiB] [--dir DIR]
        [--compare-with TREE [--rounds 3]]

The journal is what a node writes at ``--rate`` SIP calls/s, each call the
real SIP ALG's events (INVITE with SDP, 100, 180, 200 with SDP, ACK, media
reports, BYE, 200, the teardown timer) with its own Call-ID, tags, addresses
and ports, lasting ``--hold`` seconds; the clock is simulated. Along the way
the node's own code takes snapshots (``SnapshotTaker``: fold of the journal,
write, keep ``snapshots_kept``) and runs the retention pass, exactly as the
snapshot thread does, with the simulated clock.

Not generated: the hours before the last ``keep_for`` + ``hold`` + four
snapshot intervals of the day. Retention deletes their segments (every kept snapshot covers them,
they are older than ``keep_for``) and their calls ended long before, so
neither the disk nor a restart at the end of the day depends on them; the
sequence numbers of the kept records are therefore smaller than a real day's.
The baseline restart (the whole journal folded, as before snapshots) is
measured on the generated part before retention removed any of it, and
scaled to the day's event count (it is linear in the records).

Figures printed: records (and events) per call and bytes per record; the restart at the end
of the day (worst case: the tail after the newest snapshot one event short of
``snapshot_every``), split into opening at the snapshot, loading it, folding
the tail, and the node's own start (entity actors) in a fresh process; the
disk (segments + snapshots) and its peak against ``max_disk``; per snapshot
the fold and write times; and the datapath pause: how late a thread that
wakes every millisecond is, with and without a snapshot being taken beside it.
With ``--compare-with TREE`` (another checkout, e.g. the code before a
change), the restart of the final journal by each tree's code, in fresh
processes, the trees alternating so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway import domain  # noqa: E402
from gateway.config.model import SipSettings  # noqa: E402
from gateway.events import in_steps  # noqa: E402
from gateway.nodefile import RetentionSettings, _duration, _size  # noqa: E402
from gateway.sip.alg import EMPTY as SIP_EMPTY, media_activity, on_timer, step  # noqa: E402
from journal.checkpoint import (SnapshotTaker, decode_state, disk_usage, open_at_snapshot,  # noqa: E402
                                retention_pass)
from journal.replay import snapshot_dir  # noqa: E402
from journal.snapshot import list_snapshots, read_snapshot, remove_snapshots  # noqa: E402
from journal.record import Record  # noqa: E402
from journal.store import Journal  # noqa: E402


# ------------------------------------------------------------ one real call

def template_steps() -> list[tuple[int, list]]:
    """``(part, events)`` of each step of one call through the real SIP ALG:
    the five messages of the setup (part 0), two media refreshes (part 1),
    BYE, its 200 OK and the teardown timer (part 2)."""
    from test_sip_alg import IN, OUT, PH2, invite, request_out, response, sdp
    s = SipSettings()
    st, t = SIP_EMPTY, 100.0
    steps = []
    for ctx, msg in [(OUT, invite()), (IN, response(100, "Trying")), (IN, response(180, "Ringing")),
                     (IN, response(200, "OK", body=sdp(PH2, 62002))),
                     (OUT, request_out("ACK", 1, "z9hG4bKack"))]:
        r = step(st, ctx, msg, t, s)
        st, t = r.state, t + 0.2
        steps.append((0, list(r.events)))
    for g in sorted(st.group_index)[:2]:
        r = media_activity(st, g, t + 30, s)
        st = r.state
        steps.append((1, list(r.events)))
    for ctx, msg in [(OUT, request_out("BYE", 2, "z9hG4bKbye")),
                     (IN, response(200, "OK", method="BYE", cseq=2, branch="z9hG4bKbye"))]:
        r = step(st, ctx, msg, t + 60, s)
        st = r.state
        steps.append((2, list(r.events)))
    (key,) = st.calls
    r = on_timer(st, f"call/{key}", t + 600, s)
    steps.append((2, list(r.events)))
    assert not r.state.calls, "the template call did not end"
    return steps


def template_call() -> tuple[list, list, list]:
    """(setup, media, teardown) events of one call through the real SIP ALG."""
    parts: tuple[list, list, list] = ([], [], [])
    for part, events in template_steps():
        parts[part].extend(events)
    return parts


class CallFactory:
    """The template's records with a call's own Call-ID (hence its own streams,
    pinhole and group ids). Built as records, not events: the generator
    must run many times faster than the day it writes. A record per step, as
    the journal writer writes them (``in_steps``), or with ``per_event`` a
    record per event (journals written before step records)."""

    def __init__(self, per_event: bool = False) -> None:
        steps = template_steps()
        self.parts = template_call()
        self.setup, self.media, self.teardown = self.parts
        self.call_id = self.setup[0].call_id.split("@")[0]
        # (type, schema, stream, payload, version) per record, per part
        versions: dict[str, int] = {}
        self.templates = [[], [], []]
        for part, events in steps:
            for e in (events if per_event else in_steps(events)):
                versions[e.stream] = versions.get(e.stream, 0) + 1
                self.templates[part].append((e.TYPE, e.SCHEMA, e.stream, e.to_payload(), versions[e.stream]))
        self.records_per_call = sum(len(t) for t in self.templates)
        self.events_per_call = sum(len(p) for p in self.parts)

    def _rewrite(self, value, new: str):
        if type(value) is str:
            return value.replace(self.call_id, new) if self.call_id in value else value
        if type(value) in (list, tuple):
            return type(value)(self._rewrite(v, new) for v in value)
        return value

    def rows(self, part: int, i: int) -> list[tuple]:
        new = f"{i:x}-{self.call_id}"
        return [(t, sc, st.replace(self.call_id, new), {k: self._rewrite(v, new) for k, v in pl.items()}, ver)
                for t, sc, st, pl, ver in self.templates[part]]


def append_rows(j: Journal, rows: list[tuple], ts: float) -> None:
    """Append generated rows as one batch, through the journal's own checks."""
    seq = j.head
    records = []
    for t, sc, st, pl, ver in rows:
        seq += 1
        records.append(Record(seq, 1, ts, st, ver, t, sc, pl))
    j.append_records(records)


def append_overlapping_calls(j: Journal, calls: int, per_event: bool = False) -> None:
    """``calls`` overlapping calls, one a second: each second a call starts,
    the one started 2 s earlier gets its middle part (answer, media) and the
    one from 4 s earlier ends; the calls of the last 4 s are still live at
    the end. A record per step (``per_event``: per event)."""
    f = CallFactory(per_event)
    pending: dict[int, list] = {}
    for sec in range(calls):
        rows = pending.pop(sec, []) + f.rows(0, sec + 1)
        pending.setdefault(sec + 2, []).extend(f.rows(1, sec + 1))
        pending.setdefault(sec + 4, []).extend(f.rows(2, sec + 1))
        append_rows(j, rows, 1000.0 + sec)


# ------------------------------------------------------------- generation

def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure_full_restart(path: Path) -> tuple[float, int]:
    """The baseline: open with a full scan and fold every record (the code
    path before snapshots). Returns (seconds, records)."""
    t0 = time.perf_counter()
    with Journal.open(path, fsync=False) as j:
        # Not at a snapshot: every frame checked, then every record folded.
        st, n = domain.EMPTY, 0
        for rec in j.read(1):
            for ev in rec.events():
                st = domain.apply(st, ev)
            n += 1
    return time.perf_counter() - t0, n


def measure_snapshot_restart(path: Path) -> dict:
    t0 = time.perf_counter()
    rec = open_at_snapshot(path, domain.apply, domain.EMPTY, fsync=False, freeze=True)   # as a node does
    total = time.perf_counter() - t0
    try:
        snap = read_snapshot(rec.snapshot)
        t1 = time.perf_counter()
        decode_state(snap.state)
        load = time.perf_counter() - t1
        return {"total_s": total, "load_snapshot_s": load, "tail_events": rec.folded,
                "snapshot_bytes": rec.snapshot.stat().st_size, "calls": len(rec.state.sip.calls)}
    finally:
        rec.journal.close()


# Run with PYTHONPATH at a tree: (1) open + load + fold alone, (2) a node's
# start (the same, then its entities), each in its own fresh process.
_OPEN = """
import json, sys, time
t = time.perf_counter()
from gateway import domain
from journal.checkpoint import open_at_snapshot
t1 = time.perf_counter()
try:   # as a node opens it: what was loaded frozen, not collected once more (where the code can)
    r = open_at_snapshot(sys.argv[1], domain.apply, domain.EMPTY, fsync=False, freeze=True)
except TypeError:
    r = open_at_snapshot(sys.argv[1], domain.apply, domain.EMPTY, fsync=False)
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t, "open_s": t2 - t1, "tail": r.folded, "calls": len(r.state.sip.calls)}))
"""
_NODE = """
import json, sys, time
t = time.perf_counter()
from actors.node import Node
from gateway.config.model import Config
t1 = time.perf_counter()
n = Node('gw-a', Config(zones={}, interfaces={}, addresses={}, policies=(), routes=()), sys.argv[1],
         fsync=False, timer_thread=False)
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t, "node_s": t2 - t1, "recovery_s": n.recovery["ms"] / 1000,
                  "started": n.pool.live_count(), "entities": n.directory.count("entity")}))
n.stop()
"""


def fresh_restart(tree: Path, path: Path) -> dict:
    """Restart figures of the code in ``tree`` on the journal at ``path``."""
    import json
    out: dict = {"tree": str(tree)}
    env = dict(os.environ, PYTHONPATH=str(tree))
    for code in (_OPEN, _NODE):
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                           timeout=900, cwd=tree)
        if r.returncode != 0:
            raise RuntimeError(f"restart with {tree} failed: {r.stderr[-2000:]}")
        out.update(json.loads(r.stdout.strip().splitlines()[-1]))
    return out


def compare_restarts(trees: list[Path], path: Path, rounds: int) -> list[list[dict]]:
    """``rounds`` restarts per tree, the trees alternating (same machine load)."""
    runs: list[list[dict]] = [[] for _ in trees]
    for _ in range(rounds):
        for i, tree in enumerate(trees):
            runs[i].append(fresh_restart(tree, path))
    return runs


def print_comparison(runs: list[list[dict]]) -> None:
    med = [{k: statistics.median(r[k] for r in rs) for k in ("open_s", "node_s", "recovery_s")} for rs in runs]
    print(f"restart compared on the same journal, {len(runs[0])} rounds alternating, medians:")
    for rs, m in zip(runs, med):
        r = rs[0]
        print(f"  {r['tree']}: open+load+fold {m['open_s']:.2f} s (tail {r['tail']:,}, {r['calls']:,} calls); "
              f"node start {m['node_s']:.2f} s (recovery {m['recovery_s']:.2f} s; {r['started']:,} actors "
              f"started, {r['entities']:,} entities); each: "
              + ", ".join(f"{x['node_s']:.2f}" for x in rs))
    for rs, m in list(zip(runs, med))[1:]:
        print(f"  {rs[0]['tree']} / {runs[0][0]['tree']}: open+load+fold x{m['open_s'] / med[0]['open_s']:.1f}, "
              f"node start x{m['node_s'] / med[0]['node_s']:.1f}")


def gil_lateness(seconds: float, during=None) -> tuple[list[float], list[float]]:
    """Lateness (ms) of a thread that sleeps 1 ms at a time, while ``during``
    runs beside it, and the garbage collections (ms) meanwhile (a collection
    stops every thread; the node tunes and logs them, ops/gatewayd.py)."""
    import gc
    late: list[float] = []
    collections: list[float] = []
    stop = threading.Event()
    started = [0.0]

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections.append((time.perf_counter() - started[0]) * 1000)
    gc.callbacks.append(on_gc)

    def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            time.sleep(0.001)
            late.append((time.perf_counter() - t - 0.001) * 1000)
    th = threading.Thread(target=probe)
    th.start()
    t0 = time.perf_counter()
    if during is not None:
        during()
    while time.perf_counter() - t0 < seconds:
        time.sleep(0.01)
    stop.set()
    th.join()
    gc.callbacks.remove(on_gc)
    return late, collections


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = RetentionSettings()
    ap.add_argument("--rate", type=float, default=400.0, help="calls per second")
    ap.add_argument("--hold", type=float, default=60.0, help="seconds a call lasts")
    ap.add_argument("--hours", type=float, default=24.0, help="length of the day simulated")
    ap.add_argument("--snapshot-every", type=int, default=d.snapshot_every)
    ap.add_argument("--snapshots-kept", type=int, default=d.snapshots_kept)
    ap.add_argument("--snapshot-interval", help="also a snapshot this long after the last (e.g. 8s)")
    ap.add_argument("--keep-for", default="30m")
    ap.add_argument("--max-disk", default="8GiB")
    ap.add_argument("--segment-mib", type=int, default=64)
    ap.add_argument("--dir", help="where to write (default: a temporary directory, removed after)")
    ap.add_argument("--compare-with", action="append", default=[], metavar="TREE",
                    help="another checkout of the project (e.g. the code before a change): its restart "
                         "on the same journal, in fresh processes alternating with this tree's")
    ap.add_argument("--rounds", type=int, default=3, help="restarts per tree with --compare-with")
    args = ap.parse_args()
    keep_for = _duration("--keep-for", "keep_for", args.keep_for)
    max_disk = _size("--max-disk", "max_disk", args.max_disk)
    interval = _duration("--snapshot-interval", "snapshot_interval", args.snapshot_interval) \
        if args.snapshot_interval else None
    settings = RetentionSettings(args.snapshot_every, args.snapshots_kept, keep_for, max_disk, interval)

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-snap-"))
    path = base / "journal"
    shutil.rmtree(path, ignore_errors=True)
    factory = CallFactory()
    per_call = factory.records_per_call
    day = args.hours * 3600
    every_s = settings.snapshot_every / (args.rate * per_call)
    if interval is not None:
        every_s = min(every_s, interval)
    # The longest tail after a snapshot: the count, or the events of the interval.
    tail_bound = settings.snapshot_every if interval is None else \
        min(settings.snapshot_every, int(interval * args.rate * per_call))
    last_snap_sec = 0
    span = min(day, keep_for + args.hold + 4 * every_s)
    t_start = day - span
    print(f"rate {args.rate:.0f} calls/s, hold {args.hold:.0f} s, {per_call} records per call "
          f"({factory.events_per_call} events); "
          f"day {args.hours:.0f} h = {day * args.rate * per_call / 1e6:,.0f}M records; generating the "
          f"last {span / 60:.0f} min; settings {settings}")

    # Events keyed by the simulated second they happen in.
    t0_wall = time.perf_counter()
    j = Journal.open(path, fsync=False, segment_bytes=args.segment_mib << 20)
    taker = SnapshotTaker(j, domain.apply, domain.EMPTY, 0, 0, None, [])
    pending: dict[int, list] = {}
    call_no = 0
    snaps: list[dict] = []
    peak = 0
    baseline = None
    bytes_written = 0
    sec = 0
    total_secs = int(span)
    while sec < total_secs:
        now = t_start + sec
        starts = int((sec + 1) * args.rate) - int(sec * args.rate)
        batch = pending.pop(sec, [])
        for _ in range(starts):
            call_no += 1
            batch += factory.rows(0, call_no)
            pending.setdefault(sec + int(args.hold / 2), []).extend(factory.rows(1, call_no))
            pending.setdefault(sec + int(args.hold), []).extend(factory.rows(2, call_no))
        for k in range(0, len(batch), 200):
            append_rows(j, batch[k:k + 200], now)
        sec += 1
        if j.head - taker.written >= settings.snapshot_every or (
                interval is not None and j.head > taker.written and sec - last_snap_sec >= interval):
            last_snap_sec = sec
            if baseline is None and j.first_seq == 1 and sec > args.hold:
                # The whole journal is still there: the baseline restart, now.
                j.close()
                secs, n = measure_full_restart(path)
                baseline = {"seconds": secs, "records": n, "rate": n / secs}
                j = Journal.open(path, fsync=False, segment_bytes=args.segment_mib << 20)
                taker.journal = j
            t1 = time.perf_counter()
            taker.catch_up()
            t2 = time.perf_counter()
            c2 = time.process_time()
            p = taker.write(in_child=True)           # as the node's snapshot thread writes them
            t3 = time.perf_counter()
            c3 = time.process_time()
            remove_snapshots(taker.directory, keep=settings.snapshots_kept)
            r = retention_pass(j, max_age=keep_for, max_bytes=max_disk, now=now)
            snaps.append({"seq": taker.seq, "fold_s": t2 - t1, "write_s": t3 - t2, "write_cpu_s": c3 - c2,
                          "bytes": p.stat().st_size,
                          "calls": len(taker.state.sip.calls), "removed": r.removed})
        peak = max(peak, disk_usage(j))
        if sec % 300 == 0:
            print(f"  {sec / 60:5.0f} min simulated, {j.head:,} records, disk {disk_usage(j) / 2**30:.2f} GiB, "
                  f"{len(snaps)} snapshots, wall {time.perf_counter() - t0_wall:.0f} s", flush=True)
    # Worst case for a crash restart: the tail one event short of the next snapshot.
    short = tail_bound - 1 - (j.head - taker.written)
    while short > 0:
        call_no += 1
        rows = factory.rows(0, call_no)[:short]
        append_rows(j, rows, day)
        short -= len(rows)
    bytes_written = sum(s for _f, _l, s, _p in j.segments())
    head, first = j.head, j.first_seq
    final_disk = disk_usage(j)
    # The pause: a snapshot of the end-of-day state taken beside a 1 ms probe.
    taker.catch_up()
    calls_now = len(taker.state.sip.calls)
    # As gatewayd runs (ops/gatewayd.py tune_gc: thresholds, what exists frozen).
    pending.clear()
    from ops.gatewayd import tune_gc
    tune_gc()
    idle, _ = gil_lateness(1.0)
    taker.written = 0
    busy, gcs = gil_lateness(0.0, during=lambda: taker.write(in_child=True))
    # Baseline, same run: the same snapshot encoded and written in this process.
    taker.written = 0
    busy_here, gcs_here = gil_lateness(0.0, during=lambda: taker.write(in_child=False))
    j.close()
    remove_snapshots(snapshot_dir(path), keep=settings.snapshots_kept)
    # Keep the worst case: the newest snapshot is the one before the tail.
    newest = list_snapshots(snapshot_dir(path))[-1][1]
    newest.unlink()
    final_disk = disk_bytes(path)
    restart = measure_snapshot_restart(path)
    # The node's own start in a fresh process (journal, snapshot, tail, entity actors).
    here = Path(__file__).resolve().parents[1]
    fresh = fresh_restart(here, path)
    node_s, recovery_ms, actors = fresh["node_s"], fresh["recovery_s"] * 1000, fresh["started"]
    compared = compare_restarts([here, *[Path(t).resolve() for t in args.compare_with]], path, args.rounds) \
        if args.compare_with else None

    day_events = day * args.rate * per_call
    print()
    print(f"journal at the end of the day: records {first:,}-{head:,} kept, {final_disk / 2**30:.2f} GiB on "
          f"disk (segments + snapshots), peak {peak / 2**30:.2f} GiB; bound max_disk "
          f"{max_disk / 2**30:.2f} GiB; {bytes_written / max(1, head - first + 1):.0f} bytes/record")
    print(f"live calls at the end: {calls_now:,}; snapshot {restart['snapshot_bytes'] / 2**20:.1f} MiB")
    print(f"restart (worst case, tail {restart['tail_events']:,} records): open+load+fold "
          f"{restart['total_s']:.2f} s (load the snapshot {restart['load_snapshot_s']:.2f} s); node start in a "
          f"fresh process {float(node_s):.2f} s + imports {fresh['imports_s']:.2f} s (recovery "
          f"{float(recovery_ms) / 1000:.2f} s, "
          f"{actors} entity actors started, {fresh['entities']} entities in the directory)")
    if baseline:
        print(f"baseline, same run: whole journal ({baseline['records']:,} records) opened and folded in "
              f"{baseline['seconds']:.2f} s = {baseline['rate']:,.0f} records/s; a day of it "
              f"({day_events / 1e6:,.0f}M records) ~ {day_events / baseline['rate'] / 3600:.1f} h; "
              f"disk of a day ~ {day_events * bytes_written / max(1, head - first + 1) / 2**30:,.0f} GiB")
    if snaps:
        print(f"snapshots: {len(snaps)}, fold per snapshot median "
              f"{statistics.median(s['fold_s'] for s in snaps):.2f} s, write median "
              f"{statistics.median(s['write_s'] for s in snaps):.2f} s (max {max(s['write_s'] for s in snaps):.2f} s) "
              f"by a child process, this process's CPU per write median "
              f"{statistics.median(s['write_cpu_s'] for s in snaps) * 1000:.0f} ms")
    for label, lat, collected in (("written by a child process", busy, gcs),
                                  ("baseline, same run: written in this process", busy_here, gcs_here)):
        print(f"datapath pause (1 ms probe): idle p99 {sorted(idle)[int(len(idle) * .99)]:.2f} ms max "
              f"{max(idle):.2f} ms; during a snapshot of {calls_now:,} calls {label}: p99 "
              f"{sorted(lat)[int(len(lat) * .99)]:.2f} ms max {max(lat):.2f} ms ({len(lat)} wake-ups); "
              f"garbage collections meanwhile: {len(collected)}, longest {max(collected, default=0):.0f} ms")
    if compared:
        print_comparison(compared)
    print(f"wall time {time.perf_counter() - t0_wall:.0f} s")
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
