"""Test-only stall injection: hold the GIL for a while, as a long garbage
collection does (ops/gatewayd.py, "A collection holds the GIL").

Every thread of the node then stands still: the NFQUEUE worker and the
replication thread wake in C (a packet, a socket) and wait for the GIL, so no
packet is forwarded, no heartbeat is sent and no lease renewed, while the
fence supervisor, a separate process, still runs (actors/fence.py). Served
only by a gatewayd started with --debug-commands (``gwctl debug stall``)."""

from __future__ import annotations

import sys
import threading
import time

MAX_STALL = 30.0


def hold_gil(seconds: float, clock=time.perf_counter) -> float:
    """Spin for ``seconds`` without letting another thread run. The switch
    interval is what makes a running thread hand the GIL to a waiting one;
    raised above the stall, the spinning thread keeps it throughout (each
    turn of the loop is bytecode plus one C call that never releases it).
    Returns the time spun."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds + 1.0)
    try:
        t0 = clock()
        end = t0 + seconds
        while clock() < end:
            pass
        return clock() - t0
    finally:
        sys.setswitchinterval(old)


def stall_soon(seconds: float, delay: float = 0.05) -> None:
    """Start the stall on a thread of its own after ``delay`` (time for the
    control reply to leave)."""
    if not 0 < seconds <= MAX_STALL:
        raise ValueError(f"stall of {seconds} s: give 0 < seconds <= {MAX_STALL:.0f}")

    def run() -> None:
        time.sleep(delay)
        hold_gil(seconds)
    threading.Thread(target=run, name="debug-stall", daemon=True).start()
