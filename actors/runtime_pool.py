"""The dispatcher pool of the actor runtime (ARCHITECTURE.md, "Actor runtime"):
a run queue of mailboxes drained by a few threads, or by a driver's thread
(the node's packet loop) while the pool is driven, each turn a batch of one
actor's messages."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from pykka import ActorDeadError, ActorRef

from actors.runtime_delivery import _Tombstone, _dead_letter, _deliver
from actors.runtime_futures import _allocate_lock, _dispatcher_idents
from actors.runtime_mailbox import Mailbox, _START
from actors.thread_names import name_native_thread

if TYPE_CHECKING:
    from actors.runtime import PooledActor

# Log records keep the runtime's logger name, wherever the code sits.
logger = logging.getLogger("actors.runtime")

DEFAULT_THREADS = 2
# Up to this many messages of one actor per turn: large enough that a busy
# actor amortises the run-queue hop, small enough that it cannot starve the
# others sharing the pool.
DEFAULT_BATCH = 64


class DispatcherPool:
    """A run queue of mailboxes and the threads that drain it.

    A pool can be *driven* (:meth:`drive`): while a driver is attached, the
    mailboxes that become ready wait in a queue of their own that the
    driver's thread runs with :meth:`run_ready`, and the pool's threads get
    none of them. The node's packet loop drives its pool, so a dialog's turn
    runs right after the drain that queued its message, on the same thread,
    with no hand-off (DESIGN.md: a mailbox per actor, a batch of messages
    per turn; the turn need not be a thread switch)."""

    def __init__(
        self,
        threads: int = DEFAULT_THREADS,
        batch: int = DEFAULT_BATCH,
        name: str = "actor-dispatcher",
    ) -> None:
        if threads < 1 or batch < 1:
            raise ValueError("a pool needs at least one thread and a batch of one")
        self.batch = batch
        self.name = name
        self._run_queue: queue.SimpleQueue[Mailbox | None] = queue.SimpleQueue()
        self._live: set[PooledActor] = set()
        self._live_lock = _allocate_lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # Driven mode (drive / run_ready / release): the driver's ready
        # mailboxes, its thread, and how to wake it from other threads.
        self._driven: deque[Mailbox] | None = None
        self._driver_ident: int | None = None
        self._driver_wake: Callable[[], None] | None = None
        self._driven_lock = _allocate_lock()
        for n in range(threads):
            thread = threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    # -- bookkeeping -----------------------------------------------------
    @property
    def thread_count(self) -> int:
        return len(self._threads)

    def live_count(self) -> int:
        return len(self._live)

    def live_refs(self) -> list[ActorRef[Any]]:
        with self._live_lock:
            return [actor.actor_ref for actor in self._live]

    def idle(self) -> bool:
        """No actor of the pool has a message queued or is in a turn (O(actors):
        for offline drivers such as pcap mode, not for the packet path)."""
        with self._live_lock:
            actors = list(self._live)
        return all(not a.actor_inbox._queue and not a.actor_inbox._scheduled.locked()
                   for a in actors)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def _adopt(self, actor: PooledActor) -> None:
        if self._closed:
            raise RuntimeError(f"{self.name} is shut down")
        with self._live_lock:
            self._live.add(actor)
        mailbox = actor.actor_inbox
        mailbox._queue.appendleft(_START)
        if mailbox._scheduled.acquire(False):
            self._schedule(mailbox)

    # -- scheduling: the pool's threads, or the driver's -------------------
    def _schedule(self, mailbox: Mailbox) -> None:
        """A mailbox holding the latch is ready: to the driver, if one is
        attached (woken unless it is the caller), else to the run queue."""
        if self._driven is not None:
            with self._driven_lock:
                driven = self._driven
                if driven is not None:
                    driven.append(mailbox)
                    if threading.get_ident() != self._driver_ident:
                        self._driver_wake()  # type: ignore[misc]
                    return
        self._run_queue.put(mailbox)

    def drive(self, wake: Callable[[], None]) -> None:
        """The calling thread drives the pool from now on: it runs ready
        mailboxes with :meth:`run_ready`; ``wake()`` is called (from any
        other thread) when a mailbox becomes ready. Until :meth:`release`."""
        with self._driven_lock:
            self._driver_wake = wake
            self._driver_ident = threading.get_ident()
            self._driven = deque()
        _dispatcher_idents.add(self._driver_ident)

    def release(self) -> None:
        """The driver (on its own thread) stops driving: what it had not run
        goes back to the pool's threads. Safe to call twice."""
        with self._driven_lock:
            driven, self._driven = self._driven, None
            ident, self._driver_ident = self._driver_ident, None
            self._driver_wake = None
            # Under the lock: a _schedule that saw the driver has appended.
            for mailbox in driven or ():
                self._run_queue.put(mailbox)
        if ident is not None:
            _dispatcher_idents.discard(ident)

    def has_ready(self) -> bool:
        """The driver has mailboxes to run (its loop should not sleep)."""
        return bool(self._driven)

    def run_ready(self, max_turns: int = 100_000) -> int:
        """On the driver's thread: run the ready mailboxes, each for a turn
        (up to ``batch`` messages), until none is ready or ``max_turns``
        turns ran (the rest wait for the next call). Returns the turns run."""
        driven = self._driven
        turns = 0
        while driven and turns < max_turns:
            mailbox = driven.popleft()
            turns += 1
            try:
                self._turn(mailbox)
            except BaseException:  # noqa: BLE001 -- the driver never dies of an actor
                logger.exception("pool %s: driven turn failed", self.name)
            driven = self._driven
            if driven is None:
                break
        return turns

    # -- the dispatcher threads ----------------------------------------
    def _run(self) -> None:
        name_native_thread()
        _dispatcher_idents.add(threading.get_ident())
        try:
            get = self._run_queue.get
            while (mailbox := get()) is not None:
                try:
                    self._turn(mailbox)
                except BaseException:  # noqa: BLE001 -- a dispatcher never dies of an actor
                    logger.exception("dispatcher %s: turn failed", threading.current_thread().name)
        finally:
            _dispatcher_idents.discard(threading.get_ident())

    def _turn(self, mailbox: Mailbox) -> None:
        actor = mailbox.actor
        q = mailbox._queue
        stopped = actor.actor_stopped  # type: ignore[union-attr]
        was_stopped = stopped._flag
        n = self.batch
        while n and q:
            n -= 1
            envelope = q.popleft()
            if stopped._flag:
                _dead_letter(actor, envelope)
            elif envelope is _START:
                # pykka's own setup: on_start, failure stops the actor.
                actor._actor_loop_setup()  # type: ignore[union-attr]
            else:
                _deliver(actor, envelope, self, mailbox)
        if not was_stopped and stopped._flag:
            self._retire(mailbox)
        if q:
            self._schedule(mailbox)  # still holding the latch
            return
        mailbox._scheduled.release()
        # A put() between our last look and the release saw the latch held
        # and did not schedule: look again.
        if q and mailbox._scheduled.acquire(False):
            self._schedule(mailbox)

    def _retire(self, mailbox: Mailbox) -> None:
        actor = mailbox.actor
        if isinstance(actor, _Tombstone):
            return                          # retired already, before its stop was answered
        with self._live_lock:
            self._live.discard(actor)  # type: ignore[arg-type]
        watchers, mailbox.watchers = mailbox.watchers, None
        # Refs outlive actors (in timers, tables, messages); let the stopped
        # actor and its state go, and keep only what answers late messages.
        mailbox.actor = _Tombstone(actor)  # type: ignore[assignment]
        for watcher in watchers or ():
            try:
                watcher(actor.actor_ref)  # type: ignore[union-attr]
            except Exception:
                logger.exception("stop watcher of %s failed", actor)

    # -- shutdown -------------------------------------------------------
    def stop_all(self, timeout: float | None = 10.0) -> int:
        """Ask every live actor of the pool to stop; wait for them. Returns how many."""
        refs = self.live_refs()
        futures = []
        for ref in refs:
            try:
                futures.append(ref.stop(block=False))
            except ActorDeadError:
                pass
        deadline = None if timeout is None else time.monotonic() + timeout
        for future in futures:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            future.get(timeout=remaining)
        return len(refs)

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Stop all actors, then the dispatcher threads."""
        if self._closed:
            return
        self.stop_all(timeout)
        self._closed = True
        for _ in self._threads:
            self._run_queue.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
