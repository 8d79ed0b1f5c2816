"""Snapshots: the folded state as of a sequence number, so replay need not start
at the first record (DESIGN.md, "Event sourcing": replay = newest snapshot at
or below the target, then the records after it).

A snapshot file ``<seq, 20 digits>.snap`` is::

    b"GWSNAP" [format u8][length u32 BE][crc32 u32 BE][msgpack body]

with the CRC over the length and the body. The body is a map ``{seq, epoch,
timestamp, state}`` and, for snapshots a node takes, ``journal``: where record
``seq`` sits in this node's journal (``segment``: the first sequence number of
its segment file, ``offset``: where its frame starts, ``crc``: the CRC of that
frame) and the per-stream versions as of ``seq`` (``versions``: ``[stream,
version, seq of the stream's last record]`` for the streams the journal still
checks, ``journal.store.VERSION_HORIZON``). With them a restart opens the
journal at that record without reading what precedes it, and knows the
snapshot belongs to this very history (a cut and rewritten tail has another CRC). It is written to a temporary name,
fsynced, renamed into place and the directory fsynced, so a crash leaves
either the whole snapshot or none. A damaged snapshot is logged and passed
over in favour of an older one: the journal, not the snapshot, is the truth.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack

from .segment import fsync_dir
from .state_codec import bin_header

log = logging.getLogger(__name__)

MAGIC = b"GWSNAP"
FORMAT_V1 = 1
_HEADER = struct.Struct(">BII")
_NAME = re.compile(r"^(\d{20})\.snap$")


class SnapshotError(Exception):
    """A snapshot file that cannot be read."""


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """State as of record ``seq``. ``timestamp`` is the timestamp of that record
    when the writer gave it (replay to a point in time needs it)."""

    seq: int
    epoch: int
    timestamp: float | None
    state: Any                # bytes or a plain-data dict, as written
    path: Path
    journal: dict | None = None   # where record seq sits, and the stream versions (module docstring)


def snapshot_name(seq: int) -> str:
    return f"{seq:020d}.snap"


def write_snapshot(directory: str | os.PathLike, seq: int, state_payload: bytes | dict | list, epoch: int,
                   *, timestamp: float | None = None, journal: dict | None = None) -> Path:
    """Write the state as of record ``seq`` atomically; returns the file's path.
    ``state_payload`` as a list of bytes is the state's bytes in parts: they
    are stored as one byte string, written part by part, never joined (a
    large state joined or packed in one call holds the interpreter for tens
    of milliseconds per ten thousand calls; the datapath waits meanwhile)."""
    if isinstance(state_payload, list):
        if not all(isinstance(p, bytes) for p in state_payload):
            raise TypeError("state_payload parts must be bytes")
        parts = state_payload
    elif isinstance(state_payload, (bytes, dict)):
        parts = None
    else:
        raise TypeError("state_payload must be bytes, a list of bytes or a plain-data dict")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"seq": seq, "epoch": epoch, "timestamp": timestamp}
    if journal is not None:
        doc["journal"] = journal
    packer = msgpack.Packer(use_bin_type=True)
    if parts is None:
        doc["state"] = state_payload
        chunks = [packer.pack(doc)]
    else:
        # The same bytes msgpack.packb(doc with state=b"".join(parts)) gives.
        head = [packer.pack_map_header(len(doc) + 1)]
        for k, v in doc.items():
            head += [packer.pack(k), packer.pack(v)]
        head += [packer.pack("state"), bin_header(sum(len(p) for p in parts))]
        chunks = [b"".join(head), *parts]
    size = sum(len(c) for c in chunks)
    length = struct.pack(">I", size)
    crc = zlib.crc32(length)
    for c in chunks:
        crc = zlib.crc32(c, crc)
    header = MAGIC + _HEADER.pack(FORMAT_V1, size, crc)
    final = directory / snapshot_name(seq)
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for c in [header, *chunks]:
            view = memoryview(c)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, final)
    fsync_dir(directory)
    return final


def read_snapshot(path: str | os.PathLike) -> Snapshot:
    path = Path(path)
    data = path.read_bytes()
    start = len(MAGIC) + _HEADER.size
    if len(data) < start or not data.startswith(MAGIC):
        raise SnapshotError(f"{path}: not a snapshot")
    fmt, length, crc = _HEADER.unpack_from(data, len(MAGIC))
    if fmt != FORMAT_V1:
        raise SnapshotError(f"{path}: unknown snapshot format {fmt}")
    body = data[start:start + length]
    if len(body) != length or len(data) != start + length:
        raise SnapshotError(f"{path}: length {length} does not match the file")
    if zlib.crc32(body, zlib.crc32(struct.pack(">I", length))) != crc:
        raise SnapshotError(f"{path}: CRC mismatch")
    try:
        doc = msgpack.unpackb(body, raw=False, strict_map_key=False)
        mark = doc.get("journal")
        if mark is not None and not (isinstance(mark, dict) and all(
                type(mark.get(k)) is int for k in ("segment", "offset", "crc"))
                and isinstance(mark.get("versions"), list)):
            raise ValueError("malformed journal section")
        return Snapshot(int(doc["seq"]), int(doc["epoch"]), doc["timestamp"], doc["state"], path, mark)
    except Exception as exc:
        raise SnapshotError(f"{path}: undecodable body ({exc.__class__.__name__})") from None


def list_snapshots(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(seq, path) of every snapshot file, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    out = [(int(m.group(1)), directory / e.name)
           for e in os.scandir(directory) if (m := _NAME.match(e.name))]
    out.sort()
    return out


def latest_snapshot(directory: str | os.PathLike, at_or_below: int | None = None, *,
                    at_or_before_time: float | None = None) -> Snapshot | None:
    """The newest readable snapshot with ``seq <= at_or_below`` (and, when
    ``at_or_before_time`` is given, with a known timestamp not after it)."""
    for seq, path in reversed(list_snapshots(directory)):
        if at_or_below is not None and seq > at_or_below:
            continue
        try:
            snap = read_snapshot(path)
        except (OSError, SnapshotError) as exc:
            log.warning("journal: skipping snapshot %s: %s", path, exc)
            continue
        if snap.seq != seq:
            log.warning("journal: skipping snapshot %s: it says sequence %d", path, snap.seq)
            continue
        if at_or_before_time is not None and (snap.timestamp is None or snap.timestamp > at_or_before_time):
            continue
        return snap
    return None


def remove_snapshots(directory: str | os.PathLike, *, keep: int | None = None,
                     after: int | None = None) -> list[Path]:
    """Delete snapshot files: all but the ``keep`` newest, or those past record
    ``after`` (a journal cut below them: they hold records it no longer has).
    Leftover temporary files of interrupted writes go too. Returns the paths removed."""
    directory = Path(directory)
    found = list_snapshots(directory)
    gone = []
    if after is not None:
        gone += [p for seq, p in found if seq > after]
    if keep is not None:
        kept = [p for seq, p in found if p not in gone]
        gone += kept[:max(0, len(kept) - keep)]
    if directory.is_dir():
        gone += [directory / e.name for e in os.scandir(directory)
                 if e.name.startswith(".") and e.name.endswith(".tmp")
                 and not e.name.endswith(f".{os.getpid()}.tmp")]
    for p in gone:
        p.unlink(missing_ok=True)
    if gone:
        fsync_dir(directory)
    return gone
