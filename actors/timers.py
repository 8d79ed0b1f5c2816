"""The timer service: one thread, one heap, timeout messages with generations.

pykka has no timers (DESIGN.md "Actors").  Entities keep their deadlines as
absolute wall-clock times in their state, so that replay and a standby know
them; this service turns each into a monotonic deadline when it is scheduled
(a wall-clock step after that does not move a pending timer) and, when it is
due, tells the target actor a `TimerFired(key, generation, deadline,
payload)`.

Every schedule of a key takes a new generation from one counter (never
reused, even across cancel and rebuild).  A timer that fired while its
owner was rescheduling or cancelling it arrives with an old generation; the
owner asks `is_current(key, generation)` (or `take`) and ignores it.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from dataclasses import dataclass
from itertools import count
from typing import Any, Callable, Hashable, Iterable, NamedTuple

from pykka import ActorDeadError, ActorRef

from actors.thread_names import name_native_thread

__all__ = ["TimerFired", "TimerService", "TimerSpec"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The message a due timer sends to its target."""

    key: Hashable
    generation: int
    deadline: float  # wall-clock seconds, as scheduled
    payload: Any = None


class TimerSpec(NamedTuple):
    """A timer as an entity's state records it: what `rebuild` takes."""

    key: Hashable
    deadline: float  # wall-clock seconds
    target: ActorRef[Any]
    payload: Any = None


class _Timer:
    __slots__ = ("generation", "deadline", "target", "payload", "fired")

    def __init__(self, generation: int, deadline: float, target: Any, payload: Any) -> None:
        self.generation = generation
        self.deadline = deadline
        self.target = target
        self.payload = payload
        self.fired = False


class TimerService:
    """Timers keyed by entity, fired from one thread (or by `fire_due()`).

    `wall` and `monotonic` are injectable for tests; `start()` runs the
    thread; without it, `fire_due()` fires what is due, which is how tests
    drive a fake clock.
    """

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "timer-service",
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._name = name
        self._timers: dict[Hashable, _Timer] = {}
        # (monotonic deadline, generation, key); entries whose generation is
        # no longer the key's are skipped when popped (lazy deletion).
        self._heap: list[tuple[float, int, Hashable]] = []
        self._generations = count(1)
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopping = False
        # The monotonic time the thread sleeps until (inf: until told). A
        # schedule wakes it only for an earlier deadline: most timers are
        # re-armed later than the earliest one (a call's next deadline), and
        # waking the thread for each cost a thread switch and a GIL hand-off
        # per schedule, several per call.
        self._sleeping_until = float("-inf")

    # -- scheduling ---------------------------------------------------------
    def schedule(
        self, key: Hashable, deadline: float, target: ActorRef[Any], payload: Any = None
    ) -> int:
        """Fire `TimerFired` at `target` at wall-clock `deadline`; replaces any
        timer of `key`. Returns the new generation."""
        with self._cond:
            generation, due = self._schedule_locked(key, deadline, target, payload)
            # The thread, when not asleep, looks at the heap again before it
            # next sleeps (under this lock): only an earlier deadline than the
            # one it sleeps until needs it awake.
            if due < self._sleeping_until:
                self._cond.notify()
        return generation

    def _schedule_locked(self, key: Hashable, deadline: float, target: Any,
                         payload: Any) -> tuple[int, float]:
        generation = next(self._generations)
        self._timers[key] = _Timer(generation, deadline, target, payload)
        due = self._monotonic() + (deadline - self._wall())
        heapq.heappush(self._heap, (due, generation, key))
        self._maybe_compact()
        return generation, due

    def cancel(self, key: Hashable) -> bool:
        """Forget `key`'s timer; a TimerFired of it already sent becomes stale."""
        with self._cond:
            return self._timers.pop(key, None) is not None

    def cancel_many(self, keys: Iterable[Hashable]) -> None:
        """:meth:`cancel` of each key, under one hold of the lock (a standby
        ends the entities of a batch of records at once)."""
        timers = self._timers
        with self._cond:
            for key in keys:
                timers.pop(key, None)

    def rebuild(self, specs: Iterable[TimerSpec | tuple[Any, ...]]) -> dict[Hashable, int]:
        """Replace every timer with `specs` (after failover or replay).

        Deadlines already past fire at once. Returns each key's generation.
        """
        with self._cond:
            self._timers.clear()
            self._heap.clear()
            generations = {}
            for spec in specs:
                key, deadline, target, *rest = spec
                payload = rest[0] if rest else None
                generations[key] = self._schedule_locked(key, deadline, target, payload)[0]
            self._cond.notify()
        return generations

    # -- the receiver's side ------------------------------------------------
    def is_current(self, key: Hashable, generation: int) -> bool:
        """True if `generation` is still the timer of `key` (not rescheduled,
        not cancelled)."""
        timer = self._timers.get(key)
        return timer is not None and timer.generation == generation

    def take(self, key: Hashable, generation: int) -> bool:
        """`is_current`, and if so forget the fired timer (the receiver acts on it once)."""
        with self._cond:
            timer = self._timers.get(key)
            if timer is None or timer.generation != generation or not timer.fired:
                return False
            del self._timers[key]
            return True

    # -- introspection ------------------------------------------------------
    def __len__(self) -> int:
        """Timers scheduled and not yet fired."""
        with self._cond:
            return sum(1 for t in self._timers.values() if not t.fired)

    def deadline_of(self, key: Hashable) -> float | None:
        timer = self._timers.get(key)
        return None if timer is None or timer.fired else timer.deadline

    def specs(self) -> list[TimerSpec]:
        """The pending timers, in the form `rebuild` takes."""
        with self._cond:
            return [TimerSpec(k, t.deadline, t.target, t.payload)
                    for k, t in self._timers.items() if not t.fired]

    # -- firing -------------------------------------------------------------
    def _pop_due_locked(self, now: float) -> list[tuple[Any, TimerFired]]:
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, generation, key = heapq.heappop(heap)
            timer = self._timers.get(key)
            if timer is None or timer.generation != generation:
                continue  # cancelled or rescheduled
            timer.fired = True
            due.append((timer.target, TimerFired(key, generation, timer.deadline, timer.payload)))
        return due

    def _next_due_locked(self) -> float | None:
        heap = self._heap
        while heap:
            _, generation, key = heap[0]
            timer = self._timers.get(key)
            if timer is not None and timer.generation == generation:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def _maybe_compact(self) -> None:
        # Lazy deletion lets cancelled entries pile up under churn; rebuild the
        # heap once they outnumber the live ones.
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._timers):
            self._heap = [e for e in self._heap
                          if (t := self._timers.get(e[2])) is not None
                          and t.generation == e[1] and not t.fired]
            heapq.heapify(self._heap)

    def fire_due(self) -> int:
        """Send every timer due by the monotonic clock now. Returns how many."""
        with self._cond:
            due = self._pop_due_locked(self._monotonic())
        for target, message in due:
            _send(target, message)
        return len(due)

    # -- the thread -----------------------------------------------------------
    def start(self) -> TimerService:
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        name_native_thread()
        while True:
            with self._cond:
                if self._stopping:
                    return
                next_due = self._next_due_locked()
                now = self._monotonic()
                if next_due is None:
                    self._sleeping_until = float("inf")
                    self._cond.wait()
                    continue
                if next_due > now:
                    self._sleeping_until = next_due
                    self._cond.wait(next_due - now)
                    continue
                self._sleeping_until = float("-inf")
                due = self._pop_due_locked(now)
            for target, message in due:
                _send(target, message)


def _send(target: Any, message: TimerFired) -> None:
    try:
        target.tell(message)
    except ActorDeadError:
        logger.debug("timer %r: target %s is gone", message.key, target)
    except Exception:
        logger.exception("timer %r: delivery to %s failed", message.key, target)
