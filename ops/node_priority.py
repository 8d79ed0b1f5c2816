"""The niceness of a node's threads and of its session's autogroup: a thread
holding the interpreter lock must not wait long for a CPU while the heartbeat
thread waits for that lock."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("gatewayd")


# Every thread of the node shares one interpreter lock. A thread that holds it
# in a long C-level step (a collection, a large decode) and is then preempted
# by other processes keeps it until it gets a CPU again; meanwhile the HA
# transport thread, real-time as it is (actors/thread_priority.py), cannot
# run Python, and a heartbeat that comes later than the lease ends the
# node's role. With every other runnable process at nice 0, nice -10 gives the
# node's threads about nine times their CPU weight, so the holder is back on
# a CPU within a scheduler slice.
DEFAULT_NICE = -10
AUTOGROUP = "/proc/self/autogroup"


def _renice(nice: int, autogroup: str = AUTOGROUP) -> None:
    if nice == 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        from actors import thread_priority
        thread_priority.process_nice = nice
    except OSError as exc:
        log.warning("gatewayd: cannot set niceness %d (%s); running at %d", nice, exc.strerror,
                    os.getpriority(os.PRIO_PROCESS, 0))
    # With autogroup scheduling (kernel.sched_autogroup_enabled, on by
    # default in Debian's kernels) the CPU is shared between sessions first
    # and a niceness counts only inside its own session: gatewayd, in a
    # session of its own (a service, the lab), got one session's share
    # beside another session's CPU-bound jobs whatever its niceness
    # (sched(7), "The autogroup feature").
    # The session's own niceness is what weighs against other sessions.
    try:
        with open(autogroup, "w") as f:
            f.write(str(nice))
    except FileNotFoundError:
        pass                          # a kernel without autogroups: the niceness above is enough
    except OSError as exc:
        log.warning("gatewayd: cannot set the niceness of its session's autogroup to %d (%s)",
                    nice, exc.strerror)
