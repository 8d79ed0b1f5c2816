"""An actor's inbox in the pooled runtime: a deque and the latch that keeps a
mailbox in at most one dispatcher's hands (pykka's ActorInbox protocol; see
:mod:`actors.runtime`)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from pykka import ActorRef

from actors.runtime_futures import _allocate_lock

if TYPE_CHECKING:
    from actors.runtime import PooledActor
    from actors.runtime_pool import DispatcherPool


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
