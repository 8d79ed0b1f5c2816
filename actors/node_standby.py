"""The standby's side of replication: the records received from the active,
already in this node's journal, folded into its state in bulk
(journal/fold.py), the entities and the datapath following their net effect;
and its state offered as the snapshot of its journal.

``StandbyFold`` is a part of :class:`actors.node.Node` (a base class)."""

from __future__ import annotations

from gateway.events import StepEvents, decode as decode_event
from journal.fold import BatchFold


class StandbyFold:
    def on_records(self, records: list) -> None:
        """Standby: records received from the active, already in our journal.

        The batch is folded in runs (journal/fold.py: one SIP draft open
        over a run of SIP events, frozen once) and the entities follow its
        net effect (:meth:`_mirror_batch`): the state, entities and
        timers are those of folding and mirroring event by event. An
        event the batch fold cannot take leaves no trace of the batch:
        the batch is folded again event by event, which stops at that
        event with the state before it, exactly as the per-event fold
        always did (the replicator logs the failure)."""
        decode = decode_event       # Record.events() without its call per record
        events = []
        for r in records:
            ev = decode(r.type, r.schema, r.payload, r.stream)
            if type(ev) is StepEvents:      # one record per step (gateway/events.py)
                events += ev.events
            else:
                events.append(ev)
        with self.state_lock:
            fold = BatchFold(self.state)
            try:
                for e in events:
                    fold.add(e)
                state = fold.freeze()
            except Exception:  # noqa: BLE001 - reported by the event-by-event fold below
                for e in events:
                    self._fold(e)
            else:
                self.state = state
                self.counters["events"] += len(events)  # folded from the active
            self.applied = records[-1].seq if records else self.applied
        self._mirror_batch(events)
        self._datapath_follow(events)
        if self.live_config is not None:
            self.live_config.follow(events)   # a journaled configuration change

    def _folded_state(self):
        """``(state, applied)`` while the state is the fold of this node's
        journal up to ``applied`` (a standby, which writes only what it
        folds, that has not stepped since its state was recovered or
        rebuilt from the journal), else None: the
        snapshot thread then writes this state instead of folding the
        journal a second time (journal/checkpoint.py, SnapshotTaker)."""
        with self.state_lock:
            if self._state_is_fold and self.role.role == "standby":
                return self.state, self.applied
        return None
