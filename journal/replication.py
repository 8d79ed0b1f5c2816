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

The messages are in ``replication_messages``, the HELLO's record marks and
verdict in ``replication_marks``, the journal stream's bookkeeping in
``replication_stream``; this module is the codec and the snapshot transfer.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from .record import unpack_complete
from .replication_marks import frame_mark, hello_verdict
from .replication_messages import (
    Ack, Batch, Handover, Heartbeat, Hello, Message, ProtocolViolation, Refused, SnapAck, SnapChunk, Taken,
)
from .replication_stream import PeerProgress, Receiver, Sender

# What the transport, the tests and the fuzz targets import from here.
__all__ = ["Ack", "Batch", "Handover", "Heartbeat", "Hello", "MAX_FRAMES", "Message", "PeerProgress",
           "ProtocolViolation", "ROLES", "Receiver", "Refused", "SNAP_CHUNK", "SNAP_WINDOW", "Sender",
           "SnapAck", "SnapChunk", "SnapshotReceive", "SnapshotSend", "TYPES", "Taken", "decode", "encode",
           "frame_mark", "hello_verdict"]

ROLES = frozenset({"active", "standby", "stopped"})


# A snapshot travels in chunks of at most SNAP_CHUNK bytes, at most
# SNAP_WINDOW bytes unacknowledged: the heartbeats share the link and the
# thread, and neither side holds more than a few chunks in its queues.
SNAP_CHUNK = 1 << 20
SNAP_WINDOW = 4 << 20

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
