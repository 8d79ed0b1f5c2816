"""Where the live entity actors are, by key: O(1) lookup, start-once.

Keys are tuples whose first item is the kind of entity, e.g.
`("call", call_id)`, `("registration", aor)`, `("endpoint", name)`,
`("pinhole", flow)`.  A packet's owning actor is found here (DESIGN.md "A
packet's way through", step 4), so lookup is a dict read, never a scan as in
`pykka.ActorRegistry`.

An entry leaves the directory when its actor stops (the runtime's stop
watcher), or when a lookup finds it dead (for actors of other runtimes that
have no watcher).
"""

from __future__ import annotations

import threading
from collections import Counter
from itertools import repeat
from typing import Any, Callable, Hashable, Iterable

from pykka import ActorRef

from actors.runtime import Mailbox, watch_stop

__all__ = ["Directory", "kind_of"]


class _Deferred:
    """The entry of keys entered by :meth:`Directory.enter_deferred`: one
    object shared by all of them; a key's own ref is made by ``make(key)``
    when the key is first asked for."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[Hashable], ActorRef[Any]]) -> None:
        self.make = make


def kind_of(key: Hashable) -> Hashable:
    """The kind of an entity key: its first item if it is a tuple, else the key."""
    if isinstance(key, tuple) and key:
        return key[0]
    return key


class Directory:
    """A thread-safe map from entity key to the ActorRef of its live actor."""

    def __init__(self) -> None:
        self._refs: dict[Hashable, ActorRef[Any]] = {}
        self._kinds: Counter[Hashable] = Counter()
        # Re-entrant: a factory may look up or start other entities.
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, key: Hashable) -> bool:
        return self.get(key) is not None

    def get(self, key: Hashable) -> ActorRef[Any] | None:
        """The live actor for `key`, or None."""
        ref = self._refs.get(key)
        if ref is None:
            return None
        if type(ref) is _Deferred:
            ref = self._made(key, ref)
            if ref is None:
                return None
        if ref.is_alive():
            return ref
        self._forget(key, ref)
        return None

    def get_or_start(
        self, key: Hashable, factory: Callable[[], ActorRef[Any]]
    ) -> ActorRef[Any]:
        """The live actor for `key`; if there is none, `factory()` starts it.

        Two threads asking for the same new key get the same actor: the
        factory runs under the directory's lock, so it must only start the
        actor (a pooled actor's start does not wait for on_start).
        """
        ref = self.get(key)
        if ref is not None:
            return ref
        with self._lock:
            ref = self._entry(key)
            if ref is not None and ref.is_alive():
                return ref
            if ref is not None:
                self._forget(key, ref)
            ref = factory()
            self._add(key, ref)
        return ref

    def start_absent(self, keys: Iterable[Hashable], factory: Callable[[Hashable], ActorRef[Any]]) -> int:
        """``get_or_start`` for many keys under one hold of the lock (a
        restarted node enters every entity of its state at once); returns
        how many were started."""
        refs, kinds = self._refs, self._kinds
        n = 0
        with self._lock:
            for key in keys:
                ref = refs.get(key)
                if ref is not None:
                    if type(ref) is _Deferred or ref.is_alive():
                        continue
                    self._forget(key, ref)
                ref = factory(key)
                if isinstance(ref.actor_inbox, Mailbox):
                    self._add(key, ref)
                else:
                    refs[key] = ref
                    kinds[kind_of(key)] += 1
                n += 1
        return n

    def enter_deferred(self, kind: Hashable, names: Iterable[Hashable],
                       factory: Callable[[Hashable], ActorRef[Any]]) -> int:
        """:meth:`start_absent` of the keys ``(kind, name)`` for each name,
        where ``factory(key)`` runs only when the key is first asked for (a
        restarted node enters each of the hundreds of thousands of entities
        of its state; most are never asked for before they end). Returns
        how many were entered."""
        deferred = _Deferred(factory)
        refs = self._refs
        with self._lock:
            fresh = dict.fromkeys(zip(repeat(kind), names), deferred)
            if refs:
                for key in fresh.keys() & refs.keys():
                    ref = refs[key]
                    if type(ref) is _Deferred or ref.is_alive():
                        del fresh[key]
                    else:
                        self._forget(key, ref)
            refs.update(fresh)
            self._kinds[kind] += len(fresh)
        return len(fresh)

    def register(self, key: Hashable, ref: ActorRef[Any]) -> None:
        """Record an actor started elsewhere; a live actor under `key` is an error."""
        with self._lock:
            old = self._entry(key)
            if old is not None and old.is_alive():
                raise KeyError(f"{key!r} already has a live actor {old}")
            if old is not None:
                self._forget(key, old)
            self._add(key, ref)

    def remove(self, key: Hashable) -> ActorRef[Any] | None:
        """Forget `key` (the actor keeps running); returns what was there."""
        with self._lock:
            ref = self._entry(key)
            if ref is not None:
                self._forget(key, ref)
            return ref

    def remove_many(self, keys: Iterable[Hashable]) -> list[ActorRef[Any]]:
        """:meth:`remove` of each key under one hold of the lock; returns
        the entries that were there."""
        out = []
        with self._lock:
            for key in keys:
                ref = self._entry(key)
                if ref is not None:
                    self._forget(key, ref)
                    out.append(ref)
        return out

    def count(self, kind: Hashable | None = None) -> int:
        """How many entries, of one kind or in all."""
        if kind is None:
            return len(self._refs)
        return self._kinds[kind]

    def counts(self) -> dict[Hashable, int]:
        with self._lock:
            return {kind: n for kind, n in self._kinds.items() if n}

    def keys(self, kind: Hashable | None = None) -> list[Hashable]:
        with self._lock:
            return [k for k in self._refs if kind is None or kind_of(k) == kind]

    def items(self) -> list[tuple[Hashable, ActorRef[Any]]]:
        with self._lock:
            return [(key, self._made(key, ref) if type(ref) is _Deferred else ref)
                    for key, ref in list(self._refs.items())]

    def _entry(self, key: Hashable) -> ActorRef[Any] | None:
        """What is under ``key`` (None: nothing), a deferred entry's ref made now."""
        ref = self._refs.get(key)
        return self._made(key, ref) if type(ref) is _Deferred else ref

    def _made(self, key: Hashable, deferred: _Deferred) -> ActorRef[Any] | None:
        """The ref of a deferred entry, made now and put in its place (the
        entry as it is now if another thread got there first)."""
        with self._lock:
            ref = self._refs.get(key)
            if ref is deferred:
                ref = self._refs[key] = deferred.make(key)
                self._watch(key, ref)
            return ref

    def _add(self, key: Hashable, ref: ActorRef[Any]) -> None:
        self._refs[key] = ref
        self._kinds[kind_of(key)] += 1
        self._watch(key, ref)

    def _watch(self, key: Hashable, ref: ActorRef[Any]) -> None:
        if isinstance(ref.actor_inbox, Mailbox):
            # May call back at once (actor already stopped): RLock.
            watch_stop(ref, lambda stopped, key=key: self._forget(key, stopped))

    def _forget(self, key: Hashable, ref: ActorRef[Any]) -> None:
        # Only the entry for this very actor: a new actor may have taken the
        # key since the old one stopped.
        with self._lock:
            if self._refs.get(key) is ref:
                del self._refs[key]
                self._kinds[kind_of(key)] -= 1
