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
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway import domain  # noqa: E402
from gateway.nodefile import RetentionSettings, _duration, _size  # noqa: E402
from journal.checkpoint import SnapshotTaker, disk_usage, retention_pass  # noqa: E402
from journal.replay import snapshot_dir  # noqa: E402
from journal.snapshot import list_snapshots, remove_snapshots  # noqa: E402
from journal.store import Journal  # noqa: E402

from bench_snapshots_calls import (CallFactory, append_overlapping_calls, append_rows,  # noqa: E402,F401
                                   template_call, template_steps)
from bench_snapshots_measures import (compare_restarts, disk_bytes, fresh_restart, gil_lateness,  # noqa: E402
                                      measure_full_restart, measure_snapshot_restart, print_comparison)


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
    # As gatewayd runs (ops/node_gc.py tune_gc: thresholds, what exists frozen).
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
