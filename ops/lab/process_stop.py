"""Stopping a lab's processes: SIGTERM, a bounded wait, SIGKILL, a bounded wait
again, and a report of what each took; a zombie counts as exited."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

# ``down`` asks every process of the lab to stop (SIGTERM: gatewayd stops its
# node, flushes its journal and removes its queue rules; its fence supervisor
# removes the addresses once gatewayd has gone), waits up to TERM_GRACE for all
# of them, SIGKILLs the rest and waits up to KILL_GRACE again: it returns when
# every process has exited, or says which did not.
TERM_GRACE = float(os.environ.get("VOIP_ALG_LAB_TERM_GRACE", "10"))
KILL_GRACE = 5.0


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie has exited: whoever started it
    (perhaps an init that does not reap) only has its exit status left. It
    is not reaped here: the exit status belongs to its parent (a
    ``subprocess.Popen`` of this process waits for it itself)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    # "pid (comm) S ...": the state follows the last ')' (comm may hold one).
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_exit(pids: set[int], grace: float) -> set[int]:
    """Wait up to ``grace`` seconds for ``pids`` to exit; the ones still alive."""
    deadline = time.monotonic() + grace
    alive = {p for p in pids if process_alive(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {p for p in alive if process_alive(p)}
    return alive


@dataclass
class StopReport:
    """What stopping a set of processes took."""

    stopped: list[int] = field(default_factory=list)   # exited after SIGTERM
    killed: list[int] = field(default_factory=list)    # needed SIGKILL
    left: list[int] = field(default_factory=list)      # still alive at the end (bounded wait)


def stop_all(find: Callable[[], Iterable[int]], *, grace: float = TERM_GRACE,
             kill_grace: float = KILL_GRACE, rounds: int = 3) -> StopReport:
    """Stop the processes ``find()`` names (TERM, wait, KILL, wait), again
    while it names new ones (a process may start another as it stops, e.g.
    gatewayd's fence supervisor), at most ``rounds`` times."""
    rep = StopReport()
    seen: set[int] = set()
    for _ in range(rounds):
        pids = {p for p in find() if p != os.getpid() and p not in seen and process_alive(p)}
        if not pids:
            break
        seen |= pids
        _signal(pids, signal.SIGTERM)
        stubborn = _wait_exit(pids, grace)
        rep.stopped += sorted(pids - stubborn)
        if stubborn:
            _signal(stubborn, signal.SIGKILL)
            left = _wait_exit(stubborn, kill_grace)
            rep.killed += sorted(stubborn - left)
            rep.left += sorted(left)
    return rep


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
