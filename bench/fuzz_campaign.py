"""A fuzz campaign of one input reader (not run by pytest: each reader's
Hypothesis test in tests/ runs a bounded share of the same rule in CI).

    nice -n 19 .venv/bin/python bench/fuzz_campaign.py --target ras --count 1000000 \\
        --seed 1 --out /tmp/fuzz-ras

Targets (bench/fuzz_targets.py): ras, q931, h225, h245, tpkt, config, packet,
capture, journal-record, journal-segment, replication. Inputs are seeds
mutated by the shared engine (tests/fuzz_mutations.py). The rule: every
input is read, or raises the target's own error class, within
``--bound-ms`` of CPU and bounded memory. A finding is

* ``raise``: any other exception (MemoryError included: the address space
  is capped at ``--address-space-mb`` so a blow-up shows as one),
* ``slow``: over the bound -- measured again, the least of three runs, so
  a garbage collection or another process's burst is not counted,
* ``stall``: over ``--stall-s`` of CPU (a SIGPROF timer stops it),
* ``memory``: a sampled input (one in ``--memory-every``, and every one
  over a fifth of the time bound) whose tracemalloc peak is over
  ``--memory-mb``.

Each finding's input is written to ``--out`` (``<target>-<kind>-<n>.bin``,
with a ``.txt`` saying why), and so is the slowest input. The totals
(inputs, CPU seconds, slowest input, findings) are printed at the end, also
when interrupted (SIGINT, SIGTERM), and written to ``--out``/summary-<target>-<seed>.json
as the campaign goes. ``--replay FILE...`` runs saved inputs instead.
Exit status: 0 without findings, 1 with.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import resource
import signal
import sys
import time
import tracemalloc
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_targets import TARGETS, Target  # noqa: E402


class Stalled(BaseException):
    """Raised by the SIGPROF timer inside a read that ran too long (a
    BaseException so that a reader's ``except Exception`` cannot swallow it)."""


class Stop(BaseException):
    """SIGTERM: stop and report, as for SIGINT."""


def _on_prof(*_):
    raise Stalled()


def _on_term(*_):
    raise Stop()


def _cpu_once(target: Target, data: bytes) -> tuple[float, BaseException | None]:
    """(CPU seconds, the unexpected exception or None) of one read."""
    t0 = time.process_time()
    try:
        target.read(data)
    except target.expected:
        pass
    except Exception as exc:  # noqa: BLE001 -- the finding
        return time.process_time() - t0, exc
    return time.process_time() - t0, None


def _peak(target: Target, data: bytes) -> int:
    tracemalloc.start()
    try:
        try:
            target.read(data)
        except Exception:  # noqa: BLE001 -- judged by the timed run
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class Campaign:
    def __init__(self, target: Target, args) -> None:
        self.t = target
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.bound = args.bound_ms / 1000.0
        self.memory = args.memory_mb * 1024 * 1024
        self.inputs = 0
        self.refused = 0
        self.accepted = 0
        self.cpu = 0.0                     # CPU seconds inside reads
        self.slowest = (0.0, 0)            # (seconds, length)
        self.retried = 0                   # over the bound once, not when run again
        self.peak = (0, 0)                 # (bytes, length) of the sampled peaks
        self.findings: dict[str, int] = {}
        self.bytes = 0
        self.started = time.monotonic()
        self.cpu_started = time.process_time()

    def finding(self, kind: str, data: bytes, why: str) -> None:
        self.findings[kind] = self.findings.get(kind, 0) + 1
        n = sum(self.findings.values())
        stem = f"{self.t.name}-{kind}-{self.args.seed}-{n}"
        if n <= self.args.keep:
            (self.out / f"{stem}.bin").write_bytes(data)
            (self.out / f"{stem}.txt").write_text(why)
        print(f"FINDING {self.t.name} {kind} ({len(data)} octets): {why.strip().splitlines()[-1]}",
              flush=True)

    def one(self, data: bytes) -> None:
        t = self.t
        self.inputs += 1
        self.bytes += len(data)
        signal.setitimer(signal.ITIMER_PROF, self.args.stall_s)
        t0 = time.process_time()
        try:
            t.read(data)
            self.accepted += 1
        except t.expected:
            self.refused += 1
        except Stalled:
            self.finding("stall", data, f"stopped after {self.args.stall_s} s of CPU")
            return
        except Exception:  # noqa: BLE001 -- the finding
            spent = time.process_time() - t0
            signal.setitimer(signal.ITIMER_PROF, 0)
            self.cpu += spent
            self.finding("raise", data, traceback.format_exc())
            return
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        spent = time.process_time() - t0
        self.cpu += spent
        if spent > self.bound:
            # Again, with collections off: a slow input is slow every time.
            gc_was = gc.isenabled()
            gc.disable()
            try:
                spent = min(spent, *(_cpu_once(t, data)[0] for _ in range(2)))
            finally:
                if gc_was:
                    gc.enable()
            if spent > self.bound:
                self.finding("slow", data, f"{spent * 1000:.1f} ms CPU (least of three runs)")
            else:
                self.retried += 1
        if spent > self.slowest[0]:
            self.slowest = (spent, len(data))
            (self.out / f"{t.name}-slowest-{self.args.seed}.bin").write_bytes(data)
        # Memory: a sample, and every input over a fifth of the time bound
        # (allocating costs time: a blow-up is among the slower inputs).
        if self.inputs % self.args.memory_every == 0 or spent > self.bound / 5:
            peak = _peak(t, data)
            if peak > self.peak[0]:
                self.peak = (peak, len(data))
            if peak > self.memory:
                self.finding("memory", data, f"tracemalloc peak {peak / 1e6:.1f} MB")

    def summary(self, interrupted: str | None) -> dict:
        return {
            "target": self.t.name, "seed": self.args.seed, "inputs": self.inputs,
            "refused": self.refused, "accepted": self.accepted,
            "mean_octets": round(self.bytes / self.inputs, 1) if self.inputs else 0,
            "cpu_s_in_reads": round(self.cpu, 1),
            "cpu_s_process": round(time.process_time() - self.cpu_started, 1),
            "wall_s": round(time.monotonic() - self.started, 1),
            "slowest_ms": round(self.slowest[0] * 1000, 2), "slowest_octets": self.slowest[1],
            "over_bound_once_not_again": self.retried,
            "largest_sampled_peak_kb": round(self.peak[0] / 1024), "largest_peak_octets": self.peak[1],
            "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "findings": dict(self.findings), "failures": sum(self.findings.values()),
            "interrupted": interrupted,
        }

    def save(self, interrupted: str | None = None) -> dict:
        s = self.summary(interrupted)
        (self.out / f"summary-{self.t.name}-{self.args.seed}.json").write_text(json.dumps(s, indent=1))
        return s


def run(args) -> int:
    target = TARGETS[args.target].load()
    # The readers log what they refuse (a damaged journal tail, say): a
    # million such lines are not findings.
    logging.disable(logging.CRITICAL)
    if args.address_space_mb:
        resource.setrlimit(resource.RLIMIT_AS, (args.address_space_mb << 20, args.address_space_mb << 20))
    signal.signal(signal.SIGPROF, _on_prof)
    signal.signal(signal.SIGTERM, _on_term)
    # Also when started in the background, where the shell left SIGINT
    # ignored (and Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    c = Campaign(target, args)
    if args.replay:
        for name in args.replay:
            data = Path(name).read_bytes()
            before = dict(c.findings)
            c.one(data)
            print(f"{name}: {'finding' if c.findings != before else 'ok'} "
                  f"({c.slowest[0] * 1000:.2f} ms slowest so far)")
        s = c.save()
        print(json.dumps(s, indent=1))
        return 1 if s["failures"] else 0
    rng = random.Random(args.seed)
    seeds = target.seeds
    assert seeds, f"no seeds for {target.name}"
    interrupted = None
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while c.inputs < args.count:
            # The seeds as they are first (each must be read), then mutations.
            i = c.inputs
            c.one(seeds[i] if i < len(seeds) else target.mutator(rng, rng.choice(seeds)))
            if c.inputs % 10000 == 0:
                c.save("running")
                if deadline and time.monotonic() > deadline:
                    interrupted = "time limit"
                    break
    except KeyboardInterrupt:
        interrupted = "SIGINT"
    except Stop:
        interrupted = "SIGTERM"
    signal.setitimer(signal.ITIMER_PROF, 0)
    s = c.save(interrupted)
    print(json.dumps(s, indent=1), flush=True)
    return 1 if s["failures"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, choices=sorted(TARGETS))
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/tmp/fuzz-campaign")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (wall) even if short of --count")
    ap.add_argument("--bound-ms", type=float, default=50.0)
    ap.add_argument("--stall-s", type=float, default=2.0)
    ap.add_argument("--memory-mb", type=float, default=8.0)
    ap.add_argument("--memory-every", type=int, default=1000)
    ap.add_argument("--address-space-mb", type=int, default=2048, help="0: not capped")
    ap.add_argument("--keep", type=int, default=200, help="write at most this many findings' inputs")
    ap.add_argument("--replay", nargs="*", help="run these saved inputs instead of mutations")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
