"""The standby's apply and the journal's replay, in events/s, on real SIP calls.

    .venv/bin/python bench/bench_standby_apply.py [--calls 3000] [--batch 64]
        [--rounds 3] [--compare-with TREE | --compare-forms] [--profile FILE]

The journal is overlapping calls of the real SIP ALG's events (INVITE with
SDP, 100, 180, 200 with SDP, ACK, media reports, BYE, 200, the teardown
timer; bench/bench_snapshots.py's generator), so the standby opens and ends
calls, entities and pinholes as it does behind a loaded active.

Standby apply: a standby node (``Node.start(role="standby")``) is given the
journal's frames in batches of ``--batch`` the way the replicator's applier
does (``journal.append_frames`` then ``Node.on_records``); only
``on_records`` is timed, in CPU time of the thread that runs it (on a
shared machine wall time mostly measures the other processes; the issue's
measure is CPU per call anyway): the fold under the state lock, the entities'
mirroring, the datapath's following). Replay: ``journal.replay.replay`` of
the whole journal with the domain's ``apply``, in CPU time too.

With ``--compare-with TREE`` (another checkout, e.g. the code before a
change) each figure is measured by each tree's code in fresh processes, the
trees alternating round by round so both see the same machine load; the
ratios are this tree's over TREE's (the journal then a record per event,
which both can read). With ``--compare-forms`` this tree's code is measured
on the same calls journaled a record per step and a record per event. The
load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

# Run in a fresh process with PYTHONPATH at a tree: the figures of that tree's code.
_MEASURE = r"""
import json, sys, time
src, work, batch, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from actors.node import Node
from gateway import domain
from gateway.config.model import Config
from journal.replay import replay
from journal.store import Journal

class Clock:
    t = 1000.0
    def __call__(self):
        return self.t

with Journal.open(src, fsync=False) as j:
    head = j.head
    batches = [j.read_frames(s, batch) for s in range(1, head + 1, batch)]
cfg = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())
node = Node("gw-b", cfg, work, clock=Clock(), fsync=False, timer_thread=False)
prof = None
if profile:
    import cProfile
    prof = cProfile.Profile()
try:
    node.start(role="standby")
    spent = 0.0
    for frames in batches:
        records = node.journal.append_frames(frames)
        t0 = time.thread_time()
        if prof is not None:
            prof.enable()
        node.on_records(records)
        if prof is not None:
            prof.disable()
        spent += time.thread_time() - t0
    calls = len(node.sip.calls)
    entities = node.directory.count("entity")
    shown = len(node.show("calls"))
finally:
    node.stop()
if prof is not None:
    prof.dump_stats(profile)
t0 = time.thread_time()
state, last = replay(src, domain.apply, domain.EMPTY)
replay_s = time.thread_time() - t0
assert last == head, (last, head)
assert state == node.state, (len(state.sip.calls), calls)
print(json.dumps({"records": head, "apply_s": spent, "replay_s": replay_s, "live_calls": calls,
                  "entities": entities, "shown": shown}))
"""


def write_journal(path: Path, calls: int, per_event: bool = False) -> tuple[int, int]:
    """A journal of ``calls`` overlapping real SIP calls
    (bench_snapshots.append_overlapping_calls), a record per step (or per
    event); its (records, events)."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE / "bench"))
    sys.path.insert(0, str(HERE / "tests"))
    from bench_snapshots import append_overlapping_calls
    from journal.store import Journal
    with Journal.open(path, fsync=False) as j:
        append_overlapping_calls(j, calls, per_event=per_event)
        return j.head, sum(len(r.events()) for r in j.read(1))


def measure(tree: Path, src: Path, batch: int, profile: str = "") -> dict:
    work = Path(tempfile.mkdtemp(prefix="standby-apply-"))
    try:
        env = dict(os.environ, PYTHONPATH=str(tree))
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(src), str(work / "node"), str(batch), profile],
                             env=env, cwd=str(tree), capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{tree}: the measurement failed:\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64, help="records per on_records (a replication batch)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare-with", type=Path, default=None, help="another tree: the baseline")
    ap.add_argument("--compare-forms", action="store_true",
                    help="this tree's code on the same calls journaled a record per event (the "
                         "baseline, as before step records) and a record per step")
    ap.add_argument("--profile", default="", help="cProfile of this tree's on_records, written here")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="standby-apply-src-"))
    try:
        n, events = write_journal(tmp / "j", a.calls, per_event=a.compare_with is not None)
        print(f"journal: {a.calls} calls, {n} records, {events} events; batches of {a.batch} records; "
              f"load average {os.getloadavg()}")
        trees = [("this", HERE, tmp / "j")]
        if a.compare_with:
            trees.append(("base", a.compare_with.resolve(), tmp / "j"))
        if a.compare_forms:
            n_ev, _ = write_journal(tmp / "jev", a.calls, per_event=True)
            print(f"baseline journal: a record per event, {n_ev} records")
            trees.append(("base", HERE, tmp / "jev"))
        best: dict[str, dict] = {}
        for r in range(a.rounds):
            for name, tree, src in (trees if r % 2 == 0 else trees[::-1]):
                m = measure(tree, src, a.batch, a.profile if (name == "this" and r == 0) else "")
                m["events"] = events
                print(f"round {r} {name:4}: apply {m['events'] / m['apply_s']:>9,.0f} ev/s  "
                      f"replay {m['events'] / m['replay_s']:>9,.0f} ev/s  live calls {m['live_calls']} "
                      f"entities {m['entities']} shown {m['shown']}", flush=True)
                b = best.setdefault(name, m)
                b["apply_s"] = min(b["apply_s"], m["apply_s"])
                b["replay_s"] = min(b["replay_s"], m["replay_s"])
        print(f"best of {a.rounds}; load average after {os.getloadavg()}")
        for name, m in best.items():
            print(f"  {name:4}: standby apply {m['events'] / m['apply_s']:,.0f} events/s of CPU "
                  f"({m['apply_s'] / m['events'] * 1e6:.1f} us/event), "
                  f"replay {m['events'] / m['replay_s']:,.0f} events/s")
        if "base" in best:
            t, b = best["this"], best["base"]
            if (t["live_calls"], t["entities"], t["shown"]) != (b["live_calls"], b["entities"], b["shown"]):
                print("  WARNING: the trees' standbys differ", t, b)
            print(f"  ratio this/base: standby apply {b['apply_s'] / t['apply_s']:.2f}x, "
                  f"replay {b['replay_s'] / t['replay_s']:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
