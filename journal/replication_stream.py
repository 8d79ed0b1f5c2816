"""The journal stream between the pair (pure bookkeeping): which frames the
active sends each standby next within its window, and which part of a BATCH
the standby appends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .replication_messages import Batch


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
