"""A record per step against a record per event, on the real SIP ALG's calls.

    .venv/bin/python bench/bench_step_records.py [--calls 1500] [--rounds 3]

The call is bench/bench_snapshots.py's template (INVITE with SDP, 100, 180,
200 with SDP, ACK, two media refreshes, BYE, 200, the teardown timer), each
ALG step's events journaled as the writer does (``in_steps``: one record per
step and entity) and, as the baseline, one record per event (journals before
step records). Printed per call, both forms in the same run, alternating
round by round: records, bytes on disk, the journal's ``append_batch`` CPU
(one append per step, no fsync: what the writer thread spends besides the
disk), the replay of the journal (read, CRC, decode, fold) and the decode
alone, in CPU time of this thread.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE), str(HERE / "bench"), str(HERE / "tests")]

from bench_snapshots import template_steps  # noqa: E402
from gateway import domain  # noqa: E402
from gateway.events import decode, in_steps  # noqa: E402
from journal.replay import replay  # noqa: E402
from journal.store import Journal  # noqa: E402


def call_steps(i: int, steps: list[list]) -> list[list]:
    """The template's steps with a call's own key (its own streams), and its
    own pinhole and group ids (the ALG names them after the call's key)."""
    import dataclasses
    key = steps[0][0].key
    new = f"{i:x}-{key}"
    mark = key + "#"

    def own(e):
        if getattr(e, "key", None) != key:
            return e
        ids = {f.name: new + v[len(key):] for f in dataclasses.fields(e)
               for v in (getattr(e, f.name),) if type(v) is str and v.startswith(mark)}
        return dataclasses.replace(e, key=new, **ids)
    return [[own(e) for e in s] for s in steps]


def measure(per_event: bool, calls: int, steps: list[list], work: Path) -> dict:
    path = work / ("events" if per_event else "steps")
    shutil.rmtree(path, ignore_errors=True)
    all_steps = [call_steps(i, steps) for i in range(calls)]
    with Journal.open(path, fsync=False) as j:
        t0 = time.thread_time()
        for c in all_steps:
            for s in c:
                evs = s if per_event else in_steps(s)
                if evs:
                    j.append_batch([(e, 1000.0) for e in evs], 1)
        append_s = time.thread_time() - t0
        records = j.head
        rows = [(r.type, r.schema, r.payload, r.stream) for r in j.read(1)]
    size = sum(p.stat().st_size for p in path.glob("*.seg"))
    t0 = time.thread_time()
    for t, sc, p, s in rows:
        decode(t, sc, p, s)
    decode_s = time.thread_time() - t0
    t0 = time.thread_time()
    _state, last = replay(path, domain.apply, domain.EMPTY)
    replay_s = time.thread_time() - t0
    assert last == records
    return {"records": records / calls, "bytes": size / calls, "append_us": append_s / calls * 1e6,
            "decode_us": decode_s / calls * 1e6, "replay_us": replay_s / calls * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    steps = [events for _part, events in template_steps()]
    events = sum(len(s) for s in steps)
    work = Path(tempfile.mkdtemp(prefix="bench-steps-"))
    best: dict[str, dict] = {}
    try:
        for r in range(a.rounds):
            for name in (("events", "steps") if r % 2 == 0 else ("steps", "events")):
                m = measure(name == "events", a.calls, steps, work)
                print(f"round {r} {name:6}: {m['records']:.0f} records/call, {m['bytes']:,.0f} B/call, "
                      f"append {m['append_us']:.0f} us/call, decode {m['decode_us']:.0f} us/call, "
                      f"replay {m['replay_us']:.0f} us/call", flush=True)
                b = best.setdefault(name, dict(m))
                for k in ("append_us", "decode_us", "replay_us"):
                    b[k] = min(b[k], m[k])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    e, s = best["events"], best["steps"]
    print(f"{a.calls} calls, {events} events per call; best of {a.rounds} (CPU time)")
    for k, label in (("records", "records/call"), ("bytes", "journal B/call"), ("append_us", "append us/call"),
                     ("decode_us", "decode us/call"), ("replay_us", "replay us/call")):
        print(f"  {label:15} per event {e[k]:>8,.0f}   per step {s[k]:>8,.0f}   ratio {s[k] / e[k]:.2f}")


if __name__ == "__main__":
    main()
