"""The replication protocol's messages (HELLO, BATCH, ACK, HB, HANDOVER,
TAKEN, REFUSED, SNAP, SNAPACK), each a frozen dataclass naming its wire type,
and the error a peer's message that is not this protocol raises."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import RemoteProtocolError


class ProtocolViolation(RemoteProtocolError):
    """A peer sent something that is not this protocol: logged and dropped."""



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


Message = Hello | Batch | Ack | Heartbeat | Handover | Taken | Refused | SnapChunk | SnapAck
