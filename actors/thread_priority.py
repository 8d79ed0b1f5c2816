"""A higher scheduling priority for the one thread whose lateness costs a role.

The HA transport thread sends the heartbeats that renew the active's lease
(gateway.ha): a node whose heartbeats stop for longer than the lease demotes
itself. Every thread of the node shares one GIL, and when the GIL is released
any waiting thread may take it: with the node's worker threads busy and other
processes on every core, the transport thread could wait for the GIL or a CPU
long enough to lose the lease of a healthy node. A real-time thread is woken
first when the GIL is handed over and preempts ordinary threads on its CPU, so
its waits stay in the milliseconds. It is safe here: that thread sleeps in
poll between heartbeats and batches, the kernel's real-time throttling
(sched_rt_runtime_us) bounds it anyway, and its priority stays below the
supervisor's (actors/fence.py, SCHED_FIFO 10), which must run even then.
"""

from __future__ import annotations

import os
import threading

TRANSPORT_FIFO_PRIORITY = 5
FALLBACK_NICE = -10
# The niceness of the node's ordinary threads (gatewayd --nice sets it): a
# thread leaving the real-time policy goes back to it, not to 0.
process_nice = 0


def raise_thread_priority(fifo: int = TRANSPORT_FIFO_PRIORITY, nice: int = FALLBACK_NICE) -> str:
    """Raise the calling thread's priority (Linux applies both calls to the
    calling thread only when given 0 / its thread id): SCHED_FIFO ``fifo``
    if permitted, else nice ``nice``, else nothing. Children forked from it
    get the ordinary policy back (SCHED_RESET_ON_FORK). Returns what was set."""
    reset = getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | reset, os.sched_param(fifo))
        return f"SCHED_FIFO {fifo}"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        return f"nice {nice}"
    except (OSError, AttributeError):
        return "default priority"


def ordinary_thread_priority() -> None:
    """Back to the ordinary policy for the calling thread. Linux threads
    inherit their creator's policy: the threads the transport thread starts
    (the applier that stores and folds, the role thread that takes over, the
    handover) would otherwise run real-time too, and their CPU-heavy work
    would preempt every ordinary thread of the box, among them, at times,
    the one holding the interpreter lock that the transport thread waits for."""
    if os.sched_getscheduler(0) & ~getattr(os, "SCHED_RESET_ON_FORK", 0) != os.SCHED_OTHER:
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except (OSError, AttributeError):
            pass
    # SCHED_RESET_ON_FORK also reset a negative niceness to 0 in the
    # threads the transport thread started: the role thread then ran at 0
    # among the box's CPU-bound work (seen in the lab waiting in a fork of
    # ip or tc during a takeover while the node's other threads waited),
    # and a thread at 0 that holds the interpreter lock stalls the node's
    # threads at -10 that wait for it.
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != process_nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), process_nice)
    except OSError:
        pass


def thread_policy() -> tuple[int, int]:
    """(policy, priority) of the calling thread, for tests and status."""
    return os.sched_getscheduler(0) & ~getattr(os, "SCHED_RESET_ON_FORK", 0), \
        os.sched_getparam(0).sched_priority
