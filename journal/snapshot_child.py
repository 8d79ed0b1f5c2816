"""Writing a snapshot from a child process: the state's encoding (pickling
tens of thousands of calls, about a second of CPU for 32k live calls) runs
on the other core, outside the node's interpreter, so the datapath's
threads never wait for it (in the node's own process the encoding holds the
GIL chunk by chunk: the datapath's p99 lateness during a snapshot was tens
of milliseconds). The node pays the fork (its page tables copied) and the
copy-on-write faults of the pages it writes while the child runs; that cost
does not grow with the state's size the way pickling it does, so snapshots
can be taken more often and a restart folds a shorter tail.

The child runs only the given function and leaves with ``os._exit``: no
atexit handlers, no destructors of the sockets, ZeroMQ contexts or threads it
inherited (it has none of the threads). It does not log: a logging lock may
have been held at the fork by a thread that does not exist in the child.
Its collector is off: a collection would touch every object's header and so
copy the whole heap, page by page. The state it writes is the one the
parent had at the instant of the fork: the states are immutable, and the
child sees none of the parent's later changes anyway.
"""

from __future__ import annotations

import gc
import os
import signal
from pathlib import Path
from typing import Callable

# Longest error text the child sends back.
_MAX_REPORT = 4000

FORK_AVAILABLE = hasattr(os, "fork")
_PR_SET_PDEATHSIG = 1                          # linux/prctl.h


def _die_with(parent: int) -> None:
    """The child ends when the node does (Linux PR_SET_PDEATHSIG): a node
    restarted after a crash must not meet its predecessor's writer still
    renaming files in the snapshot directory."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass                                   # not Linux: the write just completes
    if os.getppid() != parent:                 # the node died before prctl took effect
        os._exit(1)


class SnapshotChildError(RuntimeError):
    """The child failed to write the snapshot (what it reported, or how it died)."""


def write_in_child(write: Callable[[], Path]) -> Path:
    """Run ``write`` (which writes a snapshot and returns its path) in a
    forked child and return the path it wrote. Raises
    :class:`SnapshotChildError` when the child fails or dies, and OSError
    when no child could be made (the caller may then write in-process)."""
    r, w = os.pipe()
    parent = os.getpid()
    try:
        pid = os.fork()
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:                                         # the child
        code = 1
        try:
            gc.disable()
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_IGN)   # ^C to the node is the node's
            _die_with(parent)
            path = write()
            report, code = f"ok:{path}".encode(), 0
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as text
            report = f"error:{type(exc).__name__}: {exc}".encode()[:_MAX_REPORT]
        try:
            view = memoryview(report)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    try:
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:              # reaped elsewhere: its report says how it went
            status = 0
    report = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        raise SnapshotChildError(f"the snapshot writer process died of signal {os.WTERMSIG(status)}")
    if os.WEXITSTATUS(status) != 0 or not report.startswith("ok:"):
        raise SnapshotChildError(report.removeprefix("error:") or
                                 f"the snapshot writer process exited with {os.WEXITSTATUS(status)}")
    return Path(report[3:])
