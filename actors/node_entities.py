"""What follows the events, on the active as it steps and on the standby as
it folds what it receives: the entity actors (a call's, registration's,
endpoint's or pinhole's actor is entered by its first event and stopped, its
timer cancelled, by its last) and the datapath's media sessions (they go with
the voice channel or call that owned them).

``EntityMirror`` is a part of :class:`actors.node.Node` (a base class): it
changes only the node's directory of entity actors, its timers and (under
``dp_lock``) its datapath's media sessions; the actor
itself is made by ``Node._start_entity_actor`` (lazily, at its first
message: actors/lazy_entity.py)."""

from __future__ import annotations

from actors.algs import ADAPTERS, ENDING, PINHOLE_CLOSED, PINHOLE_OPENED
from actors.lazy_entity import LazyEntityRef
from journal.gc_pause import collections_paused

# What an event class does to the entities, worked out once per class for
# _mirror (live) and _mirror_batch (standby): one classification.
_M_SKIP, _M_OPENS, _M_CLOSES, _M_ENDS = 1, 2, 4, 8
_MIRROR_KINDS: dict[type, int] = {}


def _mirror_kind(cls: type) -> int:
    kind = (_M_SKIP if cls.TYPE.startswith(("tcp.", "config.")) else 0) | \
        (_M_OPENS if issubclass(cls, PINHOLE_OPENED) else _M_CLOSES if issubclass(cls, PINHOLE_CLOSED) else 0) | \
        (_M_ENDS if issubclass(cls, ENDING) else 0)   # the entity no longer exists
    _MIRROR_KINDS[cls] = kind
    return kind


class EntityMirror:
    def _entity(self, stream: str):
        # The entity's directory entry; its actor starts at its first message
        # (actors/lazy_entity.py): most entities never get one.
        return self.directory.get_or_start(("entity", stream),
                                           lambda: LazyEntityRef(self._start_entity_actor, stream))

    def _end_entity(self, stream: str) -> None:
        ref = self.directory.remove(("entity", stream))
        self.timers.cancel(stream)
        if ref is not None:
            ref.stop(block=False)

    def _mirror(self, events) -> None:
        """Entity actors follow the events: created by the first, stopped by the last."""
        kinds = _MIRROR_KINDS
        for e in events:
            kind = kinds.get(type(e))
            if kind is None:
                kind = _mirror_kind(type(e))
            if kind & _M_SKIP:
                continue            # a connection's sequence adjustment, the configuration: no entity
            if kind & _M_OPENS:
                self._entity(f"pinhole/{e.pinhole}")
            elif kind & _M_CLOSES:
                self._end_entity(f"pinhole/{e.pinhole}")
            if kind & _M_ENDS:
                self._end_entity(e.stream)
            else:
                self._entity(e.stream)

    def _mirror_batch(self, events) -> None:
        """:meth:`_mirror` of a batch, by its net effect on each entity: an
        entity ended anywhere in the batch is ended (its actor stopped, its
        timer cancelled) once, and one whose last event does not end it is
        then entered; the entities are independent of one another, so this
        is what mirroring event by event leaves, with one directory
        operation per entity instead of one per event."""
        last: dict[str, bool] = {}          # stream -> entered (True) or ended (False) by its last event
        ended: list[str] = []
        kinds = _MIRROR_KINDS
        for e in events:
            kind = kinds.get(type(e))
            if kind is None:
                kind = _mirror_kind(type(e))
            if kind & _M_SKIP:
                continue            # a connection's sequence adjustment, the configuration: no entity
            if kind & _M_OPENS:
                last[f"pinhole/{e.pinhole}"] = True
            elif kind & _M_CLOSES:
                key = f"pinhole/{e.pinhole}"
                last[key] = False
                ended.append(key)
            stream = e.stream
            if kind & _M_ENDS:
                last[stream] = False
                ended.append(stream)
            else:
                last[stream] = True
        if ended:
            # _end_entity of each, with one hold of each lock.
            ended = list(dict.fromkeys(ended))
            self.timers.cancel_many(ended)
            for ref in self.directory.remove_many(("entity", stream) for stream in ended):
                ref.stop(block=False)
        for stream, entered in last.items():
            if entered:
                self._entity(stream)

    def _mirror_all(self) -> None:
        st = self.state
        with collections_paused():              # hundreds of thousands of entries, none cyclic
            names = self._streams(st)
            names += ["pinhole/" + p.id for p in self._open_pinholes(st)
                      if p.kind != "registration"]   # an H.323 registration's own entity stands for it
            start = self._start_entity_actor
            # Each entry's LazyEntityRef is made when the entry is first asked
            # for: most of a restarted node's entities end before that.
            self.directory.enter_deferred("entity", names, lambda key: LazyEntityRef(start, key[1]))

    def _datapath_follow(self, events) -> None:
        """Media sessions go with the voice channel or call that owned them."""
        if self.datapath is None:
            return
        ended, released = [], []
        for a in ADAPTERS.values():
            e, r = a.released(events)
            ended += e
            released += r
        if ended or released:
            with self.dp_lock:
                for key in ended:
                    self.datapath.release_call(key)
                if released:
                    self.datapath.release_groups(released)
