"""Sync replication's completion latency: a step's submit to its completion
through a pair on loopback (CURVE, fsync on both journals), one step at a
time, as a held SIP message meets it.

    .venv/bin/python bench/bench_sync_submit.py [--submits 600] [--rounds 3]
        [--compare-with TREE]

Both nodes run in one process (the test suite's harness pair,
tests/test_replication_harness.py: the node's JournalWriter, Replicator and
Journal, a SIP call's events per submit), 2 ms between submits so each one
meets an idle pair; the first 50 of each round are left out. With
``--compare-with`` another checkout (e.g. the code before a change) is
measured by its own code in a fresh process, the two trees alternating round
by round so both see the same machine; the ratios are this tree's over
TREE's. What it shows: how long sync mode holds a message for its events to
be durable on both nodes (the node's own fsync and the standby's round trip).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def measure(tree: Path, submits: int) -> dict:
    """One round in this process, with ``tree``'s code (already on sys.path)."""
    from test_replication_harness import Pair, call_events, wait_for
    with tempfile.TemporaryDirectory() as d:
        pair = Pair(Path(d))
        try:
            a = pair.node("a", role="active", epoch=1, hb_threshold=20).start()
            b = pair.node("b", hb_threshold=20).start()
            if not wait_for(lambda: a.repl.has_standby(), timeout=10):
                raise SystemExit("the standby did not connect")
            lat = []
            for i in range(submits):
                done = threading.Event()
                t0 = time.perf_counter()
                a.writer.submit(call_events(i), lambda _r: done.set())
                if not done.wait(5):
                    raise SystemExit(f"submit {i} did not complete within 5 s")
                lat.append((time.perf_counter() - t0) * 1e6)
                time.sleep(0.002)
            lapses = a.writer.ack_lapses
            stored = b.journal.head
        finally:
            pair.close()
    lat = sorted(lat[50:])
    return {"p50": lat[len(lat) // 2], "p90": lat[int(len(lat) * 0.9)],
            "p99": lat[int(len(lat) * 0.99)], "lapses": lapses, "stored": stored}


def round_in(tree: Path, submits: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(tree), "--submits", str(submits)],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submits", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare-with", type=Path, metavar="TREE")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        sys.path[:0] = [str(args.one), str(args.one / "tests")]
        print(json.dumps(measure(args.one, args.submits)))
        return
    trees = [("this", HERE)] + ([("base", args.compare_with.resolve())] if args.compare_with else [])
    got: dict[str, list[dict]] = {name: [] for name, _ in trees}
    print(f"sync submit -> completion, {args.submits} submits a round (first 50 left out), "
          f"load average {os.getloadavg()}")
    for r in range(args.rounds):
        for name, tree in (trees if r % 2 == 0 else trees[::-1]):
            m = round_in(tree, args.submits)
            got[name].append(m)
            print(f"round {r} {name}: p50 {m['p50']:7.0f} us  p90 {m['p90']:7.0f}  p99 {m['p99']:7.0f}  "
                  f"lapses {m['lapses']}", flush=True)
    means = {name: {k: sum(m[k] for m in ms) / len(ms) for k in ("p50", "p90", "p99")}
             for name, ms in got.items()}
    for name, m in means.items():
        print(f"  {name}: mean of rounds p50 {m['p50']:.0f} us, p90 {m['p90']:.0f}, p99 {m['p99']:.0f}")
    if "base" in means:
        t, b = means["this"], means["base"]
        print("  ratio this/base: " + ", ".join(f"{k} {t[k] / b[k]:.2f}x" for k in ("p50", "p90", "p99")))


if __name__ == "__main__":
    main()
