"""The replication protocol between the two nodes of a pair (no sockets here).

Transport (``actors/replication.py``): every node binds a ZeroMQ ROUTER on its
HA address and connects a DEALER to its peer's ROUTER, both with CURVE. Over
the DEALER a node sends HELLO / HB / ACK / TAKEN; the ROUTER answers HB with
its own HB and, when its node is active, streams the journal to a peer that said
HELLO. Because both nodes always heartbeat each other, two nodes that both
believe they are active see each other's epoch on the next heartbeat, and the
lower one demotes (``gateway/ha.py``).

Messages are two ZeroMQ frames: the type (one ASCII word) and a msgpack map.

  HELLO    {node, last_seq, last_epoch, last_crc, epoch}
                                             standby -> active: resume after last_seq
  BATCH    {first, frames: [bytes], head, epoch}
                                             active -> standby: journal frames as written
  ACK      {seq, epoch}                      standby -> active: cumulative
  HB       {node, role, epoch, head, prio, applied, ts}
                                             both ways
  HANDOVER {epoch, head}                     active -> standby: promote once you have head
  TAKEN    {epoch}                           new active -> old active: done, demote
  REFUSED  {reason, head}                    "diverged" (truncate after head, then
                                             HELLO again), "not active", "hello again"
  SNAP     {seq, offset, total, data, frame} active -> standby: a chunk of the active's
                                             snapshot of record seq (``frame``: that
                                             record's frame, with the first chunk)
  SNAPACK  {seq, offset}                     standby -> active: bytes of it stored

Rejoin after retention: a standby whose HELLO names a record older than the
active's oldest kept one (the segments were deleted, ``journal.checkpoint``)
cannot be streamed the records it missed. The active sends its newest
snapshot instead, in chunks of at most ``SNAP_CHUNK`` bytes with at most
``SNAP_WINDOW`` bytes unacknowledged; the standby stores it, checks it (CRC),
makes it its own, starts its journal again at the snapshot's record and says
HELLO from there: the active then streams the journal after the snapshot.

``last_epoch``/``last_crc`` name the standby's last record (its epoch and the
CRC of its frame): the active accepts the HELLO only if its own record at
``last_seq`` is the same one, so a node that was active in a term the other
never saw (it wrote records nobody acknowledged) is told where to cut its
journal instead of silently keeping a different history
(:func:`hello_verdict`).

Flow control: the active keeps at most ``window`` unacknowledged events in
flight per peer and sends batches of at most ``batch`` frames (batching is what
makes replication fast; one event in flight at a time is ~50x slower).

A message that is not this protocol raises :class:`ProtocolViolation` (a
:class:`gateway.errors.RemoteProtocolError`) from :func:`decode`, and nothing
else: the transport logs it and drops it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

import msgpack

from gateway.errors import RemoteProtocolError

from .record import HEADER_SIZE, FrameError, decode_record, unpack_complete

ROLES = frozenset({"active", "standby", "stopped"})


class ProtocolViolation(RemoteProtocolError):
    """A peer sent something that is not this protocol: logged and dropped."""


# ------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class Hello:
    node: str
    last_seq: int
    last_epoch: int
    last_crc: int
    epoch: int
    KIND = b"HELLO"


@dataclass(frozen=True, slots=True)
class Batch:
    first: int
    frames: list
    head: int
    epoch: int
    KIND = b"BATCH"


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    epoch: int
    KIND = b"ACK"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: str
    role: str
    epoch: int
    head: int
    prio: int
    applied: int
    ts: float
    KIND = b"HB"


@dataclass(frozen=True, slots=True)
class Handover:
    epoch: int
    head: int
    KIND = b"HANDOVER"


@dataclass(frozen=True, slots=True)
class Taken:
    epoch: int
    KIND = b"TAKEN"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    head: int = 0
    KIND = b"REFUSED"


@dataclass(frozen=True, slots=True)
class SnapChunk:
    seq: int
    offset: int
    total: int
    data: bytes
    frame: bytes

    KIND = b"SNAP"


@dataclass(frozen=True, slots=True)
class SnapAck:
    seq: int
    offset: int

    KIND = b"SNAPACK"


# A snapshot travels in chunks of at most SNAP_CHUNK bytes, at most
# SNAP_WINDOW bytes unacknowledged: the heartbeats share the link and the
# thread, and neither side holds more than a few chunks in its queues.
SNAP_CHUNK = 1 << 20
SNAP_WINDOW = 4 << 20

Message = Hello | Batch | Ack | Heartbeat | Handover | Taken | Refused | SnapChunk | SnapAck

_CLASSES = {c.KIND: c for c in (Hello, Batch, Ack, Heartbeat, Handover, Taken, Refused, SnapChunk, SnapAck)}
TYPES = frozenset(_CLASSES)
_FIELDS = {k: c.__slots__ for k, c in _CLASSES.items()}
_OPTIONAL = {b"REFUSED": {"head": 0}}
# One event is a few hundred bytes; a batch is at most a few thousand frames.
MAX_FRAMES = 100_000


def encode(msg: Message) -> list[bytes]:
    body = {name: getattr(msg, name) for name in _FIELDS[msg.KIND]}
    return [msg.KIND, msgpack.packb(body, use_bin_type=True)]


def _int(kind: str, name: str, v) -> int:
    if type(v) is not int or v < 0:
        raise ProtocolViolation(f"{kind} {name} is not a non-negative integer")
    return v


def decode(frames: list) -> Message:
    """The message in ``frames`` (type, msgpack body). Raises ProtocolViolation only."""
    if len(frames) != 2:
        raise ProtocolViolation(f"expected 2 frames, got {len(frames)}")
    kind, raw = bytes(frames[0]), frames[1]
    cls = _CLASSES.get(kind)
    if cls is None:
        raise ProtocolViolation(f"unknown message type {kind[:16]!r}")
    name = kind.decode()
    try:
        body = unpack_complete(raw)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolViolation(f"undecodable {name} body ({exc.__class__.__name__})") from None
    if not isinstance(body, dict):
        raise ProtocolViolation(f"{name} body is not a map")
    values = []
    for f in _FIELDS[kind]:
        if f in body:
            v = body[f]
        elif f in _OPTIONAL.get(kind, ()):
            v = _OPTIONAL[kind][f]
        else:
            raise ProtocolViolation(f"{name} without {f}")
        if f in ("node", "role", "reason"):
            if type(v) is not str:
                raise ProtocolViolation(f"{name} {f} is not a string")
        elif f == "ts":
            if type(v) not in (int, float):
                raise ProtocolViolation(f"{name} ts is not a number")
            v = float(v)
        elif f == "frames":
            if type(v) is not list or len(v) > MAX_FRAMES or any(type(x) is not bytes for x in v):
                raise ProtocolViolation(f"{name} frames is not a list of byte strings")
        elif f in ("data", "frame"):
            if type(v) is not bytes or len(v) > SNAP_CHUNK:
                raise ProtocolViolation(f"{name} {f} is not a byte string of at most {SNAP_CHUNK} bytes")
        else:
            v = _int(name, f, v)
        values.append(v)
    msg = cls(*values)
    if kind == b"HB" and msg.role not in ROLES:
        raise ProtocolViolation(f"HB role {msg.role[:16]!r} is not a role")
    if kind == b"BATCH" and msg.first == 0:
        raise ProtocolViolation("BATCH first sequence 0")
    if kind == b"SNAP" and (msg.seq == 0 or msg.offset + len(msg.data) > msg.total):
        raise ProtocolViolation("SNAP chunk outside its snapshot")
    return msg


# ------------------------------------------------------------ record marks

_CRC = struct.Struct(">I")


def frame_mark(frame: bytes) -> tuple[int, int]:
    """(epoch, crc) of one journal frame: what HELLO says about the last record."""
    try:
        rec, _ = decode_record(frame)
    except FrameError as exc:
        raise ValueError(f"not a journal frame: {exc}") from None
    return rec.epoch, _CRC.unpack_from(frame, HEADER_SIZE - 4)[0]


def hello_verdict(last_seq: int, last_epoch: int, last_crc: int, head: int,
                  mark_at: Callable[[int], tuple[int, int]]) -> int | None:
    """Whether the active can stream to a standby whose last record is
    (``last_seq``, ``last_epoch``, ``last_crc``): None when the standby's
    journal is a prefix of ours, else the sequence it must truncate after
    before saying HELLO again. ``mark_at(seq)`` is our (epoch, crc) at seq.

    Epochs never decrease along a journal, and only the active of an epoch
    writes records of that epoch, so when the two records at ``last_seq``
    differ, our whole term at that point is suspect: the cut goes to our last
    record of an older epoch (Raft's log matching, skipping a term per round
    trip; cutting too much only costs a resend). Each answer is strictly below
    ``last_seq``, so the exchange ends, at worst at 0 (an empty journal)."""
    if last_seq == 0:
        return None
    if last_seq > head:
        # Records we never had: cut them; the record at our head is then checked.
        return head
    epoch, crc = mark_at(last_seq)
    if (epoch, crc) == (last_epoch, last_crc):
        return None
    bound = epoch
    lo, hi = 0, last_seq - 1          # find the last seq in [1, hi] with epoch < bound
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mark_at(mid)[0] < bound:
            lo = mid
        else:
            hi = mid - 1
    return lo


# ------------------------------------------------------------- active side


@dataclass(slots=True)
class PeerProgress:
    """What the active knows of one standby: where it is, what is in flight."""

    identity: bytes
    node: str
    acked: int            # highest sequence the peer has durably applied
    sent: int             # highest sequence sent to it
    last_seen: float = 0.0


@dataclass(slots=True)
class Sender:
    """Active side: which frames to send to which peer next (pure bookkeeping).

    ``read_frames(first_seq, max_count) -> list[bytes]`` is the journal's."""

    read_frames: Callable[[int, int], list[bytes]]
    window: int = 20000
    batch: int = 500
    peers: dict[bytes, PeerProgress] = field(default_factory=dict)

    def hello(self, identity: bytes, node: str, last_seq: int, head: int, now: float) -> PeerProgress:
        """A standby (re)joined at ``last_seq``: whatever was in flight to it is
        gone with its old connection, so streaming restarts from there."""
        p = PeerProgress(identity, node, acked=min(last_seq, head), sent=min(last_seq, head), last_seen=now)
        self.peers[identity] = p
        return p

    def ack(self, identity: bytes, seq: int, now: float) -> PeerProgress | None:
        p = self.peers.get(identity)
        if p is None:
            return None
        if seq > p.acked:
            p.acked = min(seq, p.sent)
        p.last_seen = now
        return p

    def seen(self, identity: bytes, now: float) -> None:
        p = self.peers.get(identity)
        if p is not None:
            p.last_seen = now

    def expire(self, older_than: float) -> list[PeerProgress]:
        """Forget peers not heard from since ``older_than`` (dead standbys must
        not hold sync-mode completions)."""
        gone = [p for p in self.peers.values() if p.last_seen < older_than]
        for p in gone:
            del self.peers[p.identity]
        return gone

    def batches(self, head: int, epoch: int) -> list[tuple[bytes, Batch]]:
        """Messages to send now: for every peer, frames past ``sent`` within its window."""
        out = []
        for p in self.peers.values():
            while p.sent < head and p.sent - p.acked < self.window:
                room = min(self.batch, head - p.sent, self.window - (p.sent - p.acked))
                frames = self.read_frames(p.sent + 1, room)
                if not frames:
                    break
                first = p.sent + 1
                p.sent += len(frames)
                out.append((p.identity, Batch(first, frames, head, epoch)))
        return out

    def min_acked(self) -> int | None:
        """The lowest acknowledged sequence over connected peers (sync mode waits on it)."""
        return min((p.acked for p in self.peers.values()), default=None)

    def forget(self, identity: bytes) -> None:
        self.peers.pop(identity, None)


# ------------------------------------------------------------ standby side


@dataclass(slots=True)
class Receiver:
    """Standby side: which part of a BATCH is new (pure bookkeeping).

    After a gap (frames lost with an old connection) the standby says HELLO
    again once, then ignores further out-of-order batches until the resent
    stream arrives or ``resync_after`` has passed."""

    resync_after: float
    resync_at: float | None = None

    def admit(self, msg: Batch, head: int, now: float) -> tuple[list, bool]:
        """(frames to append, whether to say HELLO again)."""
        if msg.first > head + 1:
            if self.resync_at is None or now - self.resync_at >= self.resync_after:
                self.resync_at = now
                return [], True
            return [], False
        self.resync_at = None
        skip = head + 1 - msg.first               # duplicates after a re-HELLO
        return (msg.frames[skip:] if skip else msg.frames), False


# ------------------------------------------------------ snapshot transfer


@dataclass(slots=True)
class SnapshotSend:
    """Active side: one snapshot on its way to one standby (pure bookkeeping)."""

    seq: int
    data: bytes
    frame: bytes
    sent: int = 0
    acked: int = 0
    last_seen: float = 0.0

    def chunks(self) -> list[SnapChunk]:
        """Chunks to send now: past ``sent``, within the window."""
        out = []
        total = len(self.data)
        while self.sent < total and self.sent - self.acked < SNAP_WINDOW:
            n = min(SNAP_CHUNK, total - self.sent)
            out.append(SnapChunk(self.seq, self.sent, total, self.data[self.sent:self.sent + n],
                                 self.frame if self.sent == 0 else b""))
            self.sent += n
        return out

    def ack(self, msg: SnapAck, now: float) -> bool:
        """Take an acknowledgement; True once the whole snapshot is stored."""
        if msg.seq == self.seq and self.acked < msg.offset <= self.sent:
            self.acked = msg.offset
            self.last_seen = now
        return self.acked == len(self.data)


@dataclass(slots=True)
class SnapshotReceive:
    """Standby side: the chunks of one snapshot, in order (pure bookkeeping;
    the transport writes the data where it keeps the file)."""

    seq: int
    total: int
    frame: bytes
    received: int = 0

    def admit(self, msg: SnapChunk) -> bool:
        """Whether the chunk is the next one (else the transfer starts over)."""
        if msg.seq != self.seq or msg.total != self.total or msg.offset != self.received:
            return False
        self.received += len(msg.data)
        return True

    @property
    def complete(self) -> bool:
        return self.received == self.total
