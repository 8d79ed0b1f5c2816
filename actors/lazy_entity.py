"""An entity's place in the directory before its actor exists.

A node holds a call, registration, protect-deny entry or pinhole as part of
the folded state; its entity actor only owns the entity's timer and takes its
media reports. Most entities never get a message at all on a standby, and
only one or two (the timer that ends them) on the active. Starting a pooled
actor per entity when the journal is folded cost a restarted node tens of
seconds for tens of thousands of live calls (BENCHMARKS.md, "Snapshots and
retention": ~7 actors per live call), and the live path paid the same start
for every new entity.

:class:`LazyEntityRef` stands in the directory for the entity from the event
that creates it (or from the state a restart loads), exactly where its actor
used to be, and starts the actor at the first message sent to it (a timer, a
media report, a ``show``). Ownership is unchanged: every message of the
entity goes through one actor, in order, and the entry leaves the directory
when the entity ends. Only the moment the actor is built moves.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from pykka import ActorDeadError

__all__ = ["LazyEntityRef"]

# Starting an actor is rare (first message of an entity); one lock for all
# of them keeps each reference down to its slots.
_START_LOCK = threading.Lock()


class LazyEntityRef:
    """The parts of pykka's ``ActorRef`` the node and the timer service use
    (``tell``, ``ask``, ``stop``, ``is_alive``), backed by an actor that
    ``start(arg)`` builds on first use."""

    __slots__ = ("_start", "_arg", "_ref", "_stopped")

    # Not a pooled actor's mailbox: the directory watches no stop for it and
    # asks is_alive() instead (actors/directory.py).
    actor_inbox = None

    def __init__(self, start: Callable[[Any], Any], arg: Any) -> None:
        self._start = start
        self._arg = arg
        self._ref = None
        self._stopped = False

    @property
    def started(self) -> bool:
        return self._ref is not None

    def _actor(self):
        ref = self._ref
        if ref is not None:
            return ref
        with _START_LOCK:
            if self._stopped:
                raise ActorDeadError(f"entity {self._arg!r} has ended")
            if self._ref is None:
                self._ref = self._start(self._arg)
            return self._ref

    def is_alive(self) -> bool:
        if self._stopped:
            return False
        ref = self._ref
        return True if ref is None else ref.is_alive()

    def tell(self, message: Any) -> None:
        self._actor().tell(message)

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        return self._actor().ask(message, block=block, timeout=timeout)

    def stop(self, block: bool = True, timeout: float | None = None) -> Any:
        with _START_LOCK:
            self._stopped = True
            ref = self._ref
        if ref is None:
            return True
        return ref.stop(block=block, timeout=timeout)

    def __repr__(self) -> str:
        state = "ended" if self._stopped else "started" if self._ref is not None else "not started"
        return f"<LazyEntityRef {self._arg!r} ({state})>"
