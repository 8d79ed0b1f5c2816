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

Records the fold cannot take (CRC-valid but of an unknown type or schema, a
payload that does not make its event, an event the state cannot take) and a
journal whose first records are missing (its first segment deleted) are
never folded silently:

- by default the fold stops: a missing start raises :class:`JournalGap`
  (folding from a later record makes a state that never existed, whose
  later events then fail on calls it does not hold); an unusable record
  raises :class:`UnusableRecord` carrying the state just before it;
- given a ``problems`` list, the fold goes on with what is consistent: from
  the first record present, skipping each unusable record, and appends one
  :class:`Problem` (seq, type, why) per gap and per record skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

from gateway.events import Event, UnknownEvent

from gateway import domain

from .fold import BatchFold
from .gc_pause import collections_paused
from .record import HEADER, HEADER_SIZE, Record
from .segment import iter_records, segment_name
from .snapshot import Snapshot, latest_snapshot
from .store import Journal

log = logging.getLogger(__name__)

S = TypeVar("S")

SNAPSHOT_DIR = "snapshots"


class Problem(NamedTuple):
    """A gap or a record the fold skipped: ``seq`` of the record (for a gap,
    the first record present), its event ``type`` ("" for a gap), and why."""

    seq: int
    type: str
    why: str


class JournalGap(Exception):
    """The journal's records start after the record the fold needs first."""

    def __init__(self, first: int, expected: int) -> None:
        super().__init__(f"the journal starts at record {first}: records {expected}-{first - 1} "
                         f"are missing (a deleted or lost first segment)")
        self.first = first
        self.expected = expected


class UnusableRecord(Exception):
    """A CRC-valid record the fold cannot take; ``state`` and ``last_seq`` are
    the fold just before it."""

    def __init__(self, problem: Problem, state: Any, last_seq: int) -> None:
        super().__init__(f"record {problem.seq} ({problem.type}): {problem.why}")
        self.problem = problem
        self.state = state
        self.last_seq = last_seq


def snapshot_dir(path: str | os.PathLike | Journal) -> Path:
    """Where the snapshots of the journal at ``path`` live by default."""
    base = path.path if isinstance(path, Journal) else Path(path)
    return base / SNAPSHOT_DIR


def _same_record(source: str | os.PathLike | Journal, snap: Snapshot) -> bool:
    """Whether the journal's record at the snapshot's position is the one the
    snapshot was taken at (its frame's CRC; a snapshot without a position
    is taken on its sequence number alone)."""
    mark = snap.journal
    if mark is None:
        return True
    base = source.path if isinstance(source, Journal) else Path(source)
    try:
        with open(base / segment_name(mark["segment"]), "rb") as f:
            f.seek(mark["offset"])
            head = f.read(HEADER_SIZE)
    except OSError:
        return False
    return len(head) == HEADER_SIZE and HEADER.unpack(head)[2] == mark["crc"]


def _records(source: str | os.PathLike | Journal, from_seq: int) -> Iterator[Record]:
    if isinstance(source, Journal):
        return source.read(from_seq)
    return iter_records(Path(source), from_seq)


def replay(path: str | os.PathLike | Journal, apply: Callable[[S, Event], S], initial: S, *,
           until_seq: int | None = None, until_time: float | None = None, stream: str | None = None,
           decode_snapshot: Callable[[Any], S] | None = None,
           snapshots: str | os.PathLike | None = None,
           problems: list[Problem] | None = None) -> tuple[S, int]:
    """Fold the journal at ``path`` (a directory, or an open :class:`Journal`)
    into a state. Returns ``(state, last_seq)``: the state and the sequence
    number of the last record it includes (0 when none). Raises
    :class:`JournalGap` / :class:`UnusableRecord` unless ``problems`` is given
    (module docstring)."""
    with collections_paused():
        args = dict(until_seq=until_seq, until_time=until_time, stream=stream,
                    decode_snapshot=decode_snapshot, snapshots=snapshots)
        if apply is domain.apply and problems is None:
            # The domain's fold in runs (journal/fold.py). A record that
            # cannot be folded is reported with the state before it, which a
            # run's open draft does not keep: then the replay is done again
            # event by event, and reports exactly what it always did.
            try:
                return _replay(path, apply, initial, problems=None, batch=True, **args)
            except _Unfoldable:
                pass
        return _replay(path, apply, initial, problems=problems, batch=False, **args)


class _Unfoldable(Exception):
    """A record a batched replay cannot fold (see :func:`replay`)."""


def _replay(path, apply, initial, *, until_seq, until_time, stream, decode_snapshot, snapshots, problems,
            batch: bool):
    snap_dir = Path(snapshots) if snapshots is not None else snapshot_dir(path)
    below = until_seq
    while True:
        snap: Snapshot | None = None
        if decode_snapshot is not None and stream is None:
            snap = latest_snapshot(snap_dir, below, at_or_before_time=until_time)
        state, last_seq = initial, 0
        if snap is not None:
            try:
                state, last_seq = decode_snapshot(snap.state), snap.seq
            except Exception as exc:  # noqa: BLE001 - the caller's decoder; an older snapshot may do
                log.warning("journal: skipping snapshot %s: %s", snap.path, exc)
                below = snap.seq - 1
                continue
        records = _records(path, max(1, last_seq))
        if snap is not None:
            # The snapshot's own record must still be in the journal: a
            # snapshot past a truncated tail holds events the log no longer has.
            first = next(records, None)
            if first is None or first.seq != snap.seq or not _same_record(path, snap):
                log.warning("journal: snapshot %s is past the journal's records, or its record is "
                            "not this journal's; trying an older one", snap.path)
                below = snap.seq - 1
                continue
        break
    expected = last_seq + 1          # a snapshot's own record was read above
    if batch:
        return _replay_batched(records, state, last_seq, until_seq=until_seq, until_time=until_time,
                               stream=stream)
    for rec in records:
        if rec.seq != expected:
            # Only the first record can differ: the reader checks that the
            # rest are consecutive.
            gap = JournalGap(rec.seq, expected)
            if problems is None:
                raise gap
            problems.append(Problem(rec.seq, "", str(gap)))
        expected = rec.seq + 1
        if until_seq is not None and rec.seq > until_seq:
            break
        if until_time is not None and rec.timestamp > until_time:
            break
        if stream is not None and rec.stream != stream:
            last_seq = rec.seq
            continue
        try:
            evs = rec.events()
        except UnknownEvent as exc:
            problem = Problem(rec.seq, rec.label(), f"cannot be decoded: {exc}")
        else:
            try:
                # A step record's events are applied whole or not at all.
                after = state
                for ev in evs:
                    after = apply(after, ev)
                state = after
                last_seq = rec.seq
                continue
            except Exception as exc:  # noqa: BLE001 - any failure of apply is reported, with the record
                problem = Problem(rec.seq, rec.label(),
                                  f"the state cannot take it: {type(exc).__name__}: {exc}")
        if problems is None:
            raise UnusableRecord(problem, state, last_seq)
        log.warning("journal: skipping record %d (%s): %s", problem.seq, problem.type, problem.why)
        problems.append(problem)
        last_seq = rec.seq
    return state, last_seq


def _replay_batched(records, state, last_seq: int, *, until_seq, until_time, stream):
    """:func:`_replay`'s loop for the domain's ``apply`` and no ``problems``,
    folding in runs; raises :class:`_Unfoldable` where that loop would
    report a problem."""
    fold = BatchFold(state)
    expected = last_seq + 1
    for rec in records:
        if rec.seq != expected:
            raise _Unfoldable(rec.seq)
        expected = rec.seq + 1
        if until_seq is not None and rec.seq > until_seq:
            break
        if until_time is not None and rec.timestamp > until_time:
            break
        if stream is not None and rec.stream != stream:
            last_seq = rec.seq
            continue
        try:
            for ev in rec.events():
                fold.add(ev)
        except Exception:  # noqa: BLE001 - reported by the event-by-event replay
            raise _Unfoldable(rec.seq) from None
        last_seq = rec.seq
    return fold.freeze(), last_seq


def history(path: str | os.PathLike | Journal, stream: str) -> list[Record]:
    """Every record of ``stream``, oldest first."""
    first = path.first_seq if isinstance(path, Journal) else 1
    return [rec for rec in _records(path, first) if rec.stream == stream]
