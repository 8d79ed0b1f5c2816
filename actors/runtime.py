"""Entity actors that keep pykka's API but share a small pool of threads.

`pykka.ThreadingActor` gives every actor an OS thread; that caps a node at a
few thousand live calls (see ARCHITECTURE.md, "Actor runtime").  pykka's
`Actor` base is built to be given another runtime through three hooks
(`_create_actor_inbox`, `_create_future`, `_start_actor_loop`); this module
fills them so that:

* an actor's inbox is a `Mailbox` (a deque plus a "scheduled" latch);
* a mailbox goes on the pool's run queue when it becomes non-empty; one of
  the pool's dispatcher threads takes it, handles up to `batch` messages
  through pykka's own `_handle_receive` (so `on_receive`, proxy calls,
  attribute get/set and `_ActorStop` mean exactly what they mean in pykka),
  and puts it back on the run queue if messages are left;
* a mailbox is held by at most one dispatcher at a time (the latch), so an
  actor sees its messages one at a time and in the order they were sent.

Failure semantics follow pykka's `_actor_loop_running`:

* an exception raised while handling an `ask` (or a proxy call, which is an
  ask) is set on the caller's future, logged at INFO with the message, and
  the actor keeps running;
* an exception raised while handling a `tell` (or `CallableProxy.defer`) is
  logged at ERROR with the actor and the message, the actor stops and
  `on_failure` runs; messages still queued are answered with
  `ActorDeadError`;
* neither ever reaches the dispatcher thread: other actors keep running.

Pooled actors are not put in `pykka.ActorRegistry` (a list scanned on every
lookup and unregister); the pool keeps its own set of live actors and the
project finds entity actors through `actors.directory.Directory`.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import uuid
from collections import deque
from itertools import count
from typing import Any, ClassVar, Callable, Iterable, Self

import pykka
from pykka import ActorDeadError, ActorRef, Timeout, messages

from actors.thread_names import name_native_thread

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_THREADS",
    "DispatcherBlockingError",
    "DispatcherPool",
    "Mailbox",
    "PooledActor",
    "PooledFuture",
    "configure_default_pool",
    "default_pool",
    "watch_stop",
]

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 2
# Up to this many messages of one actor per turn: large enough that a busy
# actor amortises the run-queue hop, small enough that it cannot starve the
# others sharing the pool.
DEFAULT_BATCH = 64

_allocate_lock = threading.Lock
# Thread idents of every dispatcher thread of every pool, for the deadlock
# check in PooledFuture.get().
_dispatcher_idents: set[int] = set()


class DispatcherBlockingError(RuntimeError):
    """A dispatcher thread tried to wait on a future that is not done yet.

    With a handful of dispatcher threads, an actor that blocks waiting for
    another actor's answer can hold the very thread that answer needs; actors
    talk with `tell` (put the reply address in the message) instead.
    """


class _StopFlag:
    """The `actor_stopped` flag, without a `threading.Event` per actor.

    `ActorRef.is_alive()` only calls `is_set()`; `wait()` is rare (tests,
    shutdown) so its Event is made on first use.
    """

    __slots__ = ("_flag", "_event")
    _event_lock = _allocate_lock()

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        # Flag first, then look for a waiter's Event: wait() publishes the
        # Event first, then re-reads the flag, so one of the two sees the other.
        self._flag = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        event = self._event
        if event is None:
            with self._event_lock:
                if self._event is None:
                    self._event = threading.Event()
                event = self._event
        if self._flag:
            event.set()
        return event.wait(timeout)


class PooledFuture(pykka.Future[Any]):
    """A pykka future completed by a dispatcher and awaited from any thread.

    A lock, acquired at creation and released once by `set()`, is the
    one-shot signal: cheaper to make than ThreadingFuture's Condition.
    """

    def __init__(self) -> None:
        super().__init__()
        self._latch = _allocate_lock()
        self._latch.acquire()
        self._value: Any = None
        self._exc_info: Any = None
        self._done = False

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if not self._done:
            if threading.get_ident() in _dispatcher_idents:
                msg = (
                    "waiting on a future inside a dispatcher turn can deadlock "
                    "the pool; reply with tell instead"
                )
                raise DispatcherBlockingError(msg)
            if timeout is None:
                self._latch.acquire()
            elif not self._latch.acquire(True, max(timeout, 0.0)):
                raise Timeout(f"{timeout} seconds")
            # Pass the signal on to the next waiter, if any.
            self._latch.release()
            if self._get_hook is not None:
                return super().get(timeout=timeout)
        if self._exc_info is not None:
            exc_type, exc_value, exc_traceback = self._exc_info
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not exc_traceback:
                raise exc_value.with_traceback(exc_traceback)
            raise exc_value
        return self._value

    def _complete(self) -> None:
        self._done = True
        self._latch.release()

    def set(self, value: Any | None = None) -> None:
        if self._done or self._get_hook is not None:
            raise queue.Full
        self._value = value
        self._complete()

    def set_exception(self, exc_info: Any | None = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        if self._done or self._get_hook is not None:
            raise queue.Full
        self._exc_info = exc_info
        self._complete()

    def set_get_hook(self, func: Callable[[float | None], Any]) -> None:
        if self._done:
            raise queue.Full
        super().set_get_hook(func)
        # Wake anyone already waiting: they will now run the hook.
        self._done = True
        self._latch.release()


class Mailbox:
    """An actor's inbox: a deque, and a latch that is held while the mailbox
    is on the run queue or in a dispatcher's hands.

    Implements pykka's ActorInbox protocol (`put`, `get`, `empty`);
    `get` never blocks here (nothing calls it while the mailbox is empty).
    """

    __slots__ = ("_queue", "_scheduled", "actor", "pool", "watchers")

    def __init__(self, actor: PooledActor | None, pool: DispatcherPool | None) -> None:
        self._queue: deque[Any] = deque()
        self._scheduled = _allocate_lock()
        self.actor = actor
        self.pool = pool
        self.watchers: list[Callable[[ActorRef[Any]], None]] | None = None

    def put(self, envelope: Any, /) -> None:
        self._queue.append(envelope)
        # Test-and-set: only the thread that takes the latch schedules.
        if self._scheduled.acquire(False):
            self.pool._schedule(self)  # type: ignore[union-attr]

    def get(self) -> Any:
        return self._queue.popleft()

    def empty(self) -> bool:
        return not self._queue

    def __len__(self) -> int:
        return len(self._queue)


# Put at the head of a new actor's mailbox: on_start runs in a dispatcher
# turn, before the first message, as in pykka.
_START = object()


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


class _Tombstone:
    """Stands in a stopped actor's mailbox for it: enough to answer late
    messages with ActorDeadError.

    It keeps the ref's text, not the ref: the ref holds the mailbox, so a
    tombstone holding the ref made mailbox -> tombstone -> ref -> mailbox a
    reference cycle per stopped actor, which only the cyclic collector could
    free. Under call load (~7 entity actors per call) those cycles filled the
    young generations, and a collection walking them held every thread for
    ~0.6 s, the heartbeat loss time of the pair (ops/gatewayd.py GcPauses)."""

    __slots__ = ("actor_stopped", "actor_ref", "_name")

    def __init__(self, actor: Any) -> None:
        self.actor_stopped = actor.actor_stopped
        self.actor_ref = str(actor.actor_ref)
        self._name = str(actor)

    def __str__(self) -> str:
        return self._name


def _deliver(actor: Any, envelope: Any, pool: "DispatcherPool", mailbox: Mailbox) -> None:
    """One message, with the semantics of pykka's `Actor._actor_loop_running`.

    An actor that stopped while handling the message is retired (out of the
    pool's live set, its stop watchers run) before the caller's future is
    answered: whoever waited on ``stop()`` (``stop_all``, a test counting
    live actors, a watcher's bookkeeping) sees it gone. Answering first let
    the waiter run while the dispatcher had yet to retire the actor, which
    on a busy machine it did many milliseconds later."""
    reply_to = envelope.reply_to
    try:
        response = actor._handle_receive(envelope.message)
    except Exception:
        if reply_to is not None:
            logger.info(
                "Exception returned from %s to caller of %r", actor, envelope.message,
                exc_info=True,
            )
            exc_info = sys.exc_info()
            if actor.actor_stopped.is_set():
                pool._retire(mailbox)
            reply_to.set_exception(exc_info)
        else:
            exc_info = sys.exc_info()
            logger.error(
                "Unhandled exception in %s handling %r; the actor stops",
                actor, envelope.message, exc_info=exc_info,
            )
            _fail(actor, exc_info)
    except BaseException:  # noqa: BLE001
        # pykka stops every actor here; on a shared pool one actor's
        # SystemExit/KeyboardInterrupt stops that actor only.
        exc_info = sys.exc_info()
        logger.error("%r in %s handling %r; the actor stops", exc_info[1], actor,
                     envelope.message)
        actor._stop()
        pool._retire(mailbox)
        if reply_to is not None:
            reply_to.set_exception(exc_info)
    else:
        if actor.actor_stopped.is_set():
            pool._retire(mailbox)
        if reply_to is not None:
            reply_to.set(response)


def _fail(actor: Any, exc_info: Any) -> None:
    actor.actor_stopped.set()
    try:
        actor.on_failure(*exc_info)
    except Exception:
        logger.exception("on_failure of %s raised", actor)


def _dead_letter(actor: Any, envelope: Any) -> None:
    """A message the actor will never handle, as pykka's teardown answers it."""
    if envelope is _START:
        return
    reply_to = envelope.reply_to
    if reply_to is None:
        logger.debug("%s is stopped; dropped %r", actor, envelope.message)
    elif isinstance(envelope.message, messages._ActorStop):  # noqa: SLF001
        reply_to.set(None)
    else:
        reply_to.set_exception(
            exc_info=(
                ActorDeadError,
                ActorDeadError(f"{actor.actor_ref} stopped before handling the message"),
                None,
            )
        )


_default_pool: DispatcherPool | None = None
_default_pool_lock = _allocate_lock()


def default_pool() -> DispatcherPool:
    """The pool used by PooledActor subclasses that do not name one."""
    global _default_pool
    pool = _default_pool
    if pool is None or pool._closed:
        with _default_pool_lock:
            if _default_pool is None or _default_pool._closed:
                _default_pool = DispatcherPool()
            pool = _default_pool
    return pool


def configure_default_pool(threads: int = DEFAULT_THREADS, batch: int = DEFAULT_BATCH) -> DispatcherPool:
    """Replace the default pool (shutting the old one down)."""
    global _default_pool
    with _default_pool_lock:
        old, _default_pool = _default_pool, DispatcherPool(threads=threads, batch=batch)
        new = _default_pool
    if old is not None:
        old.shutdown()
    return new


_urn_counter = count(1)
_urn_prefix = uuid.uuid4().urn + ":"


class PooledActor(pykka.Actor):
    """A pykka actor run by a DispatcherPool instead of a thread of its own.

    Subclass it as you would `pykka.ThreadingActor`; set the class attribute
    `pool` to run a class on a pool of its own.
    """

    pool: ClassVar[DispatcherPool | None] = None

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> ActorRef[Self]:
        # pykka's start() minus ActorRegistry.register: that registry is a
        # list whose unregister scans it, O(n) per stop.
        obj = cls(*args, **kwargs)
        assert obj.actor_ref is not None, (
            "Actor.__init__() has not been called; did you forget super().__init__()?"
        )
        obj._start_actor_loop()
        return obj.actor_ref

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        # The fields pykka's Actor.__init__ sets, made cheaper: a counter
        # under one random per-process URN instead of uuid4 per actor, and
        # _StopFlag instead of threading.Event.
        self.actor_urn = f"{_urn_prefix}{next(_urn_counter)}"
        self.actor_inbox = Mailbox(self, type(self).pool or default_pool())  # type: ignore[assignment]
        self.actor_stopped = _StopFlag()  # type: ignore[assignment]
        self._actor_ref = ActorRef(self)

    @staticmethod
    def _create_actor_inbox() -> Mailbox:
        # Not used by __init__ (a mailbox needs its actor and pool); kept so
        # the class satisfies pykka's abstract interface.
        return Mailbox(None, None)

    @staticmethod
    def _create_future() -> PooledFuture:
        return PooledFuture()

    def _start_actor_loop(self) -> None:
        self.actor_inbox.pool._adopt(self)  # type: ignore[attr-defined]


def watch_stop(ref: ActorRef[Any], callback: Callable[[ActorRef[Any]], None]) -> None:
    """Call `callback(ref)` once the pooled actor behind `ref` has stopped.

    Runs on the dispatcher thread right after the actor stops (normally or by
    failure), or at once if it already has.
    """
    mailbox = ref.actor_inbox
    if not isinstance(mailbox, Mailbox):
        raise TypeError(f"{ref} is not a pooled actor")
    if not ref.is_alive():
        callback(ref)
        return
    # Appending under the live lock orders us against _retire(), which takes
    # the same lock before it reads the watcher list.
    pool = mailbox.pool
    with pool._live_lock:  # type: ignore[union-attr]
        alive = mailbox.actor in pool._live  # type: ignore[union-attr,operator]
        if alive:
            if mailbox.watchers is None:
                mailbox.watchers = []
            mailbox.watchers.append(callback)
    if not alive:
        callback(ref)


def stop_refs(refs: Iterable[ActorRef[Any]], timeout: float | None = 10.0) -> None:
    """Stop many actors at once: send every stop, then wait for all."""
    futures = [ref.stop(block=False) for ref in refs]
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in futures:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        future.get(timeout=remaining)
