"""gatewayd under yappi's CPU-time profiler, switched on and off by signals
(for bench_cost.py --yappi; not for production).

    python bench/profiled_gatewayd.py --node-file ... (gatewayd's arguments)

SIGUSR1 starts profiling every thread (CPU clock: time a thread spends
waiting is not counted); SIGUSR2 stops it and writes, per thread, the
functions by their own CPU time and by the CPU time under them to
``$COST_PROFILE_DIR/<node file stem>.txt``. yappi's hooks slow every call,
so the figures are shares, not costs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import yappi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _out_path() -> Path:
    stem = "gatewayd"
    if "--node-file" in sys.argv:
        stem = Path(sys.argv[sys.argv.index("--node-file") + 1]).stem
    return Path(os.environ.get("COST_PROFILE_DIR", "/tmp")) / f"{stem}.txt"


def _start(*_):
    yappi.set_clock_type("cpu")
    yappi.clear_stats()
    yappi.start(builtins=True, profile_threads=True)


def _stop(*_):
    yappi.stop()
    threads = {t.id: t.name for t in yappi.get_thread_stats()}
    with open(_out_path(), "w") as f:
        for tstat in sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot):
            f.write(f"== thread {tstat.name} ({tstat.tid}) cpu {tstat.ttot:.3f} s\n")
            stats = yappi.get_func_stats(filter={"ctx_id": tstat.id})
            f.write("-- own time\n")
            for s in sorted(stats, key=lambda s: -s.tsub)[:25]:
                f.write(f"   {s.tsub:8.3f} {s.ncall:8d} {s.full_name}\n")
            f.write("-- with callees\n")
            for s in sorted(stats, key=lambda s: -s.ttot)[:40]:
                f.write(f"   {s.ttot:8.3f} {s.ncall:8d} {s.full_name}\n")
    del threads


signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _stop)

from ops.gatewayd import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
