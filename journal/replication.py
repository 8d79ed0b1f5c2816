"""The replication protocol between the two nodes of a pair (no sockets here).

Transport (``actors/replication.py``): every node binds a ZeroMQ ROUTER on its
HA address and connects a DEALER to its peer's ROUTER, both with CURVE. Over
the DEALER a node sends HELLO / HB / ACK / HANDOVER; the ROUTER answers HB with
its own HB and, when its node is active, streams the journal to a peer that said
HELLO. Because both nodes always heartbeat each other, two nodes that both
believe they are active see each other's epoch on the next heartbeat, and the
lower one demotes (``gateway/ha.py``).

Messages are two ZeroMQ frames: the type (one ASCII word) and a msgpack map.

  HELLO    {node, last_seq, epoch}           standby -> active: resume after last_seq
  BATCH    {first, frames: [bytes], head, epoch}
                                             active -> standby: journal frames as written
  ACK      {seq, epoch}                      standby -> active: cumulative
  HB       {node, role, epoch, head, prio, applied, ts}
                                             both ways
  HANDOVER {epoch, head}                     active -> standby: promote once you have head
  TAKEN    {epoch}                           new active -> old active: done, demote
  REFUSED  {reason}

Flow control: the active keeps at most ``window`` unacknowledged events in
flight per peer and sends batches of at most ``batch`` frames (batching is what
makes replication fast; one event in flight at a time is ~50x slower).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import msgpack

TYPES = frozenset({b"HELLO", b"BATCH", b"ACK", b"HB", b"HANDOVER", b"TAKEN", b"REFUSED"})


class ProtocolViolation(Exception):
    """A peer sent something that is not this protocol: logged and dropped."""


def encode(kind: bytes, body: dict) -> list[bytes]:
    if kind not in TYPES:
        raise ValueError(f"unknown replication message {kind!r}")
    return [kind, msgpack.packb(body, use_bin_type=True)]


def decode(frames: list[bytes]) -> tuple[bytes, dict]:
    if len(frames) != 2:
        raise ProtocolViolation(f"expected 2 frames, got {len(frames)}")
    kind, raw = bytes(frames[0]), frames[1]
    if kind not in TYPES:
        raise ProtocolViolation(f"unknown message type {kind[:16]!r}")
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolViolation(f"undecodable {kind.decode()} body: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolViolation(f"{kind.decode()} body is not a map")
    return kind, body


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
        if last_seq > head:
            # The peer has records this node never wrote: it was active in a term
            # this node did not see. Its extra tail is not ours to keep; the HA
            # epoch rule decides who is active, and the peer must re-sync.
            last_seq = head
        p = PeerProgress(identity, node, acked=last_seq, sent=last_seq, last_seen=now)
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

    def batches(self, head: int, epoch: int) -> list[tuple[bytes, list[bytes]]]:
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
                out.append((p.identity, encode(b"BATCH", {
                    "first": first, "frames": frames, "head": head, "epoch": epoch})))
        return out

    def min_acked(self) -> int | None:
        """The lowest acknowledged sequence over connected peers (sync mode waits on it)."""
        return min((p.acked for p in self.peers.values()), default=None)

    def forget(self, identity: bytes) -> None:
        self.peers.pop(identity, None)
