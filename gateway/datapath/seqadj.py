"""TCP sequence adjustment after a length-changing rewrite (what Linux's
``nf_nat_seqadj`` does for its helpers), as pure values that the datapath and
the journaled state share.

When the SIP ALG rewrites a message carried over TCP and its length changes
by ``change`` octets, every later octet of that direction sits ``change``
further on in the receiver's sequence space than in the sender's. The
gateway, which stays packet-level on TCP (DESIGN.md, "A packet's way
through", item 1), therefore:

* adds the cumulative change to the sequence number of every later segment
  of that direction (RFC 9293 §3.4: sequence numbers count octets);
* subtracts it from the acknowledgement number of every segment of the
  other direction, and from the edges of its SACK blocks (RFC 2018 §3: left
  and right edges are sequence numbers of the data sender).

One direction's adjustment is ``(base, entries)``: ``entries`` is a tuple of
``(position, cumulative change)`` in the sender's (original) sequence space,
oldest first; ``position`` is the original sequence number of the first
octet of the rewritten segment. As in ``nf_nat_seqadj_adjust``, a sequence
number strictly after a position takes that entry's change (a
retransmission of the rewritten segment itself starts exactly at the
position and keeps the change before it). ``base`` is the change of
entries already forgotten: at most :data:`MAX_ENTRIES` are kept, the oldest
folded into ``base`` (a segment from before the oldest kept entry is older
than any window and would only be a stale duplicate).

The per-connection adjustments are state (a standby must carry a connection
on after failover): :class:`TcpSeqAdjusted` events, folded by :func:`apply`
into :class:`TcpState` (the ``tcp`` slot of :mod:`gateway.domain`), from which
a new active rebuilds its stream trackers."""

from __future__ import annotations

from dataclasses import dataclass

from immutables import Map

from gateway.events import Event, event

_MOD = 1 << 32
_HALF = 1 << 31
MAX_ENTRIES = 32
# Connections remembered in the state; the oldest-adjusted goes first (a
# SIP connection that has ended leaves no event; this bounds what they leave).
MAX_CONNECTIONS = 4096

Adjust = tuple[int, tuple[tuple[int, int], ...]]
NONE: Adjust = (0, ())


def _diff(a: int, b: int) -> int:
    return ((a - b + _HALF) % _MOD) - _HALF


def add(adj: Adjust, position: int, change: int) -> Adjust:
    """``adj`` with a rewrite at ``position`` that changed the length by ``change``."""
    base, entries = adj
    if not change:
        return adj
    cum = (entries[-1][1] if entries else base) + change
    entries = entries + ((position % _MOD, cum),)
    if len(entries) > MAX_ENTRIES:
        base = entries[0][1]
        entries = entries[1:]
    return base, entries


def delta_at(adj: Adjust, seq: int) -> int:
    """The change that applies to a segment of this direction starting at ``seq``."""
    base, entries = adj
    for pos, cum in reversed(entries):
        if _diff(seq, pos) > 0:
            return cum
    return base


def map_seq(adj: Adjust, seq: int) -> int:
    """The sequence number the receiver must see for ``seq``."""
    if not adj[1] and not adj[0]:
        return seq
    return (seq + delta_at(adj, seq)) % _MOD


def map_ack(adj: Adjust, ack: int) -> int:
    """An acknowledgement (or SACK edge) in the receiver's space, back in the
    sender's: ``nf_nat_seqadj``'s test, ``ack - offset_before`` after the
    position, entry by entry from the newest."""
    base, entries = adj
    if not entries and not base:
        return ack
    for i in range(len(entries) - 1, -1, -1):
        pos, cum = entries[i]
        before = entries[i - 1][1] if i else base
        if _diff((ack - before) % _MOD, pos) > 0:
            return (ack - cum) % _MOD
    return (ack - base) % _MOD


# ------------------------------------------------------------------ state

@event("tcp.seq_adjusted", schema=1)
@dataclass(frozen=True, slots=True)
class TcpSeqAdjusted(Event):
    """A rewrite changed the length of the data ``sender`` sent on connection
    ``conn`` by ``change`` octets at sequence number ``position`` (the
    sender's own numbering). ``conn`` is the connection's name from its two
    real endpoints (``gateway.datapath.pipeline``), the same on every node."""

    conn: str
    sender: str
    position: int
    change: int

    @property
    def stream(self) -> str:
        return f"tcp/{self.conn}"


_EMPTY_MAP: Map = Map()


@dataclass(frozen=True, slots=True)
class TcpState:
    """``conns``: connection name -> ((sender, Adjust), ...).

    Persistent maps (``immutables.Map``), so that an event of one connection
    among thousands costs O(log n), not a copy of every connection's entry.
    "The oldest-adjusted goes first" is kept by an ordinal per adjustment:
    ``order`` (conn -> its latest ordinal) and ``by_order`` (ordinal -> conn);
    ``oldest`` is at or below every live ordinal, so eviction walks each
    ordinal at most once over the state's life."""

    conns: Map = _EMPTY_MAP
    order: Map = _EMPTY_MAP
    by_order: Map = _EMPTY_MAP
    next: int = 0
    oldest: int = 0

    def adjustments(self, conn: str) -> dict[str, Adjust]:
        return dict(self.conns.get(conn, ()))


EMPTY = TcpState()


def apply(state: TcpState, e: Event) -> TcpState:
    if not isinstance(e, TcpSeqAdjusted):
        raise TypeError(f"the tcp state folds no {e.TYPE!r}")
    sides = dict(state.conns.get(e.conn, ()))
    sides[e.sender] = add(sides.get(e.sender, NONE), e.position, e.change)
    conns = state.conns.set(e.conn, tuple(sorted(sides.items())))
    order, by_order = state.order, state.by_order
    before = order.get(e.conn)
    if before is not None:
        by_order = by_order.delete(before)
    n = state.next
    order = order.set(e.conn, n)
    by_order = by_order.set(n, e.conn)
    oldest = state.oldest
    while len(conns) > MAX_CONNECTIONS:
        while oldest not in by_order:
            oldest += 1
        victim = by_order[oldest]
        conns = conns.delete(victim)
        order = order.delete(victim)
        by_order = by_order.delete(oldest)
        oldest += 1
    return TcpState(conns, order, by_order, n + 1, oldest)
