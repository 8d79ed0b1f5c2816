"""Linux names for the node's threads.

CPython (before 3.14) leaves every thread of a process with the process's
name, so ``top -H``, ``ps -L``, ``/proc/PID/task/*/comm``, perf and py-spy's
native view show a dozen ``gatewayd`` threads. Each long-lived thread of the
node calls :func:`name_native_thread` first, giving the kernel its Python
name (``nfqueue-0``, ``journal-writer``, ...), so an operator can tell which
one is busy (prctl(2) PR_SET_NAME: at most 15 bytes, TASK_COMM_LEN - 1).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

PR_SET_NAME = 15
TASK_COMM_LEN = 16

_prctl = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def name_native_thread(name: str | None = None) -> bool:
    """Name the calling OS thread ``name`` (default: its Python name),
    truncated to what the kernel keeps. False where it cannot be done
    (not Linux, no libc prctl): a name is a convenience, never an error."""
    if _prctl is None:
        return False
    text = (name if name is not None else threading.current_thread().name)
    raw = text.encode("utf-8", "replace")[:TASK_COMM_LEN - 1]
    return _prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) == 0
