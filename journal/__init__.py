"""The journal: versioned, CRC-framed event records in append-only segment
files, group-committed appends, snapshots and replay (ARCHITECTURE.md, "Journal")."""

from .record import FORMAT_V1, FrameError, Record, decode_record, encode_record
from .replay import history, replay, snapshot_dir
from .segment import JournalCorrupt, TailDamage, iter_records
from .snapshot import Snapshot, SnapshotError, latest_snapshot, read_snapshot, write_snapshot
from .store import AppendRejected, Journal, JournalFailed, JournalLocked, OpenReport

__all__ = [
    "FORMAT_V1", "FrameError", "Record", "decode_record", "encode_record",
    "history", "replay", "snapshot_dir",
    "JournalCorrupt", "TailDamage", "iter_records",
    "Snapshot", "SnapshotError", "latest_snapshot", "read_snapshot", "write_snapshot",
    "AppendRejected", "Journal", "JournalFailed", "JournalLocked", "OpenReport",
]
