"""Actor runtime benchmark: pooled actors beside pykka.ThreadingActor.

    .venv/bin/python bench/bench_actors.py [--threads 2] [--messages 200000]

For each runtime and population it reports:
  * memory per live actor (tracemalloc: Python allocations; RSS delta too,
    which is where a thread's stack shows up),
  * tell throughput: one producer thread tells `--messages` messages round-robin
    over the population; timed until the last one has been handled,
  * ask round trips per second: sequential blocking asks from the main thread.
ThreadingActor is measured at 1 and 1,000 actors only (a thread each).
Targets (ARCHITECTURE.md "Actor runtime"): >= 50,000 live pooled actors and
>= 200,000 tell messages/s.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import gc
import itertools
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pykka

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.runtime import DispatcherPool, PooledActor  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Countdown:
    """Shared by the actors of one run: set when the last message is handled."""

    def __init__(self, total: int) -> None:
        self.counter = itertools.count(1)
        self.total = total
        self.done = threading.Event()


def make_classes(pool: DispatcherPool):
    def on_receive(self, message):
        if message == "ping":
            return "pong"
        if next(self.countdown.counter) == self.countdown.total:
            self.countdown.done.set()
        return None

    def init(self, countdown):
        self.__class__.__mro__[1].__init__(self)
        self.countdown = countdown

    pooled = type("PooledBench", (PooledActor,), {"__init__": init, "on_receive": on_receive})
    pooled.pool = pool
    threaded = type("ThreadedBench", (pykka.ThreadingActor,),
                    {"__init__": init, "on_receive": on_receive, "use_daemon_thread": True})
    return pooled, threaded


def run(cls, population: int, messages: int, asks: int) -> dict:
    gc.collect()
    countdown = Countdown(messages)
    rss0 = rss_kib()
    tracemalloc.start()
    t0 = time.perf_counter()
    refs = [cls.start(countdown) for _ in range(population)]
    # Every actor has run on_start and is ready.
    for ref in refs[-1:]:
        ref.ask("ping", timeout=60)
    started = time.perf_counter() - t0
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = rss_kib()

    t0 = time.perf_counter()
    n = len(refs)
    for i in range(messages):
        refs[i % n].tell(i)
    sent = time.perf_counter() - t0
    if not countdown.done.wait(120):
        raise RuntimeError("messages were lost")
    tell_elapsed = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(asks):
        refs[i % n].ask("ping")
    ask_elapsed = time.perf_counter() - t0
    threads = threading.active_count()

    t0 = time.perf_counter()
    stops = [ref.stop(block=False) for ref in refs]
    for f in stops:
        f.get(timeout=120)
    stopped = time.perf_counter() - t0
    return {
        "runtime": cls.__name__,
        "actors": population,
        "bytes_per_actor": traced / population,
        "rss_kib_per_actor": (rss1 - rss0) / population,
        "start_us": started / population * 1e6,
        "tell_msgs_s": messages / tell_elapsed,
        "send_msgs_s": messages / sent,
        "ask_rt_s": asks / ask_elapsed,
        "threads": threads,
        "stop_s": stopped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="dispatcher threads")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--asks", type=int, default=5_000)
    args = parser.parse_args()

    pool = DispatcherPool(threads=args.threads)
    pooled, threaded = make_classes(pool)
    results = []
    for population in (1, 1_000, 50_000):
        results.append(run(pooled, population, args.messages, args.asks))
    for population in (1, 1_000):
        results.append(run(threaded, population, args.messages // 2, args.asks))
    pool.shutdown()

    header = (f"{'runtime':<14}{'actors':>8}{'B/actor':>10}{'RSS KiB/a':>11}{'start us':>10}"
              f"{'tell msg/s':>12}{'send msg/s':>12}{'ask rt/s':>10}{'threads':>9}")
    print(f"python {sys.version.split()[0]}, pykka {importlib.metadata.version('pykka')}, "
          f"dispatcher threads {args.threads}")
    print(header)
    for r in results:
        print(f"{r['runtime']:<14}{r['actors']:>8}{r['bytes_per_actor']:>10.0f}"
              f"{r['rss_kib_per_actor']:>11.2f}{r['start_us']:>10.1f}{r['tell_msgs_s']:>12.0f}"
              f"{r['send_msgs_s']:>12.0f}{r['ask_rt_s']:>10.0f}{r['threads']:>9}")
    by = {(r["runtime"], r["actors"]): r for r in results}
    print("\npooled / threading")
    for population in (1, 1_000):
        p, t = by[("PooledBench", population)], by[("ThreadedBench", population)]
        print(f"  {population:>6} actors: tell x{p['tell_msgs_s'] / t['tell_msgs_s']:.2f}, "
              f"ask x{p['ask_rt_s'] / t['ask_rt_s']:.2f}, "
              f"memory x{p['bytes_per_actor'] / t['bytes_per_actor']:.2f} (tracemalloc), "
              f"RSS x{(p['rss_kib_per_actor'] or 1e-9) / (t['rss_kib_per_actor'] or 1e-9):.2f}")
    big = by[("PooledBench", 50_000)]
    print(f"\ntargets: 50,000 live pooled actors held on {big['threads']} threads "
          f"({big['bytes_per_actor']:.0f} B each); tell throughput "
          f"{big['tell_msgs_s']:.0f} msg/s at 50,000 actors "
          f"({'meets' if big['tell_msgs_s'] >= 200_000 else 'BELOW'} 200,000)")


if __name__ == "__main__":
    main()
