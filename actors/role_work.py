"""The node's role changes, done off the HA transport thread.

A promotion's work (taking the addresses, rebuilding the timers, installing
every live call's pinholes) takes tens of milliseconds on a quiet node and
much longer on a loaded one. Done on the replication thread, it delayed the
first heartbeat of the new active, which is also the first renewal of its
lease (gateway.ha): under load the lease ran out during the takeover, the
node demoted and the pair changed roles twice, failing the calls in progress.

:class:`RoleWork` runs each role change's work on one thread of its own, in
the order the role machine decided them (a promotion's takeover always ends
before a following demotion's stand-down starts), while the transport thread
goes back to heartbeats at once. A caller that needs the work done (a lone
node's start, the operator's failover, a unit test) waits for it.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable

from actors.thread_names import name_native_thread
from actors.thread_priority import ordinary_thread_priority

log = logging.getLogger("gateway.node")


class RoleWork:
    """One thread running submitted callables in submission order."""

    def __init__(self, name: str = "roles") -> None:
        self.name = name
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], None], what: str) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
                self._thread.start()
            self._q.put((fn, what, fut))
        return fut

    def on_own_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, fn: Callable[[], None], what: str, *, wait: bool) -> None:
        """Queue ``fn``; with ``wait``, return once it ran (raising what it
        raised). Called from the worker thread itself, it runs inline (the
        queue would wait for itself)."""
        if self.on_own_thread():
            fn()
            return
        fut = self.submit(fn, what)
        if wait:
            fut.result()

    def drain(self, timeout: float | None = None) -> None:
        """Wait for everything submitted so far."""
        if self._thread is None or self.on_own_thread():
            return
        self.submit(lambda: None, "drain").result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            t, self._thread = self._thread, None
            if t is not None:
                self._q.put(None)
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _run(self) -> None:
        name_native_thread()
        ordinary_thread_priority()       # usually started by the real-time transport thread
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, what, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fn()
            except BaseException as exc:   # reported to a waiting caller, logged for the others
                log.exception("node: role change work (%s) failed", what)
                fut.set_exception(exc)
            else:
                fut.set_result(None)
