"""No cyclic garbage collection while a state is loaded or folded in bulk.

Loading a snapshot and folding the journal after it builds millions of
objects that all stay alive (the state of tens of thousands of calls). At
CPython's default thresholds every 700 allocations start a young collection
and every hundred of those a full one, which walks the whole state built so
far: a restarted node with 32.6k live calls spent two thirds of its start in
collections (11 s of 16.5 s, bench/bench_snapshots.py). The state holds no
reference cycles to reclaim (ops/node_gc.py, ``tune_gc``), so collection
waits until the bulk work is done; the node's own GC settings then apply.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block (nested blocks and threads
    share one pause; the outermost restores what was set before)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
