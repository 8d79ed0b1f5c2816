"""The same SIP ALG step, back to back and spaced as a node meets it.

A node at 100 calls/s (7 SIP messages a call through the active) runs one ALG
step every ~1.4 ms and sleeps between them; other threads and processes (the
journal writer, the replication thread, the standby, the phones) run in the
gaps. This script measures what the gap alone does to the CPU time of one
step: the thread's CPU time (``time.thread_time_ns``) around
``gateway.sip.alg.step`` on an INVITE with SDP (a new call: bindings, a port
pair, pinholes), the same step with the message parsed beforehand (the ALG's
own work), the parser alone, and a small pure-Python loop of fixed work as
the baseline, each run with the thread sleeping ``gap`` between runs. The
gaps are the message intervals of a node at 300, 100 and 50 calls/s, and
10 ms. Gap settings alternate in rounds so drift hits them alike.

The ratios to the back-to-back figure (gap 0) in the same run are what to
compare; absolute microseconds move with the machine and its load.

Run: .venv/bin/python bench/bench_cold_step.py [--rounds N] [--seconds S]"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sip_alg import INVITE, OUT, _parsed_once  # noqa: E402 - the ALG bench's message and context

from gateway.sip import parse_message  # noqa: E402
from gateway.sip.alg import EMPTY, step  # noqa: E402

MESSAGES_PER_CALL = 7          # INVITE, 100, 180, 200, ACK, BYE, 200 through the active
NOW = 1000.0


def _step() -> None:
    step(EMPTY, OUT, INVITE, NOW)


def _step_parsed() -> None:
    step(EMPTY, OUT, INVITE, NOW)       # run inside _parsed_once(INVITE): the parse is done


def _parse() -> None:
    parse_message(INVITE)


def _loop() -> None:
    d = {}
    for i in range(300):
        d[i] = str(i) * 2
    sum(len(v) for v in d.values())


CASES = (("ALG step (parse + decide + rewrite)", _step), ("ALG step, message parsed before", _step_parsed),
         ("parse alone", _parse), ("baseline: a pure-Python loop", _loop))


def gaps() -> list[tuple[str, float]]:
    out = [("back to back", 0.0)]
    for rate in (300, 100, 50):
        out.append((f"{rate} calls/s", 1.0 / (rate * MESSAGES_PER_CALL)))
    out.append(("10 ms", 0.010))
    return out


def measure(fn, gap: float, seconds: float) -> list[float]:
    """CPU microseconds of each run of ``fn``, sleeping ``gap`` between runs,
    for about ``seconds`` of wall time (at least 50 runs)."""
    out: list[float] = []
    clock, cpu = time.perf_counter, time.thread_time_ns
    end = clock() + seconds
    while clock() < end or len(out) < 50:
        t0 = cpu()
        fn()
        out.append((cpu() - t0) / 1000)
        if gap:
            time.sleep(gap)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints, per case and gap, the median CPU us of one run and "
                                        "its ratio to the same case back to back.")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over every gap (default 3)")
    ap.add_argument("--seconds", type=float, default=1.0,
                    help="seconds per case, gap and round (default 1)")
    args = ap.parse_args()
    for _name, fn in CASES:
        with (_parsed_once(INVITE) if fn is _step_parsed else nullcontext()):
            for _ in range(2000):        # warm: the adaptive interpreter's specialisations
                fn()
    samples: dict[tuple[str, str], list[float]] = {}
    for _r in range(args.rounds):
        for gname, gap in gaps():
            for cname, fn in CASES:
                with (_parsed_once(INVITE) if fn is _step_parsed else nullcontext()):
                    samples.setdefault((cname, gname), []).extend(measure(fn, gap, args.seconds))
    print(f"CPU us per run (median of {args.rounds} rounds x {args.seconds:g} s), "
          f"ratio to back to back in this run:")
    names = [g for g, _ in gaps()]
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for cname, _fn in CASES:
        base = statistics.median(samples[cname, names[0]])
        cells = []
        for g in names:
            m = statistics.median(samples[cname, g])
            cells.append(f"{m:.1f}" if g == names[0] else f"{m:.1f} ({m / base:.2f}x)")
        print(f"| {cname} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
