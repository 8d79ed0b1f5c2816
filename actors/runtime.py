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
import time
import uuid
from itertools import count
from typing import Any, Callable, ClassVar, Iterable, Self

import pykka
from pykka import ActorRef

from actors.runtime_futures import DispatcherBlockingError, PooledFuture, _StopFlag, _allocate_lock
from actors.runtime_mailbox import Mailbox
from actors.runtime_pool import DEFAULT_BATCH, DEFAULT_THREADS, DispatcherPool

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
