"""Taking snapshots, starting from them, and retention (ARCHITECTURE.md,
"Journal"; DESIGN.md, "Event sourcing": replay = newest snapshot, then the
records after it).

- :class:`SnapshotTaker` keeps its own fold of the journal (the same pure
  ``apply`` as the live path) and writes it as a snapshot of the record it has
  reached. It reads the journal, never the live state: the live state of an
  active node runs ahead of what is journaled (a step's events are written
  after the step), so only a fold of records is the state *of a record*. The
  fold is ordinary Python (the interpreter switches threads every few
  milliseconds) and the state is encoded in small chunks
  (``journal.state_codec``), by a forked child when asked
  (``journal.snapshot_child``), so taking a snapshot never stops the
  datapath for long.
- :func:`open_at_snapshot` opens the journal at the newest usable snapshot and
  folds the records after it; a damaged snapshot, or one whose record is not
  this journal's, is logged and an older one (or the whole journal) used.
- :func:`retention_pass` deletes the segments that every kept snapshot covers
  once they are older than the retention time, or sooner while the journal
  and its snapshots exceed their disk bound.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import msgpack

from gateway import domain

from .fold import BatchFold
from .gc_pause import collections_paused
from .replay import JournalGap, snapshot_dir
from .snapshot import SnapshotError, list_snapshots, read_snapshot, remove_snapshots, write_snapshot
from .snapshot_child import FORK_AVAILABLE, write_in_child
from .state_codec import StateDecodeError, decode_tree, encode_tree, tree_parts
from .store import VERSION_HORIZON, Journal, StartMismatch

log = logging.getLogger(__name__)


def encode_state(state: Any, *, canonical: bool = False) -> bytes:
    """A state as snapshot bytes; ``canonical``: bytes that depend on its
    values only, equal for equal states (journal.state_codec)."""
    return msgpack.packb(encode_tree(state, canonical=canonical), use_bin_type=True)


def encode_state_parts(state: Any) -> list[bytes]:
    """:func:`encode_state`'s bytes in parts, for ``write_snapshot`` (no call
    copies the whole state: journal/snapshot.py)."""
    return tree_parts(encode_tree(state), [], msgpack.Packer(use_bin_type=True))


def decode_state(payload: Any) -> Any:
    """The state a snapshot holds. Raises StateDecodeError."""
    if not isinstance(payload, bytes):
        raise StateDecodeError("snapshot state is not bytes")
    with collections_paused():
        try:
            tree = msgpack.unpackb(payload, raw=False)
        except Exception as exc:  # noqa: BLE001 - msgpack raises several types for garbage
            raise StateDecodeError(f"undecodable state ({type(exc).__name__})") from None
        return decode_tree(tree)


@dataclasses.dataclass(slots=True)
class Recovered:
    """What :func:`open_at_snapshot` found: the journal, open; the state as of
    record ``seq`` (the journal's head); the snapshot it started from (None:
    the whole journal was folded) and how many records were folded."""

    journal: Journal
    state: Any
    seq: int
    epoch: int
    timestamp: float | None
    snapshot: Path | None
    folded: int
    skipped: list[str]


# A recovered state at least this large (records folded, or any snapshot) is
# frozen when the caller asks (``freeze``).
FREEZE_ABOVE = 10_000


def is_large_recovery(snapshot: Any, folded: int) -> bool:
    """Whether a recovery (from ``snapshot``, None: none, and ``folded``
    records after it) built a state large enough to keep out of the
    collector's sight (``gc.freeze``)."""
    return snapshot is not None or folded >= FREEZE_ABOVE


def open_at_snapshot(path: str | os.PathLike, apply: Callable[[Any, Any], Any], initial: Any, *,
                     fsync: bool = True, snapshots: str | os.PathLike | None = None,
                     freeze: bool = False, **journal_options) -> Recovered:
    """Open the journal at ``path`` at its newest usable snapshot and fold the
    records after it. Raises :class:`journal.replay.JournalGap` when no
    snapshot is usable and the journal's first records are gone.

    No cyclic collection runs meanwhile (journal.gc_pause). With ``freeze``
    (a node starting), a large recovered state is then moved out of the
    collector's sight (``gc.freeze``, as ops/node_gc.py's ``tune_gc`` does
    with what exists at start): the first collection afterwards would
    otherwise walk the whole state once more, ~1 s for 32.6k live calls."""
    with collections_paused():
        rec = _open_at_snapshot(path, apply, initial, fsync=fsync, snapshots=snapshots, **journal_options)
        if freeze and is_large_recovery(rec.snapshot, rec.folded):
            gc.freeze()
        return rec


def _open_at_snapshot(path, apply, initial, *, fsync, snapshots, **journal_options) -> Recovered:
    path = Path(path)
    snap_dir = Path(snapshots) if snapshots is not None else snapshot_dir(path)
    remove_snapshots(snap_dir)             # temporary files of interrupted writes
    skipped: list[str] = []
    for seq, snap_path in reversed(list_snapshots(snap_dir)):
        try:
            snap = read_snapshot(snap_path)
            if snap.seq != seq:
                raise SnapshotError(f"{snap_path}: it says record {snap.seq}")
            if snap.journal is None:
                raise SnapshotError(f"{snap_path}: no journal position in it")
            state = decode_state(snap.state)
        except (OSError, SnapshotError, StateDecodeError) as exc:
            log.warning("journal: skipping snapshot %s: %s", snap_path, exc)
            skipped.append(f"{snap_path.name}: {exc}")
            continue
        start = dict(snap.journal, seq=snap.seq, epoch=snap.epoch)
        # The records after the snapshot are folded as the open reads and
        # checks them: one decode per record, not two.
        folder = _Folder(apply, state, snap.seq, snap.epoch, snap.timestamp)
        try:
            journal = Journal.open(path, fsync=fsync, start=start, visit=folder.visit, **journal_options)
        except StartMismatch as exc:
            log.warning("journal: skipping snapshot %s: %s", snap_path, exc)
            skipped.append(f"{snap_path.name}: {exc}")
            continue
        state, last, epoch, ts, n = folder.result()
        return Recovered(journal, state, last, epoch, ts, snap_path, n, skipped)
    folder = _Folder(apply, initial, 0, 0, None)
    journal = Journal.open(path, fsync=fsync, visit=folder.visit, **journal_options)
    if journal.first_seq > 1:
        first = journal.first_seq
        journal.close()
        raise JournalGap(first, 1)
    state, last, epoch, ts, n = folder.result()
    return Recovered(journal, state, last, epoch, ts, None, n, skipped)


class _Folder:
    """Folds the records after ``seq`` given to :meth:`visit`, in order
    (``Journal.open``'s visitor); with the domain's ``apply``, in runs
    (journal/fold.py)."""

    __slots__ = ("apply", "batch", "state", "seq", "epoch", "ts", "n", "gap")

    def __init__(self, apply, state, seq: int, epoch: int, ts) -> None:
        self.apply = apply
        self.batch = BatchFold(state) if apply is domain.apply else None
        self.state, self.seq, self.epoch, self.ts, self.n = state, seq, epoch, ts, 0
        self.gap = False

    def visit(self, rec) -> None:
        if rec.seq <= self.seq:
            return                      # the snapshot's own record, or before it
        if self.gap or rec.seq != self.seq + 1:
            # Records missing before this one (retention removed the first
            # ones and no snapshot covers them): nothing is folded; the
            # caller reports the gap once the journal is open.
            self.gap = True
            return
        if self.batch is not None:
            for ev in rec.events():
                self.batch.add(ev)
        else:
            state = self.state
            for ev in rec.events():
                state = self.apply(state, ev)
            self.state = state
        self.seq, self.epoch, self.ts = rec.seq, rec.epoch, rec.timestamp
        self.n += 1

    def result(self):
        state = self.batch.freeze() if self.batch is not None else self.state
        return state, self.seq, self.epoch, self.ts, self.n


def state_at(journal: Journal, apply: Callable[[Any, Any], Any], initial: Any, *,
             directory: str | os.PathLike | None = None):
    """(state, seq, epoch, timestamp, records folded) of an open journal at
    its head, from its newest snapshot whose record is still this journal's
    (a node whose journal was just cut). Raises JournalGap when none is and
    the journal's first records are gone."""
    with collections_paused():
        return _state_at(journal, apply, initial, directory=directory)


def _state_at(journal: Journal, apply, initial, *, directory):
    snap_dir = Path(directory) if directory is not None else snapshot_dir(journal)
    head = journal.head
    for seq, snap_path in reversed(list_snapshots(snap_dir)):
        if seq > head or seq < journal.first_seq:
            continue
        try:
            snap = read_snapshot(snap_path)
            if snap.journal is None or journal.position(seq)["crc"] != snap.journal["crc"]:
                raise SnapshotError(f"{snap_path}: its record is not this journal's record {seq}")
            state = decode_state(snap.state)
        except (OSError, SnapshotError, StateDecodeError) as exc:
            log.warning("journal: skipping snapshot %s: %s", snap_path, exc)
            continue
        return _fold_after(journal, apply, state, snap.seq, snap.epoch, snap.timestamp)
    if journal.first_seq > 1:
        raise JournalGap(journal.first_seq, 1)
    return _fold_after(journal, apply, initial, 0, 0, None)


def _fold_after(journal: Journal, apply, state, seq: int, epoch: int, ts):
    folder = _Folder(apply, state, seq, epoch, ts)
    for rec in journal.read(seq + 1):
        folder.visit(rec)
    return folder.result()


class SnapshotTaker:
    """A fold of the journal that writes itself as a snapshot (module
    docstring). Not thread-safe: one thread drives it."""

    def __init__(self, journal: Journal, apply: Callable[[Any, Any], Any], state: Any, seq: int,
                 epoch: int, timestamp: float | None, versions: list | None = None, *,
                 directory: str | os.PathLike | None = None) -> None:
        self.journal = journal
        self.apply = apply
        self.state, self.seq, self.epoch, self.timestamp = state, seq, epoch, timestamp
        self.directory = Path(directory) if directory is not None else snapshot_dir(journal)
        self._versions = {str(v[0]): (int(v[1]), int(v[2])) for v in (versions or [])}
        self.written = max([s for s, _ in list_snapshots(self.directory)] + [0])

    def catch_up(self, to_seq: int | None = None, *, pause_every: int = 2000,
                 folded: Callable[[], tuple[Any, int] | None] | None = None) -> int:
        """Fold the records after the last folded one, up to ``to_seq`` (the
        head by default); returns how many. Lets other threads run every
        ``pause_every`` records.

        ``folded()``: the owner's own fold of this journal, ``(state, seq)``,
        or None when it has none (a standby's state is the fold of what it
        stored; an active's runs ahead of its journal). When given and
        within reach, it is taken as it is (states are immutable) and the
        records up to ``seq`` are only read for their epoch, time and
        versions: the journal is not folded twice."""
        if folded is not None and to_seq is None:
            got = folded()
            if got is not None and self.seq <= got[1] <= self.journal.head:
                n = self._adopt(*got)
                if n is not None:
                    return n
        to_seq = self.journal.head if to_seq is None else to_seq
        n = 0
        folder = _Folder(self.apply, self.state, self.seq, self.epoch, self.timestamp)
        # The fold's state, record and versions move together, every
        # pause_every records (a record that cannot be folded leaves them
        # at the last such point, never half way through a record).
        seen: list = []
        for rec in self.journal.read(self.seq + 1, to_seq):
            folder.visit(rec)
            seen.append(rec)
            n += 1
            if n % pause_every == 0:
                self._took(folder, seen)
                time.sleep(0)
        self._took(folder, seen)
        return n

    def _adopt(self, state: Any, seq: int) -> int | None:
        """Take ``state`` as the fold up to ``seq``; the records after ours up
        to it give the rest. None (nothing changed) if they are not all there."""
        versions: dict = {}
        last = None
        n = 0
        for rec in self.journal.read(self.seq + 1, seq):
            if rec.seq != self.seq + n + 1:
                return None                   # a gap: fold as usual (it reports it)
            versions[rec.stream] = (rec.version, rec.seq)
            last = rec
            n += 1
        if seq != self.seq and (last is None or last.seq != seq):
            return None
        if last is not None:
            self._versions.update(versions)
            self.state, self.seq, self.epoch, self.timestamp = state, seq, last.epoch, last.timestamp
        return n

    def _took(self, folder: "_Folder", seen: list) -> None:
        self.state, self.seq, self.epoch, self.timestamp, _ = folder.result()
        versions = self._versions
        for rec in seen:
            versions[rec.stream] = (rec.version, rec.seq)
        seen.clear()

    def restart_from(self, state: Any, seq: int, epoch: int, timestamp: float | None,
                     versions: list) -> None:
        """Fold from another start: the journal was cut below this fold (a
        rejoining node's divergence) or started again at a received snapshot."""
        self.state, self.seq, self.epoch, self.timestamp = state, seq, epoch, timestamp
        self._versions = {str(v[0]): (int(v[1]), int(v[2])) for v in versions}
        self.written = max([s for s, _ in list_snapshots(self.directory)] + [0])

    def versions_table(self) -> list[list]:
        floor = self.seq + 1 - VERSION_HORIZON
        table = [[k, v, last] for k, (v, last) in self._versions.items() if last >= floor]
        if len(table) < len(self._versions):
            self._versions = {k: (v, last) for k, v, last in table}
        return table

    def write(self, *, in_child: bool = False) -> Path | None:
        """Write the fold as the snapshot of its record (None: nothing new);
        ``in_child``: encoded and written by a forked child process
        (journal/snapshot_child.py), or here when no child can be made."""
        if self.seq == 0 or self.seq <= self.written:
            return None
        mark = dict(self.journal.position(self.seq), versions=self.versions_table())
        directory, seq, state, epoch, ts = self.directory, self.seq, self.state, self.epoch, self.timestamp

        def write() -> Path:
            return write_snapshot(directory, seq, encode_state_parts(state), epoch, timestamp=ts, journal=mark)

        out = None
        if in_child and FORK_AVAILABLE:
            try:
                out = write_in_child(write)
            except OSError as exc:
                log.warning("snapshot at record %d: no writer process (%s); writing it here", seq, exc)
        if out is None:
            out = write()
        self.written = seq
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionResult:
    removed: int
    freed: int
    disk: int            # journal + snapshots after the pass
    over_bound: bool     # still above max_bytes: what is left is not yet covered by a snapshot


def disk_usage(journal: Journal, directory: str | os.PathLike | None = None) -> int:
    snap_dir = Path(directory) if directory is not None else snapshot_dir(journal)
    return journal.size_bytes + sum(p.stat().st_size for _, p in list_snapshots(snap_dir) if p.exists())


def retention_pass(journal: Journal, *, max_age: float, max_bytes: int, now: float,
                   floor: int | None = None, directory: str | os.PathLike | None = None) -> RetentionResult:
    """Delete the segments older than ``max_age`` seconds whose records every
    kept snapshot covers (so falling back to the oldest kept snapshot still
    finds its records), oldest first; past ``max_bytes`` (journal + snapshots)
    such segments go whatever their age. ``floor``: the first record a
    connected standby still needs; age alone never removes it (the disk bound
    does: the standby then takes a snapshot)."""
    snap_dir = Path(directory) if directory is not None else snapshot_dir(journal)
    kept = list_snapshots(snap_dir)
    if not kept:
        return RetentionResult(0, 0, disk_usage(journal, snap_dir), disk_usage(journal, snap_dir) > max_bytes)
    covered = kept[0][0]                 # records before the oldest kept snapshot's own record
    segs = journal.segments()
    disk = disk_usage(journal, snap_dir)
    cut = 0                              # remove segments with every record < cut
    for i, (first, last, size, _path) in enumerate(segs[:-1]):
        if last >= covered:
            break
        sealed_at = _first_timestamp(journal, segs[i + 1][0])
        old = sealed_at is not None and now - sealed_at > max_age and (floor is None or last < floor)
        if not (old or disk > max_bytes):
            break
        cut = last + 1
        disk -= size
    removed, freed = journal.remove_before(cut) if cut else (0, 0)
    if removed:
        log.info("journal: retention removed %d segments (%d bytes); oldest record kept %d",
                 removed, freed, journal.first_seq)
    over = disk > max_bytes
    return RetentionResult(removed, freed, disk, over)


def _first_timestamp(journal: Journal, seq: int) -> float | None:
    for rec in journal.read(seq, seq):
        return rec.timestamp
    return None
