"""bench/bench_cost.py's readings of /proc: a thread's CPU and wake-ups are
found under its kernel name, and grow with what the thread does."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from actors.thread_names import name_native_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
try:
    import bench_cost as bc
finally:
    sys.path.pop(0)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")


def _named(name: str, work, stop: threading.Event) -> threading.Thread:
    def run():
        name_native_thread(name)
        while not stop.is_set():
            work()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cpu_and_wake_ups_are_charged_to_the_named_thread():
    pid = os.getpid()
    stop = threading.Event()
    spin = _named("cost-spin", lambda: sum(range(10_000)), stop)
    nap = _named("cost-nap", lambda: time.sleep(0.001), stop)
    try:
        # Each thread names itself once it runs: before that its time is
        # counted under another name, and a first sample taken then would
        # charge the spinning thread's whole life to the window.
        named = time.monotonic() + 10
        while not {"cost-spin", "cost-nap"} <= set(bc.thread_cpu(pid)) and time.monotonic() < named:
            time.sleep(0.01)
        a = bc.Sample({"me": pid})
        # CPU time is counted in clock ticks (10 ms): long enough for a few.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.1)
            b = bc.Sample({"me": pid})
            d = bc.diff(a, b)
            if d["threads"]["me"].get("cost-spin", 0) >= 0.05 and \
                    d["switches"]["me"].get("cost-nap", 0) >= 20:
                break
    finally:
        stop.set()
        spin.join(5)
        nap.join(5)
    assert d["threads"]["me"]["cost-spin"] >= 0.05
    assert d["switches"]["me"]["cost-nap"] >= 20
    # The process total holds every thread's time (exited ones included);
    # a sample reads the process before its threads, and the spinning thread
    # runs on meanwhile (longer on a loaded box): a process figure reading only one
    # thread would hold next to nothing of the spinning one's time. The kernel
    # scales the process's and each thread's tick samples separately
    # (cputime_adjust), so on a busy box the two differ by more than the reads'
    # gap (0.20 s against 0.48 s seen beside a test run): the bound is loose.
    assert d["procs"]["me"] >= 0.2 * d["threads"]["me"]["cost-spin"]
    # /proc/stat counts the machine in ticks, the process's own figure
    # differently: on this kind of VM they part by tens of ms either way;
    # the machine's figure must still hold most of the process's.
    assert d["machine"] >= 0.5 * d["procs"]["me"]
