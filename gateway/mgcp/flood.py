"""Per-gateway MGCP message and connection flood control (manual ch. 3
"MGCP Security": "Per-gateway MGCP message flooding control. Any
malfunctioning or hacked gateway will not disrupt the whole VoIP network";
"Per-gateway MGCP connection flooding control").

The rate is a sliding one-second window estimated from two fixed one-second
buckets (the previous bucket's count weighted by how much of it still lies in
the window, plus the current bucket's count): O(1) memory and time per
message, a pure function of (counters, now). Only accepted messages are
counted, so a flooding gateway still gets ``threshold`` messages a second
through and its excess is dropped; other gateways have counters of their own.

The counters are soft state: they are kept in the state passed through
``step`` but are not journaled. A rate over the last second is worthless
after a failover or a replay (by then the second is over), and journaling a
counter update per message would double the journal's write rate exactly
when a flood is under way, which is what the control exists to withstand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """Counts of the bucket ``[start, start + 1)`` and of the one before."""

    start: float = float("-inf")
    current: int = 0
    previous: int = 0

    def advanced(self, now: float) -> "Window":
        bucket = math.floor(now)
        if bucket == self.start:
            return self
        if bucket == self.start + 1:
            return Window(bucket, 0, self.current)
        if bucket < self.start:
            # A timestamp older than the bucket (reordered capture): count it
            # in the current bucket rather than rewind.
            return self
        return Window(bucket, 0, 0)

    def rate(self, now: float) -> float:
        """Estimated messages in the one second ending at ``now``."""
        w = self.advanced(now)
        into = min(max(now - w.start, 0.0), 1.0)
        return w.previous * (1.0 - into) + w.current

    def counted(self, now: float) -> "Window":
        w = self.advanced(now)
        return Window(w.start, w.current + 1, w.previous)


@dataclass(frozen=True, slots=True)
class FloodCounters:
    messages: Window = Window()
    connections: Window = Window()


def admit(counters: FloodCounters | None, now: float, *, is_crcx: bool, count_message: bool,
          message_threshold: int, connection_threshold: int
          ) -> tuple[FloodCounters, str | None]:
    """Decide one message of a gateway. Returns the new counters and None
    when it passes, or the unchanged counters and the drop reason."""
    c = counters or FloodCounters()
    if count_message and c.messages.rate(now) + 1 > message_threshold:
        return c, (f"MGCP message flood: more than {message_threshold} messages/s "
                   "from this gateway")
    if is_crcx and c.connections.rate(now) + 1 > connection_threshold:
        return c, (f"MGCP connection flood: more than {connection_threshold} CRCX/s "
                   "for this gateway")
    msgs = c.messages.counted(now) if count_message else c.messages
    conns = c.connections.counted(now) if is_crcx else c.connections
    return FloodCounters(msgs, conns), None


def idle(counters: FloodCounters, now: float) -> bool:
    """Whether both windows are empty at ``now``: such counters weigh exactly
    as much as none, so they can be forgotten."""
    return all(w.advanced(now).current == 0 and w.advanced(now).previous == 0
               for w in (counters.messages, counters.connections))


# Below this many gateways' counters the map is not swept at all.
SWEEP_FLOOR = 64


def sweep(flood, mark: int, now: float):
    """Drop idle counters when the map has grown past ``mark``; returns the
    map and the next mark (twice what is left, at least SWEEP_FLOOR), so a
    sweep's O(n) is paid once per doubling: O(1) amortised per message. A
    sender that appears once (a scan, spoofed sources) is not remembered
    beyond a sweep."""
    if len(flood) <= max(mark, SWEEP_FLOOR):
        return flood, mark
    for gw, c in list(flood.items()):
        if idle(c, now):
            flood = flood.delete(gw)
    return flood, max(SWEEP_FLOOR, 2 * len(flood))
