"""Replay: rebuild state by folding journaled events with the live path's own
pure ``apply(state, event) -> state`` (DESIGN.md, "Event sourcing"), starting
from the newest usable snapshot.

Targets:
- ``until_seq``: state as of that record;
- ``until_time``: state as of the last record whose timestamp is not after it
  (the log is read in sequence order and stops at the first later record, so
  the result is always a prefix of the log, i.e. a state that really existed);
- ``stream``: the fold of one stream's records only (snapshots hold whole
  states, so this always starts from ``initial``).

Snapshots are used only when ``decode_snapshot`` is given, since only the
caller knows how its state was serialised.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from gateway.events import Event

from .record import Record
from .segment import iter_records
from .snapshot import Snapshot, latest_snapshot
from .store import Journal

log = logging.getLogger(__name__)

S = TypeVar("S")

SNAPSHOT_DIR = "snapshots"


def snapshot_dir(path: str | os.PathLike | Journal) -> Path:
    """Where the snapshots of the journal at ``path`` live by default."""
    base = path.path if isinstance(path, Journal) else Path(path)
    return base / SNAPSHOT_DIR


def _records(source: str | os.PathLike | Journal, from_seq: int) -> Iterator[Record]:
    if isinstance(source, Journal):
        return source.read(from_seq)
    return iter_records(Path(source), from_seq)


def replay(path: str | os.PathLike | Journal, apply: Callable[[S, Event], S], initial: S, *,
           until_seq: int | None = None, until_time: float | None = None, stream: str | None = None,
           decode_snapshot: Callable[[Any], S] | None = None,
           snapshots: str | os.PathLike | None = None) -> tuple[S, int]:
    """Fold the journal at ``path`` (a directory, or an open :class:`Journal`)
    into a state. Returns ``(state, last_seq)``: the state and the sequence
    number of the last record it includes (0 when none)."""
    snap_dir = Path(snapshots) if snapshots is not None else snapshot_dir(path)
    below = until_seq
    while True:
        snap: Snapshot | None = None
        if decode_snapshot is not None and stream is None:
            snap = latest_snapshot(snap_dir, below, at_or_before_time=until_time)
        state, last_seq = (decode_snapshot(snap.state), snap.seq) if snap else (initial, 0)
        records = _records(path, max(1, last_seq))
        if snap is not None:
            # The snapshot's own record must still be in the journal: a
            # snapshot past a truncated tail holds events the log no longer has.
            first = next(records, None)
            if first is None or first.seq != snap.seq:
                log.warning("journal: snapshot %s is past the journal's records; trying an older one",
                            snap.path)
                below = snap.seq - 1
                continue
        break
    for rec in records:
        if until_seq is not None and rec.seq > until_seq:
            break
        if until_time is not None and rec.timestamp > until_time:
            break
        last_seq = rec.seq
        if stream is not None and rec.stream != stream:
            continue
        state = apply(state, rec.event())
    return state, last_seq


def history(path: str | os.PathLike | Journal, stream: str) -> list[Record]:
    """Every record of ``stream``, oldest first."""
    return [rec for rec in _records(path, 1) if rec.stream == stream]
