"""What the HA transport reports: its status for ``gwctl`` (role, epoch, what
it last heard of the peer, the acknowledged sequence), and where a late
heartbeat's time went (:class:`SlowTurns`, the turns that delay the lease's
renewal; ARCHITECTURE.md, "High availability")."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

log = logging.getLogger("gateway.replication")


@dataclass(slots=True)
class ReplicationStatus:
    role: str
    epoch: int
    peer_seen_ago: float | None
    peer_role: str | None
    peer_epoch: int | None
    peer_head: int | None
    peer_applied: int | None
    acked: int | None
    mode: str


class SlowTurns:
    """Where a late heartbeat's time went. A transport turn (checks and
    heartbeat, poll, commands, reading each socket, streaming) should take
    milliseconds and the poll should return when asked; a turn longer than
    a heartbeat interval delays the heartbeat that renews the lease, so it is
    logged with its parts (at most once per ``every`` seconds, with the count
    meanwhile) for the operator and for tuning."""

    def __init__(self, hb_interval: float, every: float = 5.0) -> None:
        self.limit = hb_interval
        self.every = every
        self.count = 0            # slow turns since start
        self._unlogged = 0
        self._logged_at = float("-inf")
        # The last turns, for a late lease renewal's report (history()).
        self.recent: collections.deque = collections.deque(maxlen=12)

    def history(self, now: float) -> str:
        """The last turns as "start+checks/poll/rest" in ms, oldest first, each
        start relative to ``now``: a late renewal with short, regular turns
        is not a stall of this thread."""
        return ", ".join(f"{(top - now) * 1000:.0f}+{(asleep - top) * 1000:.0f}/"
                         f"{(woke - asleep) * 1000:.0f}/{(end - woke) * 1000:.0f}{'' if active else 's'}"
                         for top, asleep, woke, end, active in self.recent)

    def note(self, top: float, asleep: float, asked: float, woke: float, t_cmds: float,
             t_router: float, t_dealer: float, end: float, active: bool = False) -> None:
        self.recent.append((top, asleep, woke, end, active))
        overslept = woke - asleep - asked
        busy = (asleep - top) + (end - woke)
        if overslept <= self.limit and busy <= self.limit:
            return
        self.count += 1
        self._unlogged += 1
        if end - self._logged_at < self.every:
            return
        log.warning("replication: slow transport turn (%d since the last report): checks %.0f ms, "
                    "poll returned %.0f ms late, commands %.0f ms, peer requests %.0f ms, "
                    "peer stream %.0f ms, streaming %.0f ms", self._unlogged,
                    (asleep - top) * 1000, max(0.0, overslept) * 1000, (t_cmds - woke) * 1000,
                    (t_router - t_cmds) * 1000, (t_dealer - t_router) * 1000, (end - t_dealer) * 1000)
        self._unlogged = 0
        self._logged_at = end
