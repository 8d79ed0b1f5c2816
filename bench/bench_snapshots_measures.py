"""What bench/bench_snapshots.py measures besides the day itself: a restart
by a full fold (the baseline) and at a snapshot, the restart of one or more
trees' code in fresh processes, and how late a 1 ms thread wakes (the
datapath pause). Imported through bench_snapshots.py, which puts the
project on ``sys.path``."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway import domain
from journal.checkpoint import decode_state, open_at_snapshot
from journal.snapshot import read_snapshot
from journal.store import Journal


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
